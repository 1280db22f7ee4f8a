//! I/O APIC driver (Intel 82093AA data sheet §3): routes device interrupts
//! (global system interrupts) to a vector on a chosen CPU.

/// Redirection entry bits (82093AA §3.2.4).
const RTE_ACTIVE_LOW: u64 = 1 << 13;
const RTE_LEVEL: u64 = 1 << 15;
const RTE_MASKED: u64 = 1 << 16;

const REG_VERSION: u32 = 1;
const REG_REDIRECTION: u32 = 0x10;

/// The I/O APICs of the platform, registered at boot.
static IOAPICS: lock::SpinLock<arrayvec::ArrayVec<IoApic, 8>> = lock::SpinLock::new(arrayvec::ArrayVec::new_const());

/// Register an I/O APIC (from the MADT) and mask all its inputs.
///
/// # Safety
/// As [`IoApic::at`].
pub unsafe fn register(phys: u64, gsi_base: u32) -> Result<u32, RouteError> {
    // SAFETY: the caller's contract is IoApic::at's.
    let io = unsafe { IoApic::at(phys, gsi_base) };
    io.mask_all();
    IOAPICS.lock().try_push(io).map_err(|_| RouteError::TooMany)?;
    Ok(io.inputs())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// No registered I/O APIC serves this global system interrupt.
    NoIoApic(u32),
    /// More I/O APICs than the driver keeps.
    TooMany,
}

/// Deliver global system interrupt `gsi` as `vector` to the CPU with `apic_id`.
pub fn route_gsi(gsi: u32, vector: u8, apic_id: u32, active_low: bool, level: bool) -> Result<(), RouteError> {
    let ioapics = IOAPICS.lock();
    let io = ioapics
        .iter()
        .filter(|io| io.gsi_base <= gsi && gsi - io.gsi_base < io.inputs())
        .max_by_key(|io| io.gsi_base)
        .ok_or(RouteError::NoIoApic(gsi))?;
    io.route(gsi - io.gsi_base, vector, apic_id, active_low, level);
    Ok(())
}

#[derive(Clone, Copy)]
pub struct IoApic {
    base: usize,
    pub gsi_base: u32,
}

impl IoApic {
    /// # Safety
    /// `phys` is an I/O APIC's register window (from the MADT), mapped
    /// uncached in the direct map, and nobody else drives this I/O APIC.
    pub const unsafe fn at(phys: u64, gsi_base: u32) -> Self {
        IoApic { base: machine::layout::phys_to_virt(phys) as usize, gsi_base }
    }

    fn read(&self, r: u32) -> u32 {
        // SAFETY: IOREGSEL at +0, IOWIN at +0x10 of the window (constructor
        // contract). Callers serialise access (boot CPU, or under a lock).
        unsafe {
            core::ptr::write_volatile(self.base as *mut u32, r);
            core::ptr::read_volatile((self.base + 0x10) as *const u32)
        }
    }

    fn write(&self, r: u32, v: u32) {
        // SAFETY: as in `read`.
        unsafe {
            core::ptr::write_volatile(self.base as *mut u32, r);
            core::ptr::write_volatile((self.base + 0x10) as *mut u32, v);
        }
    }

    /// Number of redirection entries (inputs).
    pub fn inputs(&self) -> u32 {
        ((self.read(REG_VERSION) >> 16) & 0xff) + 1
    }

    fn set_entry(&self, pin: u32, entry: u64) {
        self.write(REG_REDIRECTION + 2 * pin, RTE_MASKED as u32);
        self.write(REG_REDIRECTION + 2 * pin + 1, (entry >> 32) as u32);
        self.write(REG_REDIRECTION + 2 * pin, entry as u32);
    }

    /// Mask every input (done once at boot before routing any).
    pub fn mask_all(&self) {
        for pin in 0..self.inputs() {
            self.set_entry(pin, RTE_MASKED);
        }
    }

    /// Deliver input `pin` as fixed interrupt `vector` to the CPU with `apic_id`.
    pub fn route(&self, pin: u32, vector: u8, apic_id: u32, active_low: bool, level: bool) {
        let mut e = vector as u64 | (apic_id as u64) << 56;
        if active_low {
            e |= RTE_ACTIVE_LOW;
        }
        if level {
            e |= RTE_LEVEL;
        }
        self.set_entry(pin, e);
    }

    pub fn mask(&self, pin: u32) {
        self.set_entry(pin, RTE_MASKED);
    }
}
