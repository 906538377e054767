//! The history checker: [`check`] runs checks C1..C7 and returns a [`Report`].
//!
//! Tie rule: events with equal `time_ns` are concurrent, and a check only reports what a
//! strict order proves. Holding intervals are half-open `[acquired, ended)`, so an end and a
//! start at the same instant do not overlap; "a before b" needs `a < b`; an event at the
//! same instant as a heal counts as after the heal; a deadline is missed only if the
//! history shows the process still believing strictly after it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::history::{Event, FaultClass, Kind};
use crate::register::RegisterEntry;

mod elections;
mod fencing;
mod index;
mod locks;
mod recovery;

/// Identifies one of the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CheckId {
    /// Mutual exclusion: no two acquisitions of a lock are believed held at once.
    C1,
    /// Fenced writes: accepted tokens never go back, were granted to the writer, and no
    /// token shared by two acquisitions was accepted from both.
    C2,
    /// Tokens: fresh per acquisition and increasing in real-time order.
    C3,
    /// A release never frees a lock that someone else holds, nor one never acquired.
    C4,
    /// Recovery: after a heal, locks are acquired and leaders elected within the bound.
    C5,
    /// Lost signal: an overtaken holder is told within ttl + margin.
    C6,
    /// Elections: one leader per term, terms increasing, and fenced writes per group.
    C7,
}

impl CheckId {
    /// All checks, in order.
    pub const ALL: [CheckId; 7] = [
        CheckId::C1,
        CheckId::C2,
        CheckId::C3,
        CheckId::C4,
        CheckId::C5,
        CheckId::C6,
        CheckId::C7,
    ];

    /// A short human name.
    pub fn name(self) -> &'static str {
        match self {
            CheckId::C1 => "mutual exclusion",
            CheckId::C2 => "fenced writes",
            CheckId::C3 => "fresh increasing tokens",
            CheckId::C4 => "release frees only own lock",
            CheckId::C5 => "recovery after heal",
            CheckId::C6 => "lost signal",
            CheckId::C7 => "elections",
        }
    }
}

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}", self, self.name())
    }
}

/// What a run expects: which checks may be violated (with the reason) and the time bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expectations {
    /// Checks whose violations are tolerated in this run, each with the documented reason.
    pub tolerated: BTreeMap<CheckId, String>,
    /// C5: longest allowed time from a heal to the next acquisition / election.
    pub recovery_bound: Duration,
    /// C6: lock time-to-live, the time the server may still honour a silent holder.
    pub ttl: Duration,
    /// C6: allowance on top of `ttl` for the lost signal to be delivered.
    pub lost_margin: Duration,
}

impl Expectations {
    /// Expectations with these bounds and no tolerated check.
    pub fn new(recovery_bound: Duration, ttl: Duration, lost_margin: Duration) -> Self {
        Expectations {
            tolerated: BTreeMap::new(),
            recovery_bound,
            ttl,
            lost_margin,
        }
    }

    /// Tolerates violations of `check`, for the given reason.
    pub fn tolerate(mut self, check: CheckId, reason: impl Into<String>) -> Self {
        self.tolerated.insert(check, reason.into());
        self
    }
}

/// One violation found by a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The check that found it.
    pub check: CheckId,
    /// What went wrong, for a person.
    pub message: String,
    /// Indices into the history of the events involved.
    pub events: Vec<usize>,
    /// Indices into the register log of the entries involved.
    pub register: Vec<usize>,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Which check.
    pub check: CheckId,
    /// Number of violations.
    pub count: usize,
    /// The reason violations are tolerated, if they are.
    pub tolerated: Option<String>,
    /// The violations, in the order found.
    pub violations: Vec<Violation>,
}

impl CheckResult {
    /// `true` if this check has no violation or they are tolerated.
    pub fn passed(&self) -> bool {
        self.count == 0 || self.tolerated.is_some()
    }
}

/// Counts and recovery times over a history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Number of events per kind.
    pub ops: BTreeMap<Kind, usize>,
    /// Number of faults started per class.
    pub faults: BTreeMap<FaultClass, usize>,
    /// Number of recovery times measured (C5).
    pub recoveries: usize,
    /// Longest measured recovery, in nanoseconds.
    pub max_recovery_ns: Option<u64>,
    /// Mean measured recovery, in nanoseconds.
    pub mean_recovery_ns: Option<u64>,
    /// Completions that had no invoke to pair with.
    pub unmatched_completions: usize,
}

/// The result of [`check`]: one [`CheckResult`] per check, in order, plus [`Stats`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Results for C1..C7.
    pub checks: Vec<CheckResult>,
    /// Counts and recovery times.
    pub stats: Stats,
}

impl Report {
    /// `true` if no check has a violation that is not tolerated.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(CheckResult::passed)
    }

    /// The result of one check.
    pub fn result(&self, check: CheckId) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.check == check)
    }

    /// The number of violations found by one check.
    pub fn count(&self, check: CheckId) -> usize {
        self.result(check).map_or(0, |c| c.count)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            write!(f, "{}: {} violation(s)", c.check, c.count)?;
            match &c.tolerated {
                Some(reason) => write!(f, ", tolerated ({reason})")?,
                None => write!(f, ", not tolerated")?,
            }
            if let Some(v) = c.violations.first() {
                write!(f, "; first: {}", v.message)?;
            }
            writeln!(f)?;
        }
        let ms =
            |ns: Option<u64>| ns.map_or("-".to_owned(), |n| format!("{:.1}ms", n as f64 / 1e6));
        writeln!(
            f,
            "recovery: {} measured, max {}, mean {}",
            self.stats.recoveries,
            ms(self.stats.max_recovery_ns),
            ms(self.stats.mean_recovery_ns)
        )?;
        write!(f, "{}", if self.passed() { "PASSED" } else { "FAILED" })
    }
}

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Collects violations while the checks run.
#[derive(Debug, Default)]
pub(crate) struct Found {
    violations: Vec<Violation>,
}

impl Found {
    pub fn add(&mut self, check: CheckId, message: String, events: Vec<usize>) {
        self.add_with_register(check, message, events, Vec::new());
    }

    pub fn add_with_register(
        &mut self,
        check: CheckId,
        message: String,
        events: Vec<usize>,
        register: Vec<usize>,
    ) {
        self.violations.push(Violation {
            check,
            message,
            events,
            register,
        });
    }
}

/// Checks a history and the register log against C1..C7.
pub fn check(history: &[Event], register: &[RegisterEntry], expect: &Expectations) -> Report {
    let facts = index::Facts::new(history);
    let mut found = Found::default();
    locks::check_mutual_exclusion(&facts, &mut found);
    fencing::check_register(history, &facts, register, &mut found);
    locks::check_tokens(&facts, &mut found);
    locks::check_releases(history, &facts, &mut found);
    let recoveries = recovery::check_recovery(history, &facts, expect, &mut found);
    locks::check_lost_signal(&facts, expect, &mut found);
    elections::check_elections(&facts, &mut found);
    elections::check_single_leader(&facts, &mut found);

    let mut stats = Stats {
        unmatched_completions: facts.unmatched,
        recoveries: recoveries.len(),
        max_recovery_ns: recoveries.iter().copied().max(),
        mean_recovery_ns: (!recoveries.is_empty()).then(|| {
            let sum: u128 = recoveries.iter().map(|&r| u128::from(r)).sum();
            u64::try_from(sum / recoveries.len() as u128).unwrap_or(u64::MAX)
        }),
        ..Stats::default()
    };
    for e in history {
        *stats.ops.entry(e.kind).or_default() += 1;
    }
    for fault in &facts.faults {
        *stats.faults.entry(fault.class).or_default() += 1;
    }

    let checks = CheckId::ALL
        .iter()
        .map(|&id| {
            let violations: Vec<Violation> = found
                .violations
                .iter()
                .filter(|v| v.check == id)
                .cloned()
                .collect();
            CheckResult {
                check: id,
                count: violations.len(),
                tolerated: expect.tolerated.get(&id).cloned(),
                violations,
            }
        })
        .collect();
    Report { checks, stats }
}
