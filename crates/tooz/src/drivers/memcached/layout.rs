//! Python tooz's key layout and value encodings on memcached, plus the two keys of ours.
//!
//! | key | value | memcached flags |
//! |---|---|---|
//! | `_TOOZ_GROUP_LIST` | msgpack array of group ids (bin) | 2 |
//! | `_TOOZ_GROUP_<G>` | msgpack map `{member (bin): {b"capabilities" (bin): caps}}`; nil while Python deletes it | 2 |
//! | `_TOOZ_MEMBER_<M>` | `It's alive!` | 1 |
//! | `__TOOZ_LOCK_<name>` | the holder's member id | 1 |
//! | `__TOOZ_LOCK__TOOZ_GROUP_LEADER_<G>` | the leader's member id | 1 |
//! | `__TOOZ_FENCE_<name>` (ours) | the lock's last fencing token, a decimal counter (`ma`) | 0 |
//! | `__TOOZ_BROKEN_<name>` (ours) | the CAS of the acquisition `break_lock` removed | 0 |
//!
//! Flags 1 mark raw bytes and 2 msgpack, as Python tooz's pymemcache serializer writes them;
//! any other flags on a value Python reads is an error there, so ours are only on our keys.
//! No key of Python's starts with `__TOOZ_F` or `__TOOZ_B`. The `namespace` option (ours,
//! empty by default) prefixes every key.

use rmpv::Value;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::types::Capabilities;

use super::proto;

/// The prefix of the lock electing a group's leader.
pub(super) const LEADER_PREFIX: &[u8] = b"_TOOZ_GROUP_LEADER_";
/// What a member's liveness key holds.
pub(super) const STILL_ALIVE: &[u8] = b"It's alive!";
/// Memcached flags of a raw bytes value.
pub(super) const RAW: u32 = 1;
/// Memcached flags of a msgpack value.
pub(super) const MSGPACK: u32 = 2;
/// `{}` in msgpack: an empty group.
pub(super) const EMPTY_GROUP: &[u8] = &[0x80];

const GROUP_LIST: &[u8] = b"_TOOZ_GROUP_LIST";
const GROUP: &[u8] = b"_TOOZ_GROUP_";
const MEMBER: &[u8] = b"_TOOZ_MEMBER_";
const LOCK: &[u8] = b"__TOOZ_LOCK_";
const FENCE: &[u8] = b"__TOOZ_FENCE_";
const BROKEN: &[u8] = b"__TOOZ_BROKEN_";
const CAPABILITIES: &[u8] = b"capabilities";

/// The keys, under a namespace.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    ns: Vec<u8>,
}

impl Keys {
    pub(super) fn new(ns: &[u8]) -> Keys {
        Keys { ns: ns.to_vec() }
    }

    fn key(&self, prefix: &[u8], name: &[u8]) -> Vec<u8> {
        [&self.ns[..], prefix, name].concat()
    }

    pub(super) fn group_list(&self) -> Vec<u8> {
        self.key(GROUP_LIST, b"")
    }

    pub(super) fn group(&self, group: &Id) -> Vec<u8> {
        self.key(GROUP, group.as_bytes())
    }

    pub(super) fn member(&self, member: &Id) -> Vec<u8> {
        self.key(MEMBER, member.as_bytes())
    }

    pub(super) fn lock(&self, name: &Id) -> Vec<u8> {
        self.key(LOCK, name.as_bytes())
    }

    pub(super) fn fence(&self, name: &Id) -> Vec<u8> {
        self.key(FENCE, name.as_bytes())
    }

    pub(super) fn broken(&self, name: &Id) -> Vec<u8> {
        self.key(BROKEN, name.as_bytes())
    }

    /// Why a `kind` name cannot be stored, if it cannot: every key made from it must fit.
    pub(super) fn misfit(&self, kind: &str, name: &Id) -> Option<String> {
        let name = name.as_bytes();
        let keys: Vec<Vec<u8>> = match kind {
            "group" => {
                let leader = [LEADER_PREFIX, name].concat();
                vec![
                    self.key(GROUP, name),
                    self.key(BROKEN, &leader),
                    self.key(FENCE, &leader),
                ]
            }
            "member" => vec![self.key(MEMBER, name)],
            "lock" => vec![self.key(BROKEN, name), self.key(FENCE, name)],
            _ => Vec::new(),
        };
        keys.iter().any(|k| !proto::key_fits(k)).then(|| {
            format!(
                "memcached keys hold at most {} bytes (fewer for names that are not printable \
                 ASCII), and this name would make a longer one",
                proto::MAX_KEY
            )
        })
    }
}

fn corrupt(what: &str, why: impl std::fmt::Display) -> Error {
    Error::Serialization(format!("corrupt {what}: {why}"))
}

fn decode(what: &str, flags: u32, bytes: &[u8]) -> Result<Value> {
    if flags != MSGPACK {
        return Err(corrupt(
            what,
            format!("memcached flags {flags}, not msgpack (2)"),
        ));
    }
    let mut rest = bytes;
    let value = rmpv::decode::read_value(&mut rest).map_err(|e| corrupt(what, e))?;
    if !rest.is_empty() {
        return Err(corrupt(what, format!("{} trailing bytes", rest.len())));
    }
    Ok(value)
}

fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).expect("writing to a Vec cannot fail");
    out
}

/// An id stored as msgpack bin (Python bytes) or str (Python text).
fn id_of(value: &Value) -> Option<Id> {
    match value {
        Value::Binary(b) => Some(Id::from(b.clone())),
        Value::String(s) => Some(Id::from(s.as_bytes().to_vec())),
        _ => None,
    }
}

/// A group's stored members, in the order stored, each entry kept as it is (so that what a
/// Python peer stored beside the capabilities survives our writes).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Group {
    entries: Vec<(Value, Value)>,
}

impl Group {
    /// Reads a group value; `None` for msgpack nil (a group Python tooz is deleting).
    pub(super) fn decode(flags: u32, bytes: &[u8]) -> Result<Option<Group>> {
        match decode("group", flags, bytes)? {
            Value::Nil => Ok(None),
            Value::Map(entries) => {
                if entries.iter().any(|(k, _)| id_of(k).is_none()) {
                    return Err(corrupt("group", "a member id that is not bytes or text"));
                }
                Ok(Some(Group { entries }))
            }
            other => Err(corrupt("group", format!("{other} is not a map"))),
        }
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        encode(&Value::Map(self.entries.clone()))
    }

    fn position(&self, member: &Id) -> Option<usize> {
        self.entries
            .iter()
            .position(|(k, _)| id_of(k).as_ref() == Some(member))
    }

    pub(super) fn contains(&self, member: &Id) -> bool {
        self.position(member).is_some()
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The member ids, in the order stored.
    pub(super) fn members(&self) -> Vec<Id> {
        self.entries.iter().filter_map(|(k, _)| id_of(k)).collect()
    }

    /// The capabilities of `member`, if it is in the group (nil when its entry has none).
    pub(super) fn capabilities(&self, member: &Id) -> Option<Capabilities> {
        let (_, entry) = &self.entries[self.position(member)?];
        let caps = match entry {
            Value::Map(fields) => fields
                .iter()
                .find(|(k, _)| id_of(k).is_some_and(|k| k.as_bytes() == CAPABILITIES))
                .map(|(_, v)| v.clone())
                .unwrap_or(Value::Nil),
            _ => Value::Nil,
        };
        Some(Capabilities::from(caps))
    }

    /// Adds `member` (as bin, as Python tooz writes bytes ids).
    pub(super) fn insert(&mut self, member: &Id, caps: &Capabilities) {
        let entry = Value::Map(vec![(
            Value::Binary(CAPABILITIES.to_vec()),
            caps.value().clone(),
        )]);
        self.entries
            .push((Value::Binary(member.as_bytes().to_vec()), entry));
    }

    /// Removes `member`; false if it was not there.
    pub(super) fn remove(&mut self, member: &Id) -> bool {
        match self.position(member) {
            Some(at) => {
                self.entries.remove(at);
                true
            }
            None => false,
        }
    }

    /// Keeps the members for which `keep` says so.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Id) -> bool) {
        self.entries
            .retain(|(k, _)| id_of(k).as_ref().is_some_and(&mut keep));
    }

    /// Replaces the capabilities of `member`, keeping the rest of its entry; false if it is
    /// not in the group.
    pub(super) fn set_capabilities(&mut self, member: &Id, caps: &Capabilities) -> bool {
        let Some(at) = self.position(member) else {
            return false;
        };
        let entry = &mut self.entries[at].1;
        let mut fields = match std::mem::replace(entry, Value::Nil) {
            Value::Map(fields) => fields,
            _ => Vec::new(),
        };
        fields.retain(|(k, _)| id_of(k).is_none_or(|k| k.as_bytes() != CAPABILITIES));
        fields.push((Value::Binary(CAPABILITIES.to_vec()), caps.value().clone()));
        *entry = Value::Map(fields);
        true
    }
}

/// The group list: group ids as stored.
pub(super) fn decode_group_list(flags: u32, bytes: &[u8]) -> Result<Vec<Value>> {
    match decode("group list", flags, bytes)? {
        Value::Array(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(corrupt("group list", format!("{other} is not an array"))),
    }
}

/// The ids of a group list.
pub(super) fn group_ids(items: &[Value]) -> Vec<Id> {
    items.iter().filter_map(id_of).collect()
}

/// True when the group list holds `group`.
pub(super) fn list_contains(items: &[Value], group: &Id) -> bool {
    items.iter().any(|v| id_of(v).as_ref() == Some(group))
}

/// Adds `group` to a group list (as bin).
pub(super) fn list_insert(items: &mut Vec<Value>, group: &Id) {
    items.push(Value::Binary(group.as_bytes().to_vec()));
}

/// Removes `group` from a group list.
pub(super) fn list_remove(items: &mut Vec<Value>, group: &Id) {
    items.retain(|v| id_of(v).as_ref() != Some(group));
}

/// Encodes a group list.
pub(super) fn encode_group_list(items: &[Value]) -> Vec<u8> {
    encode(&Value::Array(items.to_vec()))
}

/// A member id read from a lock key: raw bytes (flags 1, or none), or a msgpack string.
pub(super) fn holder(flags: u32, bytes: &[u8]) -> Result<Id> {
    if flags == MSGPACK {
        return id_of(&decode("lock holder", flags, bytes)?)
            .ok_or_else(|| corrupt("lock holder", "not bytes or text"));
    }
    Ok(Id::from(bytes.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What Python tooz 9.1 stores, byte for byte (`utils.dumps` of its dicts and lists).
    const PY_GROUP: &[u8] = b"\x82\xc4\x02m1\x81\xc4\x0ccapabilities\xc4\x06zone-a\
                              \xa2m2\x81\xc4\x0ccapabilities\x81\xa6weight\x01";
    const PY_LIST: &[u8] = b"\x92\xc4\x02g1\xa2g2";

    #[test]
    fn python_groups_are_read_and_written_back_unchanged() {
        let group = Group::decode(MSGPACK, PY_GROUP).unwrap().unwrap();
        assert_eq!(group.members(), vec![Id::from("m1"), Id::from("m2")]);
        assert_eq!(
            group.capabilities(&"m1".into()),
            Some(Capabilities::from(&b"zone-a"[..]))
        );
        assert_eq!(
            group
                .capabilities(&"m2".into())
                .unwrap()
                .get("weight")
                .and_then(|v| v.as_i64()),
            Some(1)
        );
        assert_eq!(group.encode(), PY_GROUP);
        assert_eq!(Group::decode(MSGPACK, &[0xc0]).unwrap(), None);
        assert!(Group::decode(MSGPACK, EMPTY_GROUP)
            .unwrap()
            .unwrap()
            .is_empty());
    }

    #[test]
    fn edits_write_what_python_writes() {
        let mut group = Group::default();
        group.insert(&"m1".into(), &Capabilities::from(&b"zone-a"[..]));
        assert_eq!(
            group.encode(),
            b"\x81\xc4\x02m1\x81\xc4\x0ccapabilities\xc4\x06zone-a"
        );
        assert!(group.set_capabilities(&"m1".into(), &Capabilities::none()));
        assert_eq!(
            group.encode(),
            b"\x81\xc4\x02m1\x81\xc4\x0ccapabilities\xc0"
        );
        assert!(!group.set_capabilities(&"m2".into(), &Capabilities::none()));
        assert!(group.remove(&"m1".into()) && !group.remove(&"m1".into()));
        assert_eq!(group.encode(), EMPTY_GROUP);
    }

    #[test]
    fn group_lists_and_holders() {
        let mut list = decode_group_list(MSGPACK, PY_LIST).unwrap();
        assert_eq!(group_ids(&list), vec![Id::from("g1"), Id::from("g2")]);
        assert!(list_contains(&list, &"g2".into()));
        list_remove(&mut list, &"g1".into());
        list_insert(&mut list, &"g3".into());
        assert_eq!(encode_group_list(&list), b"\x92\xa2g2\xc4\x02g3");
        assert_eq!(holder(RAW, b"me").unwrap(), Id::from("me"));
        assert_eq!(holder(MSGPACK, b"\xa2me").unwrap(), Id::from("me"));
        assert!(holder(MSGPACK, b"\x01").is_err());
    }

    #[test]
    fn wrong_flags_or_shapes_are_errors() {
        assert!(matches!(
            Group::decode(RAW, PY_GROUP),
            Err(Error::Serialization(_))
        ));
        assert!(Group::decode(MSGPACK, b"\x92\x01\x02").is_err());
        assert!(Group::decode(MSGPACK, b"\x81\x01\x80").is_err());
        assert!(decode_group_list(MSGPACK, b"\x80").is_err());
        assert!(decode_group_list(0, PY_LIST).is_err());
    }

    #[test]
    fn names_must_make_keys_that_fit() {
        let keys = Keys::new(b"");
        assert_eq!(keys.group(&"g".into()), b"_TOOZ_GROUP_g");
        assert_eq!(keys.lock(&"l".into()), b"__TOOZ_LOCK_l");
        assert_eq!(keys.member(&"m".into()), b"_TOOZ_MEMBER_m");
        assert_eq!(Keys::new(b"ns").group_list(), b"ns_TOOZ_GROUP_LIST");
        assert!(keys.misfit("lock", &Id::from("x".repeat(236))).is_none());
        assert!(keys.misfit("lock", &Id::from("x".repeat(237))).is_some());
        assert!(keys.misfit("group", &Id::from("x".repeat(217))).is_none());
        assert!(keys.misfit("group", &Id::from("x".repeat(218))).is_some());
        assert!(keys.misfit("member", &Id::from("x".repeat(237))).is_none());
        assert!(keys.misfit("member", &Id::from("x".repeat(238))).is_some());
    }

    proptest! {
        /// Stored values of any shape decode to a group or a typed error, never a panic.
        #[test]
        fn group_decoding_never_panics(
            bytes in crate::fuzz::garbage(vec![PY_GROUP.to_vec(), PY_LIST.to_vec(), EMPTY_GROUP.to_vec()]),
        ) {
            let _ = Group::decode(MSGPACK, &bytes);
            let _ = decode_group_list(MSGPACK, &bytes);
            let _ = holder(MSGPACK, &bytes);
        }
    }
}
