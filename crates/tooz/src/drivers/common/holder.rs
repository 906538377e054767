//! The value a lock key holds: the acquisition's nonce and the holder's member id, so that a
//! release or refresh compares its own acquisition (two holders with one member id differ)
//! and `holder()` can name the member. Python tooz's holders write values without either.

use crate::error::{Error, Result};
use crate::id::Id;

/// The nonce's length (`LockRequest::nonce`: 32 hex digits).
const NONCE_LEN: usize = 32;

/// `<nonce>:<member id>`.
pub(crate) fn holder_value(nonce: &str, member: &Id) -> Vec<u8> {
    let mut value = nonce.as_bytes().to_vec();
    value.push(b':');
    value.extend_from_slice(member.as_bytes());
    value
}

/// The member a lock value names; an error for a holder that names none (Python tooz).
pub(crate) fn holder_of(driver: &'static str, name: &Id, value: &[u8]) -> Result<Id> {
    let ours = value.len() > NONCE_LEN
        && value[NONCE_LEN] == b':'
        && value[..NONCE_LEN].iter().all(u8::is_ascii_hexdigit);
    if ours {
        return Ok(Id::from(value[NONCE_LEN + 1..].to_vec()));
    }
    Err(Error::Backend {
        driver,
        message: format!(
            "lock {name} is held by a client that records no holder (such as Python tooz)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_values() {
        let nonce = "0123456789abcdef0123456789abcdef";
        let value = holder_value(nonce, &Id::from("me"));
        assert_eq!(
            holder_of("x", &Id::from("l"), &value).unwrap(),
            Id::from("me")
        );
        assert!(holder_of("x", &Id::from("l"), &[7u8; 16]).is_err());
        assert!(holder_of("x", &Id::from("l"), b"").is_err());
    }
}
