//! Group, member and lock names as scripts get them: exact bytes, never the shortened and
//! escaped form that `Display` gives for messages on a terminal.
//!
//! - JSON: a UTF-8 name is a JSON string (JSON escapes control characters, which decode back
//!   to the same bytes); any other name is `{"hex": "<lowercase hex of its bytes>"}`.
//! - Environment variables (`TOOZ_MEMBER`, `TOOZ_GROUP`, `TOOZ_LOCK_NAME`): the bytes as they
//!   are.
//! - Lines on stdout: the bytes as they are when stdout is not a terminal (a name holding a
//!   newline then spans two lines: use `--json` for such names); the escaped form on a
//!   terminal.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use serde_json::json;
use tooz::Id;

use crate::output;

/// The name as JSON: a string when it is UTF-8, else `{"hex": "..."}`.
pub fn json(id: &Id) -> serde_json::Value {
    match id.as_str() {
        Some(text) => json!(text),
        None => json!({ "hex": hex(id.as_bytes()) }),
    }
}

/// The name as the value of an environment variable: its bytes.
pub fn env(id: &Id) -> OsString {
    OsString::from_vec(id.as_bytes().to_vec())
}

/// Names one per line on stdout: exact bytes for a pipe or a file, escaped on a terminal.
pub fn print_lines<'a>(ids: impl IntoIterator<Item = &'a Id>) -> Result<(), crate::exit::Failure> {
    let terminal = output::stdout_is_tty();
    let mut out = Vec::new();
    for id in ids {
        if terminal {
            out.extend_from_slice(id.to_string().as_bytes());
        } else {
            out.extend_from_slice(id.as_bytes());
        }
        out.push(b'\n');
    }
    output::print_bytes(&out)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_exact() {
        let long = format!("mem-{}\nend", "x".repeat(200));
        let id = Id::from(long.as_str());
        assert_eq!(json(&id), json!(long));
        assert_eq!(env(&id), OsString::from(&long));
        let binary = Id::from(&[0xffu8, 0, b'a'][..]);
        assert_eq!(json(&binary), json!({"hex": "ff0061"}));
        assert_eq!(env(&binary).into_vec(), vec![0xff, 0, b'a']);
    }
}
