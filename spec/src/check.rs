//! Comparing what mc2's conform driver printed for a trace with what the
//! model expects, step by step: every answer (`rax`, `rdx`, the hash of
//! received bytes), who answered, and the settled `ps` rows of the trace's
//! processes (parent, alive or zombie, quota, usage), all exactly.

use crate::trace::{describe, Answer, Expect, PsRow, Step, Who, BLOCKED, IDLE, ZOMBIE};
use std::collections::BTreeMap;

/// One step as the driver reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub step: usize,
    /// Answers by who: Hello, or (rax, rdx, hash).
    pub answers: BTreeMap<Who, Option<(u64, u64, Option<u64>)>>,
    pub ps: Vec<PsRow>,
    /// The driver gave up on this step (unexpected answer, no settling).
    pub diverged: Option<String>,
}

/// Parse one driver output line (`@k ...`); None if it is not one.
pub fn parse_line(line: &str) -> Option<Observed> {
    // Workers' console writes may precede the line on the same line.
    let at = line.rfind('@')?;
    let line = line[at + 1..].trim_end_matches('\r');
    let (k, rest) = line.split_once(' ').unwrap_or((line, ""));
    let step = k.parse::<usize>().ok()?;
    if let Some(why) = rest.strip_prefix("DIVERGED ") {
        return Some(Observed { step, answers: BTreeMap::new(), ps: Vec::new(), diverged: Some(why.to_string()) });
    }
    let (ans, ps) = rest.split_once('|').unwrap_or((rest, ""));
    let mut answers = BTreeMap::new();
    for a in ans.split_whitespace() {
        let (w, v) = a.split_once('=')?;
        let who = Who::parse(w)?;
        if v == "h" {
            answers.insert(who, None);
            continue;
        }
        let mut it = v.split(',');
        let rax = u64::from_str_radix(it.next()?, 16).ok()?;
        let rdx = u64::from_str_radix(it.next()?, 16).ok()?;
        let hash = match it.next()? {
            "-" => None,
            h => Some(u64::from_str_radix(h, 16).ok()?),
        };
        answers.insert(who, Some((rax, rdx, hash)));
    }
    let mut rows = Vec::new();
    for r in ps.split_whitespace() {
        let f: Vec<u64> = r.split(',').map(|x| u64::from_str_radix(x, 16).ok()).collect::<Option<Vec<u64>>>()?;
        if f.len() != 5 {
            return None;
        }
        rows.push(PsRow { pid: f[0] as u32, parent: f[1] as u32, state: f[2] as u32, quota: f[3], usage: f[4] });
    }
    rows.sort_by_key(|r| r.pid);
    Some(Observed { step, answers, ps: rows, diverged: None })
}

/// The first difference between the model and the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    pub step: usize,
    pub what: String,
}

fn who_name(w: Who) -> String {
    match w {
        Who::Driver => "the driver".into(),
        Who::Worker(i) => format!("w{i}"),
    }
}

fn result_text(rax: u64) -> String {
    match abi::decode(rax) {
        Ok(v) => format!("Ok({v:#x})"),
        Err(e) => format!("Err({e:?})"),
    }
}

/// Compare one step.
pub fn compare_step(k: usize, step: &Step, e: &Expect, o: &Observed) -> Result<(), Divergence> {
    let div = |what: String| Err(Divergence { step: k, what: format!("step {k} ({}): {what}", describe(step)) });
    if let Some(why) = &o.diverged {
        return div(format!("the driver gave up: {why}"));
    }
    let want: BTreeMap<Who, &Answer> = e.answers.iter().map(|(w, a)| (*w, a)).collect();
    for w in o.answers.keys() {
        if !want.contains_key(w) {
            return div(format!("{} answered; the model says it stays blocked", who_name(*w)));
        }
    }
    for (w, a) in &want {
        let Some(got) = o.answers.get(w) else {
            return div(format!("no answer from {}", who_name(*w)));
        };
        match (a, got) {
            (Answer::Hello, None) => {}
            (Answer::Hello, Some(_)) | (Answer::Ret { .. }, None) => return div(format!("{} answered the wrong kind of message", who_name(*w))),
            (Answer::Ret { rax, rdx, hash }, Some((grax, grdx, ghash))) => {
                if let Some(r) = rax {
                    if r != grax {
                        return div(format!("{} got {}, the model says {}", who_name(*w), result_text(*grax), result_text(*r)));
                    }
                }
                if let Some(d) = rdx {
                    if d != grdx {
                        return div(format!("{} got second value {grdx:#x}, the model says {d:#x}", who_name(*w)));
                    }
                }
                if let Some(h) = hash {
                    if Some(*h) != *ghash {
                        return div(format!("{} received different bytes (hash {ghash:x?}, the model's {h:x})", who_name(*w)));
                    }
                }
            }
        }
    }
    let st = |s: u32| match s {
        ZOMBIE => "zombie",
        BLOCKED => "blocked",
        IDLE => "idle",
        0 => "running",
        1 => "ready",
        _ => "?",
    };
    // An idle worker may be in any live state; the rest must match exactly.
    let same = |g: &PsRow, r: &PsRow| {
        let state_ok = if r.state == IDLE { g.state != ZOMBIE } else { g.state == r.state };
        state_ok && (g.pid, g.parent, g.quota, g.usage) == (r.pid, r.parent, r.quota, r.usage)
    };
    for r in &e.ps {
        match o.ps.iter().find(|g| g.pid == r.pid) {
            None => return div(format!("pid {} is missing from ps", r.pid)),
            Some(g) if !same(g, r) => {
                return div(format!(
                    "pid {}: parent {} {} quota {} usage {}, the model says parent {} {} quota {} usage {}",
                    r.pid,
                    g.parent,
                    st(g.state),
                    g.quota,
                    g.usage,
                    r.parent,
                    st(r.state),
                    r.quota,
                    r.usage
                ))
            }
            _ => {}
        }
    }
    if let Some(g) = o.ps.iter().find(|g| !e.ps.iter().any(|r| r.pid == g.pid)) {
        return div(format!("pid {} is in ps; the model says it does not exist", g.pid));
    }
    Ok(())
}

/// Compare a whole trace run: the first divergence, if any.
pub fn compare(steps: &[Step], expects: &[Expect], observed: &[Observed]) -> Result<(), Divergence> {
    for (k, (st, e)) in steps.iter().zip(expects).enumerate() {
        let Some(o) = observed.iter().find(|o| o.step == k) else {
            let last = observed.iter().map(|o| o.step).max();
            return Err(Divergence { step: k, what: format!("step {k} ({}): no output for it (last step reported: {last:?})", describe(st)) });
        };
        compare_step(k, st, e, o)?;
    }
    Ok(())
}
