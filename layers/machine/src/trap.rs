//! Interrupt descriptor table and the trap entry path.
//!
//! All 256 vectors enter through one stub each (pushing a dummy error code
//! where the CPU pushes none, then the vector number) into a common path that
//! saves the general registers and the FPU/SSE state (FXSAVE, SDM Vol. 1
//! §10.5) and calls the handler the layer above installed with
//! [`set_handler`]. Coming from ring 3 the path swaps GS so that GS base always
//! points at the per-CPU block while in the kernel.
//!
//! NMI, double fault and machine check run on their own IST stacks, so a
//! corrupt kernel stack still produces a report instead of a triple fault.

use core::sync::atomic::{AtomicUsize, Ordering};

/// Registers saved on entry, lowest address first. `rip..ss` is what the CPU
/// pushed (SDM Vol. 3A §6.14.2, Figure 6-9).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl TrapFrame {
    /// Did the trap come from user mode (ring 3)?
    pub fn from_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

/// Architectural exception vectors (SDM Vol. 3A §6.3.1, Table 6-1).
pub mod vector {
    pub const DIVIDE_ERROR: u8 = 0;
    pub const DEBUG: u8 = 1;
    pub const NMI: u8 = 2;
    pub const BREAKPOINT: u8 = 3;
    pub const INVALID_OPCODE: u8 = 6;
    pub const DOUBLE_FAULT: u8 = 8;
    pub const GENERAL_PROTECTION: u8 = 13;
    pub const PAGE_FAULT: u8 = 14;
    pub const MACHINE_CHECK: u8 = 18;
    /// First vector free for interrupts.
    pub const FIRST_IRQ: u8 = 32;

    // mc2's interrupt vectors, in one place for every layer.
    /// Local APIC timer.
    pub const TIMER: u8 = 0x20;
    /// IPI: "look at your ready queue" (wakes a halted CPU).
    pub const WAKE: u8 = 0x21;
    /// IPI counted by the self-test.
    pub const TEST: u8 = 0x22;
    /// IPI: invalidate TLB entries (memory management's shootdown).
    pub const FLUSH: u8 = 0x23;
    /// COM1 through the I/O APIC.
    pub const SERIAL: u8 = 0x24;
    /// Base of the (masked) legacy PIC vectors, out of everyone's way.
    pub const PIC_BASE: u8 = 0xe0;
}

/// Mnemonic and name of an exception vector.
pub fn exception_name(v: u64) -> (&'static str, &'static str) {
    match v {
        0 => ("#DE", "divide error"),
        1 => ("#DB", "debug"),
        2 => ("NMI", "non-maskable interrupt"),
        3 => ("#BP", "breakpoint"),
        4 => ("#OF", "overflow"),
        5 => ("#BR", "bound range exceeded"),
        6 => ("#UD", "invalid opcode"),
        7 => ("#NM", "device not available"),
        8 => ("#DF", "double fault"),
        9 => ("#MF", "coprocessor segment overrun"),
        10 => ("#TS", "invalid TSS"),
        11 => ("#NP", "segment not present"),
        12 => ("#SS", "stack-segment fault"),
        13 => ("#GP", "general protection"),
        14 => ("#PF", "page fault"),
        16 => ("#MF", "x87 floating-point error"),
        17 => ("#AC", "alignment check"),
        18 => ("#MC", "machine check"),
        19 => ("#XM", "SIMD floating-point exception"),
        20 => ("#VE", "virtualization exception"),
        21 => ("#CP", "control protection"),
        28 => ("#HV", "hypervisor injection"),
        29 => ("#VC", "VMM communication"),
        30 => ("#SX", "security exception"),
        15 | 22..=27 | 31 => ("#??", "reserved exception"),
        _ => ("IRQ", "interrupt"),
    }
}

/// Does this vector push an error code (SDM Vol. 3A Table 6-1)?
pub const fn has_error_code(v: u8) -> bool {
    matches!(v, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

/// IST slot (1-based, 0 = none) for each vector: NMI, #DF and #MC get their own.
pub const fn ist_for(v: u8) -> u8 {
    match v {
        vector::NMI => 1,
        vector::DOUBLE_FAULT => 2,
        vector::MACHINE_CHECK => 3,
        _ => 0,
    }
}

/// Encode a 64-bit interrupt gate (SDM Vol. 3A §6.14.1, Figure 6-8): type 0xE
/// (interrupts stay masked in the handler), present, DPL `dpl`.
pub const fn gate(handler: u64, selector: u16, ist: u8, dpl: u8) -> [u64; 2] {
    let low = (handler & 0xffff)
        | (selector as u64) << 16
        | ((ist & 7) as u64) << 32
        | (0x8e | (dpl as u64 & 3) << 5) << 40
        | ((handler >> 16) & 0xffff) << 48;
    [low, handler >> 32]
}

/// What the layer above does with a trap.
pub type Handler = fn(&mut TrapFrame);

static HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Install the function every trap is dispatched to (once, at boot).
pub fn set_handler(h: Handler) {
    HANDLER.store(h as usize, Ordering::Release);
}

/// Called by the common entry path with the saved frame.
#[cfg(mc2_bare)]
#[no_mangle]
extern "C" fn mc2_trap_dispatch(frame: &mut TrapFrame) {
    let h = HANDLER.load(Ordering::Acquire);
    if h == 0 {
        // Nothing installed yet: nobody can report, stop this CPU.
        crate::x86::halt_forever();
    }
    // SAFETY: HANDLER only ever holds 0 or a value stored from a `Handler` by `set_handler`.
    let h: Handler = unsafe { core::mem::transmute::<usize, Handler>(h) };
    h(frame);
}

/// `vector` recorded in frames built by the system-call entry (beyond the
/// 256 hardware vectors, so a handler can tell the two paths apart).
pub const SYSCALL_VECTOR: u64 = 0x100;

static SYSCALL_HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Install the function every `syscall` is dispatched to (once, at boot).
/// It receives the caller's registers: number in `rax`, arguments in `rdi`,
/// `rsi`, `rdx`, `r10`, `r8`, `r9`; what it leaves in the frame is what user
/// mode sees on return.
pub fn set_syscall_handler(h: Handler) {
    SYSCALL_HANDLER.store(h as usize, Ordering::Release);
}

#[cfg(mc2_bare)]
#[no_mangle]
extern "C" fn mc2_syscall_dispatch(frame: &mut TrapFrame) {
    let h = SYSCALL_HANDLER.load(Ordering::Acquire);
    if h == 0 {
        frame.rax = u64::MAX; // no handler: every call fails
        return;
    }
    // SAFETY: SYSCALL_HANDLER only ever holds 0 or a `Handler` stored by set_syscall_handler.
    let h: Handler = unsafe { core::mem::transmute::<usize, Handler>(h) };
    h(frame);
}

/// RFLAGS bits cleared on `syscall` entry (IA32_FMASK): IF (interrupts stay
/// masked in the kernel), TF, DF, NT, AC (SDM Vol. 3A §2.3, Vol. 2B SYSCALL).
pub const SYSCALL_FMASK: u64 = 1 << 9 | 1 << 8 | 1 << 10 | 1 << 14 | 1 << 18;

/// Enable `syscall`/`sysret` on this CPU: EFER.SCE, STAR selectors, LSTAR entry.
///
/// # Safety
/// Ring 0, after `percpu::init_this_cpu` on this CPU (the entry path uses
/// the per-CPU block through GS).
#[cfg(mc2_bare)]
pub unsafe fn init_syscall() {
    use crate::gdt::{KERNEL_CS, KERNEL_DS};
    use crate::x86::{msr, rdmsr, wrmsr};
    extern "C" {
        static mc2_syscall_entry: u8;
    }
    // STAR[47:32]: kernel CS (SS = CS + 8); STAR[63:48]: base for user
    // selectors (SS = base + 8, CS = base + 16), see gdt.rs.
    let star = (KERNEL_DS as u64) << 48 | (KERNEL_CS as u64) << 32;
    // SAFETY: these MSRs exist on every x86-64 CPU; the entry point is ours.
    unsafe {
        wrmsr(msr::IA32_STAR, star);
        wrmsr(msr::IA32_LSTAR, core::ptr::addr_of!(mc2_syscall_entry) as u64);
        wrmsr(msr::IA32_FMASK, SYSCALL_FMASK);
        wrmsr(msr::IA32_EFER, rdmsr(msr::IA32_EFER) | 1); // SCE
    }
}

// System-call entry: switch to the thread's kernel stack (per-CPU word gs:24,
// kept equal to TSS.RSP0 by the scheduler), build a TrapFrame exactly as the
// interrupt path would (minus the FXSAVE area: the system-call ABI declares
// SSE registers clobbered), dispatch, and return with IRETQ (which, unlike
// SYSRET, cannot be tricked into faulting in ring 0 by a non-canonical RIP).
#[cfg(mc2_bare)]
core::arch::global_asm!(
    r#"
.text
.global mc2_syscall_entry
mc2_syscall_entry:
    swapgs
    mov %rsp, %gs:16
    mov %gs:24, %rsp
    pushq $0x1b
    pushq %gs:16
    push %r11
    pushq $0x23
    push %rcx
    pushq $0
    pushq $0x100
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %rdi
    cld
    call mc2_syscall_dispatch
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp
    swapgs
    iretq

.global mc2_enter_user_at
mc2_enter_user_at:
    mov %rdi, %rsp
    jmp mc2_trap_return
"#,
    options(att_syntax)
);

/// Size of the FXSAVE area the interrupt path keeps below each frame.
pub const FXSAVE_SIZE: usize = 512;
/// Bytes at the top of a thread's kernel stack that [`enter_user`]
/// overwrites (frame + FXSAVE area, rounded up): a thread that will enter
/// user mode must start its kernel life below them.
pub const USER_ENTRY_RESERVE: usize = 1024;

/// Leave the kernel for user mode with the registers in `frame`, on a fresh
/// kernel stack whose top is `kstack_top`: the frame and a clean FPU/SSE
/// state (nothing of the kernel's registers leaks) are written just below the
/// top and the normal trap return path restores them.
///
/// # Safety
/// `kstack_top` is the top of the current thread's kernel stack (the value
/// `percpu::set_kernel_stack` was given), 16-byte aligned; the current stack
/// pointer (and `frame`) lie below `kstack_top - USER_ENTRY_RESERVE`, and
/// nothing on the stack is needed after the call. `frame` must describe
/// ring-3 code (`cs`/`ss` the user selectors).
#[cfg(mc2_bare)]
pub unsafe fn enter_user(frame: &TrapFrame, kstack_top: u64) -> ! {
    extern "C" {
        fn mc2_enter_user_at(rsp: u64) -> !;
    }
    let frame_at = kstack_top - core::mem::size_of::<TrapFrame>() as u64;
    let fx_at = frame_at - FXSAVE_SIZE as u64;
    // SAFETY: per the contract the top KiB of the stack is ours to overwrite;
    // both addresses are 16-byte aligned (176 and 512 are multiples of 16).
    unsafe {
        core::ptr::write(frame_at as *mut TrapFrame, *frame);
        core::ptr::write_bytes(fx_at as *mut u8, 0, FXSAVE_SIZE);
        // FXSAVE layout (SDM Vol. 1 Table 10-2): FCW at 0, MXCSR at 24.
        core::ptr::write(fx_at as *mut u16, crate::context::FCW_DEFAULT);
        core::ptr::write((fx_at + 24) as *mut u32, crate::context::MXCSR_DEFAULT);
        mc2_enter_user_at(fx_at)
    }
}

/// Size of one entry stub; stub `v` is at `mc2_trap_stubs + v * STUB_SIZE`.
pub const STUB_SIZE: u64 = 16;

#[cfg(mc2_bare)]
core::arch::global_asm!(
    r#"
.text
.align 16
.global mc2_trap_stubs
mc2_trap_stubs:
.set mc2_vec, 0
.rept 256
    .align 16
    .if (mc2_vec == 8) || ((mc2_vec >= 10) && (mc2_vec <= 14)) || (mc2_vec == 17) || (mc2_vec == 21) || (mc2_vec == 29) || (mc2_vec == 30)
    .else
    pushq $0
    .endif
    pushq $mc2_vec
    jmp mc2_trap_common
    .set mc2_vec, mc2_vec + 1
.endr

mc2_trap_common:
    testb $3, 24(%rsp)
    jz 1f
    swapgs
1:  push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %rdi
    sub $512, %rsp
    fxsave64 (%rsp)
    cld
    call mc2_trap_dispatch
.global mc2_trap_return
mc2_trap_return:
    fxrstor64 (%rsp)
    add $512, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    testb $3, 24(%rsp)
    jz 2f
    swapgs
2:  add $16, %rsp
    iretq
"#,
    options(att_syntax)
);

/// Address of the entry stub for vector `v`.
#[cfg(mc2_bare)]
pub fn stub_address(v: u8) -> u64 {
    extern "C" {
        static mc2_trap_stubs: u8;
    }
    // Only the address of the symbol is taken; it is never read.
    let base = core::ptr::addr_of!(mc2_trap_stubs) as u64;
    base + v as u64 * STUB_SIZE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_layout_matches_the_stub() {
        // 15 GPRs, vector, error code, then the CPU's 5 words.
        assert_eq!(core::mem::size_of::<TrapFrame>(), 22 * 8);
        assert_eq!(core::mem::offset_of!(TrapFrame, vector), 15 * 8);
        assert_eq!(core::mem::offset_of!(TrapFrame, cs), 18 * 8);
        // The stub tests CS at 24(%rsp) after pushing vector and error code.
        assert_eq!(core::mem::offset_of!(TrapFrame, cs) - core::mem::offset_of!(TrapFrame, vector), 24);
        // Frame plus FXSAVE area keep the 16-byte alignment the CPU gave.
        assert_eq!((core::mem::size_of::<TrapFrame>() + 512) % 16, 0);
    }

    #[test]
    fn gate_encodes_handler_and_ist() {
        let [lo, hi] = gate(0xffff_ffff_8012_3456, 0x08, 2, 0);
        assert_eq!(lo & 0xffff, 0x3456);
        assert_eq!(lo >> 48, 0x8012);
        assert_eq!(hi, 0xffff_ffff);
        assert_eq!(lo >> 32 & 7, 2);
        assert_eq!(lo >> 40 & 0xff, 0x8e);
        assert_eq!(gate(0, 8, 0, 3)[0] >> 40 & 0xff, 0xee);
    }

    #[test]
    fn error_code_vectors() {
        let with: std::vec::Vec<u8> = (0..32).filter(|&v| has_error_code(v)).collect();
        assert_eq!(with, [8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);
    }
}
