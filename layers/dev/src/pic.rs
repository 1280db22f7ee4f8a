//! The legacy 8259A pair: remapped away from the exception vectors and masked,
//! since mc2 takes device interrupts through the I/O APIC (8259A data sheet,
//! ICW1-ICW4).

use machine::x86::outb;

/// Remap the PICs to vectors `base..base+16` and mask every line, so that a
/// spurious interrupt from them cannot look like a CPU exception.
pub fn remap_and_mask(base: u8) {
    // SAFETY: ports 0x20/0x21/0xa0/0xa1 are the PICs, owned by the kernel;
    // the ICW sequence leaves both with every line masked.
    unsafe {
        outb(0x20, 0x11); // ICW1: init, ICW4 follows
        outb(0xa0, 0x11);
        outb(0x21, base); // ICW2: vector base
        outb(0xa1, base + 8);
        outb(0x21, 0x04); // ICW3: slave on IRQ2
        outb(0xa1, 0x02);
        outb(0x21, 0x01); // ICW4: 8086 mode
        outb(0xa1, 0x01);
        outb(0x21, 0xff); // mask all
        outb(0xa1, 0xff);
    }
}
