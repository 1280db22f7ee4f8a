//! Just enough x86 instruction decoding for the instructions the VMM
//! completes itself: the prefixes and opcode of INS/OUTS (the exit reports
//! neither the address size nor a segment override, and the kernel leaves
//! stepping over string I/O to the VMM) and of RDMSR/WRMSR. Intel SDM Vol. 2
//! §2.1 (instruction format, legacy prefixes, REX).

/// The prefixes and opcode of one instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    /// Bytes up to and including the opcode: the instruction's length for
    /// the opcodes decoded here (none has operands).
    pub len: u8,
    /// Address-size override (0x67).
    pub addr_override: bool,
    /// Segment override: index into `abi::vm::Regs::seg`.
    pub segment: Option<usize>,
    /// REP/REPE (0xf3) or REPNE (0xf2).
    pub rep: bool,
    /// The opcode: one byte, or 0x0fXX for two-byte opcodes.
    pub opcode: u16,
}

pub const INSB: u16 = 0x6c;
pub const INSW: u16 = 0x6d;
pub const OUTSB: u16 = 0x6e;
pub const OUTSW: u16 = 0x6f;
pub const WRMSR: u16 = 0x0f30;
pub const RDMSR: u16 = 0x0f32;

/// Decode the prefixes and opcode at the start of `bytes` (up to 15, the
/// architectural maximum); `long_mode`: 64-bit code, where 0x40-0x4f are REX.
pub fn decode(bytes: &[u8], long_mode: bool) -> Option<Insn> {
    let mut i = Insn { len: 0, addr_override: false, segment: None, rep: false, opcode: 0 };
    let max = bytes.len().min(15);
    let mut at = 0;
    while at < max {
        let b = bytes[at];
        match b {
            0x66 | 0xf0 => {}
            0x67 => i.addr_override = true,
            0xf2 | 0xf3 => i.rep = true,
            0x26 => i.segment = Some(abi::vm::ES),
            0x2e => i.segment = Some(abi::vm::CS),
            0x36 => i.segment = Some(abi::vm::SS),
            0x3e => i.segment = Some(abi::vm::DS),
            0x64 => i.segment = Some(abi::vm::FS),
            0x65 => i.segment = Some(abi::vm::GS),
            0x40..=0x4f if long_mode => {
                // REX must come last: the opcode follows.
                at += 1;
                break;
            }
            _ => break,
        }
        at += 1;
    }
    let b = *bytes.get(at).filter(|_| at < max)?;
    if b == 0x0f {
        let b2 = *bytes.get(at + 1).filter(|_| at + 1 < max)?;
        i.opcode = 0x0f00 | b2 as u16;
        i.len = (at + 2) as u8;
    } else {
        i.opcode = b as u16;
        i.len = (at + 1) as u8;
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_io_with_prefixes() {
        assert_eq!(decode(&[0xf3, 0x6e], false), Some(Insn { len: 2, addr_override: false, segment: None, rep: true, opcode: OUTSB }));
        let i = decode(&[0x67, 0x26, 0x66, 0xf3, 0x6f, 0x90], false).unwrap();
        assert_eq!((i.len, i.addr_override, i.segment, i.rep, i.opcode), (5, true, Some(abi::vm::ES), true, OUTSW));
        assert_eq!(decode(&[0xf3, 0x48, 0x6d], true).unwrap().len, 3, "REX in 64-bit code");
        assert_eq!(decode(&[0x48, 0x6d], false).unwrap().opcode, 0x48, "0x48 is DEC eax outside 64-bit code");
    }

    #[test]
    fn msr_instructions_and_junk() {
        assert_eq!(decode(&[0x0f, 0x30], false).unwrap(), Insn { len: 2, addr_override: false, segment: None, rep: false, opcode: WRMSR });
        assert_eq!(decode(&[0x0f], false), None, "cut short");
        assert_eq!(decode(&[0x66; 20], false), None, "prefixes only");
        assert_eq!(decode(&[], true), None);
    }
}
