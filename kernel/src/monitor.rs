//! A small command monitor on the serial console, so a booted mc2 can be
//! looked at interactively. (User processes and the real shell come with the
//! thread and process layers.)

use crate::{boot, cpus, intr};
use core::sync::atomic::Ordering;
use dev::console::CONSOLE;
use dev::{power, print, println};
use machine::MAX_CPUS;

const HELP: &str = "commands: help, cpus, mem, irqs, locks (benchmark), exit";

pub fn run(command: Option<&str>) -> ! {
    if let Some(cmd) = command {
        println!("mc2> {cmd}");
        execute(cmd);
        execute("exit");
    }
    // From here on CPU 0 idles with interrupts open: let the UART interrupt
    // carry the output.
    CONSOLE.set_interrupt_driven(true);
    println!("mc2 monitor. {HELP}");
    let mut line = arrayvec::ArrayVec::<u8, 128>::new();
    print!("mc2> ");
    loop {
        CONSOLE.handle_irq(); // also polls, for machines where COM1 is not routed
        while let Some(b) = CONSOLE.read_byte() {
            match b {
                b'\r' | b'\n' => {
                    println!();
                    execute(core::str::from_utf8(&line).unwrap_or(""));
                    line.clear();
                    print!("mc2> ");
                }
                0x08 | 0x7f => {
                    if line.pop().is_some() {
                        print!("\x08 \x08");
                    }
                }
                b if (0x20..0x7f).contains(&b) => {
                    if line.try_push(b).is_ok() {
                        print!("{}", b as char);
                    }
                }
                _ => {}
            }
        }
        // SAFETY: ring 0, IDT installed: sleep until the next interrupt.
        unsafe { machine::x86::wait_for_interrupt() };
    }
}

fn execute(cmd: &str) {
    match cmd.trim() {
        "" => {}
        "help" => println!("{HELP}"),
        "cpus" => {
            for c in (0..MAX_CPUS).filter(|&c| cpus::is_online(c)) {
                println!("cpu{c}: APIC id {}", machine::percpu::apic_id(c));
            }
        }
        "mem" => {
            if let Some(s) = boot::STATE.lock().as_ref() {
                for r in &s.info.memory {
                    println!("{:#014x}..{:#014x} {:?}", r.base, r.end(), r.kind);
                }
            }
        }
        "irqs" => {
            let st = &CONSOLE.stats;
            println!(
                "serial: {} irqs, {} bytes out by irq, {} by writer, {} in, {} lost; spurious {}",
                st.irqs.load(Ordering::Relaxed),
                st.tx_by_irq.load(Ordering::Relaxed),
                st.tx_by_writer.load(Ordering::Relaxed),
                st.rx.load(Ordering::Relaxed),
                st.rx_lost.load(Ordering::Relaxed),
                intr::COUNTERS.spurious.load(Ordering::Relaxed)
            );
        }
        "locks" => crate::bench::locks(),
        "exit" | "poweroff" => {
            println!("mc2: powering off");
            CONSOLE.flush();
            let pm = boot::STATE.lock().as_ref().and_then(|s| s.platform.as_ref()).and_then(|p| p.pm1a_control);
            power::exit(power::EXIT_SUCCESS, pm)
        }
        other => println!("unknown command \"{other}\"; {HELP}"),
    }
}
