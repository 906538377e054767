//! Placement must match Python tooz bit for bit.
//!
//! `tests/data/hashring-golden.json` was produced by `scripts/gen-hashring-vectors.py` from
//! tooz's own `HashRing` (the script's docstring describes the format). Each shape's ring is
//! rebuilt here with the same operations and every recorded lookup is compared.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use tooz::hashring::{HashFunction, HashRing};

const GOLDEN: &str = "tests/data/hashring-golden.json";
/// How many mismatches of one query to print before giving up on it.
const SHOW: usize = 10;

#[test]
fn placements_match_python_tooz() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let doc = Json::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(doc.get("format").int(), 1, "unknown golden file format");
    let shapes = doc.get("shapes").array();
    assert!(shapes.len() >= 5, "expected at least 5 shapes");

    let mut failures = String::new();
    let mut checked = 0usize;
    for shape in shapes {
        checked += check_shape(shape, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "placements differ from Python tooz {}:\n{failures}",
        doc.get("tooz_version").str()
    );
    assert!(checked >= 50_000, "only {checked} lookups checked");
    eprintln!("{checked} lookups match Python tooz");
}

/// Rebuilds one ring, checks its size, members and every lookup; returns the lookups checked.
fn check_shape(shape: &Json, failures: &mut String) -> usize {
    let name = shape.get("name").str();
    let hash: HashFunction = shape.get("hash_function").str().parse().unwrap();
    let partitions = u32::try_from(shape.get("partitions").int()).unwrap();

    let mut ops = shape.get("ops").array();
    let mut ring = match ops.first().map(|op| op.array()) {
        Some([op, nodes]) if op.str() == "new" => {
            ops = &ops[1..];
            HashRing::with_hash_function(hex_list(nodes), partitions, hash)
        }
        _ => HashRing::with_hash_function(Vec::<Vec<u8>>::new(), partitions, hash),
    };
    for op in ops {
        match op.array() {
            [kind, nodes] if kind.str() == "new" => ring.add_nodes(hex_list(nodes), 1),
            [kind, nodes, weight] if kind.str() == "add" => {
                ring.add_nodes(hex_list(nodes), u32::try_from(weight.int()).unwrap())
            }
            [kind, node] if kind.str() == "remove" => ring
                .remove_node(hex(node.str()))
                .unwrap_or_else(|e| panic!("{name}: {e}")),
            other => panic!("{name}: unknown op {other:?}"),
        }
    }

    assert_eq!(
        ring.len(),
        shape.get("len").int() as usize,
        "{name}: ring size"
    );
    let expected_nodes: BTreeMap<Vec<u8>, u32> = shape
        .get("nodes")
        .array()
        .iter()
        .map(|e| match e.array() {
            [n, w] => (hex(n.str()), u32::try_from(w.int()).unwrap()),
            other => panic!("{name}: bad node entry {other:?}"),
        })
        .collect();
    let nodes: BTreeMap<Vec<u8>, u32> = ring
        .nodes()
        .into_iter()
        .map(|(n, w)| (n.to_vec(), w))
        .collect();
    assert_eq!(nodes, expected_nodes, "{name}: members and weights");

    let owners: Vec<Vec<u8>> = hex_list(shape.get("owners"));
    let position: HashMap<&[u8], usize> = owners
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_slice(), i))
        .collect();
    let prefix = hex(shape.get("key_prefix").str());
    let key_count = shape.get("key_count").int() as usize;
    let keys: Vec<Vec<u8>> = (0..key_count)
        .map(|i| [prefix.as_slice(), i.to_string().as_bytes()].concat())
        .collect();

    let mut checked = 0;
    for query in shape.get("queries").array() {
        let replicas = query.get("replicas").int() as usize;
        let ignore = hex_list(query.get("ignore"));
        let expected: Vec<&str> = query.get("results").str().split(' ').collect();
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

fn hex_list(v: &Json) -> Vec<Vec<u8>> {
    v.array().iter().map(|n| hex(n.str())).collect()
}

/// The subset of JSON the golden file uses (no floats), parsed by hand to avoid a dependency.
#[derive(Debug)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(p.err("trailing characters"));
        }
        Ok(v)
    }

    fn get(&self, key: &str) -> &Json {
        match self {
            Json::Object(m) => m
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("missing key {key:?}")),
            _ => panic!("not an object when looking up {key:?}"),
        }
    }

    fn array(&self) -> &[Json] {
        match self {
            Json::Array(v) => v,
            other => panic!("expected an array, got {other:?}"),
        }
    }

    fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            other => panic!("expected a string, got {other:?}"),
        }
    }

    fn int(&self) -> i64 {
        match self {
            Json::Int(n) => *n,
            other => panic!("expected an integer, got {other:?}"),
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> String {
        format!("JSON error at byte {}: {what}", self.i)
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected {:?}", c as char)))
        }
    }

    fn literal(&mut self, word: &str, v: Json) -> Result<Json, String> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("unknown literal"))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut m = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Object(m));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.eat(b':')?;
                    m.push((k, self.value()?));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Object(m));
                        }
                        _ => return Err(self.err("expected ',' or '}'")),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut v = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Array(v));
                }
                loop {
                    v.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Array(v));
                        }
                        _ => return Err(self.err("expected ',' or ']'")),
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(c) if *c == b'-' || c.is_ascii_digit() => {
                let start = self.i;
                self.i += 1;
                while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                    self.i += 1;
                }
                std::str::from_utf8(&self.s[start..self.i])
                    .unwrap()
                    .parse()
                    .map(Json::Int)
                    .map_err(|_| self.err("bad integer"))
            }
            _ => Err(self.err("expected a value")),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.eat(b'"')?;
        let mut out = String::new();
        loop {
            let start = self.i;
            while self.i < self.s.len() && !matches!(self.s[self.i], b'"' | b'\\') {
                self.i += 1;
            }
            out.push_str(std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?);
            match self.s.get(self.i) {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let c = *self
                        .s
                        .get(self.i + 1)
                        .ok_or_else(|| self.err("bad escape"))?;
                    self.i += 2;
                    match c {
                        b'"' | b'\\' | b'/' => out.push(c as char),
                        b'n' => out.push('\n'),
                        b't' => out.push('\t'),
                        b'r' => out.push('\r'),
                        b'u' => {
                            let hex = self
                                .s
                                .get(self.i..self.i + 4)
                                .and_then(|h| std::str::from_utf8(h).ok())
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .ok_or_else(|| self.err("bad \\u escape"))?;
                            self.i += 4;
                            out.push(char::from_u32(hex).unwrap_or('\u{fffd}'));
                        }
                        _ => return Err(self.err("unknown escape")),
                    }
                }
                _ => return Err(self.err("unterminated string")),
            }
        }
    }
}

#[test]
fn json_subset_parser() {
    let v =
        Json::parse(r#" {"a": [1, -2, "x\"\u0041"], "b": {}, "c": [true, false, null]} "#).unwrap();
    assert_eq!(v.get("a").array()[1].int(), -2);
    assert_eq!(v.get("a").array()[2].str(), "x\"A");
    assert!(matches!(v.get("c").array()[0], Json::Bool(true)));
    assert!(matches!(v.get("c").array()[2], Json::Null));
    assert!(Json::parse("[1,]").is_err());
    assert!(Json::parse("{} x").is_err());
}
