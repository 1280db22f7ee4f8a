//! The virtual-machine system calls: the VMM process (a VM's owner) drives
//! its VM through these; the `virt` layer does the work. Also reading files
//! of the boot bundle (guest images).

use crate::process::{copy_in, copy_out, with_space};
use abi::vm::{Exit, Info, Regs};
use abi::Error;
use mm::kernel::{self as kmm, CONTAINERS};
use mm::{ContainerId, Frame};
use proc::table::PROCS;
use proc::Pid;

type Reply = Result<(u64, u64), Error>;

fn container(pid: Pid) -> Result<ContainerId, Error> {
    Ok(ContainerId::new(PROCS.get(pid as u64)?.container))
}

/// How `virt`'s run loop meets the rest of the kernel.
struct RunHost {
    pid: Pid,
}

impl virt::Host for RunHost {
    fn should_stop(&self) -> bool {
        PROCS.killed(self.pid)
    }
    fn take_interrupts(&self) {
        // Interrupt handlers run here as they would in the idle loop.
        #[cfg(mc2_bare)]
        #[allow(unsafe_code)]
        // SAFETY: ring 0 with the IDT installed.
        unsafe {
            machine::x86::take_pending_interrupts()
        };
    }
    fn idle(&self) {
        crate::bkl::leave();
        #[cfg(mc2_bare)]
        #[allow(unsafe_code)]
        // SAFETY: ring 0 with the IDT installed; the timer wakes us.
        unsafe {
            machine::x86::wait_for_interrupt()
        };
        crate::bkl::enter();
    }
    fn leave_kernel(&self) {
        crate::bkl::leave();
    }
    fn enter_kernel(&self) {
        crate::bkl::enter();
    }
    fn guest_timer(&self, deadline: u64) {
        crate::ticks::guest_timer(deadline);
    }
    fn host_timer(&self) {
        crate::ticks::host_timer();
    }
    fn should_yield(&self) -> bool {
        thread::SCHED.has_ready(machine::cpu::id())
    }
    fn yield_cpu(&self) {
        // As the yield system call does; a kill meanwhile is seen by the
        // run loop's next should_stop.
        thread::SCHED.yield_now(machine::cpu::id());
    }
}

pub fn vm_create(pid: Pid) -> Reply {
    #[cfg(mc2_bare)]
    {
        virt::create(pid, container(pid)?).map(|id| (id, 0))
    }
    #[cfg(not(mc2_bare))]
    {
        let _ = pid;
        Err(Error::NotSupported)
    }
}

/// Share the caller's pages at `va` into the VM at `gpa`.
pub fn vm_map(pid: Pid, vm: u64, gpa: u64, va: u64, pages: u64, rights: u64) -> Reply {
    if pages == 0 || pages > 1 << 20 || rights & !(abi::vm::MAP_WRITE | abi::vm::MAP_EXEC) != 0 {
        return Err(Error::Invalid);
    }
    if !gpa.is_multiple_of(4096) || !va.is_multiple_of(4096) {
        return Err(Error::Misaligned);
    }
    let c = container(pid)?;
    let frames = kmm::frames();
    for i in 0..pages {
        let (page, g) = (va + i * 4096, gpa + i * 4096);
        // The caller's own page, mapped for it (so it is charged to it).
        let f: Frame = with_space(pid, |s| s.translate(page))?.filter(|(_, r)| r.user).map(|(f, _)| f).ok_or(Error::BadAddress)?;
        if frames.owner(f) != Ok(mm::Owner::Container(c)) {
            return Err(Error::BadAddress);
        }
        frames.get_ref(f).map_err(|_| Error::Invalid)?;
        if let Err(e) = virt::map(vm, pid, g, f, rights & abi::vm::MAP_WRITE != 0, rights & abi::vm::MAP_EXEC != 0) {
            let _ = CONTAINERS.put_page(frames, c, f);
            return Err(e);
        }
    }
    Ok((0, 0))
}

pub fn vm_run(pid: Pid, vm: u64, buf: u64, flags: u64, deadline: u64, in_value: u64) -> Reply {
    // The exit record must be deliverable before anything runs.
    with_space(pid, |s| kmm::check_user_range(s, buf, Exit::SIZE, true))?.map_err(|_| Error::BadAddress)?;
    if flags & !abi::vm::RUN_FLAGS != 0 {
        return Err(Error::Invalid);
    }
    #[cfg(mc2_bare)]
    {
        let e = virt::run(vm, pid, flags, deadline, in_value, &RunHost { pid })?;
        copy_out(pid, buf, &e.to_bytes())?;
        Ok((0, 0))
    }
    #[cfg(not(mc2_bare))]
    {
        let _ = (vm, deadline, in_value, RunHost { pid });
        Err(Error::NotSupported)
    }
}

pub fn vm_get_regs(pid: Pid, vm: u64, buf: u64, len: u64) -> Reply {
    if len < Regs::SIZE as u64 {
        return Err(Error::Invalid);
    }
    let r = virt::get_regs(vm, pid)?;
    copy_out(pid, buf, &r.to_bytes())?;
    Ok((0, 0))
}

pub fn vm_set_regs(pid: Pid, vm: u64, buf: u64, len: u64) -> Reply {
    if len < Regs::SIZE as u64 {
        return Err(Error::Invalid);
    }
    let mut raw = [0u8; Regs::SIZE];
    copy_in(pid, buf, &mut raw)?;
    virt::set_regs(vm, pid, &Regs::from_bytes(&raw))?;
    Ok((0, 0))
}

pub fn vm_inject(pid: Pid, vm: u64, vector: u64, kind: u64, error_code: u64) -> Reply {
    if vector > 255 || kind > 7 {
        return Err(Error::Invalid);
    }
    let error_code = if error_code == abi::vm::NO_ERROR_CODE { None } else { Some(u32::try_from(error_code).map_err(|_| Error::Invalid)?) };
    virt::inject(vm, pid, virt::Event { vector: vector as u8, kind: kind as u8, error_code })?;
    Ok((0, 0))
}

pub fn vm_post(pid: Pid, vm: u64, port: u64, mode: u64, value: u64) -> Reply {
    virt::posted::check(port, mode, value).map_err(|_| Error::Invalid)?;
    virt::post(vm, pid, port, mode, value)?;
    Ok((0, 0))
}

pub fn vm_list(pid: Pid, buf: u64, len: u64) -> Reply {
    let room = usize::try_from(len).unwrap_or(usize::MAX) / Info::SIZE;
    let mut i = 0;
    let mut err = None;
    let total = virt::list(|info| {
        if i < room && err.is_none() {
            if let Err(e) = copy_out(pid, buf + (i * Info::SIZE) as u64, &info.to_bytes()) {
                err = Some(e);
            }
        }
        i += 1;
    });
    match err {
        Some(e) => Err(e),
        None => Ok((total as u64, 0)),
    }
}

/// Drop the guest's reference on each of its pages.
fn unshare(c: ContainerId) -> impl FnMut(Frame) {
    move |f| {
        if let Err(e) = CONTAINERS.put_page(kmm::frames(), c, f) {
            log::error!("guest page {:#x} not released: {e}", f.addr());
        }
    }
}

pub fn vm_destroy(pid: Pid, vm: u64) -> Reply {
    virt::destroy(vm, pid, &mut unshare(container(pid)?))?;
    Ok((0, 0))
}

/// The process is exiting: destroy its VMs (before its address space goes).
pub fn process_exit(pid: Pid) {
    if let Ok(c) = container(pid) {
        virt::destroy_owned_by(pid, &mut unshare(c));
    }
}

fn file_name(pid: Pid, ptr: u64, len: u64, buf: &mut [u8; 64]) -> Result<&str, Error> {
    let len = usize::try_from(len).ok().filter(|&l| l <= buf.len()).ok_or(Error::NoSuchProgram)?;
    copy_in(pid, ptr, &mut buf[..len])?;
    core::str::from_utf8(&buf[..len]).map_err(|_| Error::NoSuchProgram)
}

pub fn file_size(pid: Pid, ptr: u64, len: u64) -> Reply {
    let mut b = [0u8; 64];
    let name = file_name(pid, ptr, len, &mut b)?;
    Ok((crate::programs::find(name).ok_or(Error::NoSuchProgram)?.len() as u64, 0))
}

pub fn file_read(pid: Pid, ptr: u64, len: u64, offset: u64, buf: u64, buf_len: u64) -> Reply {
    let mut b = [0u8; 64];
    let name = file_name(pid, ptr, len, &mut b)?;
    let data = crate::programs::find(name).ok_or(Error::NoSuchProgram)?;
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(data.len());
    let n = usize::try_from(buf_len).unwrap_or(usize::MAX).min(data.len() - start);
    let mut done = 0;
    while done < n {
        let chunk = (n - done).min(1 << 16);
        copy_out(pid, buf + done as u64, &data[start + done..start + done + chunk])?;
        done += chunk;
    }
    Ok((n as u64, 0))
}
