//! The MC146818 real-time clock and its CMOS RAM (Motorola MC146818A
//! datasheet), at index port 0x70 (bit 7: NMI mask) and data port 0x71.
//!
//! The clock runs from a wall time given at construction (the VMM passes a
//! fixed epoch: mc2 has no wall clock to offer) plus the host TSC. Modelled:
//! time and date registers 0-9 and the PC's century byte 0x32, in BCD or
//! binary and 12- or 24-hour format per register B; alarms with don't-care
//! values (0xc0-0xff); register A (divider, rate; UIP set during the 244 us
//! before each update, as §"Update Cycle" specifies); register B's SET bit
//! (updates stop, the guest may set the time, which then runs from there);
//! register C's flags (PF, AF, UF, IRQF; read clears) and D (VRT: valid RAM).
//! The flags are computed when C is read: this model never raises IRQ 8.
//! CMOS bytes: memory sizes as a PC BIOS stores them (0x15-0x18, 0x30-0x31,
//! 0x34-0x35, 0x5b-0x5d as QEMU's) with the checksum at 0x2e-0x2f; the rest
//! is plain RAM the guest may use.

use crate::mul_div;

pub const INDEX: u16 = 0x70;
pub const DATA: u16 = 0x71;

// Register indices (datasheet Figure 3, "Address Map"; 0x32 is the PC's).
const SEC: usize = 0x00;
const SEC_ALARM: usize = 0x01;
const MIN: usize = 0x02;
const MIN_ALARM: usize = 0x03;
const HOUR: usize = 0x04;
const HOUR_ALARM: usize = 0x05;
const WDAY: usize = 0x06;
const MDAY: usize = 0x07;
const MONTH: usize = 0x08;
const YEAR: usize = 0x09;
const REG_A: usize = 0x0a;
const REG_B: usize = 0x0b;
const REG_C: usize = 0x0c;
const REG_D: usize = 0x0d;
const CENTURY: usize = 0x32;

const A_UIP: u8 = 0x80;
const A_DV_MASK: u8 = 0x70;
/// Divider bits for a 32.768 kHz time base: the clock runs.
const A_DV_NORMAL: u8 = 0x20;
const B_SET: u8 = 0x80;
const B_PIE: u8 = 0x40;
const B_AIE: u8 = 0x20;
const B_UIE: u8 = 0x10;
const B_DM_BINARY: u8 = 0x04;
const B_24H: u8 = 0x02;
const C_IRQF: u8 = 0x80;
const C_PF: u8 = 0x40;
const C_AF: u8 = 0x20;
const C_UF: u8 = 0x10;
const D_VRT: u8 = 0x80;

/// UIP is set this long before each update (datasheet: 244 us).
const UIP_US: u64 = 244;

/// The time registers, in the order of [`Rtc::time_fields`].
const TIME_REGS: [usize; 8] = [SEC, MIN, HOUR, WDAY, MDAY, MONTH, YEAR, CENTURY];

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

fn bcd(v: u8) -> u8 {
    (v / 10) << 4 | (v % 10)
}

fn from_bcd(v: u8) -> u8 {
    (v >> 4).min(9) * 10 + (v & 0xf).min(9)
}

/// The clock and CMOS RAM.
#[derive(Clone, Debug)]
pub struct Rtc {
    index: u8,
    /// Port 0x70 bit 7 as last written (the PC's NMI mask).
    pub nmi_masked: bool,
    cmos: [u8; 128],
    tsc_per_ms: u64,
    /// Wall time (Unix seconds) at TSC `base_tsc`.
    base_unix: u64,
    base_tsc: u64,
    /// When register C was last read (TSC), for its flags.
    c_read_tsc: u64,
}

impl Rtc {
    /// A clock showing `unix` seconds at TSC `now`, in a PC with
    /// `ram_bytes` of memory; register B as a PC BIOS leaves it (24-hour,
    /// BCD), register A with the normal divider and 1024 Hz rate.
    pub fn new(unix: u64, now: u64, tsc_per_ms: u64, ram_bytes: u64) -> Rtc {
        let mut r = Rtc { index: 0, nmi_masked: false, cmos: [0; 128], tsc_per_ms: tsc_per_ms.max(1), base_unix: unix, base_tsc: now, c_read_tsc: now };
        r.cmos[REG_A] = A_DV_NORMAL | 0x06;
        r.cmos[REG_B] = B_24H;
        r.cmos[0x14] = 0x02; // equipment: math coprocessor present
        r.cmos[0x15] = 0x80; // base memory 640 KiB (0x280)
        r.cmos[0x16] = 0x02;
        let ext_kib = (ram_bytes.saturating_sub(1 << 20) / 1024).min(0xffff) as u16;
        for lo in [0x17, 0x30] {
            r.cmos[lo] = ext_kib as u8;
            r.cmos[lo + 1] = (ext_kib >> 8) as u8;
        }
        let above16 = (ram_bytes.min(0xc000_0000).saturating_sub(16 << 20) >> 16).min(0xffff) as u16;
        r.cmos[0x34] = above16 as u8;
        r.cmos[0x35] = (above16 >> 8) as u8;
        let above4g = ram_bytes.saturating_sub(1 << 32) >> 16;
        r.cmos[0x5b] = above4g as u8;
        r.cmos[0x5c] = (above4g >> 8) as u8;
        r.cmos[0x5d] = (above4g >> 16) as u8;
        let sum: u16 = r.cmos[0x10..=0x2d].iter().map(|&b| b as u16).sum();
        r.cmos[0x2e] = (sum >> 8) as u8;
        r.cmos[0x2f] = sum as u8;
        r.store_time(unix);
        r
    }

    fn tsc_per_s(&self) -> u64 {
        self.tsc_per_ms.saturating_mul(1000)
    }

    /// Wall time now: whole seconds and the TSC ticks into the second.
    fn wall(&self, now: u64) -> (u64, u64) {
        let el = now.saturating_sub(self.base_tsc);
        (self.base_unix.saturating_add(el / self.tsc_per_s()), el % self.tsc_per_s())
    }

    fn running(&self) -> bool {
        self.cmos[REG_A] & A_DV_MASK == A_DV_NORMAL && self.cmos[REG_B] & B_SET == 0
    }

    fn enc(&self, v: u8) -> u8 {
        if self.cmos[REG_B] & B_DM_BINARY != 0 {
            v
        } else {
            bcd(v)
        }
    }

    fn dec(&self, v: u8) -> u8 {
        if self.cmos[REG_B] & B_DM_BINARY != 0 {
            v
        } else {
            from_bcd(v)
        }
    }

    fn enc_hour(&self, h: u8) -> u8 {
        if self.cmos[REG_B] & B_24H != 0 {
            self.enc(h)
        } else {
            let h12 = if h.is_multiple_of(12) { 12 } else { h % 12 };
            self.enc(h12) | if h >= 12 { 0x80 } else { 0 }
        }
    }

    fn dec_hour(&self, v: u8) -> u8 {
        if self.cmos[REG_B] & B_24H != 0 {
            self.dec(v).min(23)
        } else {
            self.dec(v & 0x7f) % 12 + if v & 0x80 != 0 { 12 } else { 0 }
        }
    }

    /// The registers of [`TIME_REGS`] for Unix time `unix`, encoded per B.
    fn time_fields(&self, unix: u64) -> [u8; 8] {
        let days = (unix / 86_400) as i64;
        let s = unix % 86_400;
        let (y, m, d) = civil_from_days(days);
        let wday = days.rem_euclid(7) as u8; // 1970-01-01 was a Thursday
        let wday = (wday + 4) % 7 + 1; // 1 = Sunday
        let y = y.clamp(0, 9999) as u64;
        [
            self.enc((s % 60) as u8),
            self.enc((s / 60 % 60) as u8),
            self.enc_hour((s / 3600) as u8),
            self.enc(wday),
            self.enc(d as u8),
            self.enc(m as u8),
            self.enc((y % 100) as u8),
            self.enc((y / 100) as u8),
        ]
    }

    fn store_time(&mut self, unix: u64) {
        let f = self.time_fields(unix);
        for (&r, v) in TIME_REGS.iter().zip(f) {
            self.cmos[r] = v;
        }
    }

    /// Unix time of the date and time in the registers (fields out of
    /// range are clamped; the guest may write anything).
    fn stored_unix(&self) -> u64 {
        let c = &self.cmos;
        let century = self.dec(c[CENTURY]) as i64;
        let century = if (19..=99).contains(&century) { century } else { 20 };
        let y = century * 100 + self.dec(c[YEAR]).min(99) as i64;
        let m = self.dec(c[MONTH]).clamp(1, 12) as u32;
        let d = self.dec(c[MDAY]).clamp(1, 31) as u32;
        let days = days_from_civil(y, m, d);
        let secs = days * 86_400 + self.dec_hour(c[HOUR]) as i64 * 3600 + self.dec(c[MIN]).min(59) as i64 * 60 + self.dec(c[SEC]).min(59) as i64;
        secs.max(0) as u64
    }

    /// Restart the clock from the registers.
    fn resync(&mut self, now: u64) {
        self.base_unix = self.stored_unix();
        self.base_tsc = now;
    }

    fn alarm_matches(&self, unix: u64) -> bool {
        let s = unix % 86_400;
        let want = [(SEC_ALARM, s % 60), (MIN_ALARM, s / 60 % 60), (HOUR_ALARM, s / 3600)];
        want.iter().all(|&(r, v)| {
            let a = self.cmos[r];
            a & 0xc0 == 0xc0 || if r == HOUR_ALARM { self.dec_hour(a) as u64 == v } else { self.dec(a) as u64 == v }
        })
    }

    /// Register C: flags raised since the last read, then cleared.
    fn read_c(&mut self, now: u64) -> u8 {
        let mut c = 0;
        if self.running() {
            let (then, _) = self.wall(self.c_read_tsc);
            let (sec, _) = self.wall(now);
            if sec > then {
                c |= C_UF;
                // Check each second that went by (at most a day's worth).
                let from = then.max(sec.saturating_sub(86_400)) + 1;
                if (from..=sec).any(|t| self.alarm_matches(t)) {
                    c |= C_AF;
                }
            }
        }
        let rs = self.cmos[REG_A] & 0x0f;
        if rs != 0 && self.cmos[REG_A] & A_DV_MASK == A_DV_NORMAL {
            // Rate table (datasheet Table 5): 256, 128 Hz, then 65536 >> RS.
            let hz = 65_536u64 >> if rs < 3 { rs + 7 } else { rs };
            if now.saturating_sub(self.c_read_tsc) >= self.tsc_per_s() / hz {
                c |= C_PF;
            }
        }
        let b = self.cmos[REG_B];
        if (c & C_PF != 0 && b & B_PIE != 0) || (c & C_AF != 0 && b & B_AIE != 0) || (c & C_UF != 0 && b & B_UIE != 0) {
            c |= C_IRQF;
        }
        self.c_read_tsc = now;
        c
    }

    fn read_reg(&mut self, i: usize, now: u64) -> u8 {
        match i {
            REG_A => {
                let (_, frac) = self.wall(now);
                let window = mul_div(UIP_US, self.tsc_per_ms, 1000);
                let uip = self.running() && frac + window >= self.tsc_per_s();
                (self.cmos[REG_A] & !A_UIP) | if uip { A_UIP } else { 0 }
            }
            REG_C => self.read_c(now),
            REG_D => D_VRT,
            _ if TIME_REGS.contains(&i) && self.running() => {
                let f = self.time_fields(self.wall(now).0);
                TIME_REGS.iter().position(|&r| r == i).map(|k| f[k]).unwrap_or(0xff)
            }
            _ => self.cmos.get(i).copied().unwrap_or(0xff),
        }
    }

    fn write_reg(&mut self, i: usize, v: u8, now: u64) {
        match i {
            REG_A => {
                let was = self.running();
                self.cmos[REG_A] = v & !A_UIP;
                if was && !self.running() {
                    self.store_time(self.wall(now).0);
                } else if !was && self.running() {
                    self.resync(now);
                }
            }
            REG_B => {
                let was = self.running();
                let t = self.wall(now).0;
                // Setting SET clears UIE (datasheet, register B bit 7).
                self.cmos[REG_B] = if v & B_SET != 0 { v & !B_UIE } else { v };
                if was && !self.running() {
                    self.store_time(t); // frozen, in the new format
                } else if !was && self.running() {
                    self.resync(now);
                } else if was {
                    // A format change while running: nothing stored to redo.
                }
            }
            REG_C | REG_D => {} // read-only
            _ if TIME_REGS.contains(&i) => {
                if self.running() {
                    // Writing a field while the clock runs sets the time at once.
                    self.store_time(self.wall(now).0);
                    self.cmos[i] = v;
                    self.resync(now);
                } else {
                    self.cmos[i] = v;
                }
            }
            _ => {
                if let Some(c) = self.cmos.get_mut(i) {
                    *c = v;
                }
            }
        }
    }

    pub fn claims(port: u16) -> bool {
        port == INDEX || port == DATA
    }

    pub fn read(&mut self, port: u16, now: u64) -> u8 {
        if port == DATA {
            self.read_reg(self.index as usize, now)
        } else {
            0xff // the index register is write-only
        }
    }

    pub fn write(&mut self, port: u16, v: u8, now: u64) {
        if port == DATA {
            self.write_reg(self.index as usize, v, now);
        } else if port == INDEX {
            self.index = v & 0x7f;
            self.nmi_masked = v & 0x80 != 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TPMS: u64 = 1_000_000; // 1 GHz
    const SEC_TSC: u64 = TPMS * 1000;
    /// 2025-01-01 00:00:00 UTC, a Wednesday.
    const EPOCH: u64 = 1_735_689_600;

    fn reg(r: &mut Rtc, i: u8, now: u64) -> u8 {
        r.write(INDEX, i, now);
        r.read(DATA, now)
    }

    fn set(r: &mut Rtc, i: u8, v: u8, now: u64) {
        r.write(INDEX, i, now);
        r.write(DATA, v, now);
    }

    #[test]
    fn calendar_round_trips() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(EPOCH as i64 / 86_400), (2025, 1, 1));
        for d in (-800_000..800_000).step_by(997) {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn time_in_bcd_24h_from_the_epoch_and_tsc() {
        let mut r = Rtc::new(EPOCH, 0, TPMS, 8 << 20);
        // 1 day, 13:45:07 later.
        let t = (86_400 + 13 * 3600 + 45 * 60 + 7) * SEC_TSC + 10;
        assert_eq!(reg(&mut r, 0, t), 0x07);
        assert_eq!(reg(&mut r, 2, t), 0x45);
        assert_eq!(reg(&mut r, 4, t), 0x13);
        assert_eq!(reg(&mut r, 6, t), 5, "Thursday (Sunday = 1)");
        assert_eq!(reg(&mut r, 7, t), 0x02);
        assert_eq!(reg(&mut r, 8, t), 0x01);
        assert_eq!(reg(&mut r, 9, t), 0x25);
        assert_eq!(reg(&mut r, 0x32, t), 0x20);
        assert_eq!(reg(&mut r, 0x0d, t), 0x80, "valid RAM and time");
        // Binary, 12-hour: 1 PM.
        set(&mut r, 0x0b, B_DM_BINARY, t);
        assert_eq!(reg(&mut r, 4, t), 0x81);
        assert_eq!(reg(&mut r, 2, t), 45);
    }

    #[test]
    fn uip_is_set_just_before_each_update() {
        let mut r = Rtc::new(EPOCH, 0, TPMS, 0);
        assert_eq!(reg(&mut r, 0x0a, SEC_TSC / 2) & A_UIP, 0);
        assert_eq!(reg(&mut r, 0x0a, SEC_TSC - 100 * TPMS / 1000) & A_UIP, A_UIP);
        assert_eq!(reg(&mut r, 0x0a, SEC_TSC + 1) & A_UIP, 0);
        assert_eq!(reg(&mut r, 0x0a, 0), 0x26, "divider on, 1024 Hz");
        // Linux's read: wait for UIP to clear, read, check seconds again.
        let mut t = SEC_TSC - 200 * TPMS / 1000;
        while reg(&mut r, 0x0a, t) & A_UIP != 0 {
            t += TPMS / 1000;
        }
        assert_eq!(reg(&mut r, 0, t), 0x01);
    }

    #[test]
    fn set_bit_freezes_and_the_guest_sets_the_time() {
        let mut r = Rtc::new(EPOCH, 0, TPMS, 0);
        set(&mut r, 0x0b, B_SET | B_24H | B_UIE, 5 * SEC_TSC);
        assert_eq!(reg(&mut r, 0x0b, 0) & B_UIE, 0, "SET clears UIE");
        assert_eq!(reg(&mut r, 0, 50 * SEC_TSC), 0x05, "frozen");
        assert_eq!(reg(&mut r, 0x0a, SEC_TSC - 1) & A_UIP, 0, "no updates while SET");
        // Set 1999-12-31 23:59:58.
        for (i, v) in [(9u8, 0x99u8), (0x32, 0x19), (8, 0x12), (7, 0x31), (4, 0x23), (2, 0x59), (0, 0x58)] {
            set(&mut r, i, v, 60 * SEC_TSC);
        }
        set(&mut r, 0x0b, B_24H, 60 * SEC_TSC);
        let t = 63 * SEC_TSC;
        assert_eq!(reg(&mut r, 0, t), 0x01);
        assert_eq!(reg(&mut r, 9, t), 0x00);
        assert_eq!(reg(&mut r, 0x32, t), 0x20);
        assert_eq!(reg(&mut r, 8, t), 0x01);
        assert_eq!(reg(&mut r, 7, t), 0x01);
    }

    #[test]
    fn register_c_flags_and_alarm() {
        let mut r = Rtc::new(EPOCH, 0, TPMS, 0);
        let _ = reg(&mut r, 0x0c, 0);
        assert_eq!(reg(&mut r, 0x0c, 1000), 0, "nothing within a millisecond... ");
        // Alarm at 00:00:03 with UIE and AIE.
        set(&mut r, 1, 0x03, 1000);
        set(&mut r, 3, 0xc0, 1000); // any minute
        set(&mut r, 5, 0x00, 1000);
        set(&mut r, 0x0b, B_24H | B_AIE, 1000);
        let c = reg(&mut r, 0x0c, 2 * SEC_TSC + 5);
        assert_eq!(c & (C_UF | C_AF), C_UF, "updates, no alarm yet");
        assert_eq!(c & C_IRQF, 0, "UF not enabled");
        let c = reg(&mut r, 0x0c, 3 * SEC_TSC + 5);
        assert_eq!(c & (C_AF | C_IRQF), C_AF | C_IRQF);
        assert_eq!(reg(&mut r, 0x0c, 3 * SEC_TSC + 6) & (C_AF | C_UF), 0, "read clears");
        // Periodic flag at 1024 Hz.
        assert_eq!(reg(&mut r, 0x0c, 3 * SEC_TSC + 6 + TPMS) & C_PF, C_PF);
    }

    #[test]
    fn cmos_memory_bytes_and_index_port() {
        let mut r = Rtc::new(EPOCH, 0, TPMS, 64 << 20);
        assert_eq!((reg(&mut r, 0x15, 0), reg(&mut r, 0x16, 0)), (0x80, 0x02));
        assert_eq!(reg(&mut r, 0x17, 0) as u16 | (reg(&mut r, 0x18, 0) as u16) << 8, 63 * 1024);
        assert_eq!(reg(&mut r, 0x34, 0) as u16 | (reg(&mut r, 0x35, 0) as u16) << 8, ((48u32 << 20) >> 16) as u16);
        r.write(INDEX, 0x80 | 0x40, 0);
        assert!(r.nmi_masked);
        r.write(DATA, 0x5a, 0);
        assert_eq!(r.read(DATA, 0), 0x5a, "plain CMOS RAM");
        assert_eq!(r.read(INDEX, 0), 0xff);
        // Hostile values everywhere never panic.
        for i in 0..=255u8 {
            for v in [0u8, 0x7f, 0x80, 0xff] {
                set(&mut r, i, v, u64::MAX - i as u64);
                let _ = reg(&mut r, i, u64::MAX);
                let _ = reg(&mut r, 0x0c, 0);
            }
        }
    }
}
