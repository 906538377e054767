//! Properties of the consistent hash ring, plus a model check against a literal transcription of
//! tooz's algorithm under random add/remove sequences (including names whose points collide).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::Bound;

use md5::{Digest, Md5};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use tooz::hashring::HashRing;

/// Fixed seed: the statistical bounds below are many standard deviations wide, and a fixed seed
/// makes each run check the same cases.
fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x700c_2016),
        failure_persistence: None,
        ..Config::default()
    }
}

fn keys(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| format!("key-{i}").into_bytes())
        .collect()
}

/// Distinct names of one length: no name is a repetition of another, so no two nodes share
/// points (short of a real md5 collision).
fn same_length_names(range: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<String>> {
    prop::collection::hash_set("[a-z0-9]{8}", range).prop_map(|s| s.into_iter().collect())
}

proptest! {
    #![proptest_config(config(48))]

    /// Adding one node to `n` moves about `1/(n+1)` of the keys, all of them onto the new node.
    #[test]
    fn adding_a_node_moves_only_its_share(
        names in prop::collection::hash_set("[a-z0-9]{1,10}", 2..=30),
        extra in "[A-Z]{1,10}",
    ) {
        let before = HashRing::new(&names);
        let mut after = before.clone();
        after.add_node(&extra, 1);
        let keys = keys(10_000);
        let mut moved = 0usize;
        for key in &keys {
            let old = before.get_node(key).unwrap();
            let new = after.get_node(key).unwrap();
            if old != new {
                prop_assert_eq!(new, extra.as_bytes(), "key moved between two old nodes");
                moved += 1;
            }
        }
        let expected = keys.len() as f64 / (names.len() + 1) as f64;
        // The new node's share is the sum of 32 arcs, ~ Gamma(32): outside [1/3, 3] x its mean
        // has a probability below 1e-6.
        prop_assert!(
            (moved as f64) > expected / 3.0 && (moved as f64) < expected * 3.0,
            "{} keys moved, expected about {:.0}", moved, expected
        );
    }

    /// Removing a node moves exactly the keys it owned.
    #[test]
    fn removing_a_node_moves_only_its_keys(
        names in same_length_names(2..=30),
        pick in any::<prop::sample::Index>(),
    ) {
        let before = HashRing::new(&names);
        let gone = pick.get(&names);
        let mut after = before.clone();
        after.remove_node(gone).unwrap();
        prop_assert!(!after.contains_node(gone));
        prop_assert_eq!(after.len(), before.len() - 32);
        for key in keys(5_000) {
            let old = before.get_node(&key).unwrap();
            let new = after.get_node(&key).unwrap();
            if old == gone.as_bytes() {
                prop_assert_ne!(new, old);
            } else {
                prop_assert_eq!(new, old);
            }
        }
    }

    /// `replicas` and `ignore_nodes` are honoured, and replicas extend one another.
    #[test]
    fn ignore_nodes_and_replicas(
        weighted in prop::collection::hash_map("[a-z0-9]{6}", 1u32..=3, 1..=12),
        ignore_mask in any::<u16>(),
        also_ignore_unknown in any::<bool>(),
        replicas in 0usize..15,
    ) {
        let mut ring = HashRing::with_partitions(Vec::<&str>::new(), 16);
        for (name, weight) in &weighted {
            ring.add_node(name, *weight);
        }
        let members: BTreeSet<&[u8]> = weighted.keys().map(|n| n.as_bytes()).collect();
        let mut ignore: Vec<&str> = weighted
            .keys()
            .enumerate()
            .filter(|(i, _)| ignore_mask & (1 << i) != 0)
            .map(|(_, n)| n.as_str())
            .collect();
        if also_ignore_unknown {
            ignore.push("not-a-node");
        }
        let ignored: HashSet<&[u8]> = ignore.iter().map(|n| n.as_bytes()).collect();
        let candidates = members.iter().filter(|m| !ignored.contains(*m)).count();
        for key in keys(200) {
            let got = ring.get_nodes(&key, &ignore, replicas).unwrap();
            prop_assert_eq!(got.len(), replicas.min(candidates));
            prop_assert!(got.iter().all(|n| members.contains(n) && !ignored.contains(n)));
            let more = ring.get_nodes(&key, &ignore, replicas + 1).unwrap();
            prop_assert!(got.is_subset(&more));
            let primary = ring.get(&key).unwrap();
            prop_assert_eq!(primary.len(), 1);
            prop_assert!(primary.contains(ring.get_node(&key).unwrap()));
        }
    }

    /// Weights split the keys in proportion.
    #[test]
    fn weights_split_keys_in_proportion(weights in prop::collection::vec(1u32..=4, 2..=6)) {
        let mut ring = HashRing::default();
        for (i, w) in weights.iter().enumerate() {
            ring.add_node(format!("node-{i}"), *w);
        }
        let total: u32 = weights.iter().sum();
        let mut counts = vec![0usize; weights.len()];
        let keys = keys(10_000);
        for key in &keys {
            let owner = std::str::from_utf8(ring.get_node(key).unwrap()).unwrap();
            counts[owner["node-".len()..].parse::<usize>().unwrap()] += 1;
        }
        for (count, w) in counts.iter().zip(&weights) {
            let expected = keys.len() as f64 * f64::from(*w) / f64::from(total);
            prop_assert!(
                (*count as f64) > expected / 3.0 && (*count as f64) < expected * 3.0,
                "weight {} got {} keys, expected about {:.0}", w, count, expected
            );
        }
    }

    /// Random sequences of adds (any weight, re-adds) and removes over names whose points
    /// collide agree with a literal transcription of tooz's algorithm.
    #[test]
    fn matches_reference_model(
        ops in prop::collection::vec(
            (prop::sample::select(vec!["", "a", "aa", "aaa", "aaaa", "ab", "abab", "ababab", "x", "y"]),
             0u32..=3,
             any::<bool>()),
            1..40,
        ),
        partitions in 1u32..=8,
        ignore in prop::collection::vec(
            prop::sample::select(vec!["a", "ab", "x", "zz"]), 0..3),
        replicas in 1usize..5,
    ) {
        let mut ring = HashRing::with_partitions(Vec::<&str>::new(), partitions);
        let mut model = Model::new(partitions);
        for (name, weight, remove) in ops {
            if remove {
                prop_assert_eq!(ring.remove_node(name).is_ok(), model.remove_node(name.as_bytes()));
            } else {
                ring.add_node(name, weight);
                model.add_node(name.as_bytes(), weight);
            }
            prop_assert_eq!(ring.len(), model.ring.len());
            let nodes: BTreeMap<Vec<u8>, u32> =
                ring.nodes().into_iter().map(|(n, w)| (n.to_vec(), w)).collect();
            prop_assert_eq!(&nodes, &model.nodes);
            for key in keys(20) {
                let got: BTreeSet<Vec<u8>> = ring
                    .get_nodes(&key, &ignore, replicas)
                    .unwrap()
                    .into_iter()
                    .map(<[u8]>::to_vec)
                    .collect();
                prop_assert_eq!(got, model.get_nodes(&key, &ignore, replicas));
            }
        }
    }
}

/// tooz's `HashRing`, transcribed literally (md5 only); its only liberties are skipping points
/// that are already gone on removal and stopping the walk after one turn, where tooz raises or
/// loops forever.
struct Model {
    partitions: u32,
    nodes: BTreeMap<Vec<u8>, u32>,
    ring: BTreeMap<u128, Vec<u8>>,
}

impl Model {
    fn new(partitions: u32) -> Model {
        Model {
            partitions,
            nodes: BTreeMap::new(),
            ring: BTreeMap::new(),
        }
    }

    fn points(&self, key: &[u8], weight: u32) -> Vec<u128> {
        let mut h = Md5::new_with_prefix(key);
        (0..self.partitions * weight)
            .map(|_| {
                h.update(key);
                u128::from_be_bytes(h.clone().finalize().into())
            })
            .collect()
    }

    fn add_node(&mut self, key: &[u8], weight: u32) {
        for p in self.points(key, weight) {
            self.ring.insert(p, key.to_vec());
        }
        self.nodes.insert(key.to_vec(), weight);
    }

    fn remove_node(&mut self, key: &[u8]) -> bool {
        let Some(weight) = self.nodes.remove(key) else {
            return false;
        };
        for p in self.points(key, weight) {
            self.ring.remove(&p);
        }
        true
    }

    fn get_nodes(&self, data: &[u8], ignore: &[&str], replicas: usize) -> BTreeSet<Vec<u8>> {
        let ignore: BTreeSet<&[u8]> = ignore.iter().map(|n| n.as_bytes()).collect();
        let candidates = self
            .nodes
            .keys()
            .filter(|n| !ignore.contains(n.as_slice()))
            .count();
        let replicas = replicas.min(candidates);
        let h = u128::from_be_bytes(Md5::digest(data).into());
        let after = self.ring.range((Bound::Excluded(h), Bound::Unbounded));
        let mut out = BTreeSet::new();
        for (_, node) in after.chain(self.ring.range(..=h)) {
            if out.len() >= replicas {
                break;
            }
            if !ignore.contains(node.as_slice()) {
                out.insert(node.clone());
            }
        }
        out
    }
}
