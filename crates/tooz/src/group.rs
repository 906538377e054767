//! Group membership types and the watcher machinery shared by every driver.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::driver::{Driver, GroupChange};
use crate::error::{Error, Result};
use crate::id::Id;

pub use rmpv::Value;

/// What a member tells the group about itself: any msgpack value, as in tooz.
///
/// Bytes, text, maps and numbers convert into it; `Capabilities::none()` (msgpack nil) is
/// what a member that gave nothing has.
///
/// ```
/// use tooz::{Capabilities, Value};
/// let caps = Capabilities::from(b"zone-a");
/// assert_eq!(caps.as_bytes(), Some(&b"zone-a"[..]));
/// let caps = Capabilities::from(Value::Map(vec![("weight".into(), 1.into())]));
/// assert_eq!(caps.get("weight").and_then(|v| v.as_i64()), Some(1));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Capabilities(Value);

impl Capabilities {
    /// No capabilities (msgpack nil).
    pub fn none() -> Self {
        Capabilities(Value::Nil)
    }

    /// True if no capabilities were given.
    pub fn is_none(&self) -> bool {
        self.0.is_nil()
    }

    /// The value.
    pub fn value(&self) -> &Value {
        &self.0
    }

    /// Consumes, returning the value.
    pub fn into_value(self) -> Value {
        self.0
    }

    /// The bytes, when the capabilities are a byte string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.0 {
            Value::Binary(b) => Some(b),
            Value::String(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// The msgpack bytes Python tooz stores (bytes as bin, text as str).
    pub fn to_msgpack(&self) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &self.0).expect("writing to a Vec cannot fail");
        out
    }

    /// Reads stored msgpack bytes: one value, nothing after it (as msgpack-python reads
    /// them). Anything else is [`Error::Serialization`], never a panic.
    ///
    /// ```
    /// use tooz::Capabilities;
    /// let caps = Capabilities::from("zone=a");
    /// assert_eq!(Capabilities::from_msgpack(&caps.to_msgpack()).unwrap(), caps);
    /// assert!(Capabilities::from_msgpack(&[0x81]).is_err()); // a map cut short
    /// ```
    pub fn from_msgpack(bytes: &[u8]) -> Result<Capabilities> {
        let mut rest = bytes;
        let value = rmpv::decode::read_value(&mut rest)
            .map_err(|e| Error::Serialization(format!("corrupt capabilities: {e}")))?;
        if !rest.is_empty() {
            return Err(Error::Serialization(format!(
                "corrupt capabilities: {} trailing bytes",
                rest.len()
            )));
        }
        Ok(Capabilities(value))
    }

    /// A field of map capabilities, by string key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match &self.0 {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities::none()
    }
}

impl From<Value> for Capabilities {
    fn from(v: Value) -> Self {
        Capabilities(v)
    }
}
impl From<&[u8]> for Capabilities {
    fn from(b: &[u8]) -> Self {
        Capabilities(Value::Binary(b.to_vec()))
    }
}
impl<const N: usize> From<&[u8; N]> for Capabilities {
    fn from(b: &[u8; N]) -> Self {
        Capabilities(Value::Binary(b.to_vec()))
    }
}
impl From<Vec<u8>> for Capabilities {
    fn from(b: Vec<u8>) -> Self {
        Capabilities(Value::Binary(b))
    }
}
impl From<&str> for Capabilities {
    fn from(s: &str) -> Self {
        Capabilities(Value::from(s))
    }
}
impl From<String> for Capabilities {
    fn from(s: String) -> Self {
        Capabilities(Value::from(s))
    }
}
impl From<()> for Capabilities {
    fn from(_: ()) -> Self {
        Capabilities::none()
    }
}

/// Everything a driver knows about one member (tooz's `get_member_info`).
#[derive(Debug, Clone, PartialEq)]
pub struct MemberInfo {
    /// The member's capabilities.
    pub capabilities: Capabilities,
    /// When it joined, where the backend records it.
    pub joined_at: Option<SystemTime>,
    /// Backend-specific details (e.g. a ZooKeeper node's version or session).
    pub extra: BTreeMap<String, Value>,
}

/// A membership or leadership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEvent {
    /// A member joined the group.
    Joined {
        /// The group.
        group: Id,
        /// The member.
        member: Id,
    },
    /// A member left the group (or its membership expired).
    Left {
        /// The group.
        group: Id,
        /// The member.
        member: Id,
    },
    /// This coordinator was elected leader of the group.
    LeaderElected {
        /// The group.
        group: Id,
        /// The member elected (this coordinator's id).
        member: Id,
    },
}

impl GroupEvent {
    /// The group the event is about.
    pub fn group(&self) -> &Id {
        match self {
            GroupEvent::Joined { group, .. }
            | GroupEvent::Left { group, .. }
            | GroupEvent::LeaderElected { group, .. } => group,
        }
    }

    /// The member the event is about.
    pub fn member(&self) -> &Id {
        match self {
            GroupEvent::Joined { member, .. }
            | GroupEvent::Left { member, .. }
            | GroupEvent::LeaderElected { member, .. } => member,
        }
    }
}

/// A stream of one group's [`GroupEvent`]s, in the order they happened.
///
/// Made by [`Coordinator::watch_group`](crate::Coordinator::watch_group); dropping it stops
/// the watch.
pub struct GroupWatch {
    rx: mpsc::UnboundedReceiver<GroupEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Stream for GroupWatch {
    type Item = GroupEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<GroupEvent>> {
        self.rx.poll_recv(cx)
    }
}

impl GroupWatch {
    /// The next event if one is already there, without waiting.
    pub fn try_next_event(&mut self) -> Option<GroupEvent> {
        self.rx.try_recv().ok()
    }
}

impl Drop for GroupWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Applies changes to a known member set and turns them into events, never reporting a join
/// of a known member or a leave of an unknown one.
struct Differ {
    group: Id,
    known: BTreeSet<Id>,
    tx: mpsc::UnboundedSender<GroupEvent>,
}

impl Differ {
    fn emit(&self, event: GroupEvent) -> bool {
        self.tx.send(event).is_ok()
    }

    fn joined(&mut self, member: Id) -> bool {
        if self.known.insert(member.clone()) {
            let group = self.group.clone();
            return self.emit(GroupEvent::Joined { group, member });
        }
        true
    }

    fn left(&mut self, member: &Id) -> bool {
        if self.known.remove(member) {
            let group = self.group.clone();
            return self.emit(GroupEvent::Left {
                group,
                member: member.clone(),
            });
        }
        true
    }

    /// Emits the joins, then the leaves, that turn the known set into `now`.
    fn diff_to(&mut self, now: BTreeSet<Id>) -> bool {
        let gone: Vec<Id> = self.known.difference(&now).cloned().collect();
        for member in now {
            if !self.joined(member) {
                return false;
            }
        }
        gone.iter().all(|m| self.left(m))
    }
}

/// Reads the members, treating a vanished group as empty.
async fn read_members(driver: &dyn Driver, group: &Id) -> Result<BTreeSet<Id>> {
    match driver.get_members(group).await {
        Err(Error::GroupNotCreated { .. }) => Ok(BTreeSet::new()),
        other => other,
    }
}

/// Starts watching `group`: push when the driver has a feed, polling and diffing otherwise.
/// Fails with `GroupNotCreated` if the group does not exist.
pub(crate) async fn watch(driver: Arc<dyn Driver>, group: Id) -> Result<GroupWatch> {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = match driver.subscribe_group(&group).await? {
        Some((snapshot, feed)) => {
            let differ = Differ {
                group: group.clone(),
                known: snapshot,
                tx,
            };
            tokio::spawn(follow_feed(driver, differ, feed))
        }
        None => {
            let snapshot = driver.get_members(&group).await?;
            let differ = Differ {
                group: group.clone(),
                known: snapshot,
                tx,
            };
            tokio::spawn(poll_members(driver, differ))
        }
    };
    Ok(GroupWatch { rx, task })
}

async fn follow_feed(
    driver: Arc<dyn Driver>,
    mut differ: Differ,
    mut feed: crate::driver::GroupFeed,
) {
    while let Some(change) = feed.next().await {
        let alive = match change {
            GroupChange::Joined(member) => differ.joined(member),
            GroupChange::Left(member) => differ.left(&member),
            GroupChange::Resync => match read_members(driver.as_ref(), &differ.group).await {
                Ok(now) => differ.diff_to(now),
                Err(error) => {
                    tracing::warn!(group = %differ.group, %error, "watch resync failed");
                    true
                }
            },
        };
        if !alive {
            return;
        }
    }
}

async fn poll_members(driver: Arc<dyn Driver>, mut differ: Differ) {
    let mut ticker = tokio::time::interval(driver.poll_interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = differ.tx.closed() => return,
        }
        match read_members(driver.as_ref(), &differ.group).await {
            Ok(now) => {
                if !differ.diff_to(now) {
                    return;
                }
            }
            Err(error) => tracing::warn!(group = %differ.group, %error, "watch poll failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Valid encodings: nil, bin, str, nested maps and arrays, every int width, float, ext.
    fn corpus() -> Vec<Vec<u8>> {
        let values = [
            Value::Nil,
            Value::Binary(b"zone-a".to_vec()),
            Value::from("text"),
            Value::Map(vec![
                ("weight".into(), 1.into()),
                (
                    "tags".into(),
                    Value::Array(vec![Value::from(-1), u64::MAX.into()]),
                ),
                (
                    "nested".into(),
                    Value::Map(vec![(2.into(), Value::F64(0.5))]),
                ),
            ]),
            Value::from(i64::MIN),
            Value::Ext(-1, vec![0, 0, 0, 1]),
        ];
        values
            .into_iter()
            .map(|v| Capabilities(v).to_msgpack())
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        #[test]
        fn corrupt_capabilities_give_typed_errors(bytes in crate::fuzz::garbage(corpus())) {
            match Capabilities::from_msgpack(&bytes) {
                // What decodes re-encodes to bytes that decode to the same value.
                Ok(caps) => {
                    let again = Capabilities::from_msgpack(&caps.to_msgpack()).unwrap();
                    prop_assert_eq!(again.to_msgpack(), caps.to_msgpack());
                }
                Err(Error::Serialization(_)) => {}
                Err(other) => prop_assert!(false, "untyped error: {other}"),
            }
        }
    }

    #[test]
    fn capabilities_round_trip() {
        for bytes in corpus() {
            assert_eq!(
                Capabilities::from_msgpack(&bytes).unwrap().to_msgpack(),
                bytes
            );
        }
        assert!(Capabilities::from_msgpack(&[0xc0, 0xc0]).is_err());
        assert!(Capabilities::from_msgpack(&[]).is_err());
    }
}
