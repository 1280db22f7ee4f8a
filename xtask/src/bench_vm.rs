//! `cargo xtask bench vm`: what running as mc2's guest costs.
//!
//! The workload is one flat image, `guests/src/bin/vmbench.rs`, run two ways
//! in the same QEMU (TCG, `-cpu qemu64,+svm,+npt`, 1 vCPU):
//!
//! - as a guest of mc2: `run -c 0 vmm vmbench.bin --ram-mb 40` in mc2's
//!   shell (AMD SVM with nested paging, devices in the user-level VMM);
//! - bare: QEMU boots a disk whose boot sector (written here) loads the same
//!   image to 0x10000 and enters it at 0x1000:0000, as the VMM does.
//!
//! The guest times itself with RDTSC. With `-icount shift=0` the TSC counts
//! retired instructions (guest and, under mc2, the host kernel's and VMM's
//! too): the exit costs and the headline speed (the share of the CPU the
//! guest's jobs got) come from that run. Runs without `-icount` (the TSC
//! follows the host clock), bare and mc2 alternated, give the host-clock
//! ratios, reported with their spread: on this emulator they swing between
//! runs by more than the effect.

use crate::bench::{median, out_dir};
use crate::emu::{self, QemuOpts, Tcg};
use crate::kbuild::{self, LockKind};
use crate::svg::{self, Series};
use crate::util::{run_captured, target_dir, Result};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Guest RAM for both runs (the workload's buffer ends at 32 MiB).
const RAM_MIB: u32 = 40;
/// The empty loop's turns and its length in instructions (`dec; jnz`).
const LOOP_TURNS: f64 = 1_000_000.0;
const LOOP_INSNS: f64 = 2.0 * LOOP_TURNS;

/// One run's figures, in TSC ticks (see vmbench.rs).
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    lp: f64,
    cpuid: f64,
    io: f64,
    cpu: f64,
    mem: f64,
    cpuid_n: f64,
    io_n: f64,
    sum: u64,
}

fn parse(out: &str) -> Result<Sample> {
    let field = |line: &str, key: &str| -> Option<String> {
        line.split_whitespace().find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')).map(str::to_string))
    };
    let strip = |l: &str| l.trim_end_matches('\r').trim_start_matches("[vm0] ").to_string();
    let lines: Vec<String> = out.lines().map(strip).filter(|l| l.starts_with("vmbench: ")).collect();
    let main = lines.iter().find(|l| l.contains(" loop=") && l.contains(" sum=")).ok_or_else(|| format!("no vmbench result line in:\n{out}"))?;
    let counts = lines.iter().find(|l| l.starts_with("vmbench: counts")).ok_or("no vmbench counts line")?;
    let f = |l: &str, k: &str| -> Result<f64> { field(l, k).and_then(|v| v.parse().ok()).ok_or(format!("vmbench line lacks {k}: {l}")) };
    Ok(Sample {
        lp: f(main, "loop")?,
        cpuid: f(main, "cpuid")?,
        io: f(main, "io")?,
        cpu: f(main, "cpu")?,
        mem: f(main, "mem")?,
        cpuid_n: f(counts, "cpuid")?,
        io_n: f(counts, "io")?,
        sum: field(main, "sum").and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok()).ok_or("vmbench line lacks sum")?,
    })
}

/// A raw disk: a boot sector that loads `image` (the sectors after it) to
/// 0x1000:0000 through the BIOS and enters it the way mc2's VMM does
/// (EBX = argument 0, ECX = RAM in KiB, interrupts off), then the image.
pub fn boot_disk(image: &[u8], ram_kib: u32) -> Result<Vec<u8>> {
    let sectors = image.len().div_ceil(512);
    // One CHS read from cylinder 0, head 0: at most 62 sectors after the boot sector.
    if sectors > 62 {
        return Err(format!("image of {} bytes is too big for the one-read boot sector (31 KiB)", image.len()));
    }
    let mut code: Vec<u8> = vec![
        0xfa, // cli
        0x31, 0xc0, // xor ax, ax
        0x8e, 0xd0, // mov ss, ax
        0xbc, 0x00, 0x7c, // mov sp, 0x7c00
        0xb8, 0x00, 0x10, // mov ax, 0x1000
        0x8e, 0xc0, // mov es, ax
        0x31, 0xdb, // xor bx, bx            ; ES:BX = 0x1000:0000
        0xb8, sectors as u8, 0x02, // mov ax, 0x02NN    ; INT 13h AH=2: read AL sectors
        0xb9, 0x02, 0x00, // mov cx, 2             ; cylinder 0, sector 2
        0xb6, 0x00, // mov dh, 0              ; head 0, DL = the boot drive
        0xcd, 0x13, // int 0x13
        0x72, 0x0e, // jc fail
        0x66, 0x31, 0xdb, // xor ebx, ebx          ; the VMM's --arg
        0x66, 0xb9, // mov ecx, RAM_KIB
    ];
    code.extend_from_slice(&ram_kib.to_le_bytes());
    code.extend_from_slice(&[
        0xea, 0x00, 0x00, 0x00, 0x10, // jmp 0x1000:0000
        0xf4, // fail: hlt
        0xeb, 0xfd, // jmp fail
    ]);
    let mut disk = vec![0u8; 512];
    disk[..code.len()].copy_from_slice(&code);
    disk[510] = 0x55;
    disk[511] = 0xaa;
    disk.extend_from_slice(image);
    // Whole sectors, then a whole MiB (a plausible disk size for the BIOS).
    disk.resize(512 * (1 + sectors), 0);
    disk.resize(disk.len().next_multiple_of(1 << 20), 0);
    Ok(disk)
}

fn bare_run(disk: &Path, icount: bool) -> Result<Sample> {
    crate::provision::ensure(&[crate::provision::Tool::Qemu])?;
    let mut q = Command::new("qemu-system-x86_64");
    q.args(["-machine", "pc", "-cpu", "qemu64,+svm,+npt", "-accel", "tcg,thread=single", "-smp", "1", "-m", "256", "-display", "none", "-no-reboot", "-serial", "stdio"]);
    q.arg("-drive").arg(format!("file={},format=raw,if=ide", disk.display()));
    q.args(["-device", "isa-debug-exit,iobase=0x501,iosize=2"]);
    if icount {
        q.args(["-icount", "shift=0"]);
    }
    let cap = run_captured(&mut q, Duration::from_secs(600), None, None)?;
    // Status 0 through isa-debug-exit is QEMU exit status 1.
    if cap.timed_out || cap.code() != Some(1) {
        return Err(format!("the bare run did not finish (status {:?}):\n{}", cap.code(), cap.output));
    }
    parse(&cap.output)
}

fn mc2_run(elf: &Path, bundle: &Path, icount: bool) -> Result<Sample> {
    // The VM's guest pages plus its nested tables fit in 11,000 pages of quota.
    let cmdline = format!("-- run -c 0 -q 11000 vmm vmbench.bin --ram-mb {RAM_MIB}");
    let extra: &[&str] = if icount { &["-icount", "shift=0"] } else { &[] };
    let o = QemuOpts { smp: 1, cmdline: &cmdline, tcg: Tcg::SingleThreaded, bundle: Some(bundle), extra, ..Default::default() };
    let cap = emu::qemu_capture(elf, &o, Duration::from_secs(600), None)?;
    if cap.timed_out || !cap.output.contains("[vm0] guest exited with status 0") {
        return Err(format!("the mc2 run did not finish:\n{}", cap.output));
    }
    parse(&cap.output)
}

pub fn run(args: &[String]) -> Result<()> {
    let pairs: usize = crate::flag_value(args, "--repeats").map(|v| v.parse().map_err(|_| format!("--repeats takes a number, not `{v}`"))).transpose()?.unwrap_or(3).max(1);
    let elf = kbuild::build(LockKind::Ticket, true)?;
    let bundle = crate::user::build_bundle()?;
    let image_path: PathBuf = target_dir().join("guests").join(kbuild::HOST_TARGET).join("release").join("vmbench.bin");
    let image = std::fs::read(&image_path).map_err(|e| format!("{}: {e}", image_path.display()))?;
    let disk_path = target_dir().join("bench").join("vmbench-disk.img");
    out_dir()?;
    std::fs::write(&disk_path, boot_disk(&image, RAM_MIB * 1024)?).map_err(|e| e.to_string())?;

    println!("== instructions (QEMU TCG, 1 vCPU, -icount shift=0: the TSC counts retired instructions)");
    let bi = bare_run(&disk_path, true)?;
    let mi = mc2_run(&elf, &bundle, true)?;
    if bi.sum != mi.sum {
        return Err(format!("the workload computed {:#x} bare and {:#x} under mc2", bi.sum, mi.sum));
    }
    // The empty loop checks the scale: LOOP_INSNS ticks if a tick is an instruction.
    let (bscale, mscale) = (bi.lp / LOOP_INSNS, mi.lp / LOOP_INSNS);
    println!("  TSC ticks per instruction (empty loop of {LOOP_INSNS} instructions): bare {bscale:.3}, mc2 guest {mscale:.3}");
    let cpuid_i = mi.cpuid / mi.cpuid_n / mscale;
    let io_i = mi.io / mi.io_n / mscale;
    let bare_cpuid_i = bi.cpuid / bi.cpuid_n / bscale;
    let bare_io_i = bi.io / bi.io_n / bscale;
    println!("  CPUID, handled in the kernel   {cpuid_i:>9.0} instructions per exit round trip  (bare: {bare_cpuid_i:.1})");
    println!("  IN from CMOS, through the VMM  {io_i:>9.0} instructions per exit round trip  (bare: {bare_io_i:.1})");
    let cpu_icount = (bi.cpu / bscale) / (mi.cpu / mscale);
    let mem_icount = (bi.mem / bscale) / (mi.mem / mscale);
    println!("  instructions bare / under mc2: cpu job {cpu_icount:.4}, memory job {mem_icount:.4}");

    println!("\n== speed (QEMU TCG, 1 vCPU, TSC from the host clock; {pairs} alternated pairs, median of the pair ratios)");
    let mut rows = Vec::new();
    let (mut cpu_r, mut mem_r, mut all_r, mut loop_r) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // What one exit costs in wall time, in units of the guest's own empty
    // loop (the time of one simple instruction run natively by TCG): the
    // instruction counts above miss what an emulator spends on the world
    // switch itself (QEMU flushes its software TLB at each VMRUN and #VMEXIT).
    let (mut cpuid_w, mut io_w) = (Vec::new(), Vec::new());
    for i in 0..pairs {
        let b = bare_run(&disk_path, false)?;
        let m = mc2_run(&elf, &bundle, false)?;
        let (c, me, a, l) = (b.cpu / m.cpu, b.mem / m.mem, (b.cpu + b.mem) / (m.cpu + m.mem), b.lp / m.lp);
        println!("  pair {}: bare cpu {:.0} mem {:.0} | mc2 cpu {:.0} mem {:.0} ticks -> speed cpu {c:.3}, mem {me:.3}, both {a:.3} (empty loop {l:.3})", i + 1, b.cpu, b.mem, m.cpu, m.mem);
        let insn = m.lp / LOOP_INSNS;
        let (cw, iw) = (m.cpuid / m.cpuid_n / insn, m.io / m.io_n / insn);
        println!("          one exit takes as long as {cw:.0} (CPUID, kernel) / {iw:.0} (IN, VMM) guest instructions");
        cpuid_w.push(cw);
        io_w.push(iw);
        rows.push(json!({"bare": {"loop": b.lp, "cpu": b.cpu, "mem": b.mem}, "mc2": {"loop": m.lp, "cpu": m.cpu, "mem": m.mem, "cpuid": m.cpuid, "io": m.io}}));
        cpu_r.push(c);
        mem_r.push(me);
        all_r.push(a);
        loop_r.push(l);
    }
    let (cpu_s, mem_s, all_s, loop_s) = (median(&mut cpu_r), median(&mut mem_r), median(&mut all_r), median(&mut loop_r));
    let (cpuid_wall, io_wall) = (median(&mut cpuid_w), median(&mut io_w));
    println!("  one exit by the host clock (median), in guest instructions' time: CPUID {cpuid_wall:.0} (icount: {cpuid_i:.0}), IN through the VMM {io_wall:.0} (icount: {io_i:.0})");
    println!("\n  host-clock speed over bare (median): cpu job {cpu_s:.3}, memory job {mem_s:.3}, both together {all_s:.3} (empty loop {loop_s:.3})");

    // The headline speed is the deterministic one: under -icount the TSC is
    // the instruction count of the whole (virtual) CPU, so bare instructions
    // over the instructions that passed while the guest's job ran is the
    // share of the CPU the guest got, everything mc2 did meanwhile (host
    // ticks, exits) included. Host-clock ratios on this emulator swing
    // between runs by more than the effect (see the pairs), so they are
    // reported beside it, with their spread.
    let icount_both = (bi.cpu / bscale + bi.mem / bscale) / (mi.cpu / mscale + mi.mem / mscale);
    let spread = |v: &[f64]| (v.iter().cloned().fold(f64::INFINITY, f64::min), v.iter().cloned().fold(0.0, f64::max));
    let (all_lo, all_hi) = spread(&all_r);
    let (cpu_lo, cpu_hi) = spread(&cpu_r);
    println!("  speed by instructions (-icount): cpu job {cpu_icount:.4}, memory job {mem_icount:.4}, both {icount_both:.4}");
    println!("  host-clock ratios spread: both {all_lo:.2}..{all_hi:.2}, cpu job {cpu_lo:.2}..{cpu_hi:.2}");
    let figures = json!({
        "cpuid_exit_instructions": cpuid_i,
        "io_exit_instructions": io_i,
        "guest_speed_over_bare": icount_both,
        "cpu_speed_over_bare": cpu_icount,
        "mem_speed_over_bare": mem_icount,
        "wallclock_speed_over_bare": all_s,
        "wallclock_cpu_speed_over_bare": cpu_s,
        "wallclock_mem_speed_over_bare": mem_s,
        "wallclock_cpuid_exit_instruction_times": cpuid_wall,
        "wallclock_io_exit_instruction_times": io_wall,
        "wallclock_speed_min": all_lo,
        "wallclock_speed_max": all_hi,
    });
    let result = json!({
        "benchmark": "vm",
        "figures": figures,
        "environment": "QEMU TCG -cpu qemu64,+svm,+npt, 1 vCPU; mc2: the vmbench image through `vmm --ram-mb 40` (AMD SVM, nested paging); bare: the same image from a boot disk",
        "icount": {
            "bare": {"loop": bi.lp, "cpuid": bi.cpuid, "io": bi.io, "cpu": bi.cpu, "mem": bi.mem, "cpuid_n": bi.cpuid_n, "io_n": bi.io_n},
            "mc2": {"loop": mi.lp, "cpuid": mi.cpuid, "io": mi.io, "cpu": mi.cpu, "mem": mi.mem, "cpuid_n": mi.cpuid_n, "io_n": mi.io_n},
        },
        "speed_pairs": rows,
    });
    let dir = out_dir()?;
    let json_path = dir.join("vm.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&result).unwrap()).map_err(|e| e.to_string())?;
    let speed = svg::bar_chart(
        "Guest speed under mc2 over the same code bare (QEMU TCG; 1.0 = as fast)",
        "workload",
        "speed (bare / guest)",
        &["cpu job".to_string(), "memory job".to_string(), "both".to_string(), "empty loop".to_string()],
        &[
            Series::new("by instructions (-icount)", vec![(0.0, cpu_icount), (1.0, mem_icount), (2.0, icount_both), (3.0, bi.lp / mi.lp)]),
            Series::new("by host clock (median of pairs)", vec![(0.0, cpu_s), (1.0, mem_s), (2.0, all_s), (3.0, loop_s)]),
        ],
    );
    let exits = svg::bar_chart(
        "One exit round trip in retired instructions (QEMU -icount)",
        "exit",
        "instructions",
        &["CPUID (kernel)".to_string(), "IN 0x71 (user-level VMM)".to_string()],
        &[Series::new("mc2", vec![(0.0, cpuid_i), (1.0, io_i)]), Series::new("bare (no exit)", vec![(0.0, bare_cpuid_i), (1.0, bare_io_i)])],
    );
    let svg_path = dir.join("vm.svg");
    std::fs::write(&svg_path, svg::page(&[speed, exits])).map_err(|e| e.to_string())?;
    println!("\nwrote {} and {}", json_path.display(), svg_path.display());
    Ok(())
}
