//! Placement must match Python tooz bit for bit.
//!
//! `tests/data/hashring-golden.json` was produced by `scripts/gen-hashring-vectors.py` from
//! tooz's own `HashRing` (the script's docstring describes the format). Each shape's ring is
//! rebuilt here with the same operations and every recorded lookup is compared.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde_json::Value;
use tooz::hashring::{HashFunction, HashRing};

const GOLDEN: &str = "tests/data/hashring-golden.json";
/// How many mismatches of one query to print before giving up on it.
const SHOW: usize = 10;

#[test]
fn placements_match_python_tooz() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let doc =
        serde_json::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(doc.field("format").int(), 1, "unknown golden file format");
    let shapes = doc.field("shapes").items();
    assert!(shapes.len() >= 5, "expected at least 5 shapes");

    let mut failures = String::new();
    let mut checked = 0usize;
    for shape in shapes {
        checked += check_shape(shape, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "placements differ from Python tooz {}:\n{failures}",
        doc.field("tooz_version").text()
    );
    assert!(checked >= 50_000, "only {checked} lookups checked");
    eprintln!("{checked} lookups match Python tooz");
}

/// Rebuilds one ring, checks its size, members and every lookup; returns the lookups checked.
fn check_shape(shape: &Value, failures: &mut String) -> usize {
    let name = shape.field("name").text();
    let hash: HashFunction = shape.field("hash_function").text().parse().unwrap();
    let partitions = u32::try_from(shape.field("partitions").int()).unwrap();

    let mut ops = shape.field("ops").items();
    let mut ring = match ops.first().map(|op| op.items()) {
        Some([op, nodes]) if op.text() == "new" => {
            ops = &ops[1..];
            HashRing::with_hash_function(hex_list(nodes), partitions, hash)
        }
        _ => HashRing::with_hash_function(Vec::<Vec<u8>>::new(), partitions, hash),
    };
    for op in ops {
        match op.items() {
            [kind, nodes] if kind.text() == "new" => ring.add_nodes(hex_list(nodes), 1),
            [kind, nodes, weight] if kind.text() == "add" => {
                ring.add_nodes(hex_list(nodes), u32::try_from(weight.int()).unwrap())
            }
            [kind, node] if kind.text() == "remove" => ring
                .remove_node(hex(node.text()))
                .unwrap_or_else(|e| panic!("{name}: {e}")),
            other => panic!("{name}: unknown op {other:?}"),
        }
    }

    assert_eq!(
        ring.len(),
        shape.field("len").int() as usize,
        "{name}: ring size"
    );
    let expected_nodes: BTreeMap<Vec<u8>, u32> = shape
        .field("nodes")
        .items()
        .iter()
        .map(|e| match e.items() {
            [n, w] => (hex(n.text()), u32::try_from(w.int()).unwrap()),
            other => panic!("{name}: bad node entry {other:?}"),
        })
        .collect();
    let nodes: BTreeMap<Vec<u8>, u32> = ring
        .nodes()
        .into_iter()
        .map(|(n, w)| (n.to_vec(), w))
        .collect();
    assert_eq!(nodes, expected_nodes, "{name}: members and weights");

    let owners: Vec<Vec<u8>> = hex_list(shape.field("owners"));
    let position: HashMap<&[u8], usize> = owners
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_slice(), i))
        .collect();
    let prefix = hex(shape.field("key_prefix").text());
    let key_count = shape.field("key_count").int() as usize;
    let keys: Vec<Vec<u8>> = (0..key_count)
        .map(|i| [prefix.as_slice(), i.to_string().as_bytes()].concat())
        .collect();

    let mut checked = 0;
    for query in shape.field("queries").items() {
        let replicas = query.field("replicas").int() as usize;
        let ignore = hex_list(query.field("ignore"));
        let expected: Vec<&str> = query.field("results").text().split(' ').collect();
        assert_eq!(expected.len(), key_count, "{name}: result count");
        let mut shown = 0;
        for (i, (key, want)) in keys.iter().zip(&expected).enumerate() {
            let got = ring.get_nodes(key, &ignore, replicas).unwrap();
            let got_token = {
                let mut idx: Vec<usize> = got
                    .iter()
                    .map(|n| match position.get(n) {
                        Some(&p) => p,
                        None => usize::MAX,
                    })
                    .collect();
                idx.sort_unstable();
                let s: Vec<String> = idx.iter().map(usize::to_string).collect();
                if s.is_empty() {
                    "-".to_owned()
                } else {
                    s.join(",")
                }
            };
            checked += 1;
            if got_token != *want {
                shown += 1;
                if shown <= SHOW {
                    let names = |token: &str| -> Vec<String> {
                        token
                            .split(',')
                            .filter(|t| *t != "-")
                            .map(
                                |t| match t.parse::<usize>().ok().and_then(|p| owners.get(p)) {
                                    Some(n) => String::from_utf8_lossy(n).into_owned(),
                                    None => "<not an owner in the file>".to_owned(),
                                },
                            )
                            .collect()
                    };
                    let _ = writeln!(
                        failures,
                        "  {name} replicas={replicas} ignore={:?} key #{i} {:?}: \
                         tooz {:?}, here {:?}",
                        ignore
                            .iter()
                            .map(|n| String::from_utf8_lossy(n))
                            .collect::<Vec<_>>(),
                        String::from_utf8_lossy(key),
                        names(want),
                        got.iter()
                            .map(|n| String::from_utf8_lossy(n))
                            .collect::<Vec<_>>(),
                    );
                }
            }
        }
        if shown > SHOW {
            let _ = writeln!(
                failures,
                "  {name} replicas={replicas}: ... {} more mismatches",
                shown - SHOW
            );
        }
    }
    checked
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex string {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn hex_list(v: &Value) -> Vec<Vec<u8>> {
    v.items().iter().map(|n| hex(n.text())).collect()
}

/// Accessors that fail loudly on a malformed golden file.
trait Golden {
    fn field(&self, key: &str) -> &Value;
    fn items(&self) -> &[Value];
    fn text(&self) -> &str;
    fn int(&self) -> i64;
}

impl Golden for Value {
    fn field(&self, key: &str) -> &Value {
        self.get(key)
            .unwrap_or_else(|| panic!("missing key {key:?} in {self}"))
    }

    fn items(&self) -> &[Value] {
        self.as_array()
            .unwrap_or_else(|| panic!("expected an array, got {self}"))
    }

    fn text(&self) -> &str {
        self.as_str()
            .unwrap_or_else(|| panic!("expected a string, got {self}"))
    }

    fn int(&self) -> i64 {
        self.as_i64()
            .unwrap_or_else(|| panic!("expected an integer, got {self}"))
    }
}
