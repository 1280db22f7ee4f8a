/* mc2 boot path: multiboot entry (32-bit protected mode) to long mode in the
 * higher half, and the real-mode trampoline that brings up the other CPUs.
 *
 * Page tables built here (Intel SDM Vol. 3A §4.5, 4-level paging):
 *   PML4[0]   -> boot_pdpt_low : identity map of 0..4 GiB (boot and AP start-up only)
 *   PML4[256] -> boot_pdpt_low : direct map of 0..4 GiB at PHYS_MAP_BASE
 *   PML4[511] -> boot_pdpt_high: PDPT[510] maps 0..1 GiB at KERNEL_VMA
 * all with 2 MiB pages; 3..4 GiB (MMIO: local APIC, IOAPIC) uncached (PCD|PWT).
 * The memory-management layer replaces these tables once it runs. */

.set KERNEL_VMA,        0xffffffff80000000
.set MB_MAGIC,          0x1BADB002
.set MB_FLAGS,          0x00010002      /* bit 1: memory info; bit 16: address fields valid */
.set MB_LOADER_MAGIC,   0x2BADB002
.set TRAMPOLINE_PHYS,   0x8000
.set COM1,              0x3f8

.set PTE_P,   1
.set PTE_W,   2
.set PTE_PWT, 8
.set PTE_PCD, 16
.set PTE_PS,  128

.set CR0_PE, 1
.set CR0_MP, 2
.set CR0_EM, 4
.set CR0_WP, 0x10000
.set CR0_PG, 0x80000000
/* CR4.PSE only matters to 32-bit paging (SDM Vol. 3A §2.5, §4.1.1: with
 * PAE or 4-level paging the PS bit alone makes large pages). It is set
 * anyway so that the host's CR4 agrees with a Linux guest's (Linux sets
 * PSE) in the bits QEMU TCG compares at every CR4 load (PGE, PAE, PSE,
 * SMEP, SMAP, LA57): a difference there costs a second full TLB and
 * jump-cache flush at each VMRUN and #VMEXIT under emulation. */
.set CR4_PSE, 0x10
.set CR4_PAE, 0x20
.set CR4_PGE, 0x80
.set CR4_OSFXSR, 0x200
.set CR4_OSXMMEXCPT, 0x400
.set MSR_EFER, 0xC0000080
.set EFER_LME, 0x100
.set EFER_NXE, 0x800

/* ------------------------------------------------------------------------ */
.section .boot.header, "a"
.align 4
mb_header:
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)
    .long mb_header             /* header_addr */
    .long mb_header             /* load_addr: the file is copied from here on */
    .long __load_end_phys       /* load_end_addr */
    .long __bss_end_phys        /* bss_end_addr */
    .long mc2_multiboot_entry   /* entry_addr */

/* ------------------------------------------------------------------------ */
.section .boot.text, "ax"
.code32
.global mc2_multiboot_entry
mc2_multiboot_entry:
    cli
    cld
    mov %ebx, %ebp                          /* multiboot information (physical) */
    mov $(mc2_boot_stack_top - KERNEL_VMA), %esp

    cmp $MB_LOADER_MAGIC, %eax
    jne .Lno_multiboot

    /* Long mode? CPUID 8000_0001h EDX bit 29 (SDM Vol. 2A, CPUID). */
    mov $0x80000000, %eax
    cpuid
    cmp $0x80000001, %eax
    jb .Lno_long_mode
    mov $0x80000001, %eax
    cpuid
    bt $29, %edx
    jnc .Lno_long_mode
    /* NX available? bit 20: then EFER.NXE is set (the mm layer maps W^X). */
    xor %esi, %esi
    bt $20, %edx
    jnc 1f
    mov $EFER_NXE, %esi
1:  mov %esi, (mc2_boot_efer_nxe - KERNEL_VMA)

    /* SSE2 is required (the prebuilt core uses it): CPUID 1 EDX bit 26. */
    mov $1, %eax
    cpuid
    bt $26, %edx
    jnc .Lno_sse

    /* Zero .bss: the loader should have, but not every loader does. */
    mov $(__bss_start - KERNEL_VMA), %edi
    mov $__bss_end_phys, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb
    /* (the store above also cleared mc2_boot_efer_nxe if it lives in .bss: it does not, it is .data) */

    /* boot_pdpt_low[0..4] -> boot_pd[0..4] */
    mov $(mc2_boot_pdpt_low - KERNEL_VMA), %edi
    mov $(mc2_boot_pd - KERNEL_VMA + PTE_P + PTE_W), %eax
    mov $4, %ecx
1:  mov %eax, (%edi)
    movl $0, 4(%edi)
    add $4096, %eax
    add $8, %edi
    loop 1b

    /* boot_pd: 2048 2 MiB pages covering 0..4 GiB */
    mov $(mc2_boot_pd - KERNEL_VMA), %edi
    mov $(PTE_P + PTE_W + PTE_PS), %eax
    xor %ecx, %ecx
1:  mov %eax, %edx
    cmp $1536, %ecx                         /* 3 GiB and up: MMIO, uncached */
    jb 2f
    or $(PTE_PCD + PTE_PWT), %edx
2:  mov %edx, (%edi,%ecx,8)
    movl $0, 4(%edi,%ecx,8)
    add $0x200000, %eax
    inc %ecx
    cmp $2048, %ecx
    jb 1b

    /* boot_pdpt_high[510] -> boot_pd[0] (KERNEL_VMA -> physical 0..1 GiB) */
    mov $(mc2_boot_pdpt_high - KERNEL_VMA), %edi
    movl $(mc2_boot_pd - KERNEL_VMA + PTE_P + PTE_W), 510*8(%edi)

    mov $(mc2_boot_pml4 - KERNEL_VMA), %edi
    movl $(mc2_boot_pdpt_low - KERNEL_VMA + PTE_P + PTE_W), 0(%edi)
    movl $(mc2_boot_pdpt_low - KERNEL_VMA + PTE_P + PTE_W), 256*8(%edi)
    movl $(mc2_boot_pdpt_high - KERNEL_VMA + PTE_P + PTE_W), 511*8(%edi)

    call .Lenter_long_mode_regs             /* CR4, CR3, EFER, CR0 */
    lgdt (mc2_boot_gdt_ptr)
    ljmp $0x08, $.Llong_mode_low

/* Shared by the BSP and (a copy inside) the AP trampoline is the register
 * sequence below; the AP copy is separate because it runs at 0x8000.
 * In: %edi = PML4 physical. */
.Lenter_long_mode_regs:
    mov %cr4, %eax
    or $(CR4_PSE + CR4_PAE + CR4_PGE + CR4_OSFXSR + CR4_OSXMMEXCPT), %eax
    mov %eax, %cr4
    mov %edi, %cr3
    mov $MSR_EFER, %ecx
    rdmsr
    or $EFER_LME, %eax
    or (mc2_boot_efer_nxe - KERNEL_VMA), %eax
    wrmsr
    mov %cr0, %eax
    and $~CR0_EM, %eax
    or $(CR0_PE + CR0_MP + CR0_WP + CR0_PG), %eax
    mov %eax, %cr0
    ret

.Lno_multiboot:
    mov $.Lmsg_no_multiboot, %esi
    jmp .Lfail
.Lno_long_mode:
    mov $.Lmsg_no_long_mode, %esi
    jmp .Lfail
.Lno_sse:
    mov $.Lmsg_no_sse, %esi
.Lfail:
    /* Polled output on COM1 (already set up by the firmware, or not: then
     * nobody sees it, but the CPU halts instead of triple-faulting). */
    mov $(COM1 + 5), %dx
1:  in %dx, %al
    test $0x20, %al
    jz 1b
    lodsb
    test %al, %al
    jz 2f
    mov $COM1, %dx
    out %al, %dx
    jmp .Lfail
2:  cli
    hlt
    jmp 2b

.code64
.Llong_mode_low:
    xor %eax, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs
    movabs $.Lhigher_half, %rax
    jmp *%rax

/* ---- AP trampoline: copied to TRAMPOLINE_PHYS, entered by SIPI in real mode ---- */
.code16
.global mc2_ap_trampoline_start
mc2_ap_trampoline_start:
    cli
    cld
    mov %cs, %ax                            /* CS = TRAMPOLINE_PHYS >> 4 */
    mov %ax, %ds
    lgdtl (.Ltr_gdt_ptr - mc2_ap_trampoline_start)
    mov %cr0, %eax
    or $CR0_PE, %eax
    mov %eax, %cr0
    ljmpl $0x08, $(TRAMPOLINE_PHYS + .Ltr32 - mc2_ap_trampoline_start)
.code32
.Ltr32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %cr4, %eax
    or $(CR4_PSE + CR4_PAE + CR4_PGE + CR4_OSFXSR + CR4_OSXMMEXCPT), %eax
    mov %eax, %cr4
    mov (TRAMPOLINE_PHYS + .Ltr_cr3 - mc2_ap_trampoline_start), %eax
    mov %eax, %cr3
    mov $MSR_EFER, %ecx
    rdmsr
    or $EFER_LME, %eax
    or (TRAMPOLINE_PHYS + .Ltr_efer_nxe - mc2_ap_trampoline_start), %eax
    wrmsr
    mov %cr0, %eax
    and $~CR0_EM, %eax
    or $(CR0_PE + CR0_MP + CR0_WP + CR0_PG), %eax
    mov %eax, %cr0
    ljmp $0x18, $(TRAMPOLINE_PHYS + .Ltr64 - mc2_ap_trampoline_start)
.code64
.Ltr64:
    xor %eax, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs
    /* Claim this copy of the trampoline data before using it: only the CPU
     * the BSP patched it for (initial APIC id, CPUID.1:EBX[31:24]; any CPU
     * when the id does not fit in 8 bits) and only once, and not after the
     * BSP has given up waiting (it then revokes the claim word with the
     * same compare-and-swap). A CPU that comes up late on a later CPU's
     * data parks here instead of sharing its stack and index. */
    mov $1, %eax
    cpuid
    shr $24, %ebx
    mov .Ltr_apic(%rip), %ecx
    cmp $0xffffffff, %ecx
    je 2f
    cmp %ecx, %ebx
    jne 3f
2:  xor %eax, %eax
    mov $1, %edx
    lock cmpxchg %edx, .Ltr_claim(%rip)
    jne 3f
    mov .Ltr_stack(%rip), %rsp
    mov .Ltr_cpu(%rip), %rdi
    xor %ebp, %ebp
    movabs $mc2_machine_ap_entry, %rax
    call *%rax
1:  cli
    hlt
    jmp 1b
3:  cli                                     /* not ours: park for good */
    hlt
    jmp 3b

.align 16
.Ltr_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff                /* 0x08: 32-bit code, flat */
    .quad 0x00cf92000000ffff                /* 0x10: data, flat */
    .quad 0x00209a0000000000                /* 0x18: 64-bit code */
.Ltr_gdt_ptr:
    .word .Ltr_gdt_ptr - .Ltr_gdt - 1
    .long TRAMPOLINE_PHYS + .Ltr_gdt - mc2_ap_trampoline_start
/* Filled in by the BSP before each SIPI (offsets exported below). */
.align 8
.Ltr_stack:     .quad 0
.Ltr_cpu:       .quad 0
.Ltr_cr3:       .long 0
.Ltr_efer_nxe:  .long 0
.Ltr_apic:      .long 0                 /* the AP's APIC id, or ~0: any */
.Ltr_claim:     .long 0                 /* 0 free, 1 taken by the AP, ~0 revoked */
.global mc2_ap_trampoline_end
mc2_ap_trampoline_end:

.global mc2_tr_off_stack, mc2_tr_off_cpu, mc2_tr_off_cr3, mc2_tr_off_efer, mc2_tr_off_apic, mc2_tr_off_claim
.set mc2_tr_off_stack, .Ltr_stack - mc2_ap_trampoline_start
.set mc2_tr_off_cpu,   .Ltr_cpu - mc2_ap_trampoline_start
.set mc2_tr_off_cr3,   .Ltr_cr3 - mc2_ap_trampoline_start
.set mc2_tr_off_efer,  .Ltr_efer_nxe - mc2_ap_trampoline_start
.set mc2_tr_off_apic,  .Ltr_apic - mc2_ap_trampoline_start
.set mc2_tr_off_claim, .Ltr_claim - mc2_ap_trampoline_start

/* ------------------------------------------------------------------------ */
.section .boot.data, "aw"
.align 16
mc2_boot_gdt:
    .quad 0
    .quad 0x00209a0000000000                /* 0x08: 64-bit code */
    .quad 0x0000920000000000                /* 0x10: data */
mc2_boot_gdt_ptr:
    .word mc2_boot_gdt_ptr - mc2_boot_gdt - 1
    .long mc2_boot_gdt
.Lmsg_no_multiboot: .asciz "mc2: not started by a multiboot loader\r\n"
.Lmsg_no_long_mode: .asciz "mc2: this CPU has no long mode (x86-64); halting\r\n"
.Lmsg_no_sse:       .asciz "mc2: this CPU has no SSE2; halting\r\n"

/* ------------------------------------------------------------------------ */
.text
.Lhigher_half:
    movabs $mc2_boot_stack_top, %rsp
    mov %ebp, %edi                          /* zero-extends: multiboot info physical */
    xor %ebp, %ebp
    call mc2_machine_bsp_entry
1:  cli
    hlt
    jmp 1b

.data
.align 8
.global mc2_boot_efer_nxe
mc2_boot_efer_nxe: .long 0, 0

.bss
.align 4096
.global mc2_boot_pml4, mc2_boot_pdpt_low, mc2_boot_pdpt_high, mc2_boot_pd
mc2_boot_pml4:      .skip 4096
mc2_boot_pdpt_low:  .skip 4096
mc2_boot_pdpt_high: .skip 4096
mc2_boot_pd:        .skip 4 * 4096
/* The boot CPU's stack, with an unmapped guard page below it once the
 * kernel page tables are in use (see machine::boot::guard_pages). It is
 * larger than the other CPUs' because boot builds big tables on it. */
.global mc2_boot_stack_guard, mc2_boot_stack_top
mc2_boot_stack_guard: .skip 4096
mc2_boot_stack:     .skip 256 * 1024
mc2_boot_stack_top:
.text
