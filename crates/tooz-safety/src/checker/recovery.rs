//! C5: after a heal, every lock still in use is acquired, and every election group has a
//! leader, within the recovery bound. A lock whose holder keeps it across the heal is
//! measured from the end of that hold instead; a window cut short by a new fault (before
//! any success) is not judged.

use std::collections::BTreeMap;

use super::index::{At, Facts};
use super::{nanos, CheckId, Expectations, Found};
use crate::history::{Event, Op};

#[derive(Debug, Default)]
struct LockUse {
    /// `Acquire` `Ok` instants, sorted.
    oks: Vec<At>,
    /// Latest end of an acquire operation; `u64::MAX` if one never ends.
    attempted_until: u64,
}

/// Heals worth measuring from: one per instant, and only those that leave no other fault
/// active (a fault that is never healed counts as instantaneous).
fn effective_heals(facts: &Facts) -> Vec<At> {
    let mut heals: Vec<At> = Vec::new();
    for &(t, i) in &facts.heals {
        if heals.last().is_some_and(|h| h.0 == t) {
            continue;
        }
        let other_active = facts
            .faults
            .iter()
            .any(|f| f.start.0 <= t && f.heal.is_some_and(|h| h.0 > t));
        if !other_active {
            heals.push((t, i));
        }
    }
    heals
}

/// Runs C5 and returns the measured recovery times in nanoseconds.
pub(crate) fn check_recovery(
    history: &[Event],
    facts: &Facts,
    expect: &Expectations,
    found: &mut Found,
) -> Vec<u64> {
    let bound = nanos(expect.recovery_bound);
    let mut locks: BTreeMap<&str, LockUse> = BTreeMap::new();
    for r in &facts.ops {
        let Some(i) = r.completion.or(r.invoke) else {
            continue;
        };
        if let Op::Acquire { lock, .. } = &history[i].op {
            let lock_use = locks.entry(lock).or_default();
            lock_use.attempted_until = lock_use.attempted_until.max(r.end.unwrap_or(u64::MAX));
        }
    }
    for a in &facts.acquisitions {
        if let Some(lock_use) = locks.get_mut(a.lock.as_str()) {
            lock_use.oks.push(a.ok);
        }
    }
    for lock_use in locks.values_mut() {
        lock_use.oks.sort_unstable();
    }
    let mut groups: BTreeMap<&str, Vec<At>> = BTreeMap::new();
    for e in &facts.elections {
        groups.entry(e.group.as_str()).or_default().push(e.at);
    }
    for ats in groups.values_mut() {
        ats.sort_unstable();
    }

    let mut samples = Vec::new();
    // The window from `from` is only judged if no new fault starts before the first success
    // and within the bound: a fault that cuts the window short is measured from its own heal.
    let next_fault = |from: u64| {
        facts
            .faults
            .iter()
            .map(|f| f.start.0)
            .filter(|&s| s > from)
            .min()
    };
    let mut measure = |what: String, heal: At, next: Option<&At>| match next {
        _ if next_fault(heal.0)
            .is_some_and(|f| f <= heal.0.saturating_add(bound) && next.is_none_or(|n| n.0 > f)) => {
        }
        // A success may come before `from` (the hold across the heal ended on a lost signal
        // after the lock was already taken over): recovered in no time.
        Some(&(t, i)) => {
            let took = t.saturating_sub(heal.0);
            samples.push(took);
            if took > bound {
                found.add(
                    CheckId::C5,
                    format!(
                        "{what}: first success {took}ns after {} (the heal, or the end of a hold across it)",
                        heal.0
                    ),
                    vec![heal.1, i],
                );
            }
        }
        None if facts.end - heal.0 > bound => found.add(
            CheckId::C5,
            format!(
                "{what}: no success in the {}ns between the heal at {} and the end",
                facts.end - heal.0,
                heal.0
            ),
            vec![heal.1],
        ),
        None => {}
    };

    for heal in effective_heals(facts) {
        let th = heal.0;
        for (lock, lock_use) in &locks {
            if lock_use.attempted_until < th {
                continue;
            }
            // A holder whose hold outlives the heal (it was suspended or paused, but neither
            // released, lost nor killed) still holds the lock: recovery is then measured
            // from the end of its hold (and not at all if it holds to the end); a later fault
            // that ends the hold is measured from its own heal.
            let mut from = heal;
            let mut held_to_end = false;
            for a in facts
                .acquisitions
                .iter()
                .filter(|a| a.lock == *lock && a.ok.0 <= th)
            {
                match a.signal_end() {
                    None => held_to_end = true,
                    Some(end) if end.0 > th => from = from.max(end),
                    Some(_) => {}
                }
            }
            if held_to_end {
                continue;
            }
            let next = lock_use.oks.get(lock_use.oks.partition_point(|a| a.0 < th));
            measure(format!("lock {lock:?}"), from, next);
        }
        for (group, ats) in &groups {
            // A leader elected before the heal and still leading a bound after it needs no
            // new election.
            let kept = facts.elections.iter().any(|e| {
                e.group == *group
                    && e.at.0 <= th
                    && e.end.is_none_or(|end| end.0 > th.saturating_add(bound))
            });
            if kept {
                continue;
            }
            let next = ats.get(ats.partition_point(|a| a.0 < th));
            measure(format!("group {group:?}"), heal, next);
        }
    }
    samples
}
