//! Checks C1..C7 on small hand-written histories. Times are in milliseconds.

use std::time::Duration;

use tooz_safety::{
    check, CheckId, Event, Expectations, FaultClass, Kind, Op, RegisterEntry, Report,
};

const MS: u64 = 1_000_000;

/// Builds a history (and a register log) with times given in milliseconds.
#[derive(Default)]
struct H {
    events: Vec<Event>,
    register: Vec<RegisterEntry>,
    next_op: u64,
}

impl H {
    fn push(&mut self, ms: u64, process: u32, op_id: u64, kind: Kind, op: Op) -> usize {
        self.events.push(Event {
            time_ns: ms * MS,
            process,
            op_id,
            kind,
            op,
        });
        self.events.len() - 1
    }

    /// An operation: invoke at `start`, then `kind` with `done` at `end`.
    fn op(&mut self, p: u32, start: u64, end: u64, kind: Kind, invoke: Op, done: Op) -> &mut Self {
        self.next_op += 1;
        let id = self.next_op;
        self.push(start, p, id, Kind::Invoke, invoke);
        self.push(end, p, id, kind, done);
        self
    }

    fn acquire(&mut self, p: u32, lock: &str, start: u64, ok: u64, token: u64) -> &mut Self {
        let (lock, tok) = (lock.to_owned(), Some(token));
        self.op(
            p,
            start,
            ok,
            Kind::Ok,
            Op::Acquire {
                lock: lock.clone(),
                token: None,
            },
            Op::Acquire { lock, token: tok },
        )
    }

    fn acquire_ends(&mut self, p: u32, lock: &str, start: u64, end: u64, kind: Kind) -> &mut Self {
        let acquire = Op::Acquire {
            lock: lock.to_owned(),
            token: None,
        };
        self.op(p, start, end, kind, acquire.clone(), acquire)
    }

    /// An acquire invoked at `start` that never completes.
    fn open_acquire(&mut self, p: u32, lock: &str, start: u64) -> &mut Self {
        self.next_op += 1;
        let acquire = Op::Acquire {
            lock: lock.to_owned(),
            token: None,
        };
        self.push(start, p, self.next_op, Kind::Invoke, acquire);
        self
    }

    fn release(
        &mut self,
        p: u32,
        lock: &str,
        token: u64,
        start: u64,
        ok: u64,
        freed: bool,
    ) -> &mut Self {
        let lock = lock.to_owned();
        self.op(
            p,
            start,
            ok,
            Kind::Ok,
            Op::Release {
                lock: lock.clone(),
                token,
                released: None,
            },
            Op::Release {
                lock,
                token,
                released: Some(freed),
            },
        )
    }

    fn info(&mut self, ms: u64, p: u32, op: Op) -> &mut Self {
        self.push(ms, p, 0, Kind::Info, op);
        self
    }

    fn lost(&mut self, ms: u64, p: u32, lock: &str, token: u64) -> &mut Self {
        self.info(
            ms,
            p,
            Op::Lost {
                lock: lock.to_owned(),
                token,
            },
        )
    }

    fn fault(&mut self, ms: u64, class: FaultClass, target: Option<u32>) -> &mut Self {
        self.info(
            ms,
            0,
            Op::Fault {
                class,
                target,
                detail: String::new(),
            },
        )
    }

    fn heal(&mut self, ms: u64, class: FaultClass, target: Option<u32>) -> &mut Self {
        self.info(ms, 0, Op::Heal { class, target })
    }

    fn elected(&mut self, ms: u64, p: u32, group: &str, term: u64) -> &mut Self {
        self.info(
            ms,
            p,
            Op::Elected {
                group: group.to_owned(),
                term,
            },
        )
    }

    fn resigned(&mut self, ms: u64, p: u32, group: &str, term: u64) -> &mut Self {
        self.info(
            ms,
            p,
            Op::Resigned {
                group: group.to_owned(),
                term,
            },
        )
    }

    /// A register write attempt, as the register logged it.
    fn write(&mut self, ms: u64, p: u32, resource: &str, token: u64, accepted: bool) -> &mut Self {
        self.register.push(RegisterEntry {
            time_ns: ms * MS,
            process: p,
            resource: resource.to_owned(),
            token,
            accepted,
        });
        self
    }

    /// An unrelated event that makes the history last until `ms`.
    fn until(&mut self, ms: u64) -> &mut Self {
        self.info(ms, 99, Op::Suspended)
    }

    fn check_with(&self, expect: &Expectations) -> Report {
        check(&self.events, &self.register, expect)
    }

    fn check(&self) -> Report {
        self.check_with(&expect())
    }
}

/// Recovery bound 5 s, ttl 2 s, lost margin 0.5 s.
fn expect() -> Expectations {
    Expectations::new(
        Duration::from_secs(5),
        Duration::from_secs(2),
        Duration::from_millis(500),
    )
}

/// Asserts the violation count of every check: `[C1, C2, ..., C7]`.
#[track_caller]
fn assert_counts(report: &Report, counts: [usize; 7]) {
    let got: Vec<usize> = CheckId::ALL.iter().map(|&c| report.count(c)).collect();
    assert_eq!(got, counts, "\n{report}\n{report:#?}");
    for c in &report.checks {
        assert!(c.violations.iter().all(|v| v.check == c.check));
        assert_eq!(c.count, c.violations.len());
    }
}

#[test]
fn clean_history_passes_every_check() {
    let mut h = H::default();
    h.acquire(1, "a", 0, 10, 1)
        .write(20, 1, "a", 1, true)
        .release(1, "a", 1, 30, 40, true)
        .acquire(2, "a", 25, 50, 2)
        .write(60, 2, "a", 2, true)
        .write(70, 1, "a", 1, false)
        .release(2, "a", 2, 80, 90, true)
        .elected(100, 1, "g", 1)
        .write(110, 1, "g", 1, true)
        .fault(200, FaultClass::Pause, Some(1))
        .resigned(300, 1, "g", 1)
        .elected(400, 2, "g", 2)
        .write(410, 2, "g", 2, true)
        .heal(500, FaultClass::Pause, Some(1))
        .acquire_ends(1, "a", 600, 700, Kind::Fail)
        .acquire(2, "a", 800, 900, 3)
        .release(2, "a", 3, 1000, 1010, true)
        .until(9000);
    let report = h.check();
    assert_counts(&report, [0; 7]);
    assert!(report.passed());
    assert_eq!(report.stats.recoveries, 1);
    assert_eq!(report.stats.max_recovery_ns, Some(400 * MS));
    assert_eq!(report.stats.faults.get(&FaultClass::Pause), Some(&1));
    assert_eq!(report.stats.ops.get(&Kind::Invoke), Some(&7));
    assert_eq!(report.stats.unmatched_completions, 0);
}

#[test]
fn c1_two_holders_overlap() {
    let mut h = H::default();
    h.acquire(1, "a", 0, 10, 1)
        .acquire(2, "a", 20, 50, 2)
        .release(1, "a", 1, 100, 110, false)
        .release(2, "a", 2, 120, 130, true);
    let report = h.check();
    assert_counts(&report, [1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(report.checks[0].violations[0].events, [1, 3]);
    assert!(!report.passed());
}

#[test]
fn c1_end_and_start_at_the_same_instant_do_not_overlap() {
    let mut h = H::default();
    h.acquire(1, "a", 0, 10, 1)
        .release(1, "a", 1, 50, 60, true)
        .acquire(2, "a", 20, 50, 2);
    assert_counts(&h.check(), [0; 7]);
}

/// p1's keepalive is paused, its lock expires and p2 takes it while p1 still believes it
/// holds: C1 is violated, and the lost signal arrives in time (C6 holds).
fn keepalive_pause() -> H {
    let mut h = H::default();
    h.acquire(1, "a", 0, 10, 1)
        .fault(20, FaultClass::PauseKeepalive, Some(1))
        .acquire(2, "a", 30, 2100, 2)
        .lost(2300, 1, "a", 1)
        .heal(2400, FaultClass::PauseKeepalive, Some(1))
        .release(2, "a", 2, 2500, 2510, true)
        .acquire(1, "a", 2450, 2600, 3)
        .release(1, "a", 3, 2700, 2710, true);
    h
}

#[test]
fn c1_keepalive_pause_violation_is_tolerated_when_expected() {
    let h = keepalive_pause();
    let strict = h.check();
    assert_counts(&strict, [1, 0, 0, 0, 0, 0, 0]);
    assert!(!strict.passed());

    let lenient = h.check_with(&expect().tolerate(
        CheckId::C1,
        "keepalive pause outlasts the ttl; fencing protects",
    ));
    assert_counts(&lenient, [1, 0, 0, 0, 0, 0, 0]);
    assert!(lenient.passed());
    assert!(lenient.checks[0].tolerated.is_some());
    assert_eq!(lenient.stats.recoveries, 1);
    // p2 holds across the heal (2400 ms): recovery counts from its release at 2500 ms.
    assert_eq!(lenient.stats.max_recovery_ns, Some(100 * MS));
}

/// A paused (stopped) process stops holding at the pause; its lost signal is due ttl +
/// margin after the heal, not after the overtake.
fn stopped_holder(lost_at: Option<u64>) -> H {
    let mut h = H::default();
    h.acquire(1, "a", 0, 10, 1)
        .fault(20, FaultClass::Pause, Some(1))
        .acquire(2, "a", 30, 2100, 2)
        .heal(3000, FaultClass::Pause, Some(1))
        .release(2, "a", 2, 3100, 3110, true)
        .until(9000);
    if let Some(t) = lost_at {
        h.lost(t, 1, "a", 1);
    }
    h
}

#[test]
fn c1_pause_ends_holding_and_c6_counts_from_the_heal() {
    // Lost 5.0 s: later than overtake + 2.5 s, but within heal + 2.5 s.
    assert_counts(&stopped_holder(Some(5000)).check(), [0; 7]);
    assert_counts(&stopped_holder(Some(5600)).check(), [0, 0, 0, 0, 0, 1, 0]);
    assert_counts(&stopped_holder(None).check(), [0, 0, 0, 0, 0, 1, 0]);
}

#[test]
fn c1_suspension_ends_holding() {
    let mut h = H::default();
    h.acquire(1, "a", 0, 10, 1)
        .info(30, 1, Op::Suspended)
        .acquire(2, "a", 20, 50, 2)
        .lost(60, 1, "a", 1)
        .until(9000);
    assert_counts(&h.check(), [0; 7]);
}

#[test]
fn c3_and_c2_duplicate_token_accepted_from_both() {
    let mut h = H::default();
    h.acquire(1, "a", 0, 10, 5)
        .write(15, 1, "a", 5, true)
        .release(1, "a", 5, 20, 25, true)
        .acquire(2, "a", 30, 40, 5)
        .write(45, 2, "a", 5, true)
        .release(2, "a", 5, 50, 55, true);
    let report = h.check();
    assert_counts(&report, [0, 1, 1, 0, 0, 0, 0]);
    let c2 = &report.checks[1].violations[0];
    assert_eq!(c2.register, [0, 1]);
    assert_eq!(c2.events, [1, 5]);
}

#[test]
fn c3_token_must_grow_after_an_earlier_acquisition() {
    let mut h = H::default();
    h.acquire(1, "a", 0, 10, 7)
        .release(1, "a", 7, 20, 25, true)
        .acquire(2, "a", 30, 40, 3)
        .release(2, "a", 3, 50, 55, true);
    assert_counts(&h.check(), [0, 0, 1, 0, 0, 0, 0]);

    // Concurrent acquisitions (p2 invoked before p1's Ok, or at the same instant) may get
    // any order of tokens.
    for invoke in [5, 10] {
        let mut h = H::default();
        h.acquire(1, "a", 0, 10, 7)
            .release(1, "a", 7, 20, 25, true)
            .acquire(2, "a", invoke, 40, 3)
            .release(2, "a", 3, 50, 55, true);
        assert_counts(&h.check(), [0; 7]);
    }
}

#[test]
fn c2_stale_write_accepted() {
    let mut h = H::default();
    h.acquire(1, "a", 0, 10, 3)
        .release(1, "a", 3, 20, 25, true)
        .acquire(2, "a", 30, 40, 5)
        .write(45, 2, "a", 5, true)
        .write(50, 1, "a", 3, true)
        .write(55, 2, "a", 5, true);
    let report = h.check();
    assert_counts(&report, [0, 1, 0, 0, 0, 0, 0]);
    assert_eq!(report.checks[1].violations[0].register, [0, 1]);
}

#[test]
fn c2_accepted_token_never_granted_to_the_writer() {
    let mut h = H::default();
    h.acquire(1, "a", 0, 10, 3)
        .write(15, 2, "a", 3, true)
        .write(16, 2, "a", 9, true)
        .write(17, 2, "a", 1, false);
    assert_counts(&h.check(), [0, 2, 0, 0, 0, 0, 0]);
}

#[test]
fn c4_release_of_a_lock_never_acquired() {
    let mut h = H::default();
    h.acquire(1, "a", 0, 10, 1)
        .release(2, "a", 4, 20, 30, true)
        .release(3, "a", 5, 20, 30, false);
    let report = h.check();
    assert_counts(&report, [0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(report.checks[3].violations[0].events, [2, 3]);
}

#[test]
fn c4_release_frees_a_lock_someone_else_holds() {
    for (freed, count) in [(true, 1), (false, 0)] {
        let mut h = H::default();
        h.acquire(1, "a", 0, 10, 1)
            .lost(500, 1, "a", 1)
            .acquire(2, "a", 20, 600, 2)
            .release(1, "a", 1, 700, 710, freed)
            .release(2, "a", 2, 800, 810, true);
        assert_counts(&h.check(), [0, 0, 0, count, 0, 0, 0]);
    }
}

/// p2 keeps trying to acquire after the heal at 200 ms; the first success is at `ok`.
fn recovery(ok: Option<u64>, end: u64) -> H {
    let mut h = H::default();
    h.acquire(1, "a", 0, 10, 1)
        .release(1, "a", 1, 50, 60, true)
        .fault(100, FaultClass::BlackHole, Some(2))
        .heal(200, FaultClass::BlackHole, Some(2));
    let mut t = 300;
    while t + 100 < ok.unwrap_or(end) {
        h.acquire_ends(2, "a", t, t + 100, Kind::Fail);
        t += 1000;
    }
    if let Some(ok) = ok {
        h.acquire(2, "a", ok - 50, ok, 2)
            .release(2, "a", 2, ok + 10, ok + 20, true);
    }
    h.until(end);
    h
}

#[test]
fn c5_acquire_needed_within_the_bound_after_a_heal() {
    let good = recovery(Some(1200), 9000).check();
    assert_counts(&good, [0; 7]);
    assert_eq!(good.stats.max_recovery_ns, Some(1000 * MS));
    assert_eq!(good.stats.mean_recovery_ns, Some(1000 * MS));

    assert_counts(&recovery(Some(5300), 9000).check(), [0, 0, 0, 0, 1, 0, 0]);
    assert_counts(&recovery(None, 9000).check(), [0, 0, 0, 0, 1, 0, 0]);
    // The history ends within the bound: nothing to judge.
    assert_counts(&recovery(None, 3000).check(), [0; 7]);
}

#[test]
fn c5_a_healthy_holder_across_the_heal_is_waited_for() {
    // p3 holds "a" from before the fault until 6 s, far past the bound (4 s) after the heal:
    // recovery counts from its release, so p2's acquire 300 ms later is in time.
    let long_hold = |release: Option<u64>| {
        let mut h = H::default();
        h.acquire(3, "a", 0, 10, 1)
            .fault(100, FaultClass::Pause, Some(2))
            .heal(200, FaultClass::Pause, Some(2))
            .open_acquire(2, "a", 300);
        if let Some(at) = release {
            h.release(3, "a", 1, at, at + 10, true);
            h.acquire(2, "a", 300, at + 300, 2);
        }
        h.until(12000);
        h
    };
    let report = long_hold(Some(6000)).check();
    assert_counts(&report, [0; 7]);
    assert_eq!(report.stats.max_recovery_ns, Some(300 * MS));
    // Held to the end: nothing to measure.
    assert_counts(&long_hold(None).check(), [0; 7]);
    // A holder that was paused itself, but kept its lock (no lost signal), is waited for
    // too; one that lost it during the fault is not.
    for (lost, count) in [(None, 0), (Some(150), 1)] {
        let mut h = H::default();
        h.acquire(3, "a", 0, 10, 1)
            .fault(100, FaultClass::Pause, Some(3))
            .heal(200, FaultClass::Pause, Some(3));
        if let Some(at) = lost {
            h.lost(at, 3, "a", 1);
        }
        h.release(3, "a", 1, 6000, 6010, lost.is_none())
            .acquire(2, "a", 300, 6300, 2)
            .until(12000);
        assert_counts(&h.check(), [0, 0, 0, 0, count, 0, 0]);
    }
}

#[test]
fn c5_a_takeover_before_the_old_holder_learns_of_it_counts() {
    // p3 holds "a" across the heal at 200 ms, is paused later, its lease expires, p2 takes the
    // lock at 3 s and keeps it to the end; p3 hears it lost at 5 s. Recovered: no violation.
    let mut h = H::default();
    h.acquire(3, "a", 0, 10, 1)
        .fault(100, FaultClass::Delay, Some(1))
        .heal(200, FaultClass::Delay, Some(1))
        .fault(1000, FaultClass::Pause, Some(3))
        .acquire(2, "a", 300, 3000, 2)
        .heal(4000, FaultClass::Pause, Some(3))
        .lost(5000, 3, "a", 1)
        .until(20000);
    assert_counts(&h.check(), [0; 7]);
}

#[test]
fn c5_a_window_cut_short_by_a_new_fault_is_not_judged() {
    // Healed at 200 ms, a new fault at 3 s (within the 5 s bound) before any success: the
    // first window is not judged; the second heal at 3.5 s is, and recovery at 5.3 s is in time.
    let mut h = recovery(Some(5300), 9000);
    h.fault(3000, FaultClass::BlackHole, Some(2))
        .heal(3500, FaultClass::BlackHole, Some(2));
    h.events.sort_by_key(|e| e.time_ns);
    let report = h.check();
    assert_counts(&report, [0; 7]);
    assert_eq!(report.stats.max_recovery_ns, Some(1800 * MS));
    // The same new fault after the bound has passed: the first window is a violation.
    let mut h = recovery(Some(5300), 9000);
    h.fault(5250, FaultClass::BlackHole, Some(2))
        .heal(5260, FaultClass::BlackHole, Some(2));
    h.events.sort_by_key(|e| e.time_ns);
    assert_counts(&h.check(), [0, 0, 0, 0, 1, 0, 0]);
}

#[test]
fn c5_heal_while_another_fault_is_active_is_not_measured() {
    let mut h = recovery(Some(5300), 9000);
    h.fault(50, FaultClass::Delay, Some(3))
        .heal(5250, FaultClass::Delay, Some(3));
    let report = h.check();
    assert_counts(&report, [0; 7]);
    assert_eq!(report.stats.max_recovery_ns, Some(50 * MS));
}

#[test]
fn c5_leader_needed_within_the_bound_after_a_heal() {
    let run = |next: Option<u64>| {
        let mut h = H::default();
        h.elected(10, 1, "g", 1)
            .fault(100, FaultClass::SessionKill, Some(1))
            .resigned(150, 1, "g", 1)
            .heal(200, FaultClass::SessionKill, Some(1))
            .until(9000);
        if let Some(t) = next {
            h.elected(t, 2, "g", 2);
        }
        h.check()
    };
    assert_counts(&run(Some(300)), [0; 7]);
    assert_counts(&run(Some(5300)), [0, 0, 0, 0, 1, 0, 0]);
    assert_counts(&run(None), [0, 0, 0, 0, 1, 0, 0]);

    // A leader that keeps leading through the fault needs no new election.
    let mut h = H::default();
    h.elected(10, 1, "g", 1)
        .fault(100, FaultClass::Delay, Some(2))
        .heal(200, FaultClass::Delay, Some(2))
        .until(9000);
    assert_counts(&h.check(), [0; 7]);
}

/// p2 takes the lock at 3 s while p1 still believes it holds; p1's lost is due by 5.5 s.
fn overtaken(lost_at: Option<u64>, end: u64) -> H {
    let mut h = H::default();
    h.acquire(1, "a", 0, 10, 1)
        .acquire(2, "a", 20, 3000, 2)
        .until(end);
    if let Some(t) = lost_at {
        h.lost(t, 1, "a", 1);
    }
    h
}

#[test]
fn c6_lost_signal_due_within_ttl_and_margin() {
    let tolerant = expect().tolerate(CheckId::C1, "the lock expired under p1");
    let ok = overtaken(Some(5000), 9000).check_with(&tolerant);
    assert_counts(&ok, [1, 0, 0, 0, 0, 0, 0]);
    assert!(ok.passed());

    let late = overtaken(Some(5600), 9000).check_with(&tolerant);
    assert_counts(&late, [1, 0, 0, 0, 0, 1, 0]);
    assert!(!late.passed());
    assert!(late.checks[5].violations[0].message.contains("late"));

    let missing = overtaken(None, 9000).check_with(&tolerant);
    assert_counts(&missing, [1, 0, 0, 0, 0, 1, 0]);
    assert!(missing.checks[5].violations[0].message.contains("no lost"));

    // The history ends before the deadline: nothing to judge.
    assert_counts(&overtaken(None, 5000).check(), [1, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn c7_two_leaders_for_one_term() {
    let mut h = H::default();
    h.elected(10, 1, "g", 3)
        .elected(20, 2, "g", 3)
        .elected(25, 2, "g", 3)
        .write(30, 1, "g", 3, true)
        .write(40, 2, "g", 3, true);
    let report = h.check();
    // Two leaders at once are also a C1 violation.
    assert_counts(&report, [1, 0, 0, 0, 0, 0, 2]);
    let c7 = &report.checks[6].violations;
    assert!(c7
        .iter()
        .any(|v| v.events == [0, 1] && v.register.is_empty()));
    assert!(c7
        .iter()
        .any(|v| v.events == [0, 1] && v.register == [0, 1]));
}

#[test]
fn c7_terms_increase_in_real_time_order() {
    let mut h = H::default();
    h.elected(10, 1, "g", 5)
        .resigned(15, 1, "g", 5)
        .elected(20, 2, "g", 4)
        .write(30, 1, "g", 5, true)
        .write(40, 2, "g", 4, true)
        .write(50, 3, "g", 6, true);
    // Decreasing term; stale accepted write; write with a term never granted to p3.
    assert_counts(&h.check(), [0, 0, 0, 0, 0, 0, 3]);
}

#[test]
fn unknown_acquire_is_not_a_holder() {
    let mut h = H::default();
    h.acquire_ends(1, "a", 0, 1000, Kind::Unknown)
        .acquire(2, "a", 1100, 1500, 2)
        .write(1600, 2, "a", 2, true)
        .release(2, "a", 2, 1700, 1710, true)
        .until(9000);
    assert_counts(&h.check(), [0; 7]);
}

#[test]
fn killed_holder_holds_nothing_after() {
    let mut h = H::default();
    h.acquire(1, "a", 0, 10, 1)
        .open_acquire(1, "b", 20)
        .fault(100, FaultClass::Kill, Some(1))
        .acquire(2, "a", 50, 2200, 2)
        .release(2, "a", 2, 2300, 2310, true)
        .until(9000);
    let report = h.check();
    assert_counts(&report, [0; 7]);
    assert!(report.passed());
}

#[test]
fn report_serialises_and_displays_one_line_per_check() {
    let report = overtaken(None, 9000).check();
    let json = serde_json::to_string(&report).unwrap();
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);

    let text = report.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 9, "{text}");
    assert!(lines[0].starts_with("C1 mutual exclusion: 1 violation(s), not tolerated; first: "));
    assert_eq!(lines[1], "C2 fenced writes: 0 violation(s), not tolerated");
    assert!(lines[5].starts_with("C6 lost signal: 1 violation(s)"));
    assert_eq!(lines[8], "FAILED");
}

#[test]
fn c1_two_leaders_at_once_are_reported() {
    // p2 is elected (a later term) while p1 still leads: fencing orders their writes, but
    // two processes believe they lead at once.
    let run = |second_at: u64| {
        let mut h = H::default();
        h.elected(10, 1, "g", 5)
            .resigned(100, 1, "g", 5)
            .elected(second_at, 2, "g", 7)
            .resigned(200, 2, "g", 7)
            .until(1000);
        h.check()
    };
    assert_counts(&run(50), [1, 0, 0, 0, 0, 0, 0]);
    assert_counts(&run(100), [0; 7]);
    // A leader that was suspended first no longer believes it leads.
    let mut h = H::default();
    h.elected(10, 1, "g", 5)
        .info(40, 1, Op::Suspended)
        .elected(50, 2, "g", 7)
        .resigned(90, 1, "g", 5)
        .resigned(200, 2, "g", 7)
        .until(1000);
    assert_counts(&h.check(), [0; 7]);
}
