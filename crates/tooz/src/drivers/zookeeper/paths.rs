//! The znode layout (kazoo's, as Python tooz builds it) and how ids become node names.
//!
//! Python tooz joins ASCII-decoded ids into paths, so an ASCII id that is a valid node name
//! is stored as itself: Python and Rust processes then share groups, members and locks. Any
//! other id is stored as `~b64~` followed by its bytes in unpadded URL-safe base64 (see
//! [`encode_name`]); decoding is the reverse, and a node name that does not decode is read
//! as itself.

use crate::id::Id;

/// Marks a node name that carries its id in base64.
pub const ENCODED_PREFIX: &str = "~b64~";
/// The child of a group node under which the election contenders queue.
pub const LEADER: &str = "leader";
/// The child of the namespace node under which the locks live.
pub const LOCKS: &str = "locks";
/// What kazoo puts between a contender's uuid and its sequence number.
pub const LOCK_MARKER: &str = "__lock__";
/// First bytes of the lock name that stands for a group's election (see
/// [`Layout::leader_lock_name`]); no plain lock name starts with a NUL byte.
const LEADER_LOCK_TAG: &[u8] = b"\0tooz-leader\0";

/// What an id names, for the names that are reserved in one of the places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A group: `locks` is the lock directory.
    Group,
    /// A member: `leader` is the election directory.
    Member,
    /// A lock.
    Lock,
}

fn char_is_plain(c: char) -> bool {
    let u = u32::from(c);
    !(u <= 0x1f
        || (0x7f..=0x9f).contains(&u)
        || (0xd800..=0xf8ff).contains(&u)
        || u >= 0xfff0 // noncharacters and everything beyond the BMP (surrogates in Java)
        || c == '/')
}

/// True if `id` can be a node name as it is.
fn is_plain(id: &[u8], kind: Kind) -> bool {
    let Ok(text) = std::str::from_utf8(id) else {
        return false;
    };
    !text.is_empty()
        && text != "."
        && text != ".."
        && !text.starts_with(ENCODED_PREFIX)
        && !(kind == Kind::Member && text == LEADER)
        && !(kind == Kind::Group && text == LOCKS)
        && text.chars().all(char_is_plain)
}

/// The node name of `id`: the id itself when it is a plain node name, else `~b64~` and the
/// unpadded URL-safe base64 of its bytes.
///
/// Not plain: empty, `.`, `..`, anything with `/`, control characters, characters ZooKeeper
/// refuses in paths (U+007F–U+009F, U+D800–U+F8FF, U+FFF0 and above), non-UTF-8 bytes, a name
/// starting with `~b64~`, the member id `leader` and the group id `locks`.
pub fn encode_name(id: &[u8], kind: Kind) -> String {
    if is_plain(id, kind) {
        // SAFETY of the unwrap: is_plain checked UTF-8.
        return String::from_utf8(id.to_vec()).expect("checked UTF-8");
    }
    let mut out = String::with_capacity(ENCODED_PREFIX.len() + id.len() * 4 / 3 + 4);
    out.push_str(ENCODED_PREFIX);
    base64_into(id, URL_SAFE, false, &mut out);
    out
}

/// The id stored in node name `name` (the reverse of [`encode_name`]).
pub fn decode_name(name: &str) -> Id {
    if let Some(b64) = name.strip_prefix(ENCODED_PREFIX) {
        if let Some(bytes) = base64_decode_url(b64) {
            return Id::from(bytes);
        }
    }
    Id::from(name)
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64_into(bytes: &[u8], alphabet: &[u8; 64], pad: bool, out: &mut String) {
    for chunk in bytes.chunks(3) {
        let n = chunk.len();
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= n {
                out.push(alphabet[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
}

/// Standard padded base64 (what ZooKeeper's digest ids use).
pub fn base64_standard(bytes: &[u8]) -> String {
    let mut out = String::new();
    base64_into(bytes, STANDARD, true, &mut out);
    out
}

fn base64_decode_url(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let v = URL_SAFE.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Unpadded base64 never leaves 6 bits, and the leftover bits must be zero (canonical).
    (bits != 6 && acc == 0).then_some(out)
}

/// The sequence number of a contender node (kazoo's `(?:__lock__)(-?\d{10})$`), as text:
/// kazoo orders contenders by comparing these strings.
pub fn contender_sequence(child: &str) -> Option<&str> {
    let at = child.rfind(LOCK_MARKER)?;
    let seq = &child[at + LOCK_MARKER.len()..];
    let digits = seq.strip_prefix('-').unwrap_or(seq);
    (digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit())).then_some(seq)
}

/// The contenders among `children`, sorted by sequence (first = holder).
pub fn contenders(children: &[String]) -> Vec<(&str, &str)> {
    let mut found: Vec<(&str, &str)> = children
        .iter()
        .filter_map(|c| contender_sequence(c).map(|seq| (seq, c.as_str())))
        .collect();
    found.sort_unstable();
    found
}

/// Where a coordinator's nodes live: `/<namespace>` under the URL's chroot.
#[derive(Debug, Clone)]
pub struct Layout {
    root: String,
}

impl Layout {
    /// The layout under namespace `namespace` (tooz's default is `tooz`).
    pub fn new(namespace: &str) -> Self {
        Layout {
            root: format!("/{}", namespace.trim_matches('/')),
        }
    }

    /// `/<ns>`.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// `/<ns>/<G>`.
    pub fn group(&self, group: &Id) -> String {
        format!(
            "{}/{}",
            self.root,
            encode_name(group.as_bytes(), Kind::Group)
        )
    }

    /// `/<ns>/<G>/<M>`.
    pub fn member(&self, group: &Id, member: &Id) -> String {
        format!(
            "{}/{}",
            self.group(group),
            encode_name(member.as_bytes(), Kind::Member)
        )
    }

    /// `/<ns>/locks`.
    pub fn locks(&self) -> String {
        format!("{}/{LOCKS}", self.root)
    }

    /// The lock name that [`Layout::lock_dir`] maps to `/<ns>/<G>/leader`.
    pub fn leader_lock_name(group: &Id) -> Id {
        let mut name = LEADER_LOCK_TAG.to_vec();
        name.extend_from_slice(group.as_bytes());
        Id::from(name)
    }

    /// The directory of lock `name`: `/<ns>/<G>/leader` for a group's election lock,
    /// `/<ns>/locks/<name>` for every other lock.
    pub fn lock_dir(&self, name: &Id) -> String {
        match name.as_bytes().strip_prefix(LEADER_LOCK_TAG) {
            Some(group) => format!("{}/{LEADER}", self.group(&Id::from(group))),
            None => format!(
                "{}/{}",
                self.locks(),
                encode_name(name.as_bytes(), Kind::Lock)
            ),
        }
    }
}

/// ZooKeeper's digest ACL id for `user:password`: `user:base64(sha1("user:password"))`.
pub fn digest_id(user: &str, password: &str) -> String {
    use sha1::Digest;
    let digest = sha1::Sha1::digest(format!("{user}:{password}").as_bytes());
    format!("{user}:{}", base64_standard(&digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2048, ..Default::default() })]

        /// Any id survives the node name; any node name (a Python peer's, a corrupt one)
        /// decodes to some id without panicking.
        #[test]
        fn node_names_round_trip_and_never_panic(
            id in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            name in "(~b64~)?[ -~]{0,40}",
        ) {
            for kind in [Kind::Member, Kind::Group, Kind::Lock] {
                let decoded = decode_name(&encode_name(&id, kind));
                proptest::prop_assert_eq!(decoded.as_bytes(), &id[..]);
            }
            let _ = decode_name(&name);
        }
    }

    #[test]
    fn plain_ascii_ids_are_python_paths() {
        let layout = Layout::new("tooz");
        let (g, m) = (Id::from("G"), Id::from("M"));
        assert_eq!(layout.group(&g), "/tooz/G");
        assert_eq!(layout.member(&g, &m), "/tooz/G/M");
        assert_eq!(layout.lock_dir(&Id::from("mylock")), "/tooz/locks/mylock");
        assert_eq!(
            layout.lock_dir(&Layout::leader_lock_name(&g)),
            "/tooz/G/leader"
        );
        assert_eq!(layout.group(&Id::from("ünï ☃")), "/tooz/ünï ☃");
    }

    #[test]
    fn odd_ids_round_trip() {
        for (id, kind) in [
            (&b""[..], Kind::Group),
            (b"/", Kind::Group),
            (b".", Kind::Lock),
            (b"..", Kind::Lock),
            (b"a/b", Kind::Lock),
            (b"nul\0byte", Kind::Member),
            (&[0xff, 0x00, 0xfe, b'/'], Kind::Member),
            (b"leader", Kind::Member),
            (b"locks", Kind::Group),
            (b"~b64~AAA", Kind::Group),
            ("emoji \u{1f600}".as_bytes(), Kind::Group),
            (b"x", Kind::Group),
            (b"xy", Kind::Group),
            (b"xyz", Kind::Group),
        ] {
            let name = encode_name(id, kind);
            assert!(!name.contains('/') && !name.is_empty(), "{name}");
            assert_eq!(decode_name(&name).as_bytes(), id, "{name}");
        }
        assert_eq!(encode_name(b"leader", Kind::Member), "~b64~bGVhZGVy");
        assert_eq!(encode_name(b"leader", Kind::Group), "leader");
        assert_eq!(encode_name(b"locks", Kind::Lock), "locks");
        assert_eq!(decode_name("~b64~!!").as_bytes(), b"~b64~!!");
    }

    #[test]
    fn contenders_sort_as_kazoo() {
        let children: Vec<String> = [
            "bbb__lock__0000000002",
            "aaa__lock__0000000010",
            "ccc__lock__0000000001",
            "junk",
            "x__lock__12",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let sorted: Vec<&str> = contenders(&children).iter().map(|(_, c)| *c).collect();
        assert_eq!(
            sorted,
            [
                "ccc__lock__0000000001",
                "bbb__lock__0000000002",
                "aaa__lock__0000000010"
            ]
        );
    }

    #[test]
    fn digest_ids_match_zookeeper() {
        // DigestAuthenticationProvider.generateDigest("super:test")
        assert_eq!(
            digest_id("super", "test"),
            "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
        );
        assert_eq!(base64_standard(b"ab"), "YWI=");
    }
}
