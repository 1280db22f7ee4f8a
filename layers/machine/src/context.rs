//! Kernel context switching between threads (the seed's "thread-local
//! machine": each thread gets its own kernel stack, and the CPU moves between
//! them).
//!
//! A thread that is not running is fully described by its saved kernel stack
//! pointer: [`switch`] pushes the callee-saved registers (and the SSE/x87
//! control words MXCSR and FCW, which the System V ABI treats as callee-saved)
//! on the outgoing stack, stores the stack pointer, loads the incoming one and
//! pops its registers. Caller-saved registers, SSE data registers included,
//! are the caller's business by the ABI: a thread's user-mode SSE state is
//! saved by the trap path (FXSAVE on interrupts) or declared clobbered by the
//! system-call ABI.

/// Initial MXCSR (all exceptions masked, round to nearest; SDM Vol. 1 §10.2.3.1).
pub const MXCSR_DEFAULT: u32 = 0x1f80;
/// Initial x87 control word (SDM Vol. 1 §8.1.5).
pub const FCW_DEFAULT: u16 = 0x037f;

/// Words `init_stack` places below the top: control words, six callee-saved
/// registers, the return address.
const FRAME_WORDS: usize = 8;

/// Lay out a fresh kernel stack so that the first [`switch`] to it calls
/// `entry(arg)` (which must never return). Returns the stack pointer to save.
///
/// `stack` is the stack memory; its end must be 16-byte aligned.
pub fn init_stack(stack: &mut [u64], entry: extern "C" fn(u64) -> !, arg: u64) -> u64 {
    let n = stack.len();
    assert!(n >= FRAME_WORDS + 2, "kernel stack too small");
    let top = stack.as_ptr() as u64 + (n as u64) * 8;
    assert_eq!(top % 16, 0, "kernel stack top must be 16-byte aligned");
    // From the saved rsp upwards: [mxcsr|fcw] r15 r14 r13 r12 rbx rbp ret.
    // The final `ret` leaves rsp at the (16-byte aligned) top, so the `call`
    // in `mc2_thread_start` enters `entry` with the alignment the ABI wants.
    let f = &mut stack[n - FRAME_WORDS..];
    f[0] = MXCSR_DEFAULT as u64 | (FCW_DEFAULT as u64) << 32;
    f[1] = 0; // r15
    f[2] = 0; // r14
    f[3] = arg; // r13
    f[4] = entry as usize as u64; // r12
    f[5] = 0; // rbx
    f[6] = 0; // rbp
    f[7] = thread_start_address();
    top - FRAME_WORDS as u64 * 8
}

#[cfg(mc2_bare)]
fn thread_start_address() -> u64 {
    extern "C" {
        static mc2_thread_start: u8;
    }
    core::ptr::addr_of!(mc2_thread_start) as u64
}

#[cfg(not(mc2_bare))]
fn thread_start_address() -> u64 {
    0
}

/// Save the current kernel context into `*save_rsp` and resume the context
/// whose stack pointer is `next_rsp`. Returns when some CPU switches back to
/// the saved context.
///
/// # Safety
/// `next_rsp` was produced by [`init_stack`] or stored by an earlier `switch`
/// and is not running on any CPU; its stack stays allocated until it is
/// switched away from again. Interrupts are masked. `save_rsp` must stay valid
/// until the saved context is resumed.
#[cfg(mc2_bare)]
pub unsafe fn switch(save_rsp: *mut u64, next_rsp: u64) {
    extern "C" {
        fn mc2_context_switch(save_rsp: *mut u64, next_rsp: u64);
    }
    // SAFETY: the caller's contract is exactly what the assembly needs.
    unsafe { mc2_context_switch(save_rsp, next_rsp) }
}

#[cfg(mc2_bare)]
core::arch::global_asm!(
    r#"
.text
.global mc2_context_switch
mc2_context_switch:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    sub $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    mov %rsp, (%rdi)
    mov %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    add $8, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret

.global mc2_thread_start
mc2_thread_start:
    mov %r13, %rdi
    call *%r12
    ud2
"#,
    options(att_syntax)
);

#[cfg(test)]
mod tests {
    use super::*;

    extern "C" fn never(_: u64) -> ! {
        loop {}
    }

    #[repr(align(16))]
    struct Stack([u64; 64]);

    #[test]
    fn fresh_stack_layout() {
        let mut s = Stack([0; 64]);
        let rsp = init_stack(&mut s.0, never, 42);
        let base = s.0.as_ptr() as u64;
        let i = ((rsp - base) / 8) as usize;
        assert_eq!(s.0[i] as u32, MXCSR_DEFAULT);
        assert_eq!(s.0[i + 3], 42, "arg in r13");
        assert_eq!(s.0[i + 4], never as extern "C" fn(u64) -> ! as usize as u64, "entry in r12");
        // After popping 8 words (the last by `ret`) rsp is the aligned top.
        assert_eq!((rsp + 8 * 8) % 16, 0);
        assert_eq!(rsp + 8 * 8, base + 64 * 8);
    }
}
