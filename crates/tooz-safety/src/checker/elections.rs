//! C7 on elections: one leader per (group, term), and terms increasing in real-time order.
//! (C7's register rule lives with C2 in `fencing`.)

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
