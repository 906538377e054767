//! Local claims on server locks that are re-entrant per database session (PostgreSQL
//! advisory locks, MySQL named locks): a coordinator takes all its locks on one session, on
//! which a second `GET_LOCK` or `pg_try_advisory_lock` of a held key succeeds again; the
//! claim keeps two acquisitions of one key by the same coordinator apart, as between two
//! coordinators.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

/// The keys this coordinator holds or is taking, each with the acquisition's nonce.
pub(crate) struct Claims<K> {
    map: Mutex<HashMap<K, String>>,
}

impl<K> Default for Claims<K> {
    fn default() -> Self {
        Claims {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash> Claims<K> {
    /// Claims `key` for acquisition `nonce`; `false` if another acquisition has it.
    pub(crate) fn claim(&self, key: K, nonce: &str) -> bool {
        let mut map = self.map.lock().unwrap();
        if map.contains_key(&key) {
            return false;
        }
        map.insert(key, nonce.to_string());
        true
    }

    /// Gives `key` up, if acquisition `nonce` has it.
    pub(crate) fn unclaim(&self, key: &K, nonce: &str) {
        let mut map = self.map.lock().unwrap();
        if map.get(key).is_some_and(|n| n == nonce) {
            map.remove(key);
        }
    }

    /// The acquisition that has `key`.
    pub(crate) fn holder(&self, key: &K) -> Option<String> {
        self.map.lock().unwrap().get(key).cloned()
    }

    /// Forgets every claim (the session that held them is gone).
    pub(crate) fn clear(&self) {
        self.map.lock().unwrap().clear();
    }
}

/// Lowercase hex of `bytes` (notification payloads, hashed names).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of lowercase or uppercase hex `text`; `None` if it is not hex.
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_acquisition_per_key() {
        let claims = Claims::default();
        assert!(claims.claim(1, "a"));
        assert!(!claims.claim(1, "b"));
        claims.unclaim(&1, "b");
        assert_eq!(claims.holder(&1).as_deref(), Some("a"));
        claims.unclaim(&1, "a");
        assert!(claims.claim(1, "b"));
        claims.clear();
        assert!(claims.holder(&1).is_none());
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0, 0xab]), "00ab");
        assert_eq!(unhex("00ab"), Some(vec![0, 0xab]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }
}
