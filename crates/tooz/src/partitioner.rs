//! The partitioner: a hash ring over a group's members, kept current from membership events.
//!
//! Placement is Python tooz's: the same members, weights (the `weight` capability), number of
//! partitions and object-to-bytes rule give the same owners in Rust and Python processes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::coordinator::Coordinator;
use crate::error::Result;
use crate::group::GroupEvent;
use crate::hashring::HashRing;
use crate::id::Id;
use crate::types::{Capabilities, Value};

/// tooz's default number of ring points per unit of weight.
pub const DEFAULT_PARTITIONS: u32 = 32;

/// How an object becomes the bytes that are hashed: Python tooz uses `str(obj).encode()`
/// (or `obj.__tooz_hash__()`), and this trait reproduces it for Rust types.
///
/// ```
/// use tooz::partitioner::PartitionKey;
/// assert_eq!("object-42".partition_key(), b"object-42");
/// assert_eq!(42u32.partition_key(), b"42");
/// assert_eq!((&b"abc"[..]).partition_key(), b"b'abc'"); // Python's str(b'abc')
/// ```
pub trait PartitionKey {
    /// The bytes hashed onto the ring.
    fn partition_key(&self) -> Vec<u8>;
}

impl PartitionKey for str {
    fn partition_key(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}
impl PartitionKey for String {
    fn partition_key(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}
impl<T: PartitionKey + ?Sized> PartitionKey for &T {
    fn partition_key(&self) -> Vec<u8> {
        (**self).partition_key()
    }
}
impl PartitionKey for [u8] {
    fn partition_key(&self) -> Vec<u8> {
        python_bytes_repr(self).into_bytes()
    }
}
impl PartitionKey for Vec<u8> {
    fn partition_key(&self) -> Vec<u8> {
        self.as_slice().partition_key()
    }
}
macro_rules! integer_keys {
    ($($t:ty),*) => {$(
        impl PartitionKey for $t {
            fn partition_key(&self) -> Vec<u8> {
                self.to_string().into_bytes()
            }
        }
    )*};
}
integer_keys!(i8, i16, i32, i64, i128, u8, u16, u32, u64, u128, usize, isize);

/// Bytes hashed as they are (a Python object whose `__tooz_hash__` returns them).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawKey(pub Vec<u8>);

impl PartitionKey for RawKey {
    fn partition_key(&self) -> Vec<u8> {
        self.0.clone()
    }
}

/// Python's `repr()` of a `bytes` object, which is what `str(b'...')` gives.
fn python_bytes_repr(bytes: &[u8]) -> String {
    let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    let mut out = format!("b{quote}");
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            _ if b as char == quote => {
                out.push('\\');
                out.push(quote);
            }
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push(quote);
    out
}

/// The weight a member declared in its capabilities (`{"weight": n}`), 1 otherwise, as
/// Python tooz's partitioner reads it.
pub fn member_weight(caps: &Capabilities) -> u32 {
    caps.get("weight")
        .and_then(Value::as_u64)
        .and_then(|w| u32::try_from(w).ok())
        .unwrap_or(1)
}

/// The ring at one moment: which member owns what.
#[derive(Clone)]
pub struct PartitionView {
    /// Increases by one with every membership change applied.
    pub epoch: u64,
    ring: Arc<HashRing>,
    me: Id,
}

impl PartitionView {
    /// The ring the partitioner builds for `members` (weights from their capabilities, tooz's
    /// placement), as seen by the member `me`.
    pub fn from_members(members: &BTreeMap<Id, Capabilities>, partitions: u32, me: Id) -> Self {
        let mut ring = HashRing::with_partitions(Vec::<Vec<u8>>::new(), partitions);
        for (member, caps) in members {
            ring.add_node(member.as_bytes(), member_weight(caps));
        }
        PartitionView {
            epoch: 0,
            ring: Arc::new(ring),
            me,
        }
    }

    /// The members owning `object` (`replicas` of them, skipping `ignore`).
    pub fn members_for_object(
        &self,
        object: &impl PartitionKey,
        ignore: &[Id],
        replicas: usize,
    ) -> BTreeSet<Id> {
        let key = object.partition_key();
        let ignore = ignore.iter().map(Id::as_bytes);
        match self.ring.get_nodes(key, ignore, replicas) {
            Ok(nodes) => nodes.into_iter().map(Id::from).collect(),
            Err(_) => BTreeSet::new(),
        }
    }

    /// True if `member` owns `object` (one replica).
    pub fn belongs_to_member(&self, object: &impl PartitionKey, member: &Id) -> bool {
        self.ring
            .get_node(object.partition_key())
            .is_some_and(|owner| owner == member.as_bytes())
    }

    /// True if this coordinator's member owns `object` (one replica).
    pub fn belongs_to_self(&self, object: &impl PartitionKey) -> bool {
        self.belongs_to_member(object, &self.me)
    }

    /// The members on the ring.
    pub fn members(&self) -> BTreeSet<Id> {
        self.ring.nodes().into_keys().map(Id::from).collect()
    }
}

/// A group's partitioner, from [`Coordinator::join_partitioned_group`].
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let a = tooz::Coordinator::connect("zake://doc-partitioner", "a").await?;
/// let b = tooz::Coordinator::connect("zake://doc-partitioner", "b").await?;
/// a.start().await?;
/// b.start().await?;
/// let pa = a.join_partitioned_group("shards", 1).await?;
/// let pb = b.join_partitioned_group("shards", 1).await?;
/// pa.wait_for_members(2).await;
/// pb.wait_for_members(2).await;
/// let owner = pa.members_for_object(&"object-42", &[], 1);
/// assert_eq!(owner, pb.members_for_object(&"object-42", &[], 1));
/// assert!(pa.belongs_to_self(&"object-42") != pb.belongs_to_self(&"object-42"));
/// # Ok::<(), tooz::Error>(()) }).unwrap();
/// ```
pub struct Partitioner {
    coord: Coordinator,
    group: Id,
    view: watch::Receiver<PartitionView>,
    task: JoinHandle<()>,
}

impl Partitioner {
    pub(crate) async fn start(coord: Coordinator, group: Id, partitions: u32) -> Result<Self> {
        let mut events = coord.watch_group(group.clone()).await?;
        let members = coord.get_members_with_capabilities(group.clone()).await?;
        let me = coord.member_id().clone();
        let (tx, view) = watch::channel(PartitionView::from_members(&members, partitions, me));
        let (c, g) = (coord.clone(), group.clone());
        let task = tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let mut ring = (*tx.borrow().ring).clone();
                let changed = match &event {
                    GroupEvent::Joined { member, .. } => {
                        match c.get_member_capabilities(g.clone(), member.clone()).await {
                            Ok(caps) if !ring.contains_node(member.as_bytes()) => {
                                ring.add_node(member.as_bytes(), member_weight(&caps));
                                true
                            }
                            _ => false,
                        }
                    }
                    GroupEvent::Left { member, .. } => ring.remove_node(member.as_bytes()).is_ok(),
                    GroupEvent::LeaderElected { .. } => false,
                };
                if changed {
                    tx.send_modify(|view| {
                        view.epoch += 1;
                        view.ring = Arc::new(ring);
                    });
                }
            }
        });
        Ok(Partitioner {
            coord,
            group,
            view,
            task,
        })
    }

    /// The group partitioned.
    pub fn group(&self) -> &Id {
        &self.group
    }

    /// The ring as it is now.
    pub fn view(&self) -> PartitionView {
        self.view.borrow().clone()
    }

    /// See [`PartitionView::members_for_object`].
    pub fn members_for_object(
        &self,
        object: &impl PartitionKey,
        ignore: &[Id],
        replicas: usize,
    ) -> BTreeSet<Id> {
        self.view().members_for_object(object, ignore, replicas)
    }

    /// See [`PartitionView::belongs_to_member`].
    pub fn belongs_to_member(&self, object: &impl PartitionKey, member: &Id) -> bool {
        self.view().belongs_to_member(object, member)
    }

    /// See [`PartitionView::belongs_to_self`].
    pub fn belongs_to_self(&self, object: &impl PartitionKey) -> bool {
        self.view().belongs_to_self(object)
    }

    /// Waits until the ring has at least `count` members.
    pub async fn wait_for_members(&self, count: usize) {
        let mut view = self.view.clone();
        let _ = view.wait_for(|v| v.ring.node_count() >= count).await;
    }

    /// A stream of ring views, one per membership change (starting with the current one).
    pub fn changes(&self) -> impl Stream<Item = PartitionView> {
        tokio_stream::wrappers::WatchStream::new(self.view.clone())
    }

    /// Which of `keys` this member gains and loses at each membership change: the first item
    /// lists every key owned now, later items only the differences, with the epoch of the
    /// change. A worker drains what it loses before the new owner picks it up.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use futures::StreamExt;
    /// let a = tooz::Coordinator::connect("zake://doc-ownership", "a").await?;
    /// a.start().await?;
    /// let part = a.join_partitioned_group("shards", 1).await?;
    /// let mut changes = part.ownership((0..100u32).collect());
    /// let first = changes.next().await.unwrap();
    /// assert_eq!(first.gained.len(), 100); // alone: owns everything
    /// # Ok::<(), tooz::Error>(()) }).unwrap();
    /// ```
    pub fn ownership<K>(&self, keys: Vec<K>) -> impl Stream<Item = OwnershipChange<K>>
    where
        K: PartitionKey + Clone + Send + 'static,
    {
        let mut owned = vec![false; keys.len()];
        self.changes().map(move |view| {
            let mut change = OwnershipChange {
                epoch: view.epoch,
                gained: Vec::new(),
                lost: Vec::new(),
            };
            for (key, was) in keys.iter().zip(owned.iter_mut()) {
                let now = view.belongs_to_self(key);
                if now && !*was {
                    change.gained.push(key.clone());
                } else if !now && *was {
                    change.lost.push(key.clone());
                }
                *was = now;
            }
            change
        })
    }

    /// Stops following the group and leaves it.
    pub async fn leave(self) -> Result<()> {
        self.task.abort();
        self.coord.leave_group(self.group.clone()).await
    }
}

impl Drop for Partitioner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What one membership change did to this member's share of a key set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnershipChange<K> {
    /// The epoch of the ring after the change.
    pub epoch: u64,
    /// Keys this member owns now and did not before.
    pub gained: Vec<K>,
    /// Keys this member owned before and no longer does.
    pub lost: Vec<K>,
}

impl Coordinator {
    /// Joins `group` (creating it if needed) with capabilities `{"weight": weight}`, as Python
    /// tooz does, and returns a partitioner over its members with tooz's 32 partitions.
    pub async fn join_partitioned_group(
        &self,
        group: impl Into<Id>,
        weight: u32,
    ) -> Result<Partitioner> {
        self.join_partitioned_group_with(group, weight, DEFAULT_PARTITIONS)
            .await
    }

    /// As [`Coordinator::join_partitioned_group`], with a number of partitions per unit weight.
    pub async fn join_partitioned_group_with(
        &self,
        group: impl Into<Id>,
        weight: u32,
        partitions: u32,
    ) -> Result<Partitioner> {
        let group = group.into();
        let caps = Value::Map(vec![(Value::from("weight"), Value::from(weight))]);
        self.join_group_create(group.clone(), caps).await?;
        Partitioner::start(self.clone(), group, partitions).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_hash_as_python_repr() {
        let cases: [(&[u8], &str); 6] = [
            (b"abc", "b'abc'"),
            (b"it's", "b\"it's\""),
            (b"both'\"", "b'both\\'\"'"),
            (b"\x00\xff\n\\", "b'\\x00\\xff\\n\\\\'"),
            (b"", "b''"),
            (b"tab\there", "b'tab\\there'"),
        ];
        for (bytes, repr) in cases {
            assert_eq!(python_bytes_repr(bytes), repr);
        }
    }

    #[test]
    fn weights_come_from_capabilities() {
        let caps = Capabilities::from(Value::Map(vec![("weight".into(), 5.into())]));
        assert_eq!(member_weight(&caps), 5);
        assert_eq!(member_weight(&Capabilities::none()), 1);
        assert_eq!(member_weight(&Capabilities::from(b"x")), 1);
    }
}
