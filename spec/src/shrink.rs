//! Delta debugging (Zeller's ddmin) of a failing trace's random steps.
//!
//! The oracle runs a candidate (setup + a subset of the random steps + a
//! fresh cleanup) and says whether it still fails (`Some(true)`), passes
//! (`Some(false)`) or cannot be run (`None`: the model rejects a step of
//! it, e.g. a worker that the removed steps would have started). The
//! result is 1-minimal among the candidates tried, within the budget.

/// Shrink `items` (which fail) with `fails`, calling it at most `budget` times.
pub fn ddmin<T: Clone>(items: Vec<T>, budget: usize, mut fails: impl FnMut(&[T]) -> Option<bool>) -> (Vec<T>, usize) {
    let mut cur = items;
    let mut calls = 0;
    let mut n = 2usize;
    while cur.len() >= 2 && calls < budget {
        let chunk = cur.len().div_ceil(n);
        let mut reduced = false;
        // Try each complement (remove one chunk), then each chunk alone.
        for i in 0..n {
            let (lo, hi) = (i * chunk, ((i + 1) * chunk).min(cur.len()));
            if lo >= hi {
                continue;
            }
            let cand: Vec<T> = cur[..lo].iter().chain(&cur[hi..]).cloned().collect();
            if calls >= budget {
                break;
            }
            calls += 1;
            if fails(&cand) == Some(true) {
                cur = cand;
                n = (n - 1).max(2);
                reduced = true;
                break;
            }
        }
        if reduced {
            continue;
        }
        if n >= cur.len() {
            break;
        }
        n = (2 * n).min(cur.len());
    }
    // A last pass removing single steps from the end, where the fault
    // usually lies after.
    let mut i = cur.len();
    while i > 0 && calls < budget {
        i -= 1;
        let mut cand = cur.clone();
        cand.remove(i);
        calls += 1;
        if fails(&cand) == Some(true) {
            cur = cand;
        }
    }
    (cur, calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_two_culprits() {
        let items: Vec<u32> = (0..40).collect();
        let (min, calls) = ddmin(items, 500, |c| Some(c.contains(&7) && c.contains(&31)));
        assert_eq!(min, vec![7, 31]);
        assert!(calls < 200, "{calls} calls");
    }

    #[test]
    fn unrunnable_candidates_are_skipped() {
        // Candidates without 3 cannot run; the failure needs 10.
        let (min, _) = ddmin((0..20).collect::<Vec<u32>>(), 500, |c| if c.contains(&3) { Some(c.contains(&10)) } else { None });
        assert_eq!(min, vec![3, 10]);
    }

    #[test]
    fn respects_the_budget() {
        let mut n = 0;
        let _ = ddmin((0..100).collect::<Vec<u32>>(), 5, |_| {
            n += 1;
            Some(false)
        });
        assert!(n <= 5);
    }
}
