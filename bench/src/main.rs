//! Host-side benchmarks of mc2's layer crates.
//!
//! `cargo run --release -p bench -- locks --out FILE.json [--max-threads N] [--rounds R] [--reps K]`
//! `cargo run --release -p bench -- mm --out FILE.json [--reps K]`
//!
//! Everything is timed with the TSC in one process, so that ratios between
//! candidates measured in the same run are meaningful even on a noisy VM.

mod affinity;
mod json;
mod locks;
mod mm;
mod tsc;

use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!(
        "usage: bench locks [--out FILE.json] [--max-threads N] [--rounds R] [--reps K]\n\
         \n\
         locks   uncontended cycles per acquire+release (median of K interleaved\n\
                 repetitions of 10,000 ops) against a lone `lock xadd`, spin's\n\
                 TicketMutex and parking_lot's RawMutex; then 1..=N pinned threads\n\
                 hammering one lock, R rounds of 10,000 ops each."
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("locks") => {
            let mut opts = locks::Options::default();
            while let Some(a) = args.next() {
                let mut val = |name: &str| -> Option<String> {
                    let v = args.next();
                    if v.is_none() {
                        eprintln!("bench: {name} needs a value");
                    }
                    v
                };
                let parsed = match a.as_str() {
                    "--out" => val("--out").map(|v| opts.out = Some(v.into())),
                    "--max-threads" => val("--max-threads").and_then(|v| v.parse().ok()).map(|n| opts.max_threads = Some(n)),
                    "--rounds" => val("--rounds").and_then(|v| v.parse().ok()).map(|n| opts.rounds = n),
                    "--reps" => val("--reps").and_then(|v| v.parse().ok()).map(|n| opts.reps = n),
                    "-h" | "--help" => return usage(),
                    _ => None,
                };
                if parsed.is_none() {
                    eprintln!("bench: bad argument {a:?}");
                    return usage();
                }
            }
            match locks::run(&opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("bench: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("mm") => {
            let mut opts = mm::Options::default();
            while let Some(a) = args.next() {
                match (a.as_str(), args.next()) {
                    ("--out", Some(v)) => opts.out = Some(v.into()),
                    ("--reps", Some(v)) if v.parse::<usize>().is_ok() => opts.reps = v.parse().unwrap_or(201),
                    _ => {
                        eprintln!("bench: bad argument {a:?}");
                        return usage();
                    }
                }
            }
            match mm::run(&opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("bench: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => usage(),
    }
}
