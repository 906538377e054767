//! Lock checks on acquisitions: C1 mutual exclusion, C3 tokens, C4 releases, C6 lost signal.

use std::collections::BTreeMap;

use super::index::{Acquisition, Facts};
use super::{nanos, CheckId, Expectations, Found};
use crate::history::{Event, Kind, Op};

/// Acquisitions grouped by lock name, in a stable order.
fn by_lock(facts: &Facts) -> BTreeMap<&str, Vec<&Acquisition>> {
    let mut map: BTreeMap<&str, Vec<&Acquisition>> = BTreeMap::new();
    for a in &facts.acquisitions {
        map.entry(a.lock.as_str()).or_default().push(a);
    }
    for v in map.values_mut() {
        v.sort_by_key(|a| a.ok);
    }
    map
}

fn describe(a: &Acquisition) -> String {
    format!("p{} token {} (ok at {})", a.process, a.token, a.ok.0)
}

/// C1: believed-holding intervals of different acquisitions of a lock never overlap.
pub(crate) fn check_mutual_exclusion(facts: &Facts, found: &mut Found) {
    for (lock, acqs) in by_lock(facts) {
        let intervals: Vec<(u64, u64, &Acquisition)> = acqs
            .iter()
            .map(|a| (a.ok.0, a.belief_end().map_or(facts.end, |e| e.0), *a))
            .filter(|(start, end, _)| start < end)
            .collect();
        // Sorted by start: every later interval starting before `end` overlaps.
        for (i, &(_, end, a)) in intervals.iter().enumerate() {
            for &(start_b, end_b, b) in &intervals[i + 1..] {
                if start_b >= end {
                    break;
                }
                found.add(
                    CheckId::C1,
                    format!(
                        "lock {lock:?}: {} held until {end} overlaps {} held until {end_b}",
                        describe(a),
                        describe(b)
                    ),
                    vec![a.ok.1, b.ok.1],
                );
            }
        }
    }
}

/// C3: each acquisition of a lock gets a fresh token, and tokens increase in real-time order.
pub(crate) fn check_tokens(facts: &Facts, found: &mut Found) {
    for (lock, acqs) in by_lock(facts) {
        let mut by_token: BTreeMap<u64, Vec<&Acquisition>> = BTreeMap::new();
        for a in &acqs {
            by_token.entry(a.token).or_default().push(a);
        }
        for (token, same) in &by_token {
            for b in &same[1..] {
                found.add(
                    CheckId::C3,
                    format!(
                        "lock {lock:?}: token {token} granted twice: {} and {}",
                        describe(same[0]),
                        describe(b)
                    ),
                    vec![same[0].ok.1, b.ok.1],
                );
            }
        }
        // prefix_max[i]: the acquisition with the highest token among acqs[..=i] (by ok time).
        let mut prefix_max: Vec<&Acquisition> = Vec::with_capacity(acqs.len());
        for a in &acqs {
            let best = match prefix_max.last() {
                Some(m) if m.token >= a.token => *m,
                _ => *a,
            };
            prefix_max.push(best);
        }
        for b in &acqs {
            let Some(invoke) = b.invoke_time else {
                continue;
            };
            let before = acqs.partition_point(|a| a.ok.0 < invoke);
            if before == 0 {
                continue;
            }
            let a = prefix_max[before - 1];
            // Equal tokens are reported above as duplicates.
            if a.token > b.token {
                found.add(
                    CheckId::C3,
                    format!(
                        "lock {lock:?}: {} was acquired before p{} invoked at {invoke}, \
                         yet got a higher token than its {}",
                        describe(a),
                        b.process,
                        b.token
                    ),
                    vec![a.ok.1, b.ok.1],
                );
            }
        }
    }
}

/// C4: a release that freed a lock was of the releaser's own, current acquisition.
pub(crate) fn check_releases(history: &[Event], facts: &Facts, found: &mut Found) {
    for r in &facts.ops {
        let Some(c) = r.completion else { continue };
        let done = &history[c];
        let Op::Release {
            lock,
            token,
            released: Some(true),
        } = &done.op
        else {
            continue;
        };
        if done.kind != Kind::Ok {
            continue;
        }
        let p = done.process;
        let start = r.invoke.map_or(done.time_ns, |i| history[i].time_ns);
        let mut events: Vec<usize> = r.invoke.into_iter().chain([c]).collect();
        let own = facts
            .acquisitions
            .iter()
            .filter(|a| a.process == p && a.lock == *lock && a.token == *token)
            .filter(|a| a.ok.0 <= start)
            .max_by_key(|a| a.ok);
        let Some(own) = own else {
            found.add(
                CheckId::C4,
                format!("lock {lock:?}: p{p} freed token {token}, which it never acquired"),
                events,
            );
            continue;
        };
        let other = facts
            .acquisitions
            .iter()
            .filter(|b| b.lock == *lock && b.process != p && b.token != *token)
            .filter(|b| b.ok.0 > own.ok.0 && b.ok.0 < start)
            .filter(|b| b.signal_end().is_none_or(|e| e.0 > start))
            .min_by_key(|b| b.ok);
        if let Some(b) = other {
            events.extend([own.ok.1, b.ok.1]);
            found.add(
                CheckId::C4,
                format!(
                    "lock {lock:?}: p{p} freed token {token} at {start} while {} held it",
                    describe(b)
                ),
                events,
            );
        }
    }
}

/// C6: a holder overtaken by another process gets its lost signal within ttl + margin of
/// the overtake (or of the end of a pause covering it).
pub(crate) fn check_lost_signal(facts: &Facts, expect: &Expectations, found: &mut Found) {
    let allowance = nanos(expect.ttl).saturating_add(nanos(expect.lost_margin));
    for (lock, acqs) in by_lock(facts) {
        for a in &acqs {
            let end = a.signal_end();
            let believed_until = end.map_or(u64::MAX, |e| e.0);
            // Sorted by ok time: the first later acquisition by another process, if it came
            // while `a` was still believed held, is the overtake.
            let later = acqs.partition_point(|b| b.ok.0 <= a.ok.0);
            let Some(b) = acqs[later..]
                .iter()
                .take_while(|b| b.ok.0 < believed_until)
                .find(|b| b.process != a.process)
            else {
                continue;
            };
            let overtake = b.ok.0;
            let base = match facts.pause_at(a.process, overtake) {
                None => overtake,
                Some(Some(heal)) => heal.0.max(overtake),
                Some(None) => continue,
            };
            let deadline = base.saturating_add(allowance);
            let last_seen = end.map_or(facts.end, |e| e.0);
            if last_seen <= deadline {
                continue;
            }
            let how = match end {
                Some(e) if Some(e) == a.lost => format!("lost signal came late at {}", e.0),
                Some(e) if Some(e) == a.release => format!("released at {} without lost", e.0),
                Some(e) => format!("killed at {} without lost", e.0),
                None => "no lost signal by the end of the history".to_owned(),
            };
            let mut events = vec![a.ok.1, b.ok.1];
            events.extend(end.map(|e| e.1));
            found.add(
                CheckId::C6,
                format!(
                    "lock {lock:?}: {} overtaken by {} at {overtake}; deadline {deadline}: {how}",
                    describe(a),
                    describe(b)
                ),
                events,
            );
        }
    }
}
