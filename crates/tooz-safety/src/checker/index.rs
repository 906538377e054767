//! Derived facts about a history: paired operations, acquisitions with their cut-offs,
//! elections and fault spans.

use std::collections::HashMap;

use crate::history::{Event, FaultClass, Kind, Op};

/// An instant in the history: its time and the index of the event that marks it.
pub(crate) type At = (u64, usize);

/// Instants per process, plus instants that apply to every client process.
#[derive(Debug, Default)]
pub(crate) struct Instants {
    per: HashMap<u32, Vec<At>>,
    all: Vec<At>,
}

impl Instants {
    fn add(&mut self, target: Option<u32>, at: At) {
        match target {
            Some(p) => self.per.entry(p).or_default().push(at),
            None => self.all.push(at),
        }
    }

    fn sort(&mut self) {
        for v in self.per.values_mut() {
            v.sort_unstable();
        }
        self.all.sort_unstable();
    }

    /// The earliest instant for `process` at or after `t`.
    pub(crate) fn first_from(&self, process: u32, t: u64) -> Option<At> {
        let own = self.per.get(&process).and_then(|v| first_from(v, t));
        let all = if process == 0 {
            None
        } else {
            first_from(&self.all, t)
        };
        earliest([own, all])
    }
}

fn first_from(sorted: &[At], t: u64) -> Option<At> {
    let i = sorted.partition_point(|&(time, _)| time < t);
    sorted.get(i).copied()
}

/// The earliest of some optional instants.
pub(crate) fn earliest<const N: usize>(instants: [Option<At>; N]) -> Option<At> {
    instants.into_iter().flatten().min()
}

/// An operation: an invoke paired with its completion by (process, op_id).
#[derive(Debug)]
pub(crate) struct OpRecord {
    pub process: u32,
    pub invoke: Option<usize>,
    pub completion: Option<usize>,
    /// Completion time; for an operation left open, the time its process was killed.
    pub end: Option<u64>,
}

/// A granted acquisition (an `Acquire` `Ok` with a token) and the events that end it.
#[derive(Debug)]
pub(crate) struct Acquisition {
    pub process: u32,
    pub lock: String,
    pub token: u64,
    /// Time of the invoke, when it is in the history.
    pub invoke_time: Option<u64>,
    pub ok: At,
    pub release: Option<At>,
    pub lost: Option<At>,
    pub suspended: Option<At>,
    pub killed: Option<At>,
    pub paused: Option<At>,
}

impl Acquisition {
    /// When the process stops believing it holds the lock (C1): release invoke, lost,
    /// suspension, kill or pause, whichever is first; `None` = until the end.
    pub fn belief_end(&self) -> Option<At> {
        earliest([
            self.release,
            self.lost,
            self.suspended,
            self.killed,
            self.paused,
        ])
    }

    /// Like [`Self::belief_end`] but ignoring suspension and pause (C4, C6).
    pub fn signal_end(&self) -> Option<At> {
        earliest([self.release, self.lost, self.killed])
    }
}

/// A leadership observation: `Elected` as `Ok` or `Info`.
#[derive(Debug)]
pub(crate) struct Election {
    pub process: u32,
    pub group: String,
    pub term: u64,
    pub at: At,
    /// The campaign's invoke time when the event completes one, else the event's own time.
    pub start: u64,
    /// Resignation, kill or crash of the leader, whichever is first.
    pub end: Option<At>,
    /// When the leader stops believing it leads (C1): `end`, or a suspension or pause of it.
    pub belief_end: Option<At>,
}

/// A fault from its start to its matching heal, if any.
#[derive(Debug)]
pub(crate) struct FaultSpan {
    pub class: FaultClass,
    pub target: Option<u32>,
    pub start: At,
    pub heal: Option<At>,
}

/// Everything the checks need, derived once from a history.
#[derive(Debug)]
pub(crate) struct Facts {
    /// Time of the last event.
    pub end: u64,
    pub ops: Vec<OpRecord>,
    pub acquisitions: Vec<Acquisition>,
    pub elections: Vec<Election>,
    pub faults: Vec<FaultSpan>,
    /// `Heal` events, in time order.
    pub heals: Vec<At>,
    /// Completions with no invoke to pair with.
    pub unmatched: usize,
}

impl Facts {
    pub fn new(history: &[Event]) -> Self {
        let mut order: Vec<usize> = (0..history.len()).collect();
        order.sort_by_key(|&i| (history[i].time_ns, i));
        let end = history.iter().map(|e| e.time_ns).max().unwrap_or(0);

        let mut kills = Instants::default();
        let mut pauses = Instants::default();
        let mut suspends = Instants::default();
        let mut releases: HashMap<(u32, &str, u64), Vec<At>> = HashMap::new();
        let mut losts: HashMap<(u32, &str, u64), Vec<At>> = HashMap::new();
        let mut resigns: HashMap<(u32, &str, u64), Vec<At>> = HashMap::new();
        let mut faults: Vec<FaultSpan> = Vec::new();
        let mut heals = Vec::new();
        let mut ops: Vec<OpRecord> = Vec::new();
        let mut open: HashMap<(u32, u64), usize> = HashMap::new();
        let mut unmatched = 0;

        for &i in &order {
            let e = &history[i];
            let at = (e.time_ns, i);
            match &e.op {
                Op::Release { lock, token, .. } => releases
                    .entry((e.process, lock.as_str(), *token))
                    .or_default()
                    .push(at),
                Op::Lost { lock, token } => losts
                    .entry((e.process, lock.as_str(), *token))
                    .or_default()
                    .push(at),
                Op::Resigned { group, term } => resigns
                    .entry((e.process, group.as_str(), *term))
                    .or_default()
                    .push(at),
                Op::Suspended => suspends.add(Some(e.process), at),
                Op::Crashed { target } => kills.add(Some(*target), at),
                Op::Fault { class, target, .. } => {
                    match class {
                        FaultClass::Kill => kills.add(*target, at),
                        FaultClass::Pause => pauses.add(*target, at),
                        _ => {}
                    }
                    faults.push(FaultSpan {
                        class: *class,
                        target: *target,
                        start: at,
                        heal: None,
                    });
                }
                Op::Heal { class, target } => {
                    heals.push(at);
                    if let Some(f) = faults
                        .iter_mut()
                        .find(|f| f.heal.is_none() && f.class == *class && f.target == *target)
                    {
                        f.heal = Some(at);
                    }
                }
                _ => {}
            }
            match e.kind {
                Kind::Invoke => {
                    open.insert((e.process, e.op_id), ops.len());
                    ops.push(OpRecord {
                        process: e.process,
                        invoke: Some(i),
                        completion: None,
                        end: None,
                    });
                }
                Kind::Ok | Kind::Fail | Kind::Unknown => match open.remove(&(e.process, e.op_id)) {
                    Some(r) => {
                        ops[r].completion = Some(i);
                        ops[r].end = Some(e.time_ns);
                    }
                    None => {
                        unmatched += 1;
                        ops.push(OpRecord {
                            process: e.process,
                            invoke: None,
                            completion: Some(i),
                            end: Some(e.time_ns),
                        });
                    }
                },
                Kind::Info => {}
            }
        }
        kills.sort();
        pauses.sort();
        suspends.sort();

        // An operation still open when its process is killed ends (as unknown) at the kill.
        for r in ops.iter_mut().filter(|r| r.end.is_none()) {
            if let Some(inv) = r.invoke {
                r.end = kills
                    .first_from(r.process, history[inv].time_ns)
                    .map(|k| k.0);
            }
        }

        let first = |map: &HashMap<(u32, &str, u64), Vec<At>>, key, t| {
            map.get(&key).and_then(|v: &Vec<At>| first_from(v, t))
        };

        let mut acquisitions = Vec::new();
        let mut elections = Vec::new();
        for r in &ops {
            let Some(c) = r.completion else { continue };
            let e = &history[c];
            let invoke_time = r.invoke.map(|i| history[i].time_ns);
            let t = e.time_ns;
            match (&e.op, e.kind) {
                (
                    Op::Acquire {
                        lock,
                        token: Some(token),
                    },
                    Kind::Ok,
                ) => {
                    let key = (e.process, lock.as_str(), *token);
                    acquisitions.push(Acquisition {
                        process: e.process,
                        lock: lock.clone(),
                        token: *token,
                        invoke_time,
                        ok: (t, c),
                        release: first(&releases, key, t),
                        lost: first(&losts, key, t),
                        suspended: suspends.first_from(e.process, t),
                        killed: kills.first_from(e.process, t),
                        paused: pauses.first_from(e.process, t),
                    });
                }
                (Op::Elected { .. }, Kind::Ok) => {
                    elections.push((c, invoke_time.unwrap_or(t)));
                }
                _ => {}
            }
        }
        for &i in &order {
            let e = &history[i];
            if e.kind == Kind::Info && matches!(e.op, Op::Elected { .. }) {
                elections.push((i, e.time_ns));
            }
        }
        let elections = elections
            .into_iter()
            .filter_map(|(i, start)| {
                let e = &history[i];
                let Op::Elected { group, term } = &e.op else {
                    return None;
                };
                let t = e.time_ns;
                let key = (e.process, group.as_str(), *term);
                let end = earliest([first(&resigns, key, t), kills.first_from(e.process, t)]);
                Some(Election {
                    process: e.process,
                    group: group.clone(),
                    term: *term,
                    at: (t, i),
                    start,
                    end,
                    belief_end: earliest([
                        end,
                        suspends.first_from(e.process, t),
                        pauses.first_from(e.process, t),
                    ]),
                })
            })
            .collect();

        Facts {
            end,
            ops,
            acquisitions,
            elections,
            faults,
            heals,
            unmatched,
        }
    }

    /// The pause of `process` in effect at `t` (started at or before `t`, not healed by
    /// then): `Some(Some(heal))`, `Some(None)` if never healed, `None` if not paused.
    pub fn pause_at(&self, process: u32, t: u64) -> Option<Option<At>> {
        self.faults
            .iter()
            .filter(|f| f.class == FaultClass::Pause)
            .filter(|f| f.target.is_none_or(|p| p == process) && process != 0)
            .filter(|f| f.start.0 <= t && f.heal.is_none_or(|h| h.0 > t))
            .map(|f| f.heal)
            .max_by_key(|h| h.map_or(u64::MAX, |h| h.0))
    }
}
