//! Running mc2 under QEMU (TCG) and Bochs, and making the GRUB ISO.

use crate::provision::{ensure, Tool};
use crate::util::{run_captured, target_dir, Captured, Result, Typed};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

/// QEMU exit statuses written by the kernel through isa-debug-exit
/// (`(code << 1) | 1`, with code 0x10 success and 0x11 failure).
pub const QEMU_SUCCESS: i32 = 33;
pub const QEMU_FAILURE: i32 = 35;

/// How QEMU runs the virtual CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tcg {
    /// One host thread per vCPU: real parallelism up to the host's cores.
    MultiThreaded,
    /// All vCPUs interleaved on one host thread: deterministic-ish and fast
    /// when there are more vCPUs than host cores.
    SingleThreaded,
}

pub struct QemuOpts<'a> {
    pub smp: usize,
    pub cmdline: &'a str,
    pub tcg: Tcg,
    pub memory_mib: usize,
    /// Interactive: serial multiplexed with the QEMU monitor on the terminal.
    pub interactive: bool,
    /// The program bundle, loaded as a Multiboot module.
    pub bundle: Option<&'a Path>,
    pub extra: &'a [&'a str],
}

impl Default for QemuOpts<'_> {
    fn default() -> Self {
        QemuOpts { smp: 4, cmdline: "", tcg: Tcg::MultiThreaded, memory_mib: 256, interactive: false, bundle: None, extra: &[] }
    }
}

pub fn qemu_command(elf: &Path, o: &QemuOpts<'_>) -> Result<Command> {
    ensure(&[Tool::Qemu])?;
    let mut c = Command::new("qemu-system-x86_64");
    let thread = match o.tcg {
        Tcg::MultiThreaded => "multi",
        Tcg::SingleThreaded => "single",
    };
    // SVM with nested paging (AMD APM Vol. 2 ch. 15) so that mc2 can run guests.
    c.args(["-machine", "pc", "-cpu", "qemu64,+svm,+npt", "-accel"])
        .arg(format!("tcg,thread={thread}"))
        .arg("-smp")
        .arg(o.smp.to_string())
        .arg("-m")
        .arg(o.memory_mib.to_string())
        .arg("-kernel")
        .arg(elf)
        .args(["-display", "none", "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .args(["-serial", if o.interactive { "mon:stdio" } else { "stdio" }]);
    if !o.cmdline.is_empty() {
        c.arg("-append").arg(o.cmdline);
    }
    if let Some(b) = o.bundle {
        c.arg("-initrd").arg(b);
    }
    c.args(o.extra);
    // A developer's aid: more QEMU options for every mc2 boot the xtask
    // makes (e.g. `-monitor unix:/tmp/mon.sock,server,nowait` to read
    // `info jit` during a benchmark; docs/benchmarks.md).
    if let Ok(more) = std::env::var("MC2_QEMU_ARGS") {
        c.args(more.split_whitespace());
    }
    Ok(c)
}

/// Boot under QEMU and capture the console.
pub fn qemu_capture(elf: &Path, o: &QemuOpts<'_>, timeout: Duration, typed: Option<Typed<'_>>) -> Result<Captured> {
    run_captured(&mut qemu_command(elf, o)?, timeout, typed, None)
}

/// QEMU with its console on pipes, for a conversation with mc2.
pub struct Piped {
    pub child: Child,
    pub stdin: ChildStdin,
    /// Console lines without their line ends, each passed through the
    /// caller's `clean`, from a reader thread; closed when QEMU exits.
    pub lines: Receiver<String>,
}

/// Boot under QEMU with the console on pipes (see [`Piped`]).
pub fn qemu_piped(elf: &Path, o: &QemuOpts<'_>, clean: fn(&str) -> String) -> Result<Piped> {
    let mut cmd = qemu_command(elf, o)?;
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start QEMU: {e}"))?;
    let stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let s = clean(String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']));
                    if tx.send(s).is_err() {
                        break;
                    }
                }
            }
        }
    });
    Ok(Piped { child, stdin, lines })
}

/// Make a GRUB rescue ISO that boots `elf` with `cmdline` and the program
/// bundle as a module (BIOS PCs, Bochs).
pub fn make_iso(elf: &Path, bundle: Option<&Path>, cmdline: &str, out: &Path) -> Result<()> {
    ensure(&[Tool::GrubIso])?;
    let stage = out.with_extension("d");
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(stage.join("boot/grub")).map_err(|e| e.to_string())?;
    std::fs::copy(elf, stage.join("boot/mc2.elf")).map_err(|e| e.to_string())?;
    let module = match bundle {
        Some(b) => {
            std::fs::copy(b, stage.join("boot/bundle.img")).map_err(|e| e.to_string())?;
            "  module /boot/bundle.img bundle\n"
        }
        None => "",
    };
    let cmdline = grub_words(cmdline);
    let cfg = format!(
        "set timeout=0\nset default=0\nserial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\n\
         menuentry \"mc2\" {{\n  multiboot /boot/mc2.elf {cmdline}\n{module}  boot\n}}\n"
    );
    std::fs::write(stage.join("boot/grub/grub.cfg"), cfg).map_err(|e| e.to_string())?;
    let out_ = Command::new("grub-mkrescue").arg("-o").arg(out).arg(&stage).output().map_err(|e| e.to_string())?;
    if !out_.status.success() {
        return Err(format!("grub-mkrescue failed:\n{}", String::from_utf8_lossy(&out_.stderr)));
    }
    Ok(())
}

/// `cmdline` as words of a GRUB script line that hand the kernel the same
/// text: characters GRUB's script gives a meaning (`;` ends its command,
/// `$` expands, quotes group, ...) escaped one by one with a backslash.
/// Quoting a whole command instead does not work: GRUB 2.06 passes an
/// argument holding spaces on to the kernel inside double quotes.
pub fn grub_words(cmdline: &str) -> String {
    let mut out = String::with_capacity(cmdline.len());
    for c in cmdline.chars() {
        if ";&|<>(){}$\"'\\#".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Where Bochs sends COM1.
pub enum BochsSerial<'a> {
    File(&'a Path),
    Terminal,
}

/// Bochs's memory (MiB) unless a run asks for more.
pub const BOCHS_MEGS: usize = 256;

/// A Bochs configuration for a VT-x capable CPU (Skylake-X model: VMX with
/// EPT and unrestricted guest) booting `iso` on `cpus` CPUs with `megs` MiB.
pub fn bochsrc(iso: &Path, cpus: usize, megs: usize, serial: BochsSerial<'_>, log: &Path) -> String {
    let com1 = match serial {
        BochsSerial::File(p) => format!("com1: enabled=1, mode=file, dev={}", p.display()),
        BochsSerial::Terminal => "com1: enabled=1, mode=term, dev=/dev/tty".to_string(),
    };
    format!(
        "megs: {megs}\n\
         cpu: model=corei7_skylake_x, count={cpus}, ips=100000000\n\
         romimage: file=/usr/share/bochs/BIOS-bochs-latest\n\
         vgaromimage: file=/usr/share/bochs/VGABIOS-lgpl-latest\n\
         ata0-master: type=cdrom, path={}, status=inserted\n\
         boot: cdrom\n\
         {com1}\n\
         display_library: rfb, options=\"timeout=0\"\n\
         sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy\n\
         speaker: enabled=0\n\
         clock: sync=none, time0=local\n\
         log: {}\n",
        iso.display(),
        log.display()
    )
}

/// Boot an ISO in Bochs ([`BOCHS_MEGS`] of memory), capturing COM1 through a file.
pub fn bochs_capture(iso: &Path, cpus: usize, name: &str, timeout: Duration) -> Result<Captured> {
    bochs_capture_megs(iso, cpus, BOCHS_MEGS, name, timeout)
}

/// [`bochs_capture`] with `megs` MiB of memory.
pub fn bochs_capture_megs(iso: &Path, cpus: usize, megs: usize, name: &str, timeout: Duration) -> Result<Captured> {
    ensure(&[Tool::Bochs])?;
    let dir = target_dir().join("bochs").join(name);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let serial = dir.join("serial.log");
    let _ = std::fs::remove_file(&serial);
    let rc = dir.join("bochsrc");
    std::fs::write(&rc, bochsrc(iso, cpus, megs, BochsSerial::File(&serial), &dir.join("bochs.log"))).map_err(|e| e.to_string())?;
    let cmds = dir.join("debugger.rc");
    std::fs::write(&cmds, "c\n").map_err(|e| e.to_string())?;
    let mut c = Command::new("bochs");
    c.arg("-q").arg("-f").arg(&rc).arg("-rc").arg(&cmds).current_dir(&dir);
    let mut cap = run_captured(&mut c, timeout, None, None)?;
    // The console is what COM1 wrote, not Bochs' own chatter.
    cap.output = std::fs::read(&serial).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    Ok(cap)
}

/// Path of the ISO that `cargo xtask run --iso` writes.
pub fn iso_path(name: &str) -> PathBuf {
    target_dir().join(format!("{name}.iso"))
}

#[cfg(test)]
mod tests {
    use super::grub_words;

    #[test]
    fn grub_words_escape_what_grub_script_would_take() {
        assert_eq!(grub_words("-- mem; vm list"), "-- mem\\; vm list");
        assert_eq!(grub_words("echo $x 'a' \"b\" a&b"), "echo \\$x \\'a\\' \\\"b\\\" a\\&b");
        assert_eq!(grub_words("test expect_cpus=4"), "test expect_cpus=4");
    }
}
