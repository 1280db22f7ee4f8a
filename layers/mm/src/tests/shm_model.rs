//! Stateright: every reachable state of the shared-memory protocol for three
//! processes.
//!
//! The state holds the real [`ShmTable`] driving a model memory (`spec::System`
//! as its [`crate::ShmHost`]: frames, containers, address spaces), next to
//! `spec::System` running the abstract protocol. Actions: each live process
//! offers to each process (itself and exited ones included) at one of two
//! user addresses (page tables for them built beforehand) or a kernel one, revokes a link, or exits (revoke all, then
//! its space is destroyed). Quotas are tight, so offers also fail for quota.
//! Properties are checked in every state; the "status checks" are the
//! properties reading `status` from both sides.

use crate::container::ContainerId;
use crate::frames::Owner;
use crate::shm::{ShmStatus, ShmTable};
use crate::spec;
use stateright::{Checker, HasDiscoveries, Model, Property};
use std::vec::Vec;

const N: usize = 3;
const VAS: [u64; 3] = [0x1000, 0x2000, 0xffff_8000_0000_0000];
/// Per process: root table + 3 tables + 1, 2, 3 pages.
const QUOTA: [u64; N] = [5, 6, 7];
/// Stop exploring past this many states (the correct protocol has ~4000;
/// a mutant that leaks pages has many more).
const STATE_CAP: usize = 200_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct State {
    table: ShmTable<N>,
    /// The memory the real table acts on.
    host: spec::System,
    /// The abstract protocol, on its own memory.
    model: spec::System,
    exited: [bool; N],
    /// Every step so far gave the same results, memory and statuses in both.
    agree: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Action {
    Offer(usize, usize, usize),
    Revoke(usize, usize),
    Exit(usize),
}

struct ShmModel {
    init: State,
}

fn container(i: usize) -> ContainerId {
    ContainerId::new(i as u16 + 1)
}

impl ShmModel {
    fn new() -> ShmModel {
        let frames = spec::Frames::new(&[(0x10_0000, 24 * 4096)], &[], 64).unwrap();
        let mut m = spec::System::new(frames, N);
        m.containers.root(24).unwrap();
        for (i, q) in QUOTA.into_iter().enumerate() {
            assert_eq!(m.containers.split(ContainerId::ROOT, q), Ok(container(i)));
            m.new_space(i, container(i)).unwrap();
            // Build the page tables for VAS now (they stay): which frames
            // they land on would otherwise multiply the states by history.
            m.map(i, 0x3000, crate::Frame::from_pfn(0), crate::Rights::USER_RW).unwrap();
            m.unmap(i, 0x3000).unwrap();
        }
        let init = State { table: ShmTable::new(), host: m.clone(), model: m, exited: [false; N], agree: true };
        ShmModel { init }
    }
}

/// Memory (everything but the links) and every status agree.
fn same(s: &State) -> bool {
    let (h, m) = (&s.host, &s.model);
    h.frames == m.frames
        && h.containers == m.containers
        && h.spaces == m.spaces
        && (0..N).all(|i| (0..N).all(|j| s.table.status(i, j) == m.shm.status(i, j)))
}

impl Model for ShmModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        std::vec![self.init.clone()]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        for i in (0..N).filter(|&i| !s.exited[i]) {
            for j in 0..N {
                for v in 0..VAS.len() {
                    actions.push(Action::Offer(i, j, v));
                }
                actions.push(Action::Revoke(i, j));
            }
            actions.push(Action::Exit(i));
        }
    }

    fn next_state(&self, s: &State, a: Action) -> Option<State> {
        let mut n = s.clone();
        let agree = match a {
            Action::Offer(i, j, v) => n.table.offer(&mut n.host, i, j, VAS[v]) == n.model.offer(i, j, VAS[v]),
            Action::Revoke(i, j) => n.table.revoke(&mut n.host, i, j) == n.model.revoke(i, j),
            Action::Exit(i) => {
                let r = n.table.revoke_all(&mut n.host, i) == n.model.revoke_all(i);
                n.exited[i] = true;
                r && n.host.destroy_space(i) == n.model.destroy_space(i)
            }
        };
        n.agree = n.agree && agree && same(&n);
        Some(n)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        std::vec![
            Property::<Self>::always("the table agrees with the model", |_, s| s.agree),
            Property::<Self>::always("both parties see the same link", |_, s| {
                (0..N).all(|i| {
                    (0..N).filter(|&j| j != i).all(|j| {
                        matches!(
                            (s.table.status(i, j), s.table.status(j, i)),
                            (Ok(ShmStatus::Dead), Ok(ShmStatus::Dead))
                                | (Ok(ShmStatus::Offered { .. }), Ok(ShmStatus::Incoming))
                                | (Ok(ShmStatus::Incoming), Ok(ShmStatus::Offered { .. }))
                                | (Ok(ShmStatus::Ready { .. }), Ok(ShmStatus::Ready { .. }))
                        )
                    })
                })
            }),
            Property::<Self>::always("a link's page is mapped where the status says, shared per mapping", |_, s| {
                (0..N).all(|i| {
                    (0..N).filter(|&j| j != i).all(|j| {
                        let frame = s.table.frame(i, j).unwrap();
                        let refs = frame.map(|f| s.host.frames.state(f).map(|(_, r)| r));
                        let payer_ok = frame.is_none_or(|f| {
                            let o = s.host.frames.owner(f);
                            o == Ok(Owner::Container(container(i))) || o == Ok(Owner::Container(container(j)))
                        });
                        payer_ok
                            && match s.table.status(i, j).unwrap() {
                                ShmStatus::Dead => frame.is_none(),
                                ShmStatus::Incoming => refs == Some(Ok(1)),
                                ShmStatus::Offered { va } => {
                                    refs == Some(Ok(1)) && spec_translate(s, i, va) == frame
                                }
                                ShmStatus::Ready { va } => {
                                    refs == Some(Ok(2)) && spec_translate(s, i, va) == frame
                                }
                            }
                    })
                })
            }),
            Property::<Self>::always("quota never exceeded, pages conserved", |_, s| s.host.check().is_ok()),
            Property::<Self>::always("nothing leaks once both parties have exited", |_, s| {
                let pairs_dead = (0..N).all(|i| {
                    (0..N).filter(|&j| j != i && s.exited[i] && s.exited[j]).all(|j| {
                        s.table.status(i, j) == Ok(ShmStatus::Dead)
                    })
                });
                let exited_own_nothing = (0..N)
                    .filter(|&i| s.exited[i])
                    .all(|i| s.host.containers.clone().info(container(i)).map(|c| c.own) == Ok(0));
                let all_back = !s.exited.iter().all(|&e| e) || s.host.frames.free_count() == s.host.frames.total();
                pairs_dead && exited_own_nothing && all_back
            }),
            Property::<Self>::sometimes("some pair is Ready", |_, s| {
                (0..N).any(|i| (0..N).any(|j| matches!(s.table.status(i, j), Ok(ShmStatus::Ready { .. }))))
            }),
            Property::<Self>::sometimes("all three pairs are Ready", |_, s| {
                [(0, 1), (0, 2), (1, 2)].iter().all(|&(i, j)| matches!(s.table.status(i, j), Ok(ShmStatus::Ready { .. })))
            }),
            Property::<Self>::sometimes("a process has used its whole quota", |_, s| {
                (0..N).any(|i| s.host.containers.clone().remaining(container(i)) == Ok(0))
            }),
        ]
    }
}

fn spec_translate(s: &State, id: usize, va: u64) -> Option<crate::Frame> {
    s.host.translate(id, va).map(|(f, _)| f)
}

#[test]
fn catches_revoke_dropping_one_reference() {
    let mut model = ShmModel::new();
    model.init.table.mutant = super::Mutant::RevokeDropsOneRef;
    let wanted = ["nothing leaks once both parties have exited", "the table agrees with the model"];
    let checker = model
        .checker()
        .finish_when(HasDiscoveries::AllOf(wanted.into_iter().collect()))
        .target_state_count(STATE_CAP)
        .spawn_bfs()
        .join();
    assert!(checker.discovery("nothing leaks once both parties have exited").is_some());
    assert!(checker.discovery("the table agrees with the model").is_some());
}

#[test]
fn shm_protocol_model_check() {
    let checker = ShmModel::new().checker().target_state_count(STATE_CAP).spawn_bfs().join();
    checker.assert_properties();
    let n = checker.unique_state_count();
    std::println!("shm model: {n} states");
    assert!(n > 1000, "suspiciously few states: {n}");
    assert!(checker.state_count() < STATE_CAP, "state cap reached: the check was not exhaustive");
}
