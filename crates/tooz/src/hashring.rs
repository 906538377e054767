//! Consistent hash ring with the same placement as Python tooz's `tooz.hashring.HashRing`.
//!
//! Every node owns `partitions * weight` points on a ring of hash values (2<sup>128</sup> of them
//! with the default md5). A piece of data is hashed with the same function and belongs to the
//! owner of the first point strictly greater than its hash, wrapping around to the lowest point;
//! further replicas are the next distinct owners walking clockwise. Adding or removing one node
//! therefore only moves the data next to that node's points.
//!
//! # Compatibility with Python tooz
//!
//! For the same node names, weights, partition count and hash function, and the same sequence of
//! `add_node`/`add_nodes`/`remove_node` calls, [`HashRing::get_nodes`] returns exactly the nodes
//! that tooz returns, including its quirks:
//!
//! * point `r` of a node (`0 <= r < partitions * weight`) is `H(node * (r + 2))`, the digest of the
//!   node name repeated `r + 2` times, read as a big-endian integer;
//! * a later-added node that produces the same point as an earlier one takes the point over (this
//!   really happens: `"abab"` repeated twice is `"ab"` repeated four times);
//! * removing a node deletes all of its points, even those that another node took over;
//! * re-adding a node with a smaller weight keeps the points of the larger weight but records the
//!   smaller one, so a later removal leaves "orphan" points that still map data onto the removed
//!   node (tooz does the same, and so does this ring);
//! * `replicas` is clamped to the number of member nodes that are not ignored.
//!
//! Nodes are byte strings. Anything that is `AsRef<[u8]>` can name one (`&str`, `String`,
//! `&[u8]`, `Vec<u8>`, ...); a `str` is used as its UTF-8 bytes, as tooz encodes `str` nodes.
//! Results borrow the node names from the ring as `&[u8]`.
//!
//! Deliberate differences, all in cases where tooz misbehaves:
//!
//! * tooz keeps `"a"` and `b"a"` as two different nodes that own the very same points; here they
//!   are one node.
//! * [`HashRing::new`] adds the initial nodes in the order given (first occurrence wins). tooz adds
//!   them in the iteration order of a Python `set`, which varies between processes; it only matters
//!   when two initial nodes produce identical points, as `"ab"` and `"abab"` do.
//! * Where tooz loops forever (the candidate nodes own too few points, e.g. a node of weight 0) or
//!   raises `IndexError` (members but no points at all), [`HashRing::get_nodes`] walks the ring
//!   once and returns the nodes it found.
//! * Where `remove_node` in tooz raises `KeyError` halfway and leaves a corrupt ring (one of the
//!   node's points was already deleted, e.g. for the empty node name, whose points are all
//!   identical), this ring skips the missing point and finishes the removal.
//!
//! ```
//! use tooz::hashring::HashRing;
//!
//! let mut ring = HashRing::new(["node1", "node2", "node3"]);
//! assert_eq!(ring.len(), 96);
//! assert_eq!(ring.get_node(b"foo"), Some(&b"node2"[..]));
//!
//! ring.add_node("node4", 2);
//! let owners = ring.get_nodes(b"foo", ["node4"], 2)?;
//! assert_eq!(owners.len(), 2);
//! assert!(!owners.contains(&b"node4"[..]));
//! # Ok::<(), tooz::Error>(())
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use md5::Digest;

type Result<T> = std::result::Result<T, crate::Error>;

/// Number of ring points per unit of weight used by [`HashRing::new`] (tooz's
/// `DEFAULT_PARTITION_NUMBER`, 2<sup>5</sup>).
///
/// ```
/// use tooz::hashring::{HashRing, DEFAULT_PARTITIONS};
///
/// assert_eq!(HashRing::new(["a"]).len(), DEFAULT_PARTITIONS as usize);
/// ```
pub const DEFAULT_PARTITIONS: u32 = 32;

/// The hash function that places nodes and data on the ring.
///
/// tooz accepts any name from Python's `hashlib.algorithms_available`; this ring supports the
/// common ones below, spelled the same way. [`HashFunction::Md5`] is tooz's default and the only
/// one tooz's `Partitioner` uses.
///
/// ```
/// use tooz::hashring::HashFunction;
///
/// let f: HashFunction = "sha256".parse()?;
/// assert_eq!(f, HashFunction::Sha256);
/// assert_eq!(f.to_string(), "sha256");
/// assert!("whirlpool".parse::<HashFunction>().is_err());
/// assert_eq!(HashFunction::default(), HashFunction::Md5);
/// # Ok::<(), tooz::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum HashFunction {
    /// MD5, 128-bit points (tooz's default).
    #[default]
    Md5,
    /// SHA-1, 160-bit points.
    Sha1,
    /// SHA-224, 224-bit points.
    Sha224,
    /// SHA-256, 256-bit points.
    Sha256,
}

impl HashFunction {
    /// Every supported hash function.
    ///
    /// ```
    /// use tooz::hashring::HashFunction;
    ///
    /// for f in HashFunction::ALL {
    ///     assert_eq!(f.name().parse::<HashFunction>()?, f);
    /// }
    /// # Ok::<(), tooz::Error>(())
    /// ```
    pub const ALL: [HashFunction; 4] = [
        HashFunction::Md5,
        HashFunction::Sha1,
        HashFunction::Sha224,
        HashFunction::Sha256,
    ];

    /// The `hashlib` name of the function (`"md5"`, `"sha1"`, `"sha224"`, `"sha256"`).
    ///
    /// ```
    /// use tooz::hashring::HashFunction;
    ///
    /// assert_eq!(HashFunction::Sha1.name(), "sha1");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            HashFunction::Md5 => "md5",
            HashFunction::Sha1 => "sha1",
            HashFunction::Sha224 => "sha224",
            HashFunction::Sha256 => "sha256",
        }
    }

    /// Whether digests are longer than 128 bits (and need the second half of a [`Point`]).
    fn is_wide(self) -> bool {
        !matches!(self, HashFunction::Md5)
    }

    /// The point that `data` hashes to.
    fn point(self, data: &[u8]) -> Point {
        match self {
            HashFunction::Md5 => Point::from_digest(&md5::Md5::digest(data)),
            HashFunction::Sha1 => Point::from_digest(&sha1::Sha1::digest(data)),
            HashFunction::Sha224 => Point::from_digest(&sha2::Sha224::digest(data)),
            HashFunction::Sha256 => Point::from_digest(&sha2::Sha256::digest(data)),
        }
    }

    /// Calls `f` with the first `count` points of the node named `key`, in tooz's order.
    fn node_points(self, key: &[u8], count: u64, f: impl FnMut(Point)) {
        match self {
            HashFunction::Md5 => running_points::<md5::Md5>(key, count, f),
            HashFunction::Sha1 => running_points::<sha1::Sha1>(key, count, f),
            HashFunction::Sha224 => running_points::<sha2::Sha224>(key, count, f),
            HashFunction::Sha256 => running_points::<sha2::Sha256>(key, count, f),
        }
    }
}

/// Point `r` is the digest of `key` repeated `r + 2` times: tooz seeds a hash object with the key
/// and then, for each point, feeds the key once more and reads the digest without finalizing.
fn running_points<D: Digest + Clone>(key: &[u8], count: u64, mut f: impl FnMut(Point)) {
    let mut hasher = D::new_with_prefix(key);
    for _ in 0..count {
        hasher.update(key);
        f(Point::from_digest(&hasher.clone().finalize()));
    }
}

impl fmt::Display for HashFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashFunction {
    type Err = crate::Error;

    /// Parses a `hashlib` name. Names of other `hashlib` algorithms, and other spellings, give
    /// [`crate::Error::InvalidOption`] for the option `hash_function`.
    fn from_str(s: &str) -> Result<Self> {
        HashFunction::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| crate::Error::InvalidOption {
                option: "hash_function".to_owned(),
                value: s.to_owned(),
                expected: "one of md5, sha1, sha224, sha256".to_owned(),
            })
    }
}

/// A ring position: the digest as a big-endian integer, split in two halves so that the derived
/// ordering is the integer ordering that tooz bisects on. For md5 `lo` is always 0; longer digests
/// keep their first 16 bytes in `hi` and the rest (at most 16 bytes) in `lo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Point {
    hi: u128,
    lo: u128,
}

impl Point {
    fn from_digest(digest: &[u8]) -> Point {
        let (head, tail) = digest.split_at(16.min(digest.len()));
        Point {
            hi: be_u128(head),
            lo: be_u128(tail),
        }
    }
}

/// Big-endian value of at most 16 bytes.
fn be_u128(bytes: &[u8]) -> u128 {
    bytes.iter().fold(0, |acc, &b| (acc << 8) | u128::from(b))
}

/// A node name or an owner of orphan points.
#[derive(Debug, Clone)]
struct Slot {
    name: Box<[u8]>,
    /// `Some(weight)` while the name is a member of the ring.
    weight: Option<u32>,
    /// Number of ring points this name owns.
    points: usize,
}

/// The ring points in ascending order with their owners, rebuilt after each change.
#[derive(Debug, Clone, Default)]
struct Index {
    hi: Vec<u128>,
    /// Empty for md5; otherwise parallel to `hi`.
    lo: Vec<u128>,
    owner: Vec<u32>,
}

impl Index {
    fn build(ring: &HashMap<Point, u32>, wide: bool) -> Index {
        let mut entries: Vec<(Point, u32)> = ring.iter().map(|(&p, &o)| (p, o)).collect();
        entries.sort_unstable_by_key(|&(p, _)| p);
        Index {
            hi: entries.iter().map(|(p, _)| p.hi).collect(),
            lo: if wide {
                entries.iter().map(|(p, _)| p.lo).collect()
            } else {
                Vec::new()
            },
            owner: entries.iter().map(|&(_, o)| o).collect(),
        }
    }

    /// Position of the first point greater than `h`, or 0 past the end (tooz's
    /// `bisect.bisect` followed by the wrap-around).
    fn partition(&self, h: Point) -> usize {
        let end = self.hi.partition_point(|&p| p <= h.hi);
        let pos = if self.lo.is_empty() {
            end
        } else {
            let begin = self.hi[..end].partition_point(|&p| p < h.hi);
            begin + self.lo[begin..end].partition_point(|&l| l <= h.lo)
        };
        if pos < self.hi.len() {
            pos
        } else {
            0
        }
    }
}

/// A consistent hash ring mapping data onto nodes, placement-compatible with Python tooz.
///
/// See the [module documentation](self) for the placement rules and the few intentional
/// differences from tooz. Lookups take `&self` and the ring is `Send + Sync`, so it can be shared
/// behind an `Arc` or a read lock. After a change, the first lookup sorts the ring points
/// (`O(points log points)`); changes themselves cost `O(partitions * weight)`.
///
/// ```
/// use tooz::hashring::HashRing;
///
/// let mut ring = HashRing::new(["foo", "bar", "baz"]);
/// assert_eq!(ring.get_node(b"fake"), Some(&b"foo"[..]));
/// assert_eq!(ring.get_node(b"fake-again"), Some(&b"bar"[..]));
///
/// ring.remove_node("foo")?;
/// assert_ne!(ring.get_node(b"fake"), Some(&b"foo"[..]));
/// # Ok::<(), tooz::Error>(())
/// ```
#[derive(Clone)]
pub struct HashRing {
    partitions: u32,
    hash: HashFunction,
    /// Every name that is a member or owns points; ids are indexes into this table.
    slots: Vec<Slot>,
    /// Ids of unused slots.
    free: Vec<u32>,
    ids: HashMap<Box<[u8]>, u32>,
    members: usize,
    /// Point -> owner id (tooz's `_ring` dict).
    ring: HashMap<Point, u32>,
    /// Sorted view of `ring`, built on the first lookup after a change.
    index: OnceLock<Index>,
}

impl Default for HashRing {
    /// An empty ring with [`DEFAULT_PARTITIONS`] and md5.
    ///
    /// ```
    /// use tooz::hashring::HashRing;
    ///
    /// let ring = HashRing::default();
    /// assert!(ring.is_empty());
    /// assert_eq!(ring.partitions(), 32);
    /// ```
    fn default() -> Self {
        HashRing::with_hash_function(
            std::iter::empty::<&[u8]>(),
            DEFAULT_PARTITIONS,
            HashFunction::Md5,
        )
    }
}

impl fmt::Debug for HashRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: BTreeMap<String, u32> = self
            .nodes()
            .into_iter()
            .map(|(n, w)| (display_node(n), w))
            .collect();
        f.debug_struct("HashRing")
            .field("partitions", &self.partitions)
            .field("hash_function", &self.hash)
            .field("points", &self.len())
            .field("nodes", &nodes)
            .finish()
    }
}

impl HashRing {
    /// A ring of the given nodes, each of weight 1, with [`DEFAULT_PARTITIONS`] points per unit
    /// of weight and md5 (tooz's `HashRing(nodes)`). Duplicate names are added once.
    ///
    /// ```
    /// use tooz::hashring::HashRing;
    ///
    /// let ring = HashRing::new(["node1", "node2", "node3", "node1"]);
    /// assert_eq!(ring.node_count(), 3);
    /// assert_eq!(ring.len(), 96);
    /// ```
    pub fn new<I>(nodes: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        HashRing::with_hash_function(nodes, DEFAULT_PARTITIONS, HashFunction::Md5)
    }

    /// Like [`HashRing::new`] with `partitions` points per unit of weight
    /// (tooz's `HashRing(nodes, partitions)`).
    ///
    /// ```
    /// use tooz::hashring::HashRing;
    ///
    /// let ring = HashRing::with_partitions(["a", "b"], 8);
    /// assert_eq!(ring.len(), 16);
    /// ```
    pub fn with_partitions<I>(nodes: I, partitions: u32) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        HashRing::with_hash_function(nodes, partitions, HashFunction::Md5)
    }

    /// Like [`HashRing::with_partitions`] with another hash function
    /// (tooz's `HashRing(nodes, partitions, hash_function)`).
    ///
    /// ```
    /// use tooz::hashring::{HashFunction, HashRing};
    ///
    /// let ring = HashRing::with_hash_function(["a", "b"], 32, "sha256".parse()?);
    /// assert_eq!(ring.hash_function(), HashFunction::Sha256);
    /// assert_eq!(ring.len(), 64);
    /// # Ok::<(), tooz::Error>(())
    /// ```
    pub fn with_hash_function<I>(nodes: I, partitions: u32, hash_function: HashFunction) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mut ring = HashRing {
            partitions,
            hash: hash_function,
            slots: Vec::new(),
            free: Vec::new(),
            ids: HashMap::new(),
            members: 0,
            ring: HashMap::new(),
            index: OnceLock::new(),
        };
        for node in nodes {
            if !ring.contains_node(&node) {
                ring.add_node(node, 1);
            }
        }
        ring
    }

    /// Points per unit of weight.
    ///
    /// ```
    /// use tooz::hashring::HashRing;
    ///
    /// assert_eq!(HashRing::with_partitions(["a"], 4).partitions(), 4);
    /// ```
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The hash function placing nodes and data.
    ///
    /// ```
    /// use tooz::hashring::{HashFunction, HashRing};
    ///
    /// assert_eq!(HashRing::new(["a"]).hash_function(), HashFunction::Md5);
    /// ```
    pub fn hash_function(&self) -> HashFunction {
        self.hash
    }

    /// Adds `node` with `weight`, giving it `partitions * weight` points (tooz's `add_node`).
    ///
    /// Nodes with weights 1, 2 and 3 receive about 1/6, 1/3 and 1/2 of the data. A node of
    /// weight 0 is a member that owns no data. Re-adding a member replaces its recorded weight;
    /// as in tooz, the points of a previous larger weight stay on the ring.
    ///
    /// ```
    /// use tooz::hashring::HashRing;
    ///
    /// let mut ring = HashRing::default();
    /// ring.add_node("a", 1);
    /// ring.add_node(b"b".to_vec(), 3);
    /// assert_eq!(ring.len(), 128);
    /// let owners: String = (0..10)
    ///     .map(|i| ring.get_node(i.to_string()).unwrap()[0] as char)
    ///     .collect();
    /// assert_eq!(owners, "bbbbabbbba");
    /// ```
    pub fn add_node(&mut self, node: impl AsRef<[u8]>, weight: u32) {
        let key = node.as_ref();
        let id = self.intern(key);
        let count = u64::from(self.partitions) * u64::from(weight);
        let HashRing {
            hash, ring, slots, ..
        } = self;
        let mut released = Vec::new();
        hash.node_points(key, count, |point| {
            if let Some(old) = ring.insert(point, id) {
                let slot = &mut slots[old as usize];
                slot.points -= 1;
                if old != id && slot.points == 0 && slot.weight.is_none() {
                    released.push(old);
                }
            }
            slots[id as usize].points += 1;
        });
        let slot = &mut self.slots[id as usize];
        if slot.weight.replace(weight).is_none() {
            self.members += 1;
        }
        for old in released {
            self.release(old);
        }
        self.index.take();
    }

    /// Adds each of `nodes` with the same `weight` (tooz's `add_nodes`), in order.
    ///
    /// ```
    /// use tooz::hashring::HashRing;
    ///
    /// let mut ring = HashRing::default();
    /// ring.add_nodes(["a", "b"], 2);
    /// assert_eq!(ring.weight("b"), Some(2));
    /// assert_eq!(ring.len(), 128);
    /// ```
    pub fn add_nodes<I>(&mut self, nodes: I, weight: u32)
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        for node in nodes {
            self.add_node(node, weight);
        }
    }

    /// Removes `node` and the `partitions * weight` points of its recorded weight
    /// (tooz's `remove_node`).
    ///
    /// # Errors
    ///
    /// [`crate::Error::UnknownNode`] if `node` is not a member.
    ///
    /// ```
    /// use tooz::hashring::HashRing;
    ///
    /// let mut ring = HashRing::new(["a", "b"]);
    /// ring.remove_node("a")?;
    /// assert_eq!(ring.len(), 32);
    /// let err = ring.remove_node("a").unwrap_err();
    /// assert!(matches!(err, tooz::Error::UnknownNode { .. }));
    /// assert_eq!(err.to_string(), "unknown node `a'");
    /// # Ok::<(), tooz::Error>(())
    /// ```
    pub fn remove_node(&mut self, node: impl AsRef<[u8]>) -> Result<()> {
        let key = node.as_ref();
        let unknown = || crate::Error::UnknownNode {
            node: display_node(key),
        };
        let id = *self.ids.get(key).ok_or_else(unknown)?;
        let weight = self.slots[id as usize].weight.take().ok_or_else(unknown)?;
        self.members -= 1;
        let count = u64::from(self.partitions) * u64::from(weight);
        let HashRing {
            hash, ring, slots, ..
        } = self;
        let mut released = Vec::new();
        hash.node_points(key, count, |point| {
            // tooz raises KeyError here when the point is already gone; finish the removal.
            if let Some(owner) = ring.remove(&point) {
                let slot = &mut slots[owner as usize];
                slot.points -= 1;
                if slot.points == 0 && slot.weight.is_none() {
                    released.push(owner);
                }
            }
        });
        if self.slots[id as usize].points == 0 && !released.contains(&id) {
            released.push(id);
        }
        for owner in released {
            self.release(owner);
        }
        self.index.take();
        Ok(())
    }

    /// Number of points on the ring (tooz's `len(ring)`): `partitions * sum(weights)` unless
    /// points collide or orphan points remain.
    ///
    /// ```
    /// use tooz::hashring::HashRing;
    ///
    /// assert_eq!(HashRing::new(["node1", "node2", "node3"]).len(), 96);
    /// ```
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether the ring has no points.
    ///
    /// ```
    /// use tooz::hashring::HashRing;
    ///
    /// let mut ring = HashRing::default();
    /// assert!(ring.is_empty());
    /// ring.add_node("a", 1);
    /// assert!(!ring.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// The member nodes and their weights (tooz's `ring.nodes`), ordered by name.
    ///
    /// ```
    /// use tooz::hashring::HashRing;
    ///
    /// let mut ring = HashRing::new(["b"]);
    /// ring.add_node("a", 5);
    /// let nodes: Vec<(&[u8], u32)> = ring.nodes().into_iter().collect();
    /// assert_eq!(nodes, [(&b"a"[..], 5), (&b"b"[..], 1)]);
    /// ```
    pub fn nodes(&self) -> BTreeMap<&[u8], u32> {
        self.slots
            .iter()
            .filter_map(|s| Some((&*s.name, s.weight?)))
            .collect()
    }

    /// Number of member nodes.
    ///
    /// ```
    /// use tooz::hashring::HashRing;
    ///
    /// assert_eq!(HashRing::new(["a", "b"]).node_count(), 2);
    /// ```
    pub fn node_count(&self) -> usize {
        self.members
    }

    /// Whether `node` is a member.
    ///
    /// ```
    /// use tooz::hashring::HashRing;
    ///
    /// let ring = HashRing::new(["a"]);
    /// assert!(ring.contains_node("a"));
    /// assert!(ring.contains_node(b"a"));
    /// assert!(!ring.contains_node("b"));
    /// ```
    pub fn contains_node(&self, node: impl AsRef<[u8]>) -> bool {
        self.weight(node).is_some()
    }

    /// The recorded weight of `node`, `None` if it is not a member.
    ///
    /// ```
    /// use tooz::hashring::HashRing;
    ///
    /// let mut ring = HashRing::default();
    /// ring.add_node("a", 3);
    /// assert_eq!(ring.weight("a"), Some(3));
    /// assert_eq!(ring.weight("b"), None);
    /// ```
    pub fn weight(&self, node: impl AsRef<[u8]>) -> Option<u32> {
        let id = *self.ids.get(node.as_ref())?;
        self.slots[id as usize].weight
    }

    /// The nodes that `data` maps onto (tooz's `ring[data]`): `get_nodes(data, [], 1)`.
    ///
    /// # Errors
    ///
    /// None at present, as for [`HashRing::get_nodes`].
    ///
    /// ```
    /// use tooz::hashring::HashRing;
    ///
    /// let ring = HashRing::new(["node1", "node2", "node3"]);
    /// let owners = ring.get(b"foo")?;
    /// assert_eq!(owners.into_iter().collect::<Vec<_>>(), [&b"node2"[..]]);
    /// assert!(HashRing::default().get(b"foo")?.is_empty());
    /// # Ok::<(), tooz::Error>(())
    /// ```
    pub fn get(&self, data: impl AsRef<[u8]>) -> Result<BTreeSet<&[u8]>> {
        self.get_nodes(data, None::<&[u8]>, 1)
    }

    /// The node that `data` maps onto, `None` on a ring without members; same as the single
    /// element of [`HashRing::get`], without allocating.
    ///
    /// ```
    /// use tooz::hashring::HashRing;
    ///
    /// let ring = HashRing::new(["node1", "node2", "node3"]);
    /// assert_eq!(ring.get_node(b"foo"), Some(&b"node2"[..]));
    /// assert_eq!(HashRing::default().get_node(b"foo"), None);
    /// ```
    pub fn get_node(&self, data: impl AsRef<[u8]>) -> Option<&[u8]> {
        if self.members == 0 {
            return None;
        }
        let index = self.index();
        if index.owner.is_empty() {
            return None;
        }
        let owner = index.owner[index.partition(self.hash.point(data.as_ref()))];
        Some(&self.slots[owner as usize].name)
    }

    /// The set of nodes that `data` maps onto (tooz's `get_nodes`).
    ///
    /// Walks the ring clockwise from the position of `data` and collects distinct owners that are
    /// not in `ignore_nodes`, until it has `min(replicas, members not ignored)` of them. An empty
    /// ring gives an empty set. Where tooz would spin forever because the candidates own too
    /// few points (a node of weight 0), the walk stops after one turn with the nodes found.
    /// Pass `None::<&str>` (or any empty iterator) to ignore nothing.
    ///
    /// # Errors
    ///
    /// None at present; the `Result` leaves room for lookups that can fail without breaking
    /// callers.
    ///
    /// ```
    /// use std::collections::BTreeSet;
    /// use tooz::hashring::HashRing;
    ///
    /// let ring = HashRing::new(["node1", "node2", "node3"]);
    /// let set = |v: &[&'static str]| v.iter().map(|s| s.as_bytes()).collect::<BTreeSet<_>>();
    /// assert_eq!(ring.get_nodes(b"foo", None::<&str>, 2)?, set(&["node2", "node3"]));
    /// assert_eq!(ring.get_nodes(b"foo", ["node2"], 2)?, set(&["node1", "node3"]));
    /// assert_eq!(ring.get_nodes(b"foo", None::<&str>, 10)?.len(), 3);
    /// # Ok::<(), tooz::Error>(())
    /// ```
    pub fn get_nodes<I>(
        &self,
        data: impl AsRef<[u8]>,
        ignore_nodes: I,
        replicas: usize,
    ) -> Result<BTreeSet<&[u8]>>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mut out = BTreeSet::new();
        // Names that own no points and are not members can never be returned: drop them here.
        let mut ignored: Vec<u32> = Vec::new();
        let mut ignored_members = 0;
        for node in ignore_nodes {
            if let Some(&id) = self.ids.get(node.as_ref()) {
                if !ignored.contains(&id) {
                    ignored.push(id);
                    if self.slots[id as usize].weight.is_some() {
                        ignored_members += 1;
                    }
                }
            }
        }
        let wanted = replicas.min(self.members - ignored_members);
        if wanted == 0 {
            return Ok(out);
        }
        let index = self.index();
        let start = index.partition(self.hash.point(data.as_ref()));
        for owner in index.owner[start..]
            .iter()
            .chain(&index.owner[..start])
            .copied()
        {
            if !ignored.contains(&owner) {
                out.insert(&*self.slots[owner as usize].name);
                if out.len() == wanted {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn index(&self) -> &Index {
        self.index
            .get_or_init(|| Index::build(&self.ring, self.hash.is_wide()))
    }

    /// The slot id of `name`, creating a non-member slot if needed.
    fn intern(&mut self, name: &[u8]) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let slot = Slot {
            name: name.into(),
            weight: None,
            points: 0,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = slot;
                id
            }
            None => {
                let id = u32::try_from(self.slots.len()).expect("fewer than 2^32 node names");
                self.slots.push(slot);
                id
            }
        };
        self.ids.insert(name.into(), id);
        id
    }

    /// Forgets a slot that is not a member and owns no points.
    fn release(&mut self, id: u32) {
        let slot = &mut self.slots[id as usize];
        debug_assert!(slot.weight.is_none() && slot.points == 0);
        let name = std::mem::take(&mut slot.name);
        self.ids.remove(&name);
        self.free.push(id);
    }
}

/// A node name for messages: the text if it is UTF-8, else its bytes escaped.
fn display_node(node: &[u8]) -> String {
    match std::str::from_utf8(node) {
        Ok(s) => s.to_owned(),
        Err(_) => node.escape_ascii().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set<'a>(nodes: &[&'a str]) -> BTreeSet<&'a [u8]> {
        nodes.iter().map(|n| n.as_bytes()).collect()
    }

    fn points(hash: HashFunction, key: &[u8], count: u64) -> Vec<Point> {
        let mut v = Vec::new();
        hash.node_points(key, count, |p| v.push(p));
        v
    }

    fn hex_point(s: &str) -> Point {
        let bytes: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect();
        Point::from_digest(&bytes)
    }

    #[test]
    fn appendix_a_three_nodes() {
        let ring = HashRing::new(["node1", "node2", "node3"]);
        assert_eq!(ring.len(), 96);
        assert_eq!(ring.get(b"foo").unwrap(), set(&["node2"]));
        assert_eq!(
            ring.get_nodes(b"foo", None::<&str>, 2).unwrap(),
            set(&["node2", "node3"])
        );
        assert_eq!(
            ring.get_nodes(b"foo", ["node2"], 2).unwrap(),
            set(&["node1", "node3"])
        );
    }

    #[test]
    fn appendix_a_foo_bar_baz() {
        let ring = HashRing::new(["foo", "bar", "baz"]);
        assert_eq!(ring.get(b"fake").unwrap(), set(&["foo"]));
        assert_eq!(ring.get(b"fake-again").unwrap(), set(&["bar"]));
        assert_eq!(
            ring.get_nodes(b"fake", None::<&str>, 2).unwrap(),
            set(&["foo", "bar"])
        );
        assert_eq!(
            ring.get_nodes(b"fake-again", None::<&str>, 2).unwrap(),
            set(&["bar", "baz"])
        );
    }

    #[test]
    fn appendix_a_points() {
        let p = points(HashFunction::Md5, b"node1", 3);
        assert_eq!(p[0], hex_point("9932f6d3a67f65e538d7ae56541a85da"));
        assert_eq!(p[0].hi, 203636504439452185153257964400017049050);
        assert_eq!(p[0].lo, 0);
        assert_eq!(p[1], hex_point("ab7432473dfcc9a1a69786d8c91df451"));
        assert_eq!(p[2], hex_point("f2da4bc95ae5ddc9e63ad977a240c96e"));
        assert_eq!(
            HashFunction::Md5.point(b"foo"),
            hex_point("acbd18db4cc2f85cedef654fccc4a4d8")
        );
    }

    #[test]
    fn appendix_a_weighted() {
        let mut ring = HashRing::default();
        ring.add_node("a", 1);
        ring.add_node("b", 3);
        assert_eq!(ring.len(), 128);
        let owners: Vec<&[u8]> = (0..10)
            .map(|i| ring.get_node(i.to_string()).unwrap())
            .collect();
        let expected: Vec<&[u8]> = "bbbbabbbba".as_bytes().chunks(1).collect::<Vec<_>>();
        assert_eq!(owners, expected);
    }

    #[test]
    fn wide_points_keep_all_digest_bytes() {
        // Point 0 of "ab" is the digest of "abab", ordered as Python's int(hexdigest, 16).
        let p = points(HashFunction::Sha1, b"ab", 1)[0];
        assert_eq!(p, hex_point("4c1acec4625f4a7f669743d6642b75f5c4b7139a"));
        assert_eq!(p.lo, 0xc4b7139a);
        let p = points(HashFunction::Sha256, b"ab", 1)[0];
        assert_eq!(
            p,
            hex_point("a667282675f4876021d392aa6592f39dabf718748c4b738563cb9d5dc8f21f24")
        );
        assert_eq!(p.lo, 0xabf718748c4b738563cb9d5dc8f21f24);
    }

    #[test]
    fn wide_partition_compares_low_half() {
        let index = Index {
            hi: vec![5, 5, 5, 9],
            lo: vec![1, 3, 7, 0],
            owner: vec![0, 1, 2, 3],
        };
        assert_eq!(index.partition(Point { hi: 5, lo: 0 }), 0);
        assert_eq!(index.partition(Point { hi: 5, lo: 1 }), 1);
        assert_eq!(index.partition(Point { hi: 5, lo: 4 }), 2);
        assert_eq!(index.partition(Point { hi: 5, lo: 7 }), 3);
        assert_eq!(index.partition(Point { hi: 9, lo: 0 }), 0);
        assert_eq!(index.partition(Point { hi: 4, lo: 99 }), 0);
        assert_eq!(index.partition(Point { hi: 6, lo: 0 }), 3);
    }

    #[test]
    fn empty_ring() {
        let ring = HashRing::default();
        assert!(ring.get_nodes(b"x", ["a"], 3).unwrap().is_empty());
        assert_eq!(ring.get_node(b"x"), None);
        assert_eq!(ring.len(), 0);
    }

    #[test]
    fn zero_partitions_or_weight_do_not_panic_or_hang() {
        let ring = HashRing::with_partitions(["a", "b"], 0);
        assert_eq!(ring.node_count(), 2);
        assert!(ring.get(b"x").unwrap().is_empty());
        assert_eq!(ring.get_node(b"x"), None);

        let mut ring = HashRing::new(["a"]);
        ring.add_node("drained", 0);
        assert_eq!(ring.len(), 32);
        assert_eq!(ring.get_nodes(b"x", None::<&str>, 2).unwrap(), set(&["a"]));
        assert!(ring.get_nodes(b"x", ["a"], 1).unwrap().is_empty());
    }

    #[test]
    fn replicas_clamped_and_ignore_unknown_names() {
        let ring = HashRing::new(["a", "b", "c"]);
        assert_eq!(ring.get_nodes(b"k", ["zz", "a", "a"], 5).unwrap().len(), 2);
        assert_eq!(ring.get_nodes(b"k", None::<&str>, 0).unwrap().len(), 0);
        assert!(ring.get_nodes(b"k", ["a", "b", "c"], 2).unwrap().is_empty());
    }

    #[test]
    fn str_and_bytes_are_one_node() {
        let mut ring = HashRing::new(["a"]);
        ring.add_node(b"a", 1);
        assert_eq!(ring.node_count(), 1);
        assert_eq!(ring.len(), 32);
        ring.remove_node(&b"a"[..]).unwrap();
        assert!(ring.is_empty());
    }

    #[test]
    fn unknown_node_error() {
        let mut ring = HashRing::new(["a"]);
        match ring.remove_node(b"\xffx") {
            Err(crate::Error::UnknownNode { node }) => assert_eq!(node, "\\xffx"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            ring.remove_node("b").unwrap_err().to_string(),
            "unknown node `b'"
        );
    }

    #[test]
    fn colliding_names_take_over_points() {
        // "abab" * (r + 2) == "ab" * (2r + 4): 15 of "ab"'s 32 points are also "abab"'s.
        let mut ring = HashRing::default();
        ring.add_node("ab", 1);
        ring.add_node("abab", 1);
        assert_eq!(ring.len(), 64 - 15);
        assert_eq!(ring.slots[0].points, 32 - 15);
        assert_eq!(ring.slots[1].points, 32);
        // Removing "ab" deletes the shared points too, now owned by "abab".
        ring.remove_node("ab").unwrap();
        assert_eq!(ring.len(), 32 - 15);
        // tooz would raise KeyError here; the removal completes.
        ring.remove_node("abab").unwrap();
        assert!(ring.is_empty());
        assert!(ring.ids.is_empty());
    }

    #[test]
    fn empty_name_owns_one_point() {
        let mut ring = HashRing::new(["", "x"]);
        assert_eq!(ring.len(), 33);
        ring.remove_node("").unwrap();
        assert_eq!(ring.len(), 32);
    }

    #[test]
    fn smaller_reweight_leaves_orphans_that_still_own_data() {
        let mut ring = HashRing::new(["a"]);
        ring.add_node("x", 3);
        ring.add_node("x", 1);
        assert_eq!(ring.weight("x"), Some(1));
        assert_eq!(ring.len(), 128);
        ring.remove_node("x").unwrap();
        assert!(!ring.contains_node("x"));
        assert_eq!(ring.len(), 96);
        let orphaned = (0..1000)
            .filter(|i| ring.get_node(i.to_string()) == Some(b"x"))
            .count();
        assert!(orphaned > 0);
        // Orphans can be ignored, and do not count as candidates.
        let owners = ring.get_nodes(b"1", ["x"], 5).unwrap();
        assert_eq!(owners, set(&["a"]));
        // Re-adding with the larger weight adopts the orphan points again.
        ring.add_node("x", 3);
        assert_eq!(ring.len(), 128);
        ring.remove_node("x").unwrap();
        assert_eq!(ring.len(), 32);
        assert_eq!(ring.ids.len(), 1);
    }

    #[test]
    fn parse_hash_functions() {
        for f in HashFunction::ALL {
            assert_eq!(f.name().parse::<HashFunction>().unwrap(), f);
        }
        let err = "MD5".parse::<HashFunction>().unwrap_err();
        assert!(matches!(err, crate::Error::InvalidOption { .. }));
        assert!(err.to_string().contains("md5, sha1"));
    }

    #[test]
    fn debug_is_short() {
        let ring = HashRing::new(["a"]);
        let s = format!("{ring:?}");
        assert!(s.contains("points: 32"), "{s}");
        assert!(s.contains("\"a\": 1"), "{s}");
    }
}
