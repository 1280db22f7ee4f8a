//! chaos: a hostile guest, to show that nothing a guest does reaches the
//! host. It runs phases in order, from the one the VMM's `--arg` names
//! (default 0); each prints `chaos: phase N: ...` when it starts and a line
//! with what happened when it ends, if the VM is still alive:
//!
//! | phase | mode | what |
//! |---|---|---|
//! | 0 | real | 500 IN/OUT of random sizes and values on random ports (half of them the devices' ports) |
//! | 1 | real | 64 runs of 48 random bytes as code, every interrupt vector pointing back to the next run |
//! | 2 | long | 300 RDMSR/WRMSR of random and interesting MSRs with random values (#GP recovered) |
//! | 3 | long | invalid control-register writes: CR0 PE/PG/NW, CR4 reserved/PAE/VMXE, CR3 reserved bits, CR1/CR5/CR9 (#GP/#UD recovered) |
//! | 4 | long | 500 random IN/OUT plus REP INS/OUTS with random counts through the VMM's string I/O |
//! | 5 | long | 200 runs of 64 random bytes as ring-0 code, exceptions and interrupts recovered (on IST1) |
//! | 6 | long | writes through page tables to guest-physical 0x7ffff0000000 and 0xfee00000: far outside RAM |
//! | 7 | long | only with `--arg 7`: REP INSB into an address its page tables do not map |
//!
//! The expected end is the VM stopped by the VMM (unmapped access, triple
//! fault, an exit it cannot handle, halted with interrupts off, or its time
//! limit) while mc2 and its shell go on. Phase 6 always ends the VM if
//! nothing earlier did; if the guest is somehow still alive after it, it
//! prints `chaos: survived everything` and exits with status 1. The PRNG is
//! seeded from the phase, so a run is repeatable.
#![no_std]
#![no_main]
#![allow(clippy::undocumented_unsafe_blocks)]

use core::arch::asm;
use guests::{println, recover, Rng};

core::arch::global_asm!(
    include_str!("../boot.S"),
    r#"
.section .boot, "awx"
.code16
rm_main:
    mov $(msg_rm - _start), %si
    call rm_puts
    mov (boot_arg - _start), %eax
    call rm_puthex
    mov $'\n', %al
    call rm_putc
    mov (boot_arg - _start), %eax
    xor $0x2545f491, %eax
    or $1, %eax
    mov %eax, (rng - _start)
    cmpl $0, (boot_arg - _start)
    jne 1f
    call rm_random_ports
1:  cmpl $1, (boot_arg - _start)
    ja 2f
    jmp rm_random_code              /* comes back to rm_code_done */
rm_code_done:
2:  jmp rm_enter_long

/* xorshift32 (Marsaglia) -> EAX. */
rm_rng:
    mov (rng - _start), %eax
    push %edx
    mov %eax, %edx
    shl $13, %edx
    xor %edx, %eax
    mov %eax, %edx
    shr $17, %edx
    xor %edx, %eax
    mov %eax, %edx
    shl $5, %edx
    xor %edx, %eax
    pop %edx
    mov %eax, (rng - _start)
    ret

/* A random port in DX: half the time one of the devices'. Never the
 * debug-exit, reset or COM1 ports (the run would end, or the console fill
 * with noise). */
rm_pick_port:
    call rm_rng
    test $0x100, %eax
    jz 1f
    and $15, %eax
    mov %ax, %bx
    shl $1, %bx
    mov (ports - _start)(%bx), %dx
    ret
1:  mov %ax, %dx
    cmp $0x501, %dx
    je rm_pick_port
    cmp $0x502, %dx
    je rm_pick_port
    cmp $0x64, %dx
    je rm_pick_port
    cmp $0x92, %dx
    je rm_pick_port
    cmp $0xcf9, %dx
    je rm_pick_port
    cmp $0x3f8, %dx
    jb 2f
    cmp $0x3ff, %dx
    jbe rm_pick_port
2:  ret

rm_random_ports:
    mov $(msg_p0 - _start), %si
    call rm_puts
    movw $500, (count - _start)
1:  call rm_pick_port
    call rm_rng
    mov %eax, %ecx
    and $7, %ecx
    call rm_rng
    cmp $0, %cx
    je 10f
    cmp $1, %cx
    je 11f
    cmp $2, %cx
    je 12f
    cmp $3, %cx
    je 13f
    cmp $4, %cx
    je 14f
    in %dx, %eax
    jmp 9f
10: out %al, %dx
    jmp 9f
11: out %ax, %dx
    jmp 9f
12: out %eax, %dx
    jmp 9f
13: in %dx, %al
    jmp 9f
14: in %dx, %ax
9:  decw (count - _start)
    jnz 1b
    mov $(msg_p0_done - _start), %si
    call rm_puts
    ret

/* Every interrupt vector to rm_recover; then 64 times: 48 random bytes at
 * 0x800:0 followed by a far jump back, entered with random registers. */
rm_random_code:
    mov $(msg_p1 - _start), %si
    call rm_puts
    xor %ax, %ax
    mov %ax, %es
    xor %di, %di
    mov $256, %cx
1:  movw $(rm_recover - _start), %es:(%di)
    movw $0x1000, %es:2(%di)
    add $4, %di
    loop 1b
    movw $0, (count - _start)
rm_next:
    incw (count - _start)
    cmpw $64, (count - _start)
    ja rm_code_end
    mov $0x800, %ax
    mov %ax, %es
    xor %di, %di
    mov $12, %cx
2:  call rm_rng
    stosl
    loop 2b
    movb $0xea, %es:(%di)
    movw $(rm_recover - _start), %es:1(%di)
    movw $0x1000, %es:3(%di)
    call rm_rng
    mov %eax, %ebx
    call rm_rng
    mov %eax, %ecx
    call rm_rng
    mov %eax, %edx
    call rm_rng
    mov %eax, %esi
    call rm_rng
    mov %eax, %edi
    call rm_rng
    mov %eax, %ebp
    mov $0x7000, %ax
    mov %ax, %ss
    mov $0xfffe, %sp
    mov $0x2000, %ax
    mov %ax, %ds
    mov %ax, %es
    ljmp $0x800, $0
rm_recover:
    cli
    cld
    mov $0x1000, %ax
    mov %ax, %ds
    mov %ax, %es
    xor %ax, %ax
    mov %ax, %ss
    mov $0xfff0, %sp
    jmp rm_next
rm_code_end:
    mov $(msg_p1_done - _start), %si
    call rm_puts
    jmp rm_code_done

msg_rm:       .asciz "chaos: real mode, starting at phase "
msg_p0:       .asciz "chaos: phase 0: random port I/O in real mode\n"
msg_p0_done:  .asciz "chaos: 500 random port accesses done\n"
msg_p1:       .asciz "chaos: phase 1: random code in real mode\n"
msg_p1_done:  .asciz "chaos: 64 random real-mode code runs done\n"
.global msg_pm
msg_pm:       .asciz "chaos: protected mode\n"
.align 2
ports:  .word 0x20, 0x21, 0xa0, 0xa1, 0x40, 0x41, 0x42, 0x43
        .word 0x61, 0x70, 0x71, 0xcf8, 0xcfc, 0xcfe, 0x4d0, 0x4d1
count:  .word 0
.align 4
rng:    .long 1
.code64
"#,
    options(att_syntax)
);

/// Ports phase 4 picks from half of the time (the devices').
const PORTS: [u16; 16] = [0x20, 0x21, 0xa0, 0xa1, 0x40, 0x41, 0x42, 0x43, 0x61, 0x70, 0x71, 0xcf8, 0xcfc, 0xcfe, 0x4d0, 0x4d1];

fn pick_port(rng: &mut Rng) -> u16 {
    loop {
        let p = if rng.next() & 1 != 0 { PORTS[rng.below(16) as usize] } else { rng.next() as u16 };
        // Not the debug-exit, reset or COM1 ports (see the real-mode phase).
        if !matches!(p, 0x501 | 0x502 | 0x64 | 0x92 | 0xcf9 | 0x3f8..=0x3ff) {
            return p;
        }
    }
}

fn phase(n: u64, what: &str) {
    println!("chaos: phase {n}: {what}");
}

fn msr_phase(rng: &mut Rng) {
    phase(2, "random RDMSR/WRMSR");
    // EFER is left out of the writes: clearing LME under long mode ends
    // the VM at the next entry (a phase of its own would be needed).
    const MSRS: [u32; 16] = [0x10, 0x1b, 0x3a, 0x8b, 0xfe, 0x174, 0x175, 0x176, 0x277, 0x2ff, 0xc000_0081, 0xc000_0082, 0xc000_0100, 0xc000_0102, 0xc001_0114, 0xc001_0117];
    let (mut faults, mut n) = (0, 0);
    for _ in 0..300 {
        let msr = if rng.next() & 1 != 0 { MSRS[rng.below(16) as usize] } else { rng.next() as u32 };
        let v = rng.next();
        let r = if rng.next() & 1 != 0 || msr == 0xc000_0080 {
            recover!("rdmsr", in("ecx") msr, out("rax") _, out("rdx") _)
        } else {
            recover!("wrmsr", in("ecx") msr, inout("rax") v & 0xffff_ffff => _, in("rdx") v >> 32)
        };
        n += 1;
        if r.is_some() {
            faults += 1;
        }
    }
    println!("chaos: {n} MSR accesses, {faults} faulted");
}

fn cr_phase() {
    phase(3, "invalid control-register writes");
    let (cr0, cr3, cr4) = (guests::cr0(), guests::cr3(), guests::cr4());
    let report = |what: &str, r: Option<u8>| match r {
        Some(v) => println!("chaos: {what} -> exception {v}"),
        None => println!("chaos: {what} -> no fault"),
    };
    // A write that did not fault is undone at once (where the CPU still
    // runs): the point is the attempt. Most harmful last.
    let cr4_try = |what: &str, v: u64| {
        let r = recover!("mov cr4, {}", in(reg) v, out("rax") _);
        if r.is_none() {
            let _ = recover!("mov cr4, {}", in(reg) cr4, out("rax") _);
        }
        report(what, r);
    };
    let cr0_try = |what: &str, v: u64| {
        let r = recover!("mov cr0, {}", in(reg) v, out("rax") _);
        if r.is_none() {
            let _ = recover!("mov cr0, {}", in(reg) cr0, out("rax") _);
        }
        report(what, r);
    };
    cr4_try("cr4 with reserved bit 15", cr4 | 1 << 15);
    cr4_try("cr4 with VMXE", cr4 | 1 << 13);
    cr4_try("cr4 without PAE", cr4 & !(1 << 5));
    let r = recover!("mov cr3, {}", in(reg) cr3 | 1 << 62, out("rax") _);
    if r.is_none() {
        let _ = recover!("mov cr3, {}", in(reg) cr3, out("rax") _);
    }
    report("cr3 with reserved bit 62", r);
    report("mov to cr1", recover!(".byte 0x0f, 0x22, 0xc8", out("rax") _));
    report("mov to cr5", recover!(".byte 0x0f, 0x22, 0xe8", out("rax") _));
    report("mov to cr9", recover!(".byte 0x44, 0x0f, 0x22, 0xc8", out("rax") _));
    report("cr8 = 15 then 0", recover!("mov cr8, {f}; mov cr8, {z}", f = in(reg) 15u64, z = in(reg) 0u64, out("rax") _));
    cr0_try("cr0 with NW but not CD", (cr0 | 1 << 29) & !(1 << 30));
    cr0_try("cr0 without PE", cr0 & !1);
    cr0_try("cr0 without PG in 64-bit code", cr0 & !(1 << 31));
}

#[repr(C, align(4096))]
struct Buf([u8; 8192]);

static mut BUF: Buf = Buf([0; 8192]);

fn io_phase(rng: &mut Rng) {
    phase(4, "random port I/O and string I/O in long mode");
    for _ in 0..500 {
        let p = pick_port(rng);
        let v = rng.next() as u32;
        match rng.below(6) {
            0 => guests::outb(p, v as u8),
            1 => guests::outw(p, v as u16),
            2 => guests::outl(p, v),
            3 => {
                guests::inb(p);
            }
            4 => {
                guests::inw(p);
            }
            _ => {
                guests::inl(p);
            }
        }
    }
    let buf = &raw mut BUF as u64;
    for i in 0..40u64 {
        let p = pick_port(rng);
        let count = rng.below(2048);
        let off = rng.below(4096);
        let r = match i % 4 {
            0 => recover!("rep outsb", in("dx") p, inout("rsi") buf + off => _, inout("rcx") count => _, out("rax") _),
            1 => recover!("rep insb", in("dx") p, inout("rdi") buf + off => _, inout("rcx") count => _, out("rax") _),
            2 => recover!("rep outsw", in("dx") p, inout("rsi") buf + off => _, inout("rcx") count / 2 => _, out("rax") _),
            _ => recover!("std; rep insd", in("dx") p, inout("rdi") buf + 4096 + off => _, inout("rcx") count / 4 => _, out("rax") _),
        };
        if let Some(v) = r {
            println!("chaos: string I/O on port {p:#x} -> exception {v}");
        }
    }
    println!("chaos: 500 port accesses and 40 string I/O instructions done");
}

#[repr(C, align(4096))]
struct Code([u8; 4096]);

static mut CODE: Code = Code([0; 4096]);
static mut SCRATCH: Buf = Buf([0; 8192]);

fn code_phase(rng: &mut Rng) {
    phase(5, "random code in long mode (ring 0)");
    let code = &raw mut CODE as *mut u8;
    let stack = &raw mut SCRATCH as u64 + 4096;
    let (mut faults, mut runs) = (0, 0);
    for _ in 0..200 {
        for i in 0..64 {
            unsafe { code.add(i).write_volatile(rng.next() as u8) };
        }
        // INT3 after the bytes: running off the end is a #BP, recovered.
        unsafe { code.add(64).write_volatile(0xcc) };
        let regs = [rng.next(), rng.next(), rng.next(), rng.next(), rng.next()];
        let r = recover!(
            "mov rsp, {stack}; jmp {code}",
            stack = in(reg) stack,
            code = in(reg) code,
            inout("r8") regs[0] => _,
            inout("rsi") regs[1] => _,
            inout("rdi") regs[2] => _,
            inout("rdx") regs[3] => _,
            inout("rcx") regs[4] => _,
            out("rax") _,
            out("r9") _,
            out("r10") _,
            out("r12") _,
            out("r13") _,
            out("r14") _,
            out("r15") _
        );
        runs += 1;
        if r.is_some_and(|v| v != 3) {
            faults += 1;
        }
        // The code may have changed anything the CPU keeps; put the basics back.
        guests::setup_interrupts();
        unsafe { asm!("cld; cli", options(nomem, nostack)) };
    }
    println!("chaos: {runs} random code runs, {faults} ended in an exception other than the final INT3");
}

fn far_phase() {
    phase(6, "writes far outside guest RAM");
    let pd = &raw mut guests::pd;
    // 2 MiB pages at 4 MiB and 6 MiB of the linear space.
    for (slot, phys) in [(2usize, 0x7fff_f000_0000u64), (3, 0xfee0_0000)] {
        let va = slot as u64 * 0x20_0000;
        unsafe { (*pd)[slot] = phys | 0x83 };
        guests::invlpg(va);
        println!("chaos: writing guest-physical {phys:#x}");
        let r = recover!("mov dword ptr [{}], 0x0badf00d", in(reg) va, out("rax") _);
        match r {
            Some(v) => println!("chaos: -> exception {v} (the page table entry is beyond MAXPHYADDR)"),
            None => println!("chaos: -> the write went through?"),
        }
    }
}

fn unmapped_string_io() {
    phase(7, "REP INSB into memory the guest's page tables do not map");
    let r = recover!("rep insb", in("dx") 0x71u16, inout("rdi") 0x4000_0000u64 => _, inout("rcx") 16u64 => _, out("rax") _);
    println!("chaos: -> {r:?}");
}

#[no_mangle]
extern "C" fn long_main(arg: u64) -> ! {
    guests::set_name("chaos");
    println!("chaos: long mode");
    guests::setup_interrupts();
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15 ^ arg);
    if arg == 7 {
        unmapped_string_io();
    }
    if arg <= 2 {
        msr_phase(&mut rng);
    }
    if arg <= 3 {
        cr_phase();
    }
    if arg <= 4 {
        io_phase(&mut rng);
    }
    if arg <= 5 {
        code_phase(&mut rng);
    }
    far_phase();
    println!("chaos: survived everything");
    guests::exit(1)
}
