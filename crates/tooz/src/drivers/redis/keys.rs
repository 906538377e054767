//! The key layout: Python tooz 9's keys, plus a few fixed keys of our own.
//!
//! With namespace `N` (default `_tooz`):
//!
//! | key | type | written by | content |
//! |---|---|---|---|
//! | `N_groups` | set | both | group ids |
//! | `N_group:G` | hash | both | `__created__` = `1`, then member id → msgpack capabilities |
//! | `N_beats:M` | string | both | `Not dead!`, expiring after the membership timeout |
//! | `N_<name>_lock` | string | both | the holder's 32-hex-digit token, expiring after the lock timeout |
//! | `N_fencing` | hash | us | lock name → acquisition counter |
//! | `N_holders` | hash | us | lock name → `token sid epoch counter member` of our last holder |
//! | `N_epoch` | hash | us | `run_id` of the master last seen, `epoch` of the fencing tokens |
//! | `N_joined` | hash | us | `len(G):G M` → join time (ms since 1970) of our members |
//! | `N_rs:queue:<name>:order` | sorted set | us | waiting tokens, scored by arrival (µs, server clock) |
//! | `N_rs:queue:<name>:lease` | sorted set | us | the same tokens, scored by expiry (ms, server clock) |
//!
//! Every key Python tooz writes is `N_groups`, starts with `N_group:` or `N_beats:`, or ends
//! with `_lock`; our four fixed keys are none of those, and our queue keys start with `N_rs:`
//! and end with `:order` or `:lease`, so no name a Python peer picks can make it write one of
//! them, and no name of ours can make us write one of its keys. Two lock names never share a
//! queue key (the suffix tells the two keys apart, the rest is the name).
//!
//! Pub/sub channels (not keys) of ours: `N_rs:lock:<name>` (a lock was released or broken),
//! `N_rs:group:<G>` (`J<member>`, `L<member>`, `D`: joined, left, group deleted), and
//! `N_rs:session:<sid>` (`B<token>`, `E<token>`: this session's acquisition was broken or
//! taken over after it expired).

use crate::id::Id;

/// The field marking that a group exists (tooz's `GROUP_EXISTS`).
pub(super) const GROUP_EXISTS: &[u8] = b"__created__";
/// What a beat key holds (tooz's `STILL_ALIVE`).
pub(super) const STILL_ALIVE: &[u8] = b"Not dead!";

/// The keys and channels of one namespace.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    ns: Vec<u8>,
}

fn join(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

impl Keys {
    pub fn new(namespace: &[u8]) -> Keys {
        Keys {
            ns: namespace.to_vec(),
        }
    }

    /// `N_groups`.
    pub fn groups(&self) -> Vec<u8> {
        join(&[&self.ns, b"_groups"])
    }

    /// `N_group:G`.
    pub fn group(&self, group: &Id) -> Vec<u8> {
        join(&[&self.ns, b"_group:", group.as_bytes()])
    }

    /// `N_beats:` (the prefix of every beat key).
    pub fn beat_prefix(&self) -> Vec<u8> {
        join(&[&self.ns, b"_beats:"])
    }

    /// `N_beats:M`.
    pub fn beat(&self, member: &Id) -> Vec<u8> {
        join(&[&self.ns, b"_beats:", member.as_bytes()])
    }

    /// `N_<name>_lock`, as tooz ≥ 9.0 names it.
    pub fn lock(&self, name: &Id) -> Vec<u8> {
        join(&[&self.ns, b"_", name.as_bytes(), b"_lock"])
    }

    /// `N_fencing`.
    pub fn fencing(&self) -> Vec<u8> {
        join(&[&self.ns, b"_fencing"])
    }

    /// `N_holders`.
    pub fn holders(&self) -> Vec<u8> {
        join(&[&self.ns, b"_holders"])
    }

    /// `N_epoch`.
    pub fn epoch(&self) -> Vec<u8> {
        join(&[&self.ns, b"_epoch"])
    }

    /// `N_joined`.
    pub fn joined(&self) -> Vec<u8> {
        join(&[&self.ns, b"_joined"])
    }

    /// The prefix of the `N_joined` fields of `group`: `len(G):G`.
    pub fn joined_prefix(&self, group: &Id) -> Vec<u8> {
        join(&[format!("{}:", group.len()).as_bytes(), group.as_bytes()])
    }

    /// The `N_joined` field of `member` in `group`.
    pub fn joined_field(&self, group: &Id, member: &Id) -> Vec<u8> {
        join(&[&self.joined_prefix(group), member.as_bytes()])
    }

    /// `N_rs:queue:<name>:order`: the lock's waiters in arrival order.
    pub fn queue_order(&self, name: &Id) -> Vec<u8> {
        join(&[&self.ns, b"_rs:queue:", name.as_bytes(), b":order"])
    }

    /// `N_rs:queue:<name>:lease`: the lock's waiters by expiry of their place.
    pub fn queue_lease(&self, name: &Id) -> Vec<u8> {
        join(&[&self.ns, b"_rs:queue:", name.as_bytes(), b":lease"])
    }

    /// `N_rs:lock:<name>`.
    pub fn lock_channel(&self, name: &Id) -> Vec<u8> {
        join(&[&self.ns, b"_rs:lock:", name.as_bytes()])
    }

    /// `N_rs:group:<G>`.
    pub fn group_channel(&self, group: &Id) -> Vec<u8> {
        join(&[&self.ns, b"_rs:group:", group.as_bytes()])
    }

    /// `N_rs:session:` (followed by a session id).
    pub fn session_prefix(&self) -> Vec<u8> {
        join(&[&self.ns, b"_rs:session:"])
    }

    /// `N_rs:session:<sid>`.
    pub fn session_channel(&self, sid: &str) -> Vec<u8> {
        join(&[&self.session_prefix(), sid.as_bytes()])
    }

    /// The channel prefixes whose messages mean something to us, to tell them apart.
    pub fn channel_kind<'a>(&self, channel: &'a [u8]) -> Option<(ChannelKind, &'a [u8])> {
        let rest = channel.strip_prefix(self.ns.as_slice())?;
        let rest = rest.strip_prefix(b"_rs:".as_slice())?;
        for (prefix, kind) in [
            (&b"lock:"[..], ChannelKind::Lock),
            (&b"group:"[..], ChannelKind::Group),
            (&b"session:"[..], ChannelKind::Session),
        ] {
            if let Some(name) = rest.strip_prefix(prefix) {
                return Some((kind, name));
            }
        }
        None
    }
}

/// What a channel of ours is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChannelKind {
    /// `N_rs:lock:<name>`.
    Lock,
    /// `N_rs:group:<G>`.
    Group,
    /// `N_rs:session:<sid>`.
    Session,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Capabilities;
    use crate::types::Value;

    #[test]
    fn python_tooz_key_names() {
        let keys = Keys::new(b"_tooz");
        assert_eq!(keys.groups(), b"_tooz_groups");
        assert_eq!(keys.group(&Id::from("G")), b"_tooz_group:G");
        assert_eq!(keys.beat(&Id::from("M")), b"_tooz_beats:M");
        assert_eq!(keys.lock(&Id::from("mylock")), b"_tooz_mylock_lock");
        assert_eq!(
            keys.lock(&Id::from("leader_of_G")),
            b"_tooz_leader_of_G_lock"
        );
    }

    #[test]
    fn our_keys_never_look_like_python_keys() {
        let keys = Keys::new(b"_tooz");
        for key in [keys.fencing(), keys.holders(), keys.epoch(), keys.joined()] {
            assert!(!key.ends_with(b"_lock"));
            assert!(!key.starts_with(b"_tooz_group:"));
            assert!(!key.starts_with(b"_tooz_beats:"));
            assert_ne!(key, keys.groups());
        }
        for name in ["x_lock", "group:a", "beats:b", "groups", "a:order", ""] {
            let name = Id::from(name);
            for key in [keys.queue_order(&name), keys.queue_lease(&name)] {
                assert!(!key.ends_with(b"_lock"));
                assert!(!key.starts_with(b"_tooz_group:"));
                assert!(!key.starts_with(b"_tooz_beats:"));
                assert_ne!(key, keys.groups());
            }
        }
        let (a, b) = (Id::from("a"), Id::from("a:order"));
        assert_ne!(keys.queue_lease(&b), keys.queue_order(&a));
        assert_ne!(keys.queue_order(&b), keys.queue_order(&a));
    }

    #[test]
    fn channels_are_told_apart() {
        let keys = Keys::new(b"ns");
        let ch = keys.lock_channel(&Id::from("a:b"));
        assert_eq!(
            keys.channel_kind(&ch),
            Some((ChannelKind::Lock, &b"a:b"[..]))
        );
        let ch = keys.group_channel(&Id::from("g"));
        assert_eq!(
            keys.channel_kind(&ch),
            Some((ChannelKind::Group, &b"g"[..]))
        );
        let ch = keys.session_channel("00ff");
        assert_eq!(
            keys.channel_kind(&ch),
            Some((ChannelKind::Session, &b"00ff"[..]))
        );
        assert_eq!(keys.channel_kind(b"other"), None);
    }

    #[test]
    fn capabilities_match_python_bytes() {
        assert_eq!(Capabilities::to_msgpack(&Capabilities::none()), [0xc0]);
        assert_eq!(
            Capabilities::to_msgpack(&Capabilities::from(b"")),
            [0xc4, 0x00]
        );
        let weight = Capabilities::from(Value::Map(vec![("weight".into(), 1.into())]));
        assert_eq!(
            Capabilities::to_msgpack(&weight),
            [0x81, 0xa6, b'w', b'e', b'i', b'g', b'h', b't', 0x01]
        );
        assert_eq!(
            Capabilities::from_msgpack(&weight.to_msgpack()).unwrap(),
            weight
        );
        assert!(Capabilities::from_msgpack(&[0xc0, 0xc0]).is_err());
        assert!(Capabilities::from_msgpack(&[0x81]).is_err());
    }
}
