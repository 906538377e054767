//! Local claims on server locks that are re-entrant per database session (PostgreSQL
//! advisory locks, MySQL named locks): a coordinator takes all its locks on one session, on
//! which a second `GET_LOCK` or `pg_try_advisory_lock` of a held key succeeds again; the
//! claim keeps two acquisitions of one key by the same coordinator apart, as between two
//! coordinators.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

/// One key's claim: one exclusive acquisition, or any number of shared ones.
struct Claim {
    shared: bool,
    nonces: Vec<String>,
}

/// The keys this coordinator holds or is taking, each with its acquisitions' nonces.
pub(crate) struct Claims<K> {
    map: Mutex<HashMap<K, Claim>>,
}

impl<K> Default for Claims<K> {
    fn default() -> Self {
        Claims {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash> Claims<K> {
    /// Claims `key` for exclusive acquisition `nonce`; `false` if any acquisition has it.
    pub(crate) fn claim(&self, key: K, nonce: &str) -> bool {
        let mut map = self.map.lock().unwrap();
        if map.contains_key(&key) {
            return false;
        }
        let nonces = vec![nonce.to_string()];
        map.insert(
            key,
            Claim {
                shared: false,
                nonces,
            },
        );
        true
    }

    /// Claims `key` for shared acquisition `nonce`; `false` if an exclusive one has it.
    pub(crate) fn claim_shared(&self, key: K, nonce: &str) -> bool {
        let mut map = self.map.lock().unwrap();
        let claim = map.entry(key).or_insert_with(|| Claim {
            shared: true,
            nonces: Vec::new(),
        });
        if !claim.shared {
            return false;
        }
        claim.nonces.push(nonce.to_string());
        true
    }

    /// Gives `key` up for acquisition `nonce`, if it has it.
    pub(crate) fn unclaim(&self, key: &K, nonce: &str) {
        let mut map = self.map.lock().unwrap();
        if let Some(claim) = map.get_mut(key) {
            claim.nonces.retain(|n| n != nonce);
            if claim.nonces.is_empty() {
                map.remove(key);
            }
        }
    }

    /// The (first) acquisition that has `key`.
    pub(crate) fn holder(&self, key: &K) -> Option<String> {
        self.holders(key).into_iter().next()
    }

    /// Every acquisition that has `key`.
    pub(crate) fn holders(&self, key: &K) -> Vec<String> {
        let map = self.map.lock().unwrap();
        map.get(key).map(|c| c.nonces.clone()).unwrap_or_default()
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
    fn shared_acquisitions_stack_and_exclude_exclusive_ones() {
        let claims = Claims::default();
        assert!(claims.claim_shared(1, "a"));
        assert!(claims.claim_shared(1, "b"));
        assert!(!claims.claim(1, "c"));
        assert_eq!(claims.holders(&1), vec!["a".to_string(), "b".to_string()]);
        claims.unclaim(&1, "a");
        claims.unclaim(&1, "b");
        assert!(claims.claim(1, "c"));
        assert!(!claims.claim_shared(1, "d"));
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0, 0xab]), "00ab");
        assert_eq!(unhex("00ab"), Some(vec![0, 0xab]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }
}
