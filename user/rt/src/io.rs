//! Console output and input.

use core::fmt::{self, Write};

struct Out {
    buf: [u8; 512],
    len: usize,
}

impl Out {
    fn flush(&mut self) {
        if self.len > 0 {
            let _ = crate::sys::console_write(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl Write for Out {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

/// Format and write to the console in as few system calls as fit.
pub fn print_fmt(args: fmt::Arguments<'_>) {
    let mut out = Out { buf: [0; 512], len: 0 };
    let _ = out.write_fmt(args);
    out.flush();
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::io::print_fmt(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! println {
    () => { $crate::io::print_fmt(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::io::print_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Read a line from the console with echo and backspace editing; returns
/// the line without its terminator.
///
/// Reads one byte per call, so that nothing after the line's end is taken
/// from the console (pasted or scripted input may hold several lines).
pub fn read_line(buf: &mut [u8]) -> &str {
    let mut len = 0;
    loop {
        let mut c = [0u8; 1];
        let n = match crate::sys::console_read(&mut c) {
            Ok(n) => n as usize,
            Err(_) => 0,
        };
        for &b in &c[..n] {
            match b {
                b'\r' | b'\n' => {
                    print!("\n");
                    return core::str::from_utf8(&buf[..len]).unwrap_or("");
                }
                0x08 | 0x7f if len > 0 => {
                    len -= 1;
                    print!("\x08 \x08");
                }
                0x20..=0x7e if len < buf.len() => {
                    buf[len] = b;
                    len += 1;
                    let _ = crate::sys::console_write(&[b]);
                }
                _ => {}
            }
        }
    }
}
