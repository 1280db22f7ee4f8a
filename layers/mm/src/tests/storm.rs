//! Std threads as CPUs (each takes its own `machine::cpu::id()`, hence its
//! own frame cache) storm one allocation table with allocations, frees,
//! runs, share references, cross-CPU frees and misuse. Every frame is
//! claimed in a shadow array on allocation, so a frame handed to two holders
//! at once is caught; at the end owners, free count and lists must be
//! exactly as at the start.

use super::table;
use crate::container::ContainerId;
use crate::frames::{Frame, Owner};
use crate::MmError;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::vec::Vec;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const THREADS: usize = 2;
const STEPS: usize = 8_000;

#[test]
fn alloc_free_storm() {
    // 2 regions, 3000 frames, so stripes, stealing and exhaustion all happen.
    let t = table(&[(0x10_0000, 1000 * 4096), (0x100_0000, 2000 * 4096)], &[(0x20_0000, 0x1000)]);
    let total = t.total_frames();
    let claimed: Vec<AtomicU8> = (0..t.len()).map(|_| AtomicU8::new(0)).collect();
    let claimed = &claimed;
    let claim = |f: Frame, who: u8| {
        assert_eq!(claimed[f.pfn() as usize].swap(who, Ordering::AcqRel), 0, "{f:?} handed out twice");
    };
    let unclaim = |f: Frame| claimed[f.pfn() as usize].store(0, Ordering::Release);
    let (to_free, freed_by_other) = mpsc::channel::<Frame>();
    std::thread::scope(|s| {
        for k in 0..THREADS {
            let to_free = to_free.clone();
            s.spawn(move || {
                let me = Owner::Container(ContainerId::new(k as u16 + 1));
                let other = Owner::Container(ContainerId::new(k as u16 + 2));
                let tag = k as u8 + 1;
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((k as u64 + 1) * 0x1234_5678_9abc));
                let (mut held, mut runs): (Vec<Frame>, Vec<(Frame, usize)>) = (Vec::new(), Vec::new());
                for _ in 0..STEPS {
                    match rng.below(20) {
                        0..=8 => {
                            if let Ok(f) = t.alloc(me) {
                                claim(f, tag);
                                held.push(f);
                            }
                        }
                        9..=14 if !held.is_empty() => {
                            let f = held.swap_remove(rng.below(held.len() as u64) as usize);
                            assert_eq!(t.owner(f), Ok(me));
                            unclaim(f);
                            t.free(f, me).unwrap();
                            // Misuse right after: never Ok.
                            let again = t.free(f, me);
                            assert!(matches!(again, Err(MmError::DoubleFree | MmError::WrongOwner)), "{again:?}");
                        }
                        15 => {
                            let n = 1 + rng.below(8) as usize;
                            let align = 1 << rng.below(4);
                            if let Ok(f) = t.alloc_contiguous(n, align, me) {
                                assert_eq!(f.pfn() % align as u64, 0);
                                for i in 0..n as u64 {
                                    claim(Frame::from_pfn(f.pfn() + i), tag);
                                }
                                runs.push((f, n));
                            }
                        }
                        16 if !runs.is_empty() => {
                            let (f, n) = runs.swap_remove(rng.below(runs.len() as u64) as usize);
                            for i in 0..n as u64 {
                                unclaim(Frame::from_pfn(f.pfn() + i));
                            }
                            t.free_contiguous(f, n, me).unwrap();
                        }
                        17 if !held.is_empty() => {
                            let f = held[rng.below(held.len() as u64) as usize];
                            assert_eq!(t.get_ref(f), Ok(2));
                            assert_eq!(t.free(f, me), Err(MmError::StillShared));
                            assert_eq!(t.put_ref(f, other), Err(MmError::WrongOwner));
                            assert_eq!(t.put_ref(f, me), Ok(false));
                        }
                        18 => {
                            // A kernel frame freed by whichever thread receives it.
                            if let Ok(f) = t.alloc(Owner::Kernel) {
                                claim(f, 200);
                                to_free.send(f).unwrap();
                            }
                        }
                        _ => {}
                    }
                }
                for f in held {
                    unclaim(f);
                    t.free(f, me).unwrap();
                }
                for (f, n) in runs {
                    for i in 0..n as u64 {
                        unclaim(Frame::from_pfn(f.pfn() + i));
                    }
                    t.free_contiguous(f, n, me).unwrap();
                }
            });
        }
        drop(to_free);
        // One more CPU frees the kernel frames the others send.
        s.spawn(move || {
            for f in freed_by_other {
                unclaim(f);
                t.free(f, Owner::Kernel).unwrap();
            }
        });
    });
    assert_eq!(t.free_frames(), total);
    t.check_integrity().unwrap();
    for pfn in 0..t.len() as u64 {
        let o = t.owner(Frame::from_pfn(pfn)).unwrap();
        assert!(matches!(o, Owner::Free | Owner::Reserved), "frame {pfn}: {o:?}");
    }
    // Nothing was lost: every frame can be allocated again, then no more.
    let all: Vec<_> = (0..total).map(|_| t.alloc(Owner::Kernel).unwrap()).collect();
    assert_eq!(t.alloc(Owner::Kernel), Err(MmError::OutOfMemory));
    for f in all {
        t.free(f, Owner::Kernel).unwrap();
    }
    t.drain_caches();
    t.check_integrity().unwrap();
    assert_eq!(t.free_frames(), total);
}
