//! Boot order: console, boot information, platform discovery, interrupt
//! controllers and clocks, application processors, then the selected mode.

use crate::{cpus, intr};
use core::sync::atomic::Ordering;
use dev::console::{self, CONSOLE};
use dev::{ioapic, lapic, pic, println};
use lock::SpinLock;
extern crate alloc;
use alloc::format;
use alloc::string::String;
use machine::acpi::{self, Platform};
use machine::multiboot::BootInfo;
use machine::physmem::BootPhysMap;

/// How long an AP may take to show up before it is reported and skipped.
const AP_TIMEOUT_US: u64 = 200_000;

/// What boot learnt, for the modes and the monitor to read.
pub struct BootState {
    pub info: BootInfo,
    pub platform: Option<Platform>,
}

pub static STATE: SpinLock<Option<BootState>> = SpinLock::new(None);

struct Ipis(lapic::LocalApic);

impl machine::smp::StartupIpi for Ipis {
    fn send_init(&self, apic_id: u32) {
        self.0.send_init(apic_id)
    }
    fn send_startup(&self, apic_id: u32, vector: u8) {
        self.0.send_startup(apic_id, vector)
    }
    fn delay_us(&self, us: u64) {
        lapic::delay_us(us)
    }
}

/// What this boot runs once the CPUs are up.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Processes: init, the shell, ...
    User,
    /// Kernel-level modes (self-test, benchmarks, monitor): APs serve `cpus::run_on`.
    Kernel,
}

static MODE: lock::Once<Mode> = lock::Once::new();

fn mode() -> Mode {
    MODE.get().copied().unwrap_or(Mode::Kernel)
}

pub fn bsp(handoff: machine::boot::Handoff) -> ! {
    machine::trap::set_handler(intr::handle);
    machine::trap::set_syscall_handler(trap::syscall_entry);
    // SAFETY: per-CPU block set up by machine; the entry is the trap layer's.
    #[allow(unsafe_code)]
    unsafe {
        machine::trap::init_syscall()
    };
    let serial_ok = CONSOLE.init().is_ok();
    console::init_logger(log::LevelFilter::Info);
    println!("\nmc2 {} (lock: {})", env!("CARGO_PKG_VERSION"), lock_kind());
    if !serial_ok {
        // Nobody may see this, but a loader log or a later UART might.
        println!("mc2: COM1 did not answer the scratch-register probe");
    }

    let info = match BootInfo::parse(&BootPhysMap, handoff.magic, handoff.mbi_phys) {
        Ok(info) => info,
        Err(e) => intr::fatal(format_args!("boot information: {e}"), Some(0)),
    };
    let (img_start, img_end) = machine::boot::image_range();
    log::info!(
        "loader \"{}\", cmdline \"{}\", {} MiB usable in {} regions, image {:#x}..{:#x}",
        info.loader,
        info.cmdline,
        info.usable_bytes() >> 20,
        info.memory.len(),
        img_start,
        img_end
    );
    if info.dropped > 0 {
        log::warn!("{} memory regions or modules did not fit the boot tables and were ignored", info.dropped);
    }
    if info.cmdline_value("test").is_some() {
        intr::TEST_MODE.store(true, Ordering::Relaxed);
    }
    let kernel_mode = ["test", "bench", "monitor"].iter().any(|k| info.cmdline_value(k).is_some());
    let _ = MODE.set(if kernel_mode { Mode::Kernel } else { Mode::User });
    match mm::kernel::init(&info) {
        Ok(s) => log::info!(
            "mm: {} frames ({} MiB) managed, {} free; table {} KiB; kernel page tables {} pages, direct map {} GiB",
            s.total_frames,
            s.total_frames >> 8,
            s.free_at_boot,
            s.table_bytes >> 10,
            s.kernel_tables,
            s.direct_map >> 30
        ),
        Err(e) => intr::fatal(format_args!("memory management: {e}"), Some(0)),
    }

    pic::remap_and_mask(intr::PIC_BASE);
    let platform = match acpi::discover(&BootPhysMap) {
        Ok(p) => Some(p),
        Err(e) => {
            log::warn!("platform tables: {e}; continuing on the boot CPU alone, serial input polled");
            None
        }
    };
    if let Some(p) = &platform {
        // SAFETY: the address comes from the firmware's MADT/MP table and lies
        // in the uncached 3-4 GiB part of the boot direct map; no other CPU runs.
        unsafe { lapic::set_base(p.lapic_phys) };
    }
    let bsp_lapic = lapic::local();
    bsp_lapic.enable();
    let cal = bsp_lapic.calibrate(lapic::CALIBRATION_WINDOW_MS);
    console::start_clock();
    log::info!(
        "clocks: TSC {}.{:03} MHz, APIC timer {} ticks/ms (PIT-calibrated: two {} ms windows {} ppm apart, measurement {})",
        cal.tsc_per_ms / 1000,
        cal.tsc_per_ms % 1000,
        cal.timer_ticks_per_ms,
        lapic::CALIBRATION_WINDOW_MS,
        cal.disagreement_ppm,
        cal.tries
    );
    if cal.disagreement_ppm > lapic::WINDOWS_AGREE_PPM {
        log::warn!("clocks: no two calibration windows agreed (the CPU kept being away): the rates above may be off");
    }
    let bsp_apic = bsp_lapic.id();
    cpus::set_online(0);
    log::info!("cpu0 online (boot CPU, APIC id {bsp_apic})");

    let mut listed = 1;
    if let Some(p) = &platform {
        log::info!(
            "{:?} tables: {} CPUs, {} I/O APIC(s), local APIC at {:#x}",
            p.source,
            p.cpus.len(),
            p.ioapics.len(),
            p.lapic_phys
        );
        if p.cpus_over_limit > 0 {
            log::warn!("{} more CPUs listed than mc2 supports ({}); they stay off", p.cpus_over_limit, machine::MAX_CPUS);
        }
        route_serial(p, bsp_apic);
        let mut to_start = p.cpus.clone();
        // Test aid: `extra_apic=ID` lists a CPU that does not exist, to show
        // that a CPU which never answers is reported and skipped.
        if let Some(id) = info.cmdline_value("extra_apic").and_then(parse_number) {
            let _ = to_start.try_push(acpi::CpuEntry { apic_id: id as u32 });
        }
        listed = to_start.len().max(1);
        // Test aid: `ap_timeout_us=N` gives up on each AP after N us, so
        // that APs come up after the BSP has moved on (late CPUs must park,
        // never take a later CPU's stack and index).
        let timeout = info.cmdline_value("ap_timeout_us").and_then(parse_number).unwrap_or(AP_TIMEOUT_US);
        start_aps(&to_start, bsp_apic, timeout);
    }
    // The APs are up (they needed the boot identity map to get here): from
    // now on every CPU runs on the kernel's own page tables.
    mm::kernel::activate_kernel_tables();
    println!("mc2: {}/{} cpus online", cpus::online_count(), listed);

    trap::set_pm1a(platform.as_ref().and_then(|p| p.pm1a_control));
    *STATE.lock() = Some(BootState { info: info.clone(), platform });

    // Everything after ` -- ` on the command line is one command to run
    // before powering off (`cargo xtask run -- COMMAND`).
    let command = info.user_cmdline();
    if let Some(which) = info.cmdline_value("test") {
        crate::selftest::run(which, &info)
    } else if let Some(which) = info.cmdline_value("bench") {
        crate::bench::run(which)
    } else if info.cmdline_value("monitor").is_some() {
        crate::monitor::run(command)
    } else {
        user_space(&info, command.unwrap_or(""))
    }
}

fn route_serial(p: &Platform, bsp_apic: u32) {
    for io in &p.ioapics {
        // SAFETY: the window comes from the firmware's tables and lies in the
        // uncached part of the direct map; only the boot CPU runs.
        match unsafe { ioapic::register(io.phys, io.gsi_base) } {
            Ok(n) => log::info!("I/O APIC {} at {:#x}: {} inputs from GSI {}", io.id, io.phys, n, io.gsi_base),
            Err(e) => log::warn!("I/O APIC {} at {:#x} not used: {e:?}", io.id, io.phys),
        }
    }
    let irq = p.isa_irq(dev::serial::COM1_IRQ);
    match ioapic::route_gsi(irq.gsi, intr::SERIAL_VECTOR, bsp_apic, irq.active_low, irq.level_triggered) {
        Ok(()) => log::info!("COM1: IRQ {} -> GSI {} -> vector {:#x} on cpu0", irq.irq, irq.gsi, intr::SERIAL_VECTOR),
        Err(e) => log::warn!("COM1 interrupt not routed ({e:?}): serial input is polled"),
    }
}

fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn start_aps(cpus: &[acpi::CpuEntry], bsp_apic: u32, timeout_us: u64) {
    let ipis = Ipis(lapic::local());
    let mut next = 1;
    for entry in cpus.iter().filter(|c| c.apic_id != bsp_apic) {
        if next >= machine::MAX_CPUS {
            break;
        }
        // SAFETY: boot CPU, one AP at a time; the trampoline page (0x8000) is
        // below 1 MiB, which no loader structure we still need occupies (the
        // boot information was copied out above).
        let ok = unsafe { machine::smp::start_ap(next, entry.apic_id, &ipis, timeout_us) };
        if ok {
            while !cpus::is_online(next) {
                machine::x86::pause();
            }
            next += 1;
        } else {
            log::warn!("CPU with APIC id {} did not start within {} us; continuing without it", entry.apic_id, timeout_us);
        }
    }
}

pub fn ap(cpu: usize) -> ! {
    mm::kernel::activate_kernel_tables();
    // SAFETY: this CPU's per-CPU block is set up; the entry is the trap layer's.
    #[allow(unsafe_code)]
    unsafe {
        machine::trap::init_syscall()
    };
    let l = lapic::local();
    l.enable();
    log::info!("cpu{cpu} online (APIC id {})", l.id());
    if mode() == Mode::User {
        thread::SCHED.init_idle(cpu, kernel_cr3());
        cpus::set_online(cpu);
        schedule(cpu)
    }
    cpus::set_online(cpu);
    cpus::ap_loop(cpu)
}

fn kernel_cr3() -> u64 {
    mm::kernel::KERNEL_ROOT.get().map(|f| f.addr()).unwrap_or(0)
}

/// This CPU's part of user mode: the scheduler clock, then the idle loop
/// (which runs whatever becomes ready here).
fn schedule(cpu: usize) -> ! {
    lapic::local().start_periodic(intr::TIMER_VECTOR, 1_000_000 / trap::TICK_HZ);
    trap::bkl::enter();
    let _ = cpu;
    thread::SCHED.idle(cpu, trap::bkl::leave, trap::bkl::enter)
}

/// Start user space: the program bundle, console input, init on CPU 0.
fn user_space(info: &BootInfo, command: &str) -> ! {
    CONSOLE.set_interrupt_driven(true);
    let mut files = 0;
    for m in &info.modules {
        let bytes = mm::kernel::boot_module(m.start, m.end);
        match trap::programs::add_bundle(bytes) {
            Ok(n) => {
                log::info!("boot bundle \"{}\": {n} files", m.name);
                files += n;
            }
            Err(e) => log::warn!("boot module \"{}\" is not a bundle ({e:?}); ignored", m.name),
        }
    }
    if files == 0 {
        intr::fatal(format_args!("no program bundle among the {} boot modules: nothing to run (boot with -initrd bundle.img)", info.modules.len()), Some(0));
    }
    if let Err(e) = trap::console::init() {
        intr::fatal(format_args!("console input: {e}"), Some(0));
    }
    let mask = (0..machine::MAX_CPUS).filter(|&c| cpus::is_online(c)).fold(0u64, |m, c| m | 1 << c);
    trap::process::set_cpus(mask);
    // Test aid: `exit_delay_us=N` holds every exiting thread N us between
    // its process being published as exited and its leaving the CPU.
    if let Some(us) = info.cmdline_value("exit_delay_us").and_then(parse_number) {
        trap::process::set_exit_delay_us(us);
    }
    thread::SCHED.init_idle(0, kernel_cr3());
    let first = info.cmdline_value("init").filter(|p| !p.is_empty()).unwrap_or("init");
    if command.len() > trap::process::MAX_ARGS {
        intr::fatal(format_args!("cannot start init: the command after ` -- ` is {} bytes, at most {} fit", command.len(), trap::process::MAX_ARGS), Some(0));
    }
    match trap::process::start_init(first, command, 0) {
        Ok(pid) => log::info!("init started (pid {pid}){}", if command.is_empty() { String::new() } else { format!(", command \"{command}\"") }),
        Err(e) => intr::fatal(format_args!("cannot start init: {e}"), Some(0)),
    }
    schedule(0)
}

pub fn lock_kind() -> &'static str {
    if core::any::type_name::<lock::DefaultLock>().contains("Mcs") {
        "MCS"
    } else {
        "ticket"
    }
}
