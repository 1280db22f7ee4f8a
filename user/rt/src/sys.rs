//! The system calls, one safe function each (see docs/syscalls.md for their
//! abstract effects). Raw numbers and error codes live in `abi`.

use abi::{decode, nr, Error};

/// Issue system call `n` with up to six arguments; returns (`rax`, `rdx`).
#[inline(always)]
pub fn raw(n: u64, a: [u64; 6]) -> (u64, u64) {
    let (rax, rdx, _) = raw_words(n, a);
    (rax, rdx)
}

fn call(n: u64, a: [u64; 6]) -> Result<u64, Error> {
    decode(raw(n, a).0)
}

fn call2(n: u64, a: [u64; 6]) -> Result<(u64, u64), Error> {
    let (rax, rdx) = raw(n, a);
    decode(rax).map(|v| (v, rdx))
}

pub fn exit(code: u64) -> ! {
    raw(nr::EXIT, [code, 0, 0, 0, 0, 0]);
    unreachable!("exit returned")
}

/// Start program `name` from the boot image on `cpu` with `quota` pages
/// carved out of the caller's container, passing it `args`. Returns its pid.
pub fn spawn(name: &str, quota: u64, cpu: u64, args: &str) -> Result<u64, Error> {
    call(nr::SPAWN, [name.as_ptr() as u64, name.len() as u64, quota, cpu, args.as_ptr() as u64, args.len() as u64])
}

/// Wait for child `pid` (or any child with `abi::ANY_CHILD`) to exit and reap
/// it. Returns (pid, exit code).
pub fn wait(pid: u64) -> Result<(u64, u64), Error> {
    call2(nr::WAIT, [pid, 0, 0, 0, 0, 0])
}

pub fn yield_now() {
    let _ = call(nr::YIELD, [0; 6]);
}

pub fn sleep_ms(ms: u64) {
    let _ = call(nr::SLEEP, [ms, 0, 0, 0, 0, 0]);
}

pub fn getpid() -> Result<u64, Error> {
    call(nr::GETPID, [0; 6])
}

pub fn getppid() -> Result<u64, Error> {
    call(nr::GETPPID, [0; 6])
}

/// (quota, usage) of the caller's container, in pages.
pub fn quota() -> Result<(u64, u64), Error> {
    call2(nr::QUOTA, [0; 6])
}

pub fn console_write(bytes: &[u8]) -> Result<u64, Error> {
    call(nr::CONSOLE_WRITE, [bytes.as_ptr() as u64, bytes.len() as u64, 0, 0, 0, 0])
}

/// Block until at least one byte of console input is available; returns how many were read.
pub fn console_read(buf: &mut [u8]) -> Result<u64, Error> {
    call(nr::CONSOLE_READ, [buf.as_mut_ptr() as u64, buf.len() as u64, 0, 0, 0, 0])
}

/// Claim channel number `n` (or any free one with `u64::MAX`); the caller
/// becomes its only receiver. Returns the channel number.
pub fn chan_create(n: u64) -> Result<u64, Error> {
    call(nr::CHAN_CREATE, [n, 0, 0, 0, 0, 0])
}

/// Send `msg` on channel `chan`; blocks until a receiver takes it.
pub fn send(chan: u64, msg: &[u8]) -> Result<u64, Error> {
    call(nr::SEND, [chan, msg.as_ptr() as u64, msg.len() as u64, 0, 0, 0])
}

/// Receive on `chan` into `buf`; blocks until a sender comes. Returns (length, sender pid).
pub fn recv(chan: u64, buf: &mut [u8]) -> Result<(u64, u64), Error> {
    call2(nr::RECV, [chan, buf.as_mut_ptr() as u64, buf.len() as u64, 0, 0, 0])
}

/// Send `msg` on `chan` and receive the reply on `reply_chan` into `buf`, in one call.
pub fn call_chan(chan: u64, msg: &[u8], reply_chan: u64, buf: &mut [u8]) -> Result<(u64, u64), Error> {
    call2(nr::CALL, [chan, msg.as_ptr() as u64, msg.len() as u64, reply_chan, buf.as_mut_ptr() as u64, buf.len() as u64])
}

/// A short message: up to `abi::SHORT_MESSAGE` bytes, carried in registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Short {
    pub len: usize,
    pub words: [u64; abi::SHORT_WORDS],
}

impl Short {
    /// The message of `bytes` (at most `abi::SHORT_MESSAGE`).
    pub fn new(bytes: &[u8]) -> Result<Short, Error> {
        if bytes.len() > abi::SHORT_MESSAGE {
            return Err(Error::TooLarge);
        }
        Ok(Short { len: bytes.len(), words: abi::short_words(bytes) })
    }

    /// One word as an 8-byte message.
    pub fn word(v: u64) -> Short {
        Short { len: 8, words: [v, 0, 0] }
    }

    /// The message's bytes.
    pub fn bytes(&self) -> ([u8; abi::SHORT_MESSAGE], usize) {
        (abi::short_bytes(&self.words), self.len.min(abi::SHORT_MESSAGE))
    }
}

/// Issue system call `n` and also return r10, r8 and r9 afterwards (where
/// `CALL_SHORT` leaves the message it received).
#[inline(always)]
pub fn raw_words(n: u64, a: [u64; 6]) -> (u64, u64, [u64; abi::SHORT_WORDS]) {
    let (rax, rdx, w0, w1, w2): (u64, u64, u64, u64, u64);
    // SAFETY: `syscall` enters the kernel, which validates every argument
    // (pointers included) and returns; registers it may change are declared
    // (the C ABI's caller-saved set, which includes rcx and r11, and the
    // argument registers, r10, r8 and r9 as outputs).
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") n => rax,
            inlateout("rdi") a[0] => _,
            inlateout("rsi") a[1] => _,
            inlateout("rdx") a[2] => rdx,
            inlateout("r10") a[3] => w0,
            inlateout("r8") a[4] => w1,
            inlateout("r9") a[5] => w2,
            clobber_abi("C"),
            options(nostack),
        );
    }
    (rax, rdx, [w0, w1, w2])
}

/// `CALL_SHORT`: send `msg` on `chan` and/or receive on `reply_chan` (either
/// may be `abi::NO_CHANNEL`), the messages in registers. Returns the received
/// message (empty for a send only) and its sender.
#[inline(always)]
pub fn call_short(chan: u64, msg: &Short, reply_chan: u64) -> Result<(Short, u64), Error> {
    let [w0, w1, w2] = msg.words;
    let (rax, rdx, words) = raw_words(nr::CALL_SHORT, [chan, reply_chan, msg.len as u64, w0, w1, w2]);
    decode(rax).map(|len| (Short { len: len as usize, words }, rdx))
}

/// Offer to share a page with `peer` at `vaddr`; returns the pair's state.
pub fn shm_offer(peer: u64, vaddr: u64) -> Result<abi::ShmState, Error> {
    call(nr::SHM_OFFER, [peer, vaddr, 0, 0, 0, 0]).map(|v| abi::ShmState::from_u64(v).unwrap_or(abi::ShmState::Dead))
}

pub fn shm_status(peer: u64) -> Result<abi::ShmState, Error> {
    call(nr::SHM_STATUS, [peer, 0, 0, 0, 0, 0]).map(|v| abi::ShmState::from_u64(v).unwrap_or(abi::ShmState::Dead))
}

pub fn mutex_create() -> Result<u64, Error> {
    call(nr::MUTEX_CREATE, [0; 6])
}
pub fn mutex_lock(m: u64) -> Result<u64, Error> {
    call(nr::MUTEX_LOCK, [m, 0, 0, 0, 0, 0])
}
pub fn mutex_unlock(m: u64) -> Result<u64, Error> {
    call(nr::MUTEX_UNLOCK, [m, 0, 0, 0, 0, 0])
}
pub fn cv_create() -> Result<u64, Error> {
    call(nr::CV_CREATE, [0; 6])
}
/// Atomically release mutex `m` and wait on `cv`; holds `m` again on return.
pub fn cv_wait(cv: u64, m: u64) -> Result<u64, Error> {
    call(nr::CV_WAIT, [cv, m, 0, 0, 0, 0])
}
pub fn cv_signal(cv: u64) -> Result<u64, Error> {
    call(nr::CV_SIGNAL, [cv, 0, 0, 0, 0, 0])
}
pub fn cv_broadcast(cv: u64) -> Result<u64, Error> {
    call(nr::CV_BROADCAST, [cv, 0, 0, 0, 0, 0])
}

/// (TSC now, TSC ticks per millisecond).
pub fn clock() -> Result<(u64, u64), Error> {
    call2(nr::CLOCK, [0; 6])
}

/// Map `pages` zeroed pages at `vaddr` with `prot` (`abi::prot`), charged to the caller.
pub fn mem_map(vaddr: u64, pages: u64, prot: u64) -> Result<u64, Error> {
    call(nr::MEM_MAP, [vaddr, pages, prot, 0, 0, 0])
}

pub fn mem_unmap(vaddr: u64, pages: u64) -> Result<u64, Error> {
    call(nr::MEM_UNMAP, [vaddr, pages, 0, 0, 0, 0])
}

/// Fill `out` with process records; returns how many there are in all.
pub fn ps(out: &mut [abi::ProcInfo]) -> Result<usize, Error> {
    let mut raw = [[0u8; abi::ProcInfo::SIZE]; 64];
    let n = out.len().min(64);
    let total = call(nr::PS, [raw.as_mut_ptr() as u64, (n * abi::ProcInfo::SIZE) as u64, 0, 0, 0, 0])? as usize;
    for (o, r) in out.iter_mut().zip(raw.iter()).take(total.min(n)) {
        *o = abi::ProcInfo::from_bytes(r);
    }
    Ok(total)
}

/// Names of the programs in the boot image, NUL-separated, into `buf`; returns the length used.
pub fn programs(buf: &mut [u8]) -> Result<usize, Error> {
    call(nr::PROGRAMS, [buf.as_mut_ptr() as u64, buf.len() as u64, 0, 0, 0, 0]).map(|v| v as usize)
}

pub fn kill(pid: u64) -> Result<u64, Error> {
    call(nr::KILL, [pid, 0, 0, 0, 0, 0])
}

pub fn sysinfo() -> Result<abi::SysInfo, Error> {
    let mut raw = [0u8; abi::SysInfo::SIZE];
    call(nr::SYSINFO, [raw.as_mut_ptr() as u64, raw.len() as u64, 0, 0, 0, 0])?;
    Ok(abi::SysInfo::from_bytes(&raw))
}

/// Power the machine off (init only) with an exit status for the emulator.
pub fn poweroff(code: u64) -> Result<u64, Error> {
    call(nr::POWEROFF, [code, 0, 0, 0, 0, 0])
}

// ---- files in the boot image ----

/// Size of file `name` in the boot bundle.
pub fn file_size(name: &str) -> Result<u64, Error> {
    call(nr::FILE_SIZE, [name.as_ptr() as u64, name.len() as u64, 0, 0, 0, 0])
}

/// Read file `name` of the boot bundle from `offset` into `buf`; returns the bytes read.
pub fn file_read(name: &str, offset: u64, buf: &mut [u8]) -> Result<u64, Error> {
    call(nr::FILE_READ, [name.as_ptr() as u64, name.len() as u64, offset, buf.as_mut_ptr() as u64, buf.len() as u64, 0])
}

// ---- virtual machines (see docs/syscalls.md) ----

/// Create a VM pinned to the caller's CPU; returns its id.
pub fn vm_create() -> Result<u64, Error> {
    call(nr::VM_CREATE, [0; 6])
}

/// Map `pages` of the caller's memory at `va` into the VM at guest-physical
/// `gpa` (`abi::vm::MAP_WRITE`, `MAP_EXEC`): the pages are shared.
pub fn vm_map(vm: u64, gpa: u64, va: u64, pages: u64, rights: u64) -> Result<u64, Error> {
    call(nr::VM_MAP, [vm, gpa, va, pages, rights, 0])
}

/// Run the VM until an exit the kernel does not handle itself (or `deadline`, a TSC value; 0: none).
pub fn vm_run(vm: u64, flags: u64, deadline: u64, in_value: u64) -> Result<abi::vm::Exit, Error> {
    let mut raw = [0u8; abi::vm::Exit::SIZE];
    call(nr::VM_RUN, [vm, raw.as_mut_ptr() as u64, flags, deadline, in_value, 0])?;
    Ok(abi::vm::Exit::from_bytes(&raw))
}

pub fn vm_get_regs(vm: u64) -> Result<abi::vm::Regs, Error> {
    let mut raw = [0u8; abi::vm::Regs::SIZE];
    call(nr::VM_GET_REGS, [vm, raw.as_mut_ptr() as u64, raw.len() as u64, 0, 0, 0])?;
    Ok(abi::vm::Regs::from_bytes(&raw))
}

pub fn vm_set_regs(vm: u64, regs: &abi::vm::Regs) -> Result<u64, Error> {
    let raw = regs.to_bytes();
    call(nr::VM_SET_REGS, [vm, raw.as_ptr() as u64, raw.len() as u64, 0, 0, 0])
}

/// Queue event `vector` of `kind` (`abi::vm::EXTERNAL`, `NMI`, `EXCEPTION`)
/// for delivery at the next entry (`error_code`: `abi::vm::NO_ERROR_CODE` for none).
pub fn vm_inject(vm: u64, vector: u64, kind: u64, error_code: u64) -> Result<u64, Error> {
    call(nr::VM_INJECT, [vm, vector, kind, error_code, 0, 0])
}

/// Fill `out` with the VMs; returns how many there are.
pub fn vm_list(out: &mut [abi::vm::Info]) -> Result<usize, Error> {
    let mut raw = [[0u8; abi::vm::Info::SIZE]; 16];
    let n = out.len().min(16);
    let total = call(nr::VM_LIST, [raw.as_mut_ptr() as u64, (n * abi::vm::Info::SIZE) as u64, 0, 0, 0, 0])? as usize;
    for (o, r) in out.iter_mut().zip(raw.iter()).take(total.min(n)) {
        *o = abi::vm::Info::from_bytes(r);
    }
    Ok(total)
}

/// Name `port` for posted I/O (`abi::vm::POST_WRITES`, `POST_READ` with
/// the byte INs read meanwhile; mode 0 removes it).
pub fn vm_post(vm: u64, port: u16, mode: u64, value: u8) -> Result<u64, Error> {
    call(nr::VM_POST, [vm, port as u64, mode, value as u64, 0, 0])
}

pub fn vm_destroy(vm: u64) -> Result<u64, Error> {
    call(nr::VM_DESTROY, [vm, 0, 0, 0, 0, 0])
}
