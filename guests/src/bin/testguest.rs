//! testguest: walks a guest through what an OS boot needs from mc2's
//! hypervisor and its VMM, printing one line per step on COM1:
//!
//! ```text
//! guest: real mode
//! guest: cpuid vendor GenuineIntel, max leaf 0x0000000d
//! guest: cpuid 1 eax 0x000306a9 ecx 0x80982201
//! guest: hypervisor "mc2 mc2 mc2 "        (when CPUID.1:ECX bit 31 is set)
//! guest: protected mode
//! guest: long mode
//! guest: idt, pic (0x20/0x28) and pit (100 Hz) ready
//! guest: 20 timer interrupts
//! guest: local APIC timer: 20 deadlines passed with interrupts masked, each taken once at STI
//! guest: local APIC self-NMI: a second one sent inside the first's handler came after its IRET
//! guest: local APIC deadlines met late by (TSC ticks, 32 each) running min A median B max C, exiting ..., halted ...; none early
//!                                          (these three only with a local APIC: `vmm --lapic`)
//! guest: memory at 0x300000 ok
//! guest: success
//! ```
//!
//! then writes status 0 to the debug-exit port. With `vmm --arg S` (S > 0)
//! it keeps ticking for S more seconds after the 20 interrupts, printing
//! `guest: S s` each second (a long-running guest for `vm list` and
//! `vm stop`). Real mode: COM1 output by
//! polling LSR, CPUID leaves 0, 1 and 0x40000000. Protected then long mode
//! with its own GDT and 2 MiB identity pages for the first 4 MiB, EFER.LME
//! by WRMSR (boot.S). Long mode: IDT, 8259A pair remapped to 0x20/0x28 with
//! only IRQ 0 unmasked, 8254 channel 0 at 100 Hz, `sti; hlt` until 20 timer
//! interrupts (each EOIed by the handler), then a pattern written and read
//! back over 64 KiB at 0x300000 (above the 2 MiB the VMM maps at start, so
//! it is backed on demand). Any unexpected exception prints
//! `guest: exception ...` and exits with status 1; a wrong pattern prints
//! `guest: memory ... FAILED` and exits with status 3.
#![no_std]
#![no_main]
#![allow(clippy::undocumented_unsafe_blocks)]

use guests::println;

core::arch::global_asm!(
    include_str!("../boot.S"),
    r#"
.section .boot, "awx"
.code16
rm_main:
    mov $(msg_rm - _start), %si
    call rm_puts
    /* CPUID leaf 0: the vendor string is EBX, EDX, ECX. */
    xor %eax, %eax
    cpuid
    mov %ebx, (vendor - _start)
    mov %edx, (vendor + 4 - _start)
    mov %ecx, (vendor + 8 - _start)
    mov $(msg_vendor - _start), %si
    call rm_puts
    mov $(msg_max - _start), %si
    call rm_puts
    call rm_puthex
    mov $'\n', %al
    call rm_putc
    /* CPUID leaf 1: signature and feature flags. */
    mov $1, %eax
    cpuid
    mov %ecx, (leaf1_ecx - _start)
    mov $(msg_leaf1 - _start), %si
    call rm_puts
    call rm_puthex
    mov $(msg_ecx - _start), %si
    call rm_puts
    mov %ecx, %eax
    call rm_puthex
    mov $'\n', %al
    call rm_putc
    /* A hypervisor present (bit 31): its signature at 0x40000000. */
    testl $0x80000000, (leaf1_ecx - _start)
    jz 1f
    mov $0x40000000, %eax
    cpuid
    mov %ebx, (hv_sig - _start)
    mov %ecx, (hv_sig + 4 - _start)
    mov %edx, (hv_sig + 8 - _start)
    mov $(msg_hv - _start), %si
    call rm_puts
1:  jmp rm_enter_long

msg_rm:     .asciz "guest: real mode\n"
msg_vendor: .ascii "guest: cpuid vendor "
vendor:     .ascii "????????????"
            .asciz ","
msg_max:    .asciz " max leaf "
msg_leaf1:  .asciz "guest: cpuid 1 eax "
msg_ecx:    .asciz " ecx "
msg_hv:     .ascii "guest: hypervisor \""
hv_sig:     .ascii "????????????"
            .asciz "\"\n"
.global msg_pm
msg_pm:     .asciz "guest: protected mode\n"
.align 4
leaf1_ecx:  .long 0
.code64
"#,
    options(att_syntax)
);

/// Where the on-demand memory check writes (above the VMM's first 2 MiB).
const HIGH: u64 = 0x30_0000;
const HIGH_LEN: u64 = 64 * 1024;
const TICKS: u64 = 20;

/// CPUID.1:ECX x2APIC (SDM Vol. 2A, CPUID): mc2 shows it only to a vCPU
/// with the kernel's local APIC (`vmm --lapic`).
const X2APIC: u32 = 1 << 21;
/// x2APIC registers as MSRs (SDM Vol. 3A §11.12.1.2) and the TSC deadline
/// (§11.5.4.1).
const SVR: u32 = 0x80f;
const EOI: u32 = 0x80b;
const ISR2: u32 = 0x812;
const IRR2: u32 = 0x822;
const LVT_TIMER: u32 = 0x832;
const ICR: u32 = 0x830;
/// ICR: delivery mode NMI (bits 8-10 = 4), destination shorthand self (bits 18-19 = 1).
const ICR_NMI_SELF: u64 = 4 << 8 | 1 << 18;
const TSC_DEADLINE: u32 = 0x6e0;
/// The timer's vector (bit 0 of ISR2/IRR2) and TSC-deadline mode (LVT bits 17-18).
const LAPIC_VECTOR: u64 = 0x40;
const LVT_TSC_DEADLINE: u64 = 2 << 17;
const LAPIC_ROUNDS: u64 = 20;
/// How far ahead each deadline is (TSC ticks, about a millisecond).
const LAPIC_DELAY: u64 = 2_000_000;

/// The local APIC timer expiring while the guest has interrupts masked:
/// for each of LAPIC_ROUNDS deadlines, wait with IF clear until the IRR
/// shows the timer's vector, then `sti; nop; nop; cli`: it must have been
/// taken exactly once there (not while masked, not twice), be in service
/// until the EOI, and leave nothing requested. Under SVM mc2 offers such an
/// interrupt as a virtual one (V_IRQ) that the guest takes at its STI, no
/// window exit; the VMM's closing `kernel-handled:` line shows it.
fn lapic_masked_deadlines() {
    use guests::{lapic_ticks, rdmsr, rdtsc, wrmsr};
    let fail = |what: &str, round: u64| -> ! {
        println!("guest: local APIC timer FAILED in round {round}: {what}");
        guests::exit(5)
    };
    // The PIT's IRQ 0 masked at the 8259: its interrupts would keep the
    // VMM asking for windows (a different path).
    guests::outb(0x21, 0xff);
    wrmsr(SVR, 0x1ff);
    wrmsr(LVT_TIMER, LAPIC_VECTOR | LVT_TSC_DEADLINE);
    for round in 0..LAPIC_ROUNDS {
        let start = rdtsc();
        wrmsr(TSC_DEADLINE, start + LAPIC_DELAY);
        // Each RDMSR is an exit: the IRR the kernel shows, offer or not.
        while rdmsr(IRR2) & 1 == 0 {
            if rdtsc() - start > 1000 * LAPIC_DELAY {
                fail("the deadline never raised a request", round);
            }
        }
        if lapic_ticks() != round {
            fail("taken with interrupts masked", round);
        }
        unsafe { core::arch::asm!("sti; nop; nop; cli", options(nomem, nostack)) };
        if lapic_ticks() != round + 1 {
            fail(if lapic_ticks() == round { "not taken at STI" } else { "taken twice" }, round);
        }
        if rdmsr(ISR2) & 1 == 0 || rdmsr(IRR2) & 1 != 0 {
            fail("not in service (or still requested) before its EOI", round);
        }
        wrmsr(EOI, 0);
        if rdmsr(ISR2) & 1 != 0 {
            fail("still in service after its EOI", round);
        }
    }
    guests::outb(0x21, 0xfe);
    println!("guest: local APIC timer: {LAPIC_ROUNDS} deadlines passed with interrupts masked, each taken once at STI");
    // A self-NMI whose handler sends a second one (boot.S): the second must
    // come after the first's IRET, not inside it (and under VT-x not fail
    // the entry). The RDMSRs here are exits at which it can be injected.
    wrmsr(ICR, ICR_NMI_SELF);
    let start = rdtsc();
    while guests::nmis().0 < 2 {
        let _ = rdmsr(IRR2);
        if rdtsc() - start > 1000 * LAPIC_DELAY {
            println!("guest: self-NMI FAILED: {} of 2 taken", guests::nmis().0);
            guests::exit(5);
        }
    }
    if guests::nmis() != (2, false) {
        println!("guest: self-NMI FAILED: {:?} (count, nested)", guests::nmis());
        guests::exit(5);
    }
    println!("guest: local APIC self-NMI: a second one sent inside the first's handler came after its IRET");
    lapic_lateness();
}

/// Deadlines measured for lateness, each way.
const LATENESS_ROUNDS: usize = 32;

/// How late the local APIC timer's interrupt comes after its TSC deadline,
/// three ways: while the guest runs without exits (spinning with
/// interrupts on: the host timer ends its run, the kernel injects), while
/// it runs making exits (each spin reads an x2APIC register: the kernel
/// looks at the timer at every exit, and must not fire it before its
/// deadline), and while it is halted (`sti; hlt`: the kernel waits for the
/// deadline, then enters with the interrupt). Spinning, the interrupt came
/// between the last TSC read that did not see it and the read after (their
/// middle counts); halted, before the first read after HLT. It must never
/// come before the deadline.
fn lapic_lateness() {
    use guests::{lapic_ticks, rdmsr, rdtsc, wrmsr};
    const WAYS: [&str; 3] = ["running", "exiting", "halted"];
    // The PIT's IRQ 0 masked again: its exits to the VMM would end runs
    // near the deadline and hide what the deadline alone gets.
    guests::outb(0x21, 0xff);
    let mut late = [[0u64; LATENESS_ROUNDS]; 3];
    for (way, times) in late.iter_mut().enumerate() {
        for (round, t) in times.iter_mut().enumerate() {
            let before = lapic_ticks();
            let deadline = rdtsc() + LAPIC_DELAY;
            wrmsr(TSC_DEADLINE, deadline);
            // The interrupt came after `lo` and before `hi`.
            let mut lo = rdtsc();
            if WAYS[way] == "halted" {
                while lapic_ticks() == before {
                    // STI's shadow covers HLT: no interrupt lost in between.
                    unsafe { core::arch::asm!("sti; hlt; cli", options(nomem, nostack)) };
                }
            } else {
                unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
                loop {
                    let at = rdtsc();
                    if lapic_ticks() != before {
                        break;
                    }
                    // Not there when looked for after `at`: it came later.
                    lo = at;
                    if WAYS[way] == "exiting" {
                        let _ = rdmsr(ISR2);
                    }
                    if at > deadline && at - deadline > 1000 * LAPIC_DELAY {
                        println!("guest: local APIC lateness FAILED: no interrupt in round {round} ({})", WAYS[way]);
                        guests::exit(5);
                    }
                }
                unsafe { core::arch::asm!("cli", options(nomem, nostack)) };
            }
            let hi = rdtsc();
            wrmsr(EOI, 0);
            if hi < deadline {
                println!("guest: local APIC lateness FAILED: round {round} ({}) taken {} ticks before its deadline", WAYS[way], deadline - hi);
                guests::exit(5);
            }
            // Spinning: the middle of the reads around its arrival;
            // halted: the read after (an upper bound; `lo` is before HLT).
            *t = if WAYS[way] == "halted" { hi } else { lo + (hi - lo) / 2 }.saturating_sub(deadline);
        }
        times.sort_unstable();
    }
    guests::outb(0x21, 0xfe);
    guests::print_fmt(format_args!("guest: local APIC deadlines met late by (TSC ticks, {LATENESS_ROUNDS} each)"));
    for (way, times) in late.iter().enumerate() {
        guests::print_fmt(format_args!("{} {} min {} median {} max {}", if way == 0 { "" } else { "," }, WAYS[way], times[0], times[LATENESS_ROUNDS / 2], times[LATENESS_ROUNDS - 1]));
    }
    println!("; none early");
}

#[no_mangle]
extern "C" fn long_main(arg: u64) -> ! {
    guests::set_name("guest");
    println!("guest: long mode");
    guests::setup_interrupts();
    guests::pic_init(0x20, 0xfe, 0xff);
    guests::pit_init(100);
    println!("guest: idt, pic (0x20/0x28) and pit (100 Hz) ready");
    while guests::ticks() < TICKS {
        // STI's shadow covers HLT: no tick is lost between the check and the halt.
        unsafe { core::arch::asm!("sti; hlt; cli", options(nomem, nostack)) };
    }
    println!("guest: {} timer interrupts", guests::ticks());
    for s in 1..=arg {
        while guests::ticks() < TICKS + 100 * s {
            unsafe { core::arch::asm!("sti; hlt; cli", options(nomem, nostack)) };
        }
        println!("guest: {s} s");
    }
    if guests::cpuid(1)[2] & X2APIC != 0 {
        lapic_masked_deadlines();
    }
    let words = HIGH_LEN / 8;
    let pattern = |i: u64| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ HIGH;
    for i in 0..words {
        unsafe { ((HIGH + i * 8) as *mut u64).write_volatile(pattern(i)) };
    }
    for i in 0..words {
        let got = unsafe { ((HIGH + i * 8) as *const u64).read_volatile() };
        if got != pattern(i) {
            println!("guest: memory at {:#x} FAILED: read {got:#x}, wrote {:#x}", HIGH + i * 8, pattern(i));
            guests::exit(3);
        }
    }
    println!("guest: memory at {HIGH:#x} ok");
    let (first, second) = user_cpuid();
    println!("guest: user-mode hypervisor leaf \"{}\" then \"{}\"", sig(&first), sig(&second));
    println!("guest: success");
    guests::exit(0)
}

/// The stack of the user-mode excursion.
#[repr(align(16))]
struct UserStack([u8; 1024]);
static mut USER_STACK: UserStack = UserStack([0; 1024]);
/// EBX, ECX, EDX of the two user-mode CPUIDs.
static mut USER_SIG: [u32; 6] = [0; 6];

/// CPUID leaf 0x40000000 twice in user mode (CPL 3: IRETQ to the DPL 3
/// code segment 0x30), then UD2, whose #UD brings the guest back to CPL 0
/// at the recovery point. Under SVM with the VMM's `RUN_USER_CPUID` the
/// first CPUID is the hypervisor's (its signature) and the second the
/// processor's own; otherwise both are the hypervisor's.
fn user_cpuid() -> ([u32; 3], [u32; 3]) {
    let out = &raw mut USER_SIG as u64;
    let stack = unsafe { (&raw mut USER_STACK as *mut u8).add(1024) } as u64;
    let v = guests::recover!(
        "push 0x3b; push {stack}; push 0x2; push 0x33; lea rax, [rip + 3f]; push rax; iretq; \
         3: mov eax, 0x40000000; cpuid; mov [rdi], ebx; mov [rdi + 4], ecx; mov [rdi + 8], edx; \
         mov eax, 0x40000000; cpuid; mov [rdi + 12], ebx; mov [rdi + 16], ecx; mov [rdi + 20], edx; ud2",
        stack = in(reg) stack,
        in("rdi") out,
        out("rax") _,
        out("rcx") _,
        out("rdx") _
    );
    if v != Some(6) {
        println!("guest: user-mode excursion FAILED: came back with {v:?}, not #UD");
        guests::exit(4);
    }
    let w = unsafe { USER_SIG };
    ([w[0], w[1], w[2]], [w[3], w[4], w[5]])
}

/// Twelve signature bytes as text ('.' for the unprintable).
fn sig(r: &[u32; 3]) -> SigText {
    let mut b = [0u8; 12];
    for (i, w) in r.iter().enumerate() {
        b[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    SigText(b.map(|c| if (0x20..0x7f).contains(&c) { c } else { b'.' }))
}

struct SigText([u8; 12]);

impl core::fmt::Display for SigText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(core::str::from_utf8(&self.0).unwrap_or("????????????"))
    }
}
