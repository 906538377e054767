//! Register checks (C2 for lock resources, C7 for election groups): accepted tokens never go
//! back, were granted to the writer, and a token granted twice is not accepted from both.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::index::Facts;
use super::{CheckId, Found};
use crate::history::{Event, Kind, Op};
use crate::register::RegisterEntry;

/// A grant of a token to a process: an acquisition or an election.
#[derive(Debug, Clone, Copy)]
struct Grant {
    process: u32,
    time: u64,
    /// History index of the granting event; identifies the grant.
    index: usize,
}

pub(crate) fn check_register(
    history: &[Event],
    facts: &Facts,
    register: &[RegisterEntry],
    found: &mut Found,
) {
    let mut locks: HashSet<&str> = HashSet::new();
    let mut grants: HashMap<(&str, u64), Vec<Grant>> = HashMap::new();
    for (i, e) in history.iter().enumerate() {
        if let Op::Acquire { lock, token } = &e.op {
            locks.insert(lock);
            // An unknown acquire that still reported a token counts as a grant here.
            if let (Some(t), Kind::Ok | Kind::Unknown) = (token, e.kind) {
                grants.entry((lock, *t)).or_default().push(Grant {
                    process: e.process,
                    time: e.time_ns,
                    index: i,
                });
            }
        }
    }
    let mut groups: HashSet<&str> = HashSet::new();
    let mut elected: HashSet<(&str, u64, u32)> = HashSet::new();
    let mut elections: Vec<_> = facts.elections.iter().collect();
    elections.sort_by_key(|e| e.at);
    for e in elections {
        groups.insert(&e.group);
        // Repeated observations of one leadership are one grant.
        if elected.insert((&e.group, e.term, e.process)) {
            grants.entry((&e.group, e.term)).or_default().push(Grant {
                process: e.process,
                time: e.at.0,
                index: e.at.1,
            });
        }
    }
    let check_for = |resource: &str| {
        if groups.contains(resource) && !locks.contains(resource) {
            CheckId::C7
        } else {
            CheckId::C2
        }
    };

    // Per resource: highest accepted token so far and the entry that set it.
    let mut highest: HashMap<&str, (u64, usize)> = HashMap::new();
    // Per (resource, token): grant index -> first register entry attributed to it.
    let mut used: BTreeMap<(&str, u64), BTreeMap<usize, usize>> = BTreeMap::new();
    for (k, w) in register.iter().enumerate().filter(|(_, w)| w.accepted) {
        let resource = w.resource.as_str();
        let check = check_for(resource);
        match highest.get(resource) {
            Some(&(top, at)) if w.token < top => found.add_with_register(
                check,
                format!(
                    "resource {resource:?}: accepted token {} from p{} after token {top}",
                    w.token, w.process
                ),
                Vec::new(),
                vec![at, k],
            ),
            Some(&(top, _)) if w.token == top => {}
            _ => {
                highest.insert(resource, (w.token, k));
            }
        }
        let own: Vec<Grant> = grants
            .get(&(resource, w.token))
            .map(|g| {
                g.iter()
                    .filter(|g| g.process == w.process)
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        // Attribute the write to the writer's latest grant before it, else its first.
        let grant = own
            .iter()
            .filter(|g| g.time <= w.time_ns)
            .max_by_key(|g| g.time)
            .or_else(|| own.first());
        match grant {
            Some(g) => {
                used.entry((resource, w.token))
                    .or_default()
                    .entry(g.index)
                    .or_insert(k);
            }
            None => found.add_with_register(
                check,
                format!(
                    "resource {resource:?}: accepted token {} from p{}, never granted to it",
                    w.token, w.process
                ),
                Vec::new(),
                vec![k],
            ),
        }
    }
    for ((resource, token), by_grant) in used {
        if by_grant.len() < 2 {
            continue;
        }
        let (grants, entries): (Vec<usize>, Vec<usize>) = by_grant.into_iter().unzip();
        found.add_with_register(
            check_for(resource),
            format!(
                "resource {resource:?}: token {token} granted {} times and accepted from each",
                grants.len()
            ),
            grants,
            entries,
        );
    }
}
