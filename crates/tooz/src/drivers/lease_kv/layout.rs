//! Python tooz's etcd key layout, so that Python and Rust processes share groups and locks.
//!
//! | key | value | lease |
//! |---|---|---|
//! | `tooz/groups/<G>/` | the key itself (as tooz's etcd3gw driver writes it) | none |
//! | `tooz/groups/<G>/<M>` | msgpack of the member's capabilities | the member's session |
//! | `/tooz/locks<name>` | the holder's value (below) | the holder's session |
//! | `/locks/<name>` | the same value (python-etcd3's lock key, tooz 4.x `etcd3://`) | the same |
//! | `/tooz/lockq/<hex(name)>/<lease>-<nonce>` | empty: a waiter's place in the queue | the waiter's session |
//!
//! A lock is held by whoever created `/tooz/locks<name>` (tooz 5+ over the gateway) or
//! `/locks/<name>` (tooz 4.x over gRPC): this driver creates both in one transaction, only when
//! neither exists, so it excludes and is excluded by both generations of Python tooz. Its own
//! waiters queue under `/tooz/lockq/` (Python's poll and cannot see the queue). A holder's
//! value is `common::holder`'s (the acquisition's nonce and the member id); Python holders'
//! values name no member.

use crate::id::Id;

const GROUPS: &[u8] = b"tooz/groups/";
const LOCKS: &[u8] = b"/tooz/locks";
const LEGACY_LOCKS: &[u8] = b"/locks/";
const QUEUES: &[u8] = b"/tooz/lockq/";

/// Key builder, with an optional namespace in front of every key.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layout {
    namespace: Vec<u8>,
}

impl Layout {
    pub fn new(namespace: &[u8]) -> Self {
        Layout {
            namespace: namespace.to_vec(),
        }
    }

    fn key(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut key = self.namespace.clone();
        for part in parts {
            key.extend_from_slice(part);
        }
        key
    }

    /// Prefix of every group key.
    pub fn groups(&self) -> Vec<u8> {
        self.key(&[GROUPS])
    }

    /// The group's own key (also the prefix of its members' keys).
    pub fn group(&self, group: &Id) -> Vec<u8> {
        self.key(&[GROUPS, group.as_bytes(), b"/"])
    }

    pub fn member(&self, group: &Id, member: &Id) -> Vec<u8> {
        self.key(&[GROUPS, group.as_bytes(), b"/", member.as_bytes()])
    }

    /// The name of a group from its key, if `key` is one (ends with `/`, and lives on no lease).
    pub fn group_of_key(&self, key: &[u8], lease: i64) -> Option<Id> {
        let name = key.strip_prefix(self.groups().as_slice())?;
        let name = name.strip_suffix(b"/")?;
        (lease == 0 && !name.is_empty()).then(|| Id::from(name.to_vec()))
    }

    pub fn lock(&self, name: &Id) -> Vec<u8> {
        self.key(&[LOCKS, name.as_bytes()])
    }

    pub fn legacy_lock(&self, name: &Id) -> Vec<u8> {
        self.key(&[LEGACY_LOCKS, name.as_bytes()])
    }

    /// Prefix of the waiters' keys of lock `name`.
    pub fn queue(&self, name: &Id) -> Vec<u8> {
        let hex: String = name.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        self.key(&[QUEUES, hex.as_bytes(), b"/"])
    }

    pub fn waiter(&self, name: &Id, lease: i64, nonce: &str) -> Vec<u8> {
        let mut key = self.queue(name);
        key.extend_from_slice(format!("{lease:016x}-{nonce}").as_bytes());
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_python_tooz() {
        let layout = Layout::default();
        let (g, m) = (Id::from("g"), Id::from("m"));
        assert_eq!(layout.group(&g), b"tooz/groups/g/".to_vec());
        assert_eq!(layout.member(&g, &m), b"tooz/groups/g/m".to_vec());
        assert_eq!(layout.lock(&Id::from("x")), b"/tooz/locksx".to_vec());
        assert_eq!(layout.legacy_lock(&Id::from("x")), b"/locks/x".to_vec());
        assert_eq!(layout.queue(&Id::from("x")), b"/tooz/lockq/78/".to_vec());
        let ns = Layout::new(b"ns-");
        assert_eq!(ns.group(&g), b"ns-tooz/groups/g/".to_vec());
    }

    #[test]
    fn group_keys_are_told_from_member_keys() {
        let layout = Layout::default();
        assert_eq!(
            layout.group_of_key(b"tooz/groups/a/b/", 0),
            Some(Id::from("a/b"))
        );
        assert_eq!(layout.group_of_key(b"tooz/groups/a/m/", 7), None);
        assert_eq!(layout.group_of_key(b"tooz/groups/a/m", 0), None);
    }
}
