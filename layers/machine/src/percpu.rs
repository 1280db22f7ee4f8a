//! The per-CPU block: one per CPU, reached through GS base while in the kernel.
//!
//! It holds only what the machine layer itself needs (CPU index, APIC id,
//! GDT, TSS, IDT, stacks, the scratch words of the system-call entry). Layers
//! above keep their per-CPU state in their own arrays indexed by
//! [`crate::cpu::id`], which keeps each layer's state private to it.

use crate::cpu::MAX_CPUS;
#[cfg(mc2_bare)]
use crate::gdt;
use crate::gdt::{Tss, GDT_ENTRIES};
use core::cell::UnsafeCell;

pub const KERNEL_STACK_SIZE: usize = 64 * 1024;
pub const IST_STACK_SIZE: usize = 16 * 1024;
const IST_STACKS: usize = 3;

/// Fixed-offset header read by assembly (`gs:[offset]`); keep in sync with
/// `cpu::imp::CPU_INDEX_OFFSET` and the system-call entry.
#[repr(C, align(64))]
pub struct PerCpu {
    /// Linear address of this block (gs:0).
    pub self_ptr: u64,
    /// CPU index (gs:8).
    pub cpu: u64,
    /// User RSP saved by the system-call entry (gs:16).
    pub syscall_user_rsp: u64,
    /// Kernel stack top the system-call entry switches to (gs:24).
    pub syscall_kernel_rsp: u64,
    pub apic_id: u32,
    gdt: [u64; GDT_ENTRIES],
    tss: Tss,
    idt: [[u64; 2]; 256],
}

/// A stack with a guard page below it (left unmapped by the kernel page
/// tables, so an overflow faults instead of corrupting what lies below).
#[repr(C, align(4096))]
struct Guarded<const N: usize> {
    guard: [u8; 4096],
    stack: [u8; N],
}

#[repr(C, align(4096))]
struct Stacks {
    kernel: Guarded<KERNEL_STACK_SIZE>,
    ist: [Guarded<IST_STACK_SIZE>; IST_STACKS],
}

/// Storage owned by exactly one CPU each (after that CPU's `init`).
struct PerCpuCell(UnsafeCell<PerCpu>);
// SAFETY: each element is written by its own CPU only (the BSP prepares an
// AP's block before starting it and no longer touches it afterwards).
unsafe impl Sync for PerCpuCell {}

struct StackCell(UnsafeCell<Stacks>);
// SAFETY: stacks are handed out to one CPU each and only used through raw
// stack pointers by that CPU.
unsafe impl Sync for StackCell {}

const EMPTY: PerCpuCell = PerCpuCell(UnsafeCell::new(PerCpu {
    self_ptr: 0,
    cpu: 0,
    syscall_user_rsp: 0,
    syscall_kernel_rsp: 0,
    apic_id: 0,
    gdt: [0; GDT_ENTRIES],
    tss: Tss::new(),
    idt: [[0; 2]; 256],
}));
static PERCPU: [PerCpuCell; MAX_CPUS] = [EMPTY; MAX_CPUS];

const NO_STACK: StackCell = StackCell(UnsafeCell::new(Stacks {
    kernel: Guarded { guard: [0; 4096], stack: [0; KERNEL_STACK_SIZE] },
    ist: [const { Guarded { guard: [0; 4096], stack: [0; IST_STACK_SIZE] } }; IST_STACKS],
}));
static STACKS: [StackCell; MAX_CPUS] = [NO_STACK; MAX_CPUS];

/// Top of the boot kernel stack of CPU `cpu` (for the BSP, boot.S has its own).
pub fn kernel_stack_top(cpu: usize) -> u64 {
    let s = STACKS[cpu].0.get();
    // SAFETY: computing a field address inside a static; nothing is read.
    let base = unsafe { core::ptr::addr_of!((*s).kernel.stack) } as u64;
    base + KERNEL_STACK_SIZE as u64
}

/// Virtual addresses of the guard pages below every per-CPU stack.
pub fn guard_pages() -> impl Iterator<Item = u64> {
    (0..MAX_CPUS).flat_map(|cpu| {
        let s = STACKS[cpu].0.get();
        // SAFETY: computing field addresses inside a static; nothing is read.
        let k = unsafe { core::ptr::addr_of!((*s).kernel.guard) } as u64;
        // SAFETY: as above.
        let i = (0..IST_STACKS).map(move |slot| unsafe { core::ptr::addr_of!((*s).ist[slot].guard) } as u64);
        core::iter::once(k).chain(i)
    })
}

#[cfg_attr(not(mc2_bare), allow(dead_code))]
fn ist_top(cpu: usize, slot: usize) -> u64 {
    let s = STACKS[cpu].0.get();
    // SAFETY: computing a field address inside a static; nothing is read.
    let base = unsafe { core::ptr::addr_of!((*s).ist[slot].stack) } as u64;
    base + IST_STACK_SIZE as u64
}

/// Bring the calling CPU's descriptor tables up and point GS base at its block.
///
/// # Safety
/// Called once per CPU, on that CPU, in ring 0, before anything reads
/// `cpu::id()`; `cpu < MAX_CPUS` and no other CPU uses index `cpu`.
#[cfg(mc2_bare)]
pub unsafe fn init_this_cpu(cpu: usize, apic_id: u32) {
    use crate::trap;
    use crate::x86::{self, msr};
    let p = PERCPU[cpu].0.get();
    // SAFETY: per the contract, this block belongs to the calling CPU alone.
    let pc = unsafe { &mut *p };
    pc.self_ptr = p as u64;
    pc.cpu = cpu as u64;
    pc.apic_id = apic_id;
    for slot in 0..IST_STACKS {
        pc.tss.ist[slot] = ist_top(cpu, slot);
    }
    pc.tss.rsp[0] = kernel_stack_top(cpu);
    pc.gdt = gdt::build(core::ptr::addr_of!(pc.tss) as u64);
    for v in 0..=255u8 {
        pc.idt[v as usize] = trap::gate(trap::stub_address(v), gdt::KERNEL_CS, trap::ist_for(v), 0);
    }
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let gdtr = Pointer { limit: (GDT_ENTRIES * 8 - 1) as u16, base: pc.gdt.as_ptr() as u64 };
    let idtr = Pointer { limit: (256 * 16 - 1) as u16, base: pc.idt.as_ptr() as u64 };
    // SAFETY: the GDT and IDT live in a static for the life of the kernel; the
    // new GDT keeps the boot selectors' meaning (0x08 code, 0x10 data), so
    // reloading CS/SS with them is valid; the TSS descriptor is fresh (not busy).
    unsafe {
        core::arch::asm!(
            "lgdt [{gdtr}]",
            "lidt [{idtr}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ss, {ds:x}",
            "mov ds, {zero:x}",
            "mov es, {zero:x}",
            "mov fs, {zero:x}",
            "mov gs, {zero:x}",
            "ltr {tss:x}",
            gdtr = in(reg) &gdtr,
            idtr = in(reg) &idtr,
            cs = const gdt::KERNEL_CS as u64,
            ds = in(reg) gdt::KERNEL_DS as u64,
            zero = in(reg) 0u64,
            tss = in(reg) gdt::TSS_SEL as u64,
            tmp = out(reg) _,
        );
        // Loading GS with a null selector cleared GS base: set it now.
        x86::wrmsr(msr::IA32_GS_BASE, p as u64);
        x86::wrmsr(msr::IA32_KERNEL_GS_BASE, 0);
    }
}

/// This CPU's block.
#[cfg(mc2_bare)]
fn this() -> *mut PerCpu {
    PERCPU[crate::cpu::id()].0.get()
}

/// Set the stack the CPU switches to on a trap from ring 3 (TSS.RSP0) and the
/// one the system-call entry uses: the current thread's kernel stack.
#[cfg(mc2_bare)]
pub fn set_kernel_stack(top: u64) {
    // SAFETY: the current CPU's block is only touched by this CPU, with
    // interrupts masked in the kernel, so no other reference is live.
    unsafe {
        (*this()).tss.rsp[0] = top;
        (*this()).syscall_kernel_rsp = top;
    }
}

/// APIC id recorded for CPU `cpu` at its initialisation.
pub fn apic_id(cpu: usize) -> u32 {
    // SAFETY: apic_id is written once by `init_this_cpu` before the CPU is
    // reported online; a racy read of a u32 elsewhere cannot tear on x86.
    unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*PERCPU[cpu].0.get()).apic_id)) }
}

/// Linear bases of this CPU's GDT, IDT and TSS (for a hypervisor's host state).
#[cfg(mc2_bare)]
pub fn descriptor_bases() -> (u64, u64, u64) {
    let p = this();
    // SAFETY: only addresses of fields of this CPU's block are taken.
    unsafe { ((*p).gdt.as_ptr() as u64, (*p).idt.as_ptr() as u64, core::ptr::addr_of!((*p).tss) as u64) }
}
