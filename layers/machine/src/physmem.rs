//! Reading physical memory during discovery (multiboot, ACPI, MP tables).
//!
//! Parsers take a [`PhysRead`] instead of raw pointers so that the same code
//! runs on the host against a synthetic memory image in tests, and on bare
//! metal against the boot direct map ([`BootPhysMap`]).

/// Something physical memory can be read from.
pub trait PhysRead {
    /// Copy `buf.len()` bytes from physical address `pa`. Returns false (and
    /// leaves `buf` unspecified) if any part of the range is not readable.
    fn read(&self, pa: u64, buf: &mut [u8]) -> bool;

    fn read_u8(&self, pa: u64) -> Option<u8> {
        let mut b = [0u8; 1];
        self.read(pa, &mut b).then_some(b[0])
    }
    fn read_u16(&self, pa: u64) -> Option<u16> {
        let mut b = [0u8; 2];
        self.read(pa, &mut b).then(|| u16::from_le_bytes(b))
    }
    fn read_u32(&self, pa: u64) -> Option<u32> {
        let mut b = [0u8; 4];
        self.read(pa, &mut b).then(|| u32::from_le_bytes(b))
    }
    fn read_u64(&self, pa: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(pa, &mut b).then(|| u64::from_le_bytes(b))
    }
}

/// Physical memory as the boot page tables map it (0..4 GiB through the direct map).
#[cfg(mc2_bare)]
pub struct BootPhysMap;

#[cfg(mc2_bare)]
impl PhysRead for BootPhysMap {
    fn read(&self, pa: u64, buf: &mut [u8]) -> bool {
        let Some(end) = pa.checked_add(buf.len() as u64) else { return false };
        if end > crate::layout::BOOT_PHYS_MAP_SIZE {
            return false;
        }
        let src = crate::layout::phys_to_virt(pa) as *const u8;
        // SAFETY: [pa, end) lies inside the boot direct map, which maps all of
        // 0..4 GiB; firmware tables and RAM there are plain memory (volatile is
        // not needed: nothing else writes them during discovery). Unbacked
        // addresses read as all-ones on a PC, never fault.
        unsafe { core::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) };
        true
    }
}

/// A sparse memory image for tests: (base, bytes) chunks.
#[cfg(test)]
pub struct TestMem(pub std::vec::Vec<(u64, std::vec::Vec<u8>)>);

#[cfg(test)]
impl PhysRead for TestMem {
    fn read(&self, pa: u64, buf: &mut [u8]) -> bool {
        for (base, bytes) in &self.0 {
            if pa >= *base && pa + buf.len() as u64 <= base + bytes.len() as u64 {
                let off = (pa - base) as usize;
                buf.copy_from_slice(&bytes[off..off + buf.len()]);
                return true;
            }
        }
        false
    }
}
