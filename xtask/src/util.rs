//! Small helpers: paths, running commands with a timeout, reporting.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub type Result<T> = std::result::Result<T, String>;

/// The repository root (the workspace holding this crate).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// `target/` of the workspace.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

/// The cargo that runs us.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    // Our caller's flags must not leak into builds that set their own.
    c.env_remove("RUSTFLAGS").env_remove("CARGO_ENCODED_RUSTFLAGS");
    c
}

/// What an emulator run produced.
pub struct Captured {
    pub status: Option<ExitStatus>,
    pub output: String,
    pub timed_out: bool,
    pub elapsed: Duration,
}

impl Captured {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
}

/// Input to type into a running program once its output contains `after`.
pub struct Typed<'a> {
    pub after: &'a str,
    pub input: &'a str,
}

/// Run `cmd`, collecting stdout+stderr, killing it after `timeout`. The
/// output file `also_read`, if given, is appended after the run (Bochs writes
/// its serial port to a file).
pub fn run_captured(cmd: &mut Command, timeout: Duration, typed: Option<Typed<'_>>, also_read: Option<&Path>) -> Result<Captured> {
    let start = Instant::now();
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if typed.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child: Child = cmd.spawn().map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
    let mut readers = Vec::new();
    for stream in [child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>), child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>)]
        .into_iter()
        .flatten()
    {
        let buf = buf.clone();
        readers.push(std::thread::spawn(move || {
            let mut stream = stream;
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stream.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        }));
    }
    let mut stdin = child.stdin.take();
    let mut typed = typed;
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(s);
        }
        if let (Some(t), Some(input)) = (&typed, stdin.as_mut()) {
            if String::from_utf8_lossy(&buf.lock().unwrap()).contains(t.after) {
                let _ = input.write_all(t.input.as_bytes());
                let _ = input.flush();
                typed = None;
            }
        }
        if start.elapsed() > timeout {
            timed_out = true;
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    for r in readers {
        let _ = r.join();
    }
    let mut output = String::from_utf8_lossy(&buf.lock().unwrap()).into_owned();
    if let Some(p) = also_read {
        if let Ok(bytes) = std::fs::read(p) {
            output.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    Ok(Captured { status, output, timed_out, elapsed: start.elapsed() })
}

/// Number of host CPUs.
pub fn host_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
