//! C7 on elections: one leader per (group, term), and terms increasing in real-time order;
//! and C1 on elections: no two processes believe they lead one group at once. (C7's register
//! rule lives with C2 in `fencing`.)

use std::collections::BTreeMap;

use super::index::{Election, Facts};
use super::{CheckId, Found};

pub(crate) fn check_elections(facts: &Facts, found: &mut Found) {
    let mut by_group: BTreeMap<&str, Vec<&Election>> = BTreeMap::new();
    for e in &facts.elections {
        by_group.entry(e.group.as_str()).or_default().push(e);
    }
    for (group, mut elections) in by_group {
        elections.sort_by_key(|e| e.at);

        let mut by_term: BTreeMap<u64, Vec<&Election>> = BTreeMap::new();
        for e in &elections {
            let same = by_term.entry(e.term).or_default();
            if !same.iter().any(|s| s.process == e.process) {
                same.push(e);
            }
        }
        for (term, leaders) in &by_term {
            for b in &leaders[1..] {
                let a = leaders[0];
                found.add(
                    CheckId::C7,
                    format!(
                        "group {group:?}: term {term} has two leaders, p{} (at {}) and p{} (at {})",
                        a.process, a.at.0, b.process, b.at.0
                    ),
                    vec![a.at.1, b.at.1],
                );
            }
        }

        // prefix_max[i]: the election with the highest term among elections[..=i].
        let mut prefix_max: Vec<&Election> = Vec::with_capacity(elections.len());
        for e in &elections {
            let best = match prefix_max.last() {
                Some(m) if m.term >= e.term => *m,
                _ => *e,
            };
            prefix_max.push(best);
        }
        for b in &elections {
            let before = elections.partition_point(|a| a.at.0 < b.start);
            if before == 0 {
                continue;
            }
            let a = prefix_max[before - 1];
            if a.term > b.term {
                found.add(
                    CheckId::C7,
                    format!(
                        "group {group:?}: p{} elected with term {} at {} after p{} had term {} at {}",
                        b.process, b.term, b.at.0, a.process, a.term, a.at.0
                    ),
                    vec![a.at.1, b.at.1],
                );
            }
        }
    }
}

/// C1 for elections: believed leaderships (from `Elected` until resignation, kill, suspension
/// or pause) of different processes in one group never overlap.
pub(crate) fn check_single_leader(facts: &Facts, found: &mut Found) {
    let mut by_group: BTreeMap<&str, Vec<(u64, u64, &Election)>> = BTreeMap::new();
    for e in &facts.elections {
        let end = e.belief_end.map_or(facts.end, |b| b.0);
        if e.at.0 < end {
            by_group
                .entry(e.group.as_str())
                .or_default()
                .push((e.at.0, end, e));
        }
    }
    for (group, mut spans) in by_group {
        spans.sort_by_key(|s| s.0);
        for (i, &(_, end, a)) in spans.iter().enumerate() {
            for &(start_b, _, b) in &spans[i + 1..] {
                if start_b >= end {
                    break;
                }
                if a.process != b.process {
                    found.add(
                        CheckId::C1,
                        format!(
                            "group {group:?}: p{} leads (term {}) until {end} while p{} leads \
                             (term {}) from {start_b}",
                            a.process, a.term, b.process, b.term
                        ),
                        vec![a.at.1, b.at.1],
                    );
                }
            }
        }
    }
}
