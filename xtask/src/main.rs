//! `cargo xtask`: build, run, test and benchmark mc2.
//!
//! ```text
//! cargo xtask run   [--smp N] [--mcs] [--bochs] [--iso] [--cmdline ARGS] [-- COMMAND]
//! cargo xtask run   --guests N [--stay]
//! cargo xtask test  [--quick]
//! cargo xtask check [--long]
//! cargo xtask bench locks [--smp N]
//! cargo xtask build [--mcs]
//! cargo xtask deps
//! ```

mod assure;
mod bench;
mod bench_vm;
mod bench_guests;
mod conform;
mod emu;
mod guests;
mod image;
mod kbuild;
mod linux;
mod linuxguest;
mod linuxtest;
mod provision;
mod svg;
mod test;
mod user;
mod util;
mod vmtest;

use kbuild::LockKind;
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

  run   [options] [-- COMMAND]  build mc2 and boot it (QEMU TCG, 4 CPUs) on this terminal
        --smp N                 number of CPUs (default 4)
        --mcs                   build with the MCS lock instead of the ticket lock
        --bochs                 boot the GRUB ISO in Bochs (VT-x capable CPU model)
        --iso                   only write target/mc2.iso (boots in Bochs or on a real PC)
        --cmdline ARGS          extra kernel command line (e.g. `test`, `bench=locks`, `monitor`)
        --bkl                   build the big-kernel-lock kernel (mC2-bl)
        -- COMMAND              run one shell command, then power off
        --guests N [--stay]     start N Linux guests (Debian's kernel) on CPUs 1..N from the
                                shell and show their consoles; --stay keeps the shell
        (QEMU: Ctrl-A X quits, Ctrl-A C toggles the QEMU monitor)
  test  [--quick]               run every check; ends with `N passed, N failed`
                                (--quick skips loom/shuttle and Bochs)
  test-guests [--long] [WORD]   only the Linux guest checks of `test` (--long: also Bochs VT-x; WORD: those named so)
  check [--long] [--traces N] [--calls N] [--seed S] [--no-exhaustion] [--teeth] [--mutant M]
                                conformance traces with fresh seeds, fuzzing, exhaustion
                                (default 300 traces, 100,000 calls; --long: 10,000 traces,
                                1,000,000 fuzzed calls; docs/assurance.md)
  test-vm [--quick]             only the hypervisor checks of `test` (guests under SVM and VT-x)
  bench locks [--smp N]         the seed's lock experiment (host + in mc2 under QEMU)
  bench mm | vm                 memory and hypervisor costs (docs/benchmarks.md)
  bench ipc [--repeats N] [--ms MS] [--rounds R] [--cpus N]
                                IPC instructions vs Linux, throughput speedups (N boots, default
                                3; MS ms a point, default 1000, in 2R runs, default 4)
  bench guests [--rounds N] [--one] [--trap-cpuid] [--no-post] [--no-lapic] [--smp N]
                                workloads in a Linux guest vs the same Linux bare (QEMU TCG;
                                default 2 rounds; --one: without the three-guest run;
                                --trap-cpuid: every guest CPUID exits, as before RUN_USER_CPUID;
                                --no-post: every 8259 access exits to the VMM, as before vm_post;
                                --no-lapic: no local APIC for the guest (its timer the VMM's PIT);
                                --smp: CPUs of mc2's machine for the single guest, default 4)
  build [--mcs] [--bkl]         build the kernel image (checking its layout) and the program bundle
  deps                          install QEMU, Bochs and the GRUB tools (Debian/Ubuntu)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprint!("{USAGE}");
        return ExitCode::FAILURE;
    };
    let rest = &args[1..];
    let r = match cmd.as_str() {
        "run" => run(rest),
        "test" => return test::run(test::TestOpts { quick: rest.iter().any(|a| a == "--quick") }),
        "test-vm" => return vmtest::run_alone(rest.iter().any(|a| a == "--quick")),
        "bench" => bench::run(rest),
        "test-guests" => linuxtest::standalone(rest),
        "check" => assure::check(rest),
        "build" => kbuild::build_variant(lock_kind(rest), rest.iter().any(|a| a == "--bkl"), false).and_then(|k| {
            let b = user::build_bundle()?;
            println!("{}\n{}", k.display(), b.display());
            Ok(())
        }),
        "deps" => provision::ensure(&[provision::Tool::Qemu, provision::Tool::Bochs, provision::Tool::GrubIso]),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n{USAGE}")),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn lock_kind(args: &[String]) -> LockKind {
    if args.iter().any(|a| a == "--mcs") {
        LockKind::Mcs
    } else {
        LockKind::Ticket
    }
}

/// Value of `--flag VALUE` in `args`.
pub fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(String::as_str)
}

/// The longest command `run -- COMMAND` can pass: init gets it as its
/// arguments, at most `abi::MAX_ARGS` bytes (the kernel keeps 1 KiB of the
/// whole command line, which QEMU prefixes with the kernel's path).
const MAX_COMMAND: usize = abi::MAX_ARGS;

fn run(args: &[String]) -> util::Result<()> {
    let (opts, command) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], args[i + 1..].join(" ")),
        None => (args, String::new()),
    };
    // Every option is checked: a mistyped one (or `--help`) must not boot
    // the kernel into an interactive shell the user did not ask for.
    let mut i = 0;
    while i < opts.len() {
        match opts[i].as_str() {
            "--smp" | "--cmdline" | "--guests" => i += 2,
            "--mcs" | "--bochs" | "--iso" | "--bkl" | "--stay" => i += 1,
            "--help" | "-h" | "help" => {
                print!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("run: unknown option `{other}` (a shell command goes after `--`)\n{USAGE}")),
        }
    }
    if flag_value(opts, "--smp").is_none() && opts.iter().any(|a| a == "--smp") {
        return Err("--smp needs a number".into());
    }
    if command.len() > MAX_COMMAND {
        return Err(format!(
            "the command is {} bytes; mc2 passes at most {MAX_COMMAND} to init (its argument limit): split it, or run it from the shell",
            command.len()
        ));
    }
    let smp: usize = match flag_value(opts, "--smp") {
        Some(v) => v.parse().map_err(|_| format!("--smp takes a number, not `{v}`"))?,
        None => 4,
    };
    if smp == 0 || smp > 16 {
        return Err("--smp must be between 1 and 16 (mc2 supports up to 16 CPUs)".into());
    }
    let mut cmdline = flag_value(opts, "--cmdline").unwrap_or("").to_string();
    if !command.is_empty() {
        // The kernel runs everything after ` -- ` as a command, then powers off.
        cmdline = format!("{cmdline} -- {command}").trim().to_string();
    }
    if let Some(n) = flag_value(opts, "--guests") {
        let n = n.parse().map_err(|_| format!("--guests takes a number, not `{n}`"))?;
        return linuxguest::run_guests(n, opts.iter().any(|a| a == "--stay"));
    }
    let elf = kbuild::build_variant(lock_kind(opts), opts.iter().any(|a| a == "--bkl"), false)?;
    let bundle = user::build_bundle()?;
    if opts.iter().any(|a| a == "--iso") {
        let iso = emu::iso_path("mc2");
        emu::make_iso(&elf, Some(&bundle), &cmdline, &iso)?;
        println!("wrote {}\n  Bochs: cargo xtask run --bochs\n  real PC: write it to a USB stick (dd if={} of=/dev/sdX bs=4M) and boot it in BIOS/CSM mode; the console is on COM1 (115200 8N1)", iso.display(), iso.display());
        return Ok(());
    }
    if opts.iter().any(|a| a == "--bochs") {
        provision::ensure(&[provision::Tool::Bochs])?;
        let iso = emu::iso_path("mc2-bochs");
        emu::make_iso(&elf, Some(&bundle), &cmdline, &iso)?;
        let dir = util::target_dir().join("bochs").join("run");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let rc = dir.join("bochsrc");
        std::fs::write(&rc, emu::bochsrc(&iso, smp, emu::BOCHS_MEGS, emu::BochsSerial::Terminal, &dir.join("bochs.log"))).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("debugger.rc"), "c\n").map_err(|e| e.to_string())?;
        eprintln!("xtask: Bochs with {smp} CPU(s); console on this terminal, log in {}", dir.display());
        let mut c = std::process::Command::new("bochs");
        c.arg("-q").arg("-f").arg(&rc).arg("-rc").arg(dir.join("debugger.rc")).current_dir(&dir);
        let _ = c.status();
        return Ok(());
    }
    let o = emu::QemuOpts { smp, cmdline: &cmdline, interactive: true, bundle: Some(&bundle), ..Default::default() };
    let mut c = emu::qemu_command(&elf, &o)?;
    eprintln!("xtask: QEMU TCG with {smp} CPUs (Ctrl-A X quits)");
    let status = c.status().map_err(|e| e.to_string())?;
    match status.code() {
        Some(emu::QEMU_SUCCESS) | Some(0) => Ok(()),
        Some(emu::QEMU_FAILURE) => Err("mc2 reported a failure".into()),
        other => Err(format!("QEMU exited with {other:?}")),
    }
}
