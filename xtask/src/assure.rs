//! The assurance checks (docs/assurance.md): conformance of mc2 with the
//! executable spec, fuzzing with hostile processes, resource exhaustion.
//!
//! - `cargo xtask test` runs [`tests`]: a fixed-seed batch of conformance
//!   traces, the conformance harness's own teeth (a deliberately wrong spec
//!   must be caught and shrunk), a regression trace, a fuzzing run of at
//!   least 100,000 calls and the exhaustion session.
//! - `cargo xtask check [--long]` runs the same with fresh seeds; `--long`
//!   asks for 10,000 traces and 1,000,000 fuzzed calls.

use crate::conform::{self, BatchOpts, Machine};
use crate::util::Result;
use spec::model::Mutant;
use std::path::Path;
use std::time::{Duration, Instant};

/// How much to run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub seeds: std::ops::Range<u64>,
    pub steps: usize,
    pub teeth: bool,
    pub time_limit: Option<Duration>,
}

impl Plan {
    /// The fixed batch of `cargo xtask test`.
    pub fn test() -> Plan {
        Plan { seeds: 1..121, steps: 40, teeth: true, time_limit: None }
    }
}

/// One check's name and verdict.
pub type Verdict = (String, Result<()>);

/// The checks of `cargo xtask test`, on kernel `elf` with `bundle`.
pub fn tests(elf: &Path, bundle: &Path) -> Vec<Verdict> {
    run_plan(elf, bundle, &Plan::test())
}

fn run_plan(elf: &Path, bundle: &Path, plan: &Plan) -> Vec<Verdict> {
    let mut out = Vec::new();
    let m = match Machine::new(elf, bundle) {
        Ok(m) => m,
        Err(e) => return vec![("conformance: set-up".into(), Err(e))],
    };
    out.push(conformance(&m, plan));
    if plan.teeth {
        out.push(teeth(&m, Mutant::ChanHighest, "chan-highest: chan_create(any) takes the highest free channel"));
    }
    out.push(orphan_regression(&m));
    out
}

/// The regression trace of the container leak the conformance checks
/// found (a reaped process whose child outlived it kept its container for
/// good): mc2 must agree with the documented, deferred semantics, and
/// disagree with the leaking ones.
fn orphan_regression(m: &Machine) -> Verdict {
    use spec::model::ReapSemantics;
    let name = "regression: a reaped process's container goes (quota back to its parent) once the child that outlived it is reaped";
    let run = |semantics| -> Result<conform::Outcome> {
        let mut s = conform::Session::start(m)?;
        let g = spec::gen::container_leak_trace(&m.cfg, &s.env, semantics)?;
        let o = s.run(&g);
        if let conform::Outcome::Agree { .. } = o {
            s.finish()?;
        }
        Ok(o)
    };
    let text = |r: &Result<conform::Outcome>| match r {
        Ok(conform::Outcome::Agree { steps }) => format!("agrees ({steps} steps)"),
        Ok(conform::Outcome::Diverge(d)) => format!("diverges: {}", d.what),
        Ok(conform::Outcome::Crash(c)) => format!("crashed: {c}"),
        Err(e) => format!("could not run: {e}"),
    };
    match (run(ReapSemantics::Deferred), run(ReapSemantics::Leak)) {
        (Ok(conform::Outcome::Agree { .. }), Ok(conform::Outcome::Diverge(_))) => (name.into(), Ok(())),
        (a, b) => (name.into(), Err(format!("documented (deferred) semantics: {}\nleaking semantics: {}", text(&a), text(&b)))),
    }
}

fn conformance(m: &Machine, plan: &Plan) -> Verdict {
    let start = Instant::now();
    let opts = BatchOpts {
        seeds: plan.seeds.clone(),
        steps: plan.steps,
        mutant: Mutant::None,
        max_failures: 3,
        shrink_budget: 60,
        time_limit: plan.time_limit,
        progress: plan.seeds.end - plan.seeds.start > 1000,
    };
    let name = |b: &conform::Batch| {
        format!(
            "conformance: {} traces (seeds {}..{}), {} steps, one call at a time on 4 CPUs, agree with the spec ({} boots, {:.0} s)",
            b.traces,
            plan.seeds.start,
            plan.seeds.start + b.traces as u64,
            b.steps,
            b.boots,
            start.elapsed().as_secs_f64()
        )
    };
    match conform::batch(m, &opts) {
        Err(e) => ("conformance".into(), Err(e)),
        Ok(b) => {
            let mut problems: Vec<String> = b.crashes.clone();
            problems.extend(b.failures.iter().map(|f| f.report()));
            if problems.is_empty() {
                (name(&b), Ok(()))
            } else {
                (name(&b), Err(problems.join("\n\n")))
            }
        }
    }
}

/// A wrong spec must be caught by running traces in mc2, and the failing
/// trace shrunk to a few steps.
fn teeth(m: &Machine, mutant: Mutant, what: &str) -> Verdict {
    let start = Instant::now();
    let opts = BatchOpts { seeds: 1..6, steps: 25, mutant, max_failures: 1, shrink_budget: 40, time_limit: None, progress: false };
    let name = format!("conformance has teeth: a wrong spec ({what}) is caught and shrunk");
    match conform::batch(m, &opts) {
        Err(e) => (name, Err(e)),
        Ok(b) if !b.crashes.is_empty() => (name, Err(b.crashes.join("\n"))),
        Ok(b) => match b.failures.first() {
            None => (name, Err(format!("{} traces ran and none diverged from the wrong spec", b.traces))),
            Some(f) if f.random_steps.1 > 3 => (name, Err(format!("caught, but only shrunk to {} random steps:\n{}", f.random_steps.1, f.report()))),
            Some(f) => (
                format!("{name} (seed {}: {} random steps shrunk to {}, {:.0} s)", f.seed, f.random_steps.0, f.random_steps.1, start.elapsed().as_secs_f64()),
                Ok(()),
            ),
        },
    }
}

/// `cargo xtask check [--long] [--traces N] [--seed S] [--steps N]`.
pub fn check(args: &[String]) -> Result<()> {
    let long = args.iter().any(|a| a == "--long");
    let num = |flag: &str| -> Result<Option<u64>> {
        match crate::flag_value(args, flag) {
            Some(v) => v.parse().map(Some).map_err(|_| format!("{flag} takes a number, not `{v}`")),
            None => Ok(None),
        }
    };
    let seed = match num("--seed")? {
        Some(s) => s,
        None => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(1) % 1_000_000_000 * 1000,
    };
    let traces = num("--traces")?.unwrap_or(if long { 10_000 } else { 300 });
    let steps = num("--steps")?.unwrap_or(40) as usize;
    let elf = crate::kbuild::build(crate::kbuild::LockKind::Ticket, true)?;
    let bundle = crate::user::build_bundle()?;
    if args.iter().any(|a| a == "--coverage") {
        // What the generated traces exercise (no emulator needed).
        let m = Machine::new(&elf, &bundle)?;
        let env = spec::model::Env { driver: 3, procs: vec![(1, 0), (2, 1), (3, 2), (4, 3)], driver_spare: 1300 };
        let mut cov = spec::gen::Coverage::default();
        for s in seed..seed + traces {
            cov.add(&spec::gen::generate(&m.cfg, &env, s, spec::gen::GenOpts { steps }, Mutant::None)?);
        }
        print!("{}", cov.table());
        return Ok(());
    }
    println!("xtask: conformance traces from seed {seed} ({traces} traces of {steps} random steps)");
    let verdicts = if let Some(name) = crate::flag_value(args, "--mutant") {
        // Check the harness against a deliberately wrong spec.
        let mutant = Mutant::parse(name).ok_or_else(|| format!("unknown spec mutant `{name}` (chan-highest, kstack-free)"))?;
        vec![teeth(&Machine::new(&elf, &bundle)?, mutant, name)]
    } else {
        let plan = Plan { seeds: seed..seed + traces, steps, teeth: false, time_limit: None };
        run_plan(&elf, &bundle, &plan)
    };
    let mut failed = 0;
    for (name, r) in &verdicts {
        match r {
            Ok(()) => println!("ok      {name}"),
            Err(e) => {
                failed += 1;
                println!("FAILED  {name}");
                for l in e.lines() {
                    println!("        | {l}");
                }
            }
        }
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} check(s) failed"))
    }
}
