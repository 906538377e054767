//! The secrets of the URLs tooz was given, kept out of everything it prints.
//!
//! The library already redacts URLs in its errors (`DriverUrl::redact`); this is the second
//! line: every error line tooz prints, and `tooz bench`'s report, has each secret of the URLs
//! of this run (the password, and the values of options named like password, token or
//! secret, as written and percent-decoded) replaced by `***`.

use std::sync::OnceLock;

/// Shorter secrets are not searched for: replacing every `a` of a message would only garble it
/// (the library's redaction covers them).
const SHORTEST: usize = 4;

static SECRETS: OnceLock<Vec<String>> = OnceLock::new();

/// Remembers the secrets of `urls` for [`scrub`]; the first call wins.
pub fn register<'a>(urls: impl IntoIterator<Item = &'a str>) {
    let mut found: Vec<String> = urls.into_iter().flat_map(of_url).collect();
    // Longest first, so that a secret containing another is replaced whole.
    found.sort_by_key(|s| std::cmp::Reverse(s.len()));
    found.dedup();
    let _ = SECRETS.set(found);
}

/// `text` with every registered secret replaced by `***`.
pub fn scrub(text: &str) -> String {
    let mut text = text.to_string();
    for secret in SECRETS.get().into_iter().flatten() {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "***");
        }
    }
    text
}

/// The secrets written in `raw`: the password of its user information (which runs to the
/// last `@`) and the values of secret-looking query options; each as written and decoded.
pub fn of_url(raw: &str) -> Vec<String> {
    let mut found = Vec::new();
    let rest = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    let after = match rest.rsplit_once('@') {
        Some((userinfo, after)) => {
            if let Some((_, password)) = userinfo.split_once(':') {
                found.push(password.to_string());
            }
            after
        }
        None => rest,
    };
    // Options can be anywhere after a `?`, including in a password that held one.
    for query in [rest, after].iter().filter_map(|part| part.split_once('?')) {
        for pair in query.1.split('&') {
            if let Some((name, value)) = pair.split_once('=') {
                if looks_secret(name) {
                    found.push(value.to_string());
                }
            }
        }
    }
    let decoded: Vec<String> = found.iter().map(|s| decode(s)).collect();
    found.extend(decoded);
    found.retain(|s| s.len() >= SHORTEST);
    found
}

fn looks_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "passwd", "token", "secret"]
        .iter()
        .any(|s| name.contains(s))
}

/// Percent-decoding (and `+` as itself, as URL user information and tooz's options take it).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_of_urls() {
        let found = of_url("redis://u:p/w+x=y?z;@h:1/0?sentinel_password=s%2Fcret&timeout=5");
        assert!(found.contains(&"p/w+x=y?z;".to_string()), "{found:?}");
        assert!(found.contains(&"s%2Fcret".to_string()), "{found:?}");
        assert!(found.contains(&"s/cret".to_string()), "{found:?}");
        assert!(!found.iter().any(|s| s == "5"));
        assert!(of_url("file:///tmp/x").is_empty());
        assert!(of_url("consul://h?acl_token=t0k3n").contains(&"t0k3n".to_string()));
    }
}
