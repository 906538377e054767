//! memcached's meta protocol (and the few classic replies the driver reads): requests as
//! bytes, replies parsed from a buffer that may hold less than one reply (a partial read) or
//! several (a pipeline).
//!
//! Keys that are not plain printable ASCII (at most 250 bytes, no space or control byte) are
//! sent base64-encoded with the `b` flag, which the server decodes: the stored key is the same
//! bytes, so such names are still the keys Python tooz would use if pymemcache accepted them.
//!
//! Parsing never panics: whatever the bytes, a reply, "not enough yet", or a typed
//! [`ProtoError`].

use std::fmt;

/// Longest key the server stores, in bytes.
pub(crate) const MAX_KEY: usize = 250;
/// Longest reply line accepted before its `\r\n` (a meta reply line is far shorter).
const MAX_LINE: usize = 8 * 1024;
/// Largest value accepted in a reply (memcached's own item size limit is at most 1 GiB).
pub(crate) const MAX_VALUE: usize = 128 * 1024 * 1024;

/// A reply that does not follow the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProtoError {
    /// A line longer than any reply line.
    LineTooLong,
    /// A reply code this client does not know (shown escaped and shortened).
    UnknownReply(String),
    /// A return flag or size that does not parse.
    BadToken(String),
    /// A value larger than [`MAX_VALUE`].
    ValueTooLarge(usize),
    /// A value not followed by `\r\n`.
    BadValueEnd,
    /// A reply that is not the one its request should get.
    Desync(String),
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::LineTooLong => write!(f, "a reply line longer than {MAX_LINE} bytes"),
            ProtoError::UnknownReply(line) => write!(f, "unknown reply {line:?}"),
            ProtoError::BadToken(token) => write!(f, "malformed token {token:?} in a reply"),
            ProtoError::ValueTooLarge(size) => write!(f, "a value of {size} bytes"),
            ProtoError::BadValueEnd => f.write_str("a value not ended by \\r\\n"),
            ProtoError::Desync(what) => write!(f, "replies out of step with requests: {what}"),
        }
    }
}

impl std::error::Error for ProtoError {}

/// What a meta reply returns besides its code: the flags asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Meta {
    /// `c`: the item's CAS value.
    pub cas: Option<u64>,
    /// `f`: the client flags stored with the item.
    pub flags: Option<u32>,
    /// `t`: seconds left before expiry (-1: none).
    pub ttl: Option<i64>,
    /// `k`: the key (decoded when the server sent it base64-encoded).
    pub key: Option<Vec<u8>>,
    /// `O`: the opaque token sent with the request.
    pub opaque: Option<Vec<u8>>,
}

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `HD`: success, no value.
    Done(Meta),
    /// `VA`: a value.
    Value(Meta, Vec<u8>),
    /// `EN`: a miss (mg).
    Miss(Meta),
    /// `NS`: not stored (ms: an add that found the key, a set that failed).
    NotStored(Meta),
    /// `EX`: the CAS did not match.
    Exists(Meta),
    /// `NF`: no such item.
    NotFound(Meta),
    /// `MN`: the end of a pipeline (`mn`).
    Noop,
    /// `STAT name value` (classic `stats`).
    Stat(String, String),
    /// `END` (classic `stats`, `get`).
    End,
    /// `VERSION x`.
    Version(String),
    /// `ERROR`, `CLIENT_ERROR msg`, `SERVER_ERROR msg`: the server refused the request.
    Error(String),
}

impl Reply {
    /// The returned flags of a meta reply.
    #[cfg(test)]
    pub(crate) fn meta(&self) -> Option<&Meta> {
        match self {
            Reply::Done(m)
            | Reply::Value(m, _)
            | Reply::NotStored(m)
            | Reply::Exists(m)
            | Reply::NotFound(m)
            | Reply::Miss(m) => Some(m),
            _ => None,
        }
    }
}

/// How a request's flags are written.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Flag<'a> {
    /// A flag without a token (`v`, `c`, `q`, ...).
    Bare(char),
    /// A flag with a number (`T30`, `C123`, `F1`, `N0`, `J5`, `O7`).
    Num(char, u64),
    /// A flag with a word (`ME` for mode add).
    Word(char, &'a str),
}

/// The four meta commands used, and the no-op that ends a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Get,
    Set,
    Delete,
    Arithmetic,
}

impl Verb {
    fn code(self) -> &'static str {
        match self {
            Verb::Get => "mg",
            Verb::Set => "ms",
            Verb::Delete => "md",
            Verb::Arithmetic => "ma",
        }
    }
}

/// True when `key` can be sent as it is.
fn plain(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY && key.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// The length of `key` on the wire.
fn wire_len(key: &[u8]) -> usize {
    if plain(key) {
        key.len()
    } else {
        key.len().div_ceil(3) * 4
    }
}

/// True when the server accepts `key` (raw, or base64-encoded).
pub(crate) fn key_fits(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY && wire_len(key) <= MAX_KEY
}

/// Appends one meta request to `out`: `verb key flags...` and, for `ms`, the value.
pub(crate) fn request(out: &mut Vec<u8>, verb: Verb, key: &[u8], flags: &[Flag], data: &[u8]) {
    out.extend_from_slice(verb.code().as_bytes());
    out.push(b' ');
    let encoded = !plain(key);
    if encoded {
        base64_encode(key, out);
    } else {
        out.extend_from_slice(key);
    }
    if verb == Verb::Set {
        out.push(b' ');
        out.extend_from_slice(data.len().to_string().as_bytes());
    }
    if encoded {
        out.extend_from_slice(b" b");
    }
    for flag in flags {
        out.push(b' ');
        match flag {
            Flag::Bare(c) => out.push(*c as u8),
            Flag::Num(c, n) => {
                out.push(*c as u8);
                out.extend_from_slice(n.to_string().as_bytes());
            }
            Flag::Word(c, w) => {
                out.push(*c as u8);
                out.extend_from_slice(w.as_bytes());
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    if verb == Verb::Set {
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends a classic `stats`.
pub(crate) fn stats(out: &mut Vec<u8>) {
    out.extend_from_slice(b"stats\r\n");
}

fn shown(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(64)];
    String::from_utf8_lossy(cut).escape_debug().to_string()
}

fn number<T: std::str::FromStr>(token: &[u8]) -> Result<T, ProtoError> {
    std::str::from_utf8(token)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ProtoError::BadToken(shown(token)))
}

fn parse_meta<'a>(tokens: impl Iterator<Item = &'a [u8]>) -> Result<Meta, ProtoError> {
    let mut meta = Meta::default();
    let mut base64 = false;
    for token in tokens {
        let (flag, rest) = match token.split_first() {
            Some((flag, rest)) => (*flag, rest),
            None => continue,
        };
        match flag {
            b'c' => meta.cas = Some(number(rest)?),
            b'f' => meta.flags = Some(number(rest)?),
            b't' => meta.ttl = Some(number(rest)?),
            b'k' => meta.key = Some(rest.to_vec()),
            b'O' => meta.opaque = Some(rest.to_vec()),
            b'b' => base64 = true,
            // Flags not asked for (W, X, Z, s, h, l, ...): ignored.
            _ => {}
        }
    }
    if base64 {
        if let Some(key) = meta.key.take() {
            meta.key = Some(base64_decode(&key).ok_or_else(|| ProtoError::BadToken(shown(&key)))?);
        }
    }
    Ok(meta)
}

/// Parses the first reply in `buf`: `Ok(None)` when `buf` holds only part of it, else the
/// reply and the number of bytes it took.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtoError> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() > MAX_LINE {
            Err(ProtoError::LineTooLong)
        } else {
            Ok(None)
        };
    };
    if end > MAX_LINE {
        return Err(ProtoError::LineTooLong);
    }
    let line = &buf[..end];
    let used = end + 2;
    let mut tokens = line.split(|b| *b == b' ').filter(|t| !t.is_empty());
    let code = tokens.next().unwrap_or_default();
    let text = |rest: &[u8]| String::from_utf8_lossy(rest).into_owned();
    let after = |prefix: usize| line.get(prefix..).map(text).unwrap_or_default();
    let reply = match code {
        b"HD" => Reply::Done(parse_meta(tokens)?),
        b"EN" => Reply::Miss(parse_meta(tokens)?),
        b"NS" => Reply::NotStored(parse_meta(tokens)?),
        b"EX" => Reply::Exists(parse_meta(tokens)?),
        b"NF" => Reply::NotFound(parse_meta(tokens)?),
        b"MN" => Reply::Noop,
        b"END" => Reply::End,
        b"ERROR" => Reply::Error("ERROR".into()),
        b"CLIENT_ERROR" | b"SERVER_ERROR" => Reply::Error(after(0)),
        b"VERSION" => Reply::Version(after(8)),
        b"STAT" => {
            let name = tokens.next().map(text).unwrap_or_default();
            let value = tokens.next().map(text).unwrap_or_default();
            Reply::Stat(name, value)
        }
        b"VA" => {
            let size_token = tokens.next().unwrap_or_default();
            let size: usize = number(size_token)?;
            if size > MAX_VALUE {
                return Err(ProtoError::ValueTooLarge(size));
            }
            let meta = parse_meta(tokens)?;
            let total = used + size + 2;
            if buf.len() < total {
                return Ok(None);
            }
            if &buf[used + size..total] != b"\r\n" {
                return Err(ProtoError::BadValueEnd);
            }
            return Ok(Some((
                Reply::Value(meta, buf[used..used + size].to_vec()),
                total,
            )));
        }
        _ => return Err(ProtoError::UnknownReply(shown(line))),
    };
    Ok(Some((reply, used)))
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as the server expects for `b` keys.
pub(crate) fn base64_encode(bytes: &[u8], out: &mut Vec<u8>) {
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
}

/// Decodes standard padded base64; `None` if it is not.
pub(crate) fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    if text.len() % 4 != 0 {
        return None;
    }
    let value = |c: u8| ALPHABET.iter().position(|a| *a == c).map(|v| v as u32);
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let chunks = text.len() / 4;
    for (i, chunk) in text.chunks(4).enumerate() {
        let pad = chunk.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != chunks) {
            return None;
        }
        let mut n = 0u32;
        for (j, c) in chunk.iter().enumerate() {
            let v = if j >= 4 - pad { 0 } else { value(*c)? };
            n = (n << 6) | v;
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(bytes: &[u8]) -> Reply {
        let (reply, used) = parse(bytes).unwrap().expect("a whole reply");
        assert_eq!(used, bytes.len());
        reply
    }

    #[test]
    fn requests_are_written_as_the_server_reads_them() {
        let mut out = Vec::new();
        request(
            &mut out,
            Verb::Set,
            b"__TOOZ_LOCK_a",
            &[
                Flag::Word('M', "E"),
                Flag::Num('T', 31),
                Flag::Num('F', 1),
                Flag::Bare('c'),
            ],
            b"me",
        );
        assert_eq!(out, b"ms __TOOZ_LOCK_a 2 ME T31 F1 c\r\nme\r\n");
        out.clear();
        request(&mut out, Verb::Get, b"a b", &[Flag::Bare('v')], b"");
        assert_eq!(out, b"mg YSBi b v\r\n");
        out.clear();
        request(
            &mut out,
            Verb::Delete,
            b"k",
            &[Flag::Num('C', 7), Flag::Num('O', 9)],
            b"",
        );
        assert_eq!(out, b"md k C7 O9\r\n");
    }

    #[test]
    fn replies_round_trip() {
        assert_eq!(
            one(b"HD c12 f1\r\n"),
            Reply::Done(Meta {
                cas: Some(12),
                flags: Some(1),
                ..Meta::default()
            })
        );
        assert_eq!(
            one(b"VA 2 O3 kYSBi b t-1\r\nhi\r\n"),
            Reply::Value(
                Meta {
                    opaque: Some(b"3".to_vec()),
                    key: Some(b"a b".to_vec()),
                    ttl: Some(-1),
                    ..Meta::default()
                },
                b"hi".to_vec()
            )
        );
        assert!(
            matches!(one(b"EN O3\r\n"), Reply::Miss(m) if m.opaque.as_deref() == Some(&b"3"[..]))
        );
        assert_eq!(one(b"NS c0\r\n").meta().unwrap().cas, Some(0));
        assert!(matches!(one(b"EX\r\n"), Reply::Exists(_)));
        assert!(matches!(one(b"NF\r\n"), Reply::NotFound(_)));
        assert_eq!(one(b"MN\r\n"), Reply::Noop);
        assert_eq!(
            one(b"STAT pid 42\r\n"),
            Reply::Stat("pid".into(), "42".into())
        );
        assert_eq!(one(b"END\r\n"), Reply::End);
        assert_eq!(one(b"VERSION 1.6.18\r\n"), Reply::Version("1.6.18".into()));
        assert_eq!(
            one(b"CLIENT_ERROR bad data chunk\r\n"),
            Reply::Error("CLIENT_ERROR bad data chunk".into())
        );
        assert_eq!(
            one(b"SERVER_ERROR out of memory storing object\r\n"),
            Reply::Error("SERVER_ERROR out of memory storing object".into())
        );
        assert_eq!(one(b"ERROR\r\n"), Reply::Error("ERROR".into()));
    }

    #[test]
    fn a_value_holding_crlf_is_read_by_its_size() {
        assert_eq!(
            one(b"VA 4 f2\r\n\r\n\r\n\r\n"),
            Reply::Value(
                Meta {
                    flags: Some(2),
                    ..Meta::default()
                },
                b"\r\n\r\n".to_vec()
            )
        );
    }

    #[test]
    fn partial_reads_wait_for_more() {
        let whole = b"VA 5 c9\r\nhello\r\nHD\r\n";
        for cut in 0..whole.len() {
            match parse(&whole[..cut]).unwrap() {
                None => assert!(cut < 18, "{cut}"),
                Some((reply, used)) => {
                    assert_eq!(used, 16);
                    assert!(matches!(reply, Reply::Value(_, ref v) if v == b"hello"));
                }
            }
        }
        let (_, used) = parse(whole).unwrap().unwrap();
        let (second, _) = parse(&whole[used..]).unwrap().unwrap();
        assert!(matches!(second, Reply::Done(_)));
    }

    #[test]
    fn bad_replies_are_typed_errors() {
        assert!(matches!(parse(b"HX\r\n"), Err(ProtoError::UnknownReply(_))));
        assert!(matches!(parse(b"VA x\r\n"), Err(ProtoError::BadToken(_))));
        assert!(matches!(parse(b"HD cX\r\n"), Err(ProtoError::BadToken(_))));
        assert!(matches!(
            parse(b"VA 2\r\nabcd"),
            Err(ProtoError::BadValueEnd)
        ));
        assert!(matches!(
            parse(b"VA 999999999999\r\n"),
            Err(ProtoError::ValueTooLarge(_))
        ));
        assert!(matches!(
            parse(&vec![b'a'; MAX_LINE + 1]),
            Err(ProtoError::LineTooLong)
        ));
        assert!(matches!(
            parse(b"HD k!! b\r\n"),
            Err(ProtoError::BadToken(_))
        ));
    }

    #[test]
    fn keys_outside_plain_ascii_are_base64() {
        assert!(plain(b"_TOOZ_GROUP_g-1"));
        assert!(!plain(b"a b") && !plain(b"\xff") && !plain(b""));
        assert!(key_fits(&[b'a'; 250]));
        assert!(!key_fits(&[b'a'; 251]));
        assert!(key_fits(&[b' '; 186]) && !key_fits(&[b' '; 187]));
        for text in [&b""[..], b"f", b"fo", b"foo", b"foob", b"\x00\xff\xfe"] {
            let mut encoded = Vec::new();
            base64_encode(text, &mut encoded);
            assert_eq!(base64_decode(&encoded).as_deref(), Some(text));
        }
        let mut encoded = Vec::new();
        base64_encode(b"foob", &mut encoded);
        assert_eq!(encoded, b"Zm9vYg==");
        assert_eq!(base64_decode(b"Zm9v=mFy"), None);
        assert_eq!(base64_decode(b"Zm9"), None);
        assert_eq!(base64_decode(b"Zm9*"), None);
    }

    /// Replies of the kinds the driver asks for, as the server writes them.
    fn corpus() -> Vec<Vec<u8>> {
        [
            &b"HD c12 f1\r\n"[..],
            b"VA 11 c3 f1 t29\r\nIt's alive!\r\n",
            b"VA 1 f2\r\n\x80\r\n",
            b"VA 2 O7 kYSBi b\r\nhi\r\nVA 1 O8\r\nx\r\nMN\r\n",
            b"NS c0\r\nVA 13\r\n1234567890124\r\n",
            b"EN\r\nEX\r\nNF\r\n",
            b"STAT pid 6777\r\nSTAT uptime 2\r\nEND\r\n",
            b"SERVER_ERROR out of memory\r\n",
        ]
        .iter()
        .map(|b| b.to_vec())
        .collect()
    }

    proptest! {
        /// Whatever the bytes: replies, "more needed" or a typed error; never a panic, and
        /// never a reply claiming more bytes than there are.
        #[test]
        fn the_parser_never_panics(bytes in crate::fuzz::garbage(corpus())) {
            let mut rest = &bytes[..];
            for _ in 0..64 {
                match parse(rest) {
                    Ok(Some((_, used))) => {
                        prop_assert!(used > 0 && used <= rest.len());
                        rest = &rest[used..];
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }

        /// Requests for any key parse back on the server side as that key.
        #[test]
        fn keys_round_trip(key in prop::collection::vec(any::<u8>(), 1..100)) {
            let mut out = Vec::new();
            request(&mut out, Verb::Get, &key, &[], b"");
            let line = &out[3..out.len() - 2];
            let sent = line.split(|b| *b == b' ').next().unwrap();
            if plain(&key) {
                prop_assert_eq!(sent, &key[..]);
            } else {
                prop_assert_eq!(base64_decode(sent), Some(key.clone()));
                prop_assert!(line.ends_with(b" b"));
            }
        }
    }
}
