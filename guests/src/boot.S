/* Shared start of the test guests (included by each one's global_asm!).
 *
 * Boot protocol (mc2's vmm, docs/design.md "User-level VMM"): the flat
 * image is loaded at guest-physical 0x10000 and entered in real mode at
 * CS:IP = 0x1000:0000 with EBX = the VMM's --arg value and ECX = the RAM
 * limit in KiB. Interrupts are off and there is no BIOS.
 *
 * Provides: _start (saves the arguments, sets DS = ES = 0x1000 and a stack
 * below the image, jumps to the guest's rm_main), the real-mode console
 * routines rm_putc / rm_puts / rm_puthex on COM1, rm_enter_long (protected
 * mode, then long mode with the first 4 MiB identity-mapped by 2 MiB
 * pages; prints the guest's msg_pm on the way, then calls the Rust
 * long_main(arg)), the GDT with a TSS slot, the 256 interrupt entry stubs
 * and their common path (exception recovery for chaos, the timer tick).
 *
 * The guest supplies rm_main, msg_pm (a NUL-terminated string) and
 * long_main. Real-mode code addresses its data as `label - _start` (DS
 * holds the image's segment); everything of it lives in .boot.
 */

.set COM1, 0x3f8
.set COM1_LSR, 0x3fd
.set LSR_THRE, 0x20                 /* PC16550D §8.4 */
.set MSR_EFER, 0xc0000080
.set EFER_LME, 0x100
.set CR0_PE, 0x1
.set CR0_MP, 0x2
.set CR0_EM, 0x4
.set CR0_PG, 0x80000000
.set CR4_PAE, 0x20
.set CR4_OSFXSR, 0x200
.set CR4_OSXMMEXCPT, 0x400

.section .boot, "awx"
.code16
.global _start
_start:
    cli
    cld
    mov %cs, %ax
    mov %ax, %ds
    mov %ax, %es
    xor %ax, %ax
    mov %ax, %ss
    mov $0xfff0, %sp                 /* just below the image */
    mov %ebx, (boot_arg - _start)
    mov %ecx, (boot_ram_kib - _start)
    jmp rm_main

/* AL to COM1, waiting for THR to be empty. */
rm_putc:
    push %dx
    push %ax
1:  mov $COM1_LSR, %dx
    in %dx, %al
    test $LSR_THRE, %al
    jz 1b
    pop %ax
    mov $COM1, %dx
    out %al, %dx
    pop %dx
    ret

/* The NUL-terminated string at DS:SI. */
rm_puts:
    push %ax
1:  lodsb
    test %al, %al
    jz 2f
    call rm_putc
    jmp 1b
2:  pop %ax
    ret

/* EAX as 0x%08x. */
rm_puthex:
    push %eax
    push %ecx
    push %edx
    mov %eax, %edx
    mov $'0', %al
    call rm_putc
    mov $'x', %al
    call rm_putc
    mov $8, %cx
1:  rol $4, %edx
    mov %dl, %al
    and $0xf, %al
    add $'0', %al
    cmp $'9', %al
    jbe 2f
    add $('a' - '9' - 1), %al
2:  call rm_putc
    loop 1b
    pop %edx
    pop %ecx
    pop %eax
    ret

/* Real mode -> protected mode -> long mode -> long_main(arg). */
.global rm_enter_long
rm_enter_long:
    cli
    mov $0x1000, %ax
    mov %ax, %ds
    lgdtl (gdt_ptr - _start)
    mov %cr0, %eax
    or $CR0_PE, %eax
    mov %eax, %cr0
    ljmpl $0x08, $pm32

.code32
pm32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs
    mov $stack_top, %esp
    mov $msg_pm, %esi
    call pm_puts
    /* Identity map 0-4 MiB with two 2 MiB pages (SDM Vol. 3A §4.5),
     * user-accessible too (U, bit 2): the test guest's user-mode CPUID. */
    mov $pdpt, %eax
    or $7, %eax
    mov %eax, pml4
    mov $pd, %eax
    or $7, %eax
    mov %eax, pdpt
    movl $0x000087, pd
    movl $0x200087, pd + 8
    mov %cr4, %eax
    or $(CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT), %eax
    mov %eax, %cr4
    mov $pml4, %eax
    mov %eax, %cr3
    /* EFER.LME: mc2 handles EFER in the kernel; a VMM would see an Msr exit. */
    mov $MSR_EFER, %ecx
    rdmsr
    or $EFER_LME, %eax
    wrmsr
    mov %cr0, %eax
    and $~CR0_EM, %eax
    or $(CR0_PG | CR0_MP | CR0_PE), %eax
    mov %eax, %cr0
    ljmp $0x18, $lm64

pm_puts:
1:  lodsb
    test %al, %al
    jz 3f
    mov %al, %ah
    mov $COM1_LSR, %dx
2:  in %dx, %al
    test $LSR_THRE, %al
    jz 2b
    mov %ah, %al
    mov $COM1, %dx
    out %al, %dx
    jmp 1b
3:  ret

.code64
lm64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs
    mov $stack_top, %rsp
    xor %ebp, %ebp
    movl boot_arg(%rip), %edi
    call long_main
1:  cli
    hlt
    jmp 1b

.align 16
.global gdt
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff            /* 0x08: 32-bit code, flat */
    .quad 0x00cf92000000ffff            /* 0x10: data, flat */
    .quad 0x00209a0000000000            /* 0x18: 64-bit code */
.global gdt_tss
gdt_tss:                                /* 0x20: 64-bit TSS, filled in by the guest */
    .quad 0
    .quad 0
    .quad 0x0020fa0000000000            /* 0x30: 64-bit code, DPL 3 */
    .quad 0x0000f20000000000            /* 0x38: data, DPL 3 */
gdt_end:
gdt_ptr:
    .word gdt_end - gdt - 1
    .long gdt

.align 4
.global boot_arg, boot_ram_kib
boot_arg:       .long 0
boot_ram_kib:   .long 0

/* ---- interrupts (64-bit) ---- */
.section .text.isr, "ax"
.code64
/* 256 entry stubs of 16 bytes: push a 0 error code where the CPU pushes
 * none (SDM Vol. 3A §6.13), then the vector. */
.align 16
.global isr_stubs
isr_stubs:
.set vec, 0
.rept 256
    .align 16
    .if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushq $0
    .endif
    pushq $vec
    jmp isr_common
    .set vec, vec + 1
.endr

/* Stack: vector, error code, RIP, CS, RFLAGS, RSP, SS. */
isr_common:
    /* A recovery point set (chaos, guestlib::recover): go back there. */
    cmpq $0, recover_rip(%rip)
    je 1f
    mov (%rsp), %rax
    mov %rax, last_vector(%rip)
    mov 16(%rsp), %rax
    mov %rax, last_fault_rip(%rip)
    mov recover_rip(%rip), %rax
    movq $0, recover_rip(%rip)
    mov recover_rsp(%rip), %rsp
    jmp *%rax
1:  cmpq $2, (%rsp)
    je nmi
    cmpq $32, (%rsp)
    jae 2f
    /* An exception nobody expected: report and exit (does not return). */
    mov %rsp, %rdi
    and $-16, %rsp
    call guest_exception
2:  push %rax
    /* The local APIC timer's vector (testguest): counted; the guest's main
     * line ends it (x2APIC EOI) after looking at the in-service bit. */
    cmpq $0x40, 8(%rsp)
    jne 5f
    lock incq lapic_ticks(%rip)
    jmp 6f
5:  cmpq $0x20, 8(%rsp)
    jne 3f
    lock incq ticks(%rip)
3:  mov $0x20, %al                      /* 8259A OCW2: non-specific EOI */
    cmpq $0x28, 8(%rsp)
    jb 4f
    out %al, $0xa0
4:  out %al, $0x20
6:  pop %rax
    add $16, %rsp
    iretq

/* NMI (testguest): counted, and nesting noted. The first one sends a
 * second NMI to this vCPU from inside its handler (x2APIC ICR 0x830:
 * delivery mode NMI, bits 8-10 = 4; shorthand self, bits 18-19 = 1), then
 * makes three exits (RDMSR of an IRR word) at which a hypervisor that
 * ignored NMI blocking would inject it: it must wait for the IRET. */
nmi:
    push %rax
    push %rcx
    push %rdx
    lock incq nmi_depth(%rip)
    cmpq $1, nmi_depth(%rip)
    je 7f
    movq $1, nmi_nested(%rip)
7:  lock incq nmi_count(%rip)
    cmpq $1, nmi_count(%rip)
    jne 8f
    mov $0x830, %ecx
    mov $0x40400, %eax
    xor %edx, %edx
    wrmsr
    mov $0x822, %ecx
    rdmsr
    rdmsr
    rdmsr
8:  lock decq nmi_depth(%rip)
    pop %rdx
    pop %rcx
    pop %rax
    add $16, %rsp
    iretq

.section .data.isr, "aw"
.align 8
.global recover_rip, recover_rsp, last_vector, last_fault_rip, ticks, lapic_ticks, nmi_count, nmi_nested
recover_rip:    .quad 0
recover_rsp:    .quad 0
last_vector:    .quad 0
last_fault_rip: .quad 0
ticks:          .quad 0
lapic_ticks:    .quad 0
nmi_count:      .quad 0
nmi_depth:      .quad 0
nmi_nested:     .quad 0

.section .bss.boot, "aw", @nobits
.align 4096
.global pml4, pdpt, pd
pml4:   .skip 4096
pdpt:   .skip 4096
pd:     .skip 4096
stack:  .skip 65536
stack_top:
.global ist_top
ist:    .skip 16384
ist_top:
.code64
