//! Python tooz 8.1's key layout in Consul's KV store, and how names become key segments.
//!
//! | key | value |
//! |---|---|
//! | `<ns>/locks/<name>` | the holder (`common::holder`; Python writes `I got it!`) |
//! | `<ns>/groups/<group>/` | empty: the group exists |
//! | `<ns>/groups/<group>/<member>` | the member's capabilities, msgpack |
//! | `<ns>/shared/<name>/<nonce>` | a shared holder of lock `<name>`, tooz-rs only |
//! | `<ns>/epoch` | the store's epoch (seconds since 2020, decimal), tooz-rs only |
//!
//! A name is written as it is where Python tooz would write it and Consul can hold it: valid
//! UTF-8 with no control character, no empty, `.` or `..` segment, not starting with `~`, and
//! (for groups and members, one segment each) no `/`. Any other name is written `~` and its
//! url-safe base64, which no name written as it is starts with.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::id::Id;

/// The keys of one namespace.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    namespace: String,
}

/// Whether `name` is written as it is (`segments`: whether it may contain `/`).
fn plain(name: &[u8], segments: bool) -> Option<&str> {
    let text = std::str::from_utf8(name).ok()?;
    let fits = !text.is_empty()
        && !text.starts_with('~')
        && !text.chars().any(char::is_control)
        && (segments || !text.contains('/'))
        && text
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    fits.then_some(text)
}

/// The key segment(s) naming `name`.
pub(super) fn encode(name: &Id, segments: bool) -> String {
    match plain(name.as_bytes(), segments) {
        Some(text) => text.to_string(),
        None => format!("~{}", URL_SAFE_NO_PAD.encode(name.as_bytes())),
    }
}

/// The name a key segment stands for; `None` for one this layout never writes.
pub(super) fn decode(segment: &str) -> Option<Id> {
    match segment.strip_prefix('~') {
        Some(encoded) => URL_SAFE_NO_PAD.decode(encoded).ok().map(Id::from),
        None if !segment.is_empty() && !segment.contains('/') => Some(Id::from(segment)),
        None => None,
    }
}

impl Layout {
    pub(super) fn new(namespace: &str) -> Self {
        Layout {
            namespace: namespace.to_string(),
        }
    }

    /// `<ns>/locks/<name>`.
    pub(super) fn lock(&self, name: &Id) -> String {
        format!("{}/locks/{}", self.namespace, encode(name, true))
    }

    /// `<ns>/shared/<name>/`: the prefix of the shared holders of a lock (not Python's).
    pub(super) fn shared(&self, name: &Id) -> String {
        format!("{}/shared/{}/", self.namespace, encode(name, true))
    }

    /// `<ns>/epoch`: the store's epoch, the high bits of fencing tokens (not Python's).
    pub(super) fn epoch(&self) -> String {
        format!("{}/epoch", self.namespace)
    }

    /// `<ns>/groups/`: every group is below it.
    pub(super) fn groups(&self) -> String {
        format!("{}/groups/", self.namespace)
    }

    /// `<ns>/groups/<group>/`: the group's key, and the prefix of its members.
    pub(super) fn group(&self, group: &Id) -> String {
        format!("{}{}/", self.groups(), encode(group, false))
    }

    /// `<ns>/groups/<group>/<member>`.
    pub(super) fn member(&self, group: &Id, member: &Id) -> String {
        format!("{}{}", self.group(group), encode(member, false))
    }

    /// The member a key below the group's prefix names (`None` for the group's own key and
    /// anything deeper).
    pub(super) fn member_of(&self, group_prefix: &str, key: &str) -> Option<Id> {
        decode(key.strip_prefix(group_prefix)?)
    }

    /// The group a key listed below `<ns>/groups/` (with `separator=/`) names.
    pub(super) fn group_of(&self, key: &str) -> Option<Id> {
        decode(key.strip_prefix(&self.groups())?.strip_suffix('/')?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_names_are_kept() {
        let layout = Layout::new("tooz");
        assert_eq!(layout.lock(&Id::from("a/b")), "tooz/locks/a/b");
        assert_eq!(layout.group(&Id::from("g")), "tooz/groups/g/");
        assert_eq!(
            layout.member(&Id::from("g"), &Id::from("ünï")),
            "tooz/groups/g/ünï"
        );
    }

    #[test]
    fn odd_names_round_trip() {
        let layout = Layout::new("ns");
        for name in [
            &b"a/b"[..],
            b"/",
            b"..",
            b"a//b",
            b"nul\0",
            b"\xff\xfe",
            b"~x",
            b"sp ace%20&?#",
        ] {
            let id = Id::from(name.to_vec());
            let key = layout.member(&Id::from("g"), &id);
            assert!(!key["ns/groups/g/".len()..].contains('/'), "{key}");
            assert_eq!(layout.member_of("ns/groups/g/", &key), Some(id.clone()));
            let group = layout.group(&id);
            assert_eq!(layout.group_of(&group), Some(id));
        }
        assert_eq!(layout.member_of("ns/groups/g/", "ns/groups/g/"), None);
        assert_eq!(layout.member_of("ns/groups/g/", "ns/groups/g/a/b"), None);
    }
}
