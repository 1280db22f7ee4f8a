//! Leaving the machine: emulator exit devices, then halting.

/// QEMU `isa-debug-exit` port (iobase=0xf4): writing `v` makes QEMU exit with
/// status `(v << 1) | 1`.
const QEMU_DEBUG_EXIT: u16 = 0xf4;
/// Bochs shutdown port: writing the string "Shutdown" stops the simulation.
const BOCHS_SHUTDOWN: u16 = 0x8900;

/// Exit code the test harness reads as "all passed" (QEMU status 33).
pub const EXIT_SUCCESS: u32 = 0x10;
/// Exit code for "something failed" (QEMU status 35).
pub const EXIT_FAILURE: u32 = 0x11;

/// Stop the emulator with `code` where one is listening, else halt this CPU.
/// The caller should flush the console first.
pub fn exit(code: u32, pm1a_control: Option<u16>) -> ! {
    // SAFETY: writes to these ports are ignored on machines without the
    // devices; on the emulators they end the run, which is what is wanted.
    unsafe {
        machine::x86::outl(QEMU_DEBUG_EXIT, code);
        for b in b"Shutdown" {
            machine::x86::outb(BOCHS_SHUTDOWN, *b);
        }
        // ACPI soft-off: SLP_EN with SLP_TYP 0, the \_S5 value of QEMU's and
        // Bochs' PIIX4 tables (ACPI §4.8.3.2.1). Real firmware may name another
        // SLP_TYP in its AML \_S5; then this write selects S0 (no effect) and
        // we halt below.
        if let Some(port) = pm1a_control {
            machine::x86::outw(port, 1 << 13);
        }
    }
    machine::x86::halt_forever()
}
