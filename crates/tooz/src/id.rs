//! Group, member and lock names: byte strings, as in tooz.

use std::fmt;

/// A group id, member id or lock name.
///
/// tooz treats these as bytes; so does this crate: any byte string is an `Id`, including
/// non-UTF-8 ones. Build one from `&str`, `String`, `&[u8]`, `Vec<u8>` or a byte literal.
/// `Display` shows UTF-8 text as is and escapes everything else, shortened when long.
///
/// ```
/// use tooz::Id;
/// let a = Id::from("workers");
/// let b = Id::from(b"workers");
/// assert_eq!(a, b);
/// assert_eq!(a.to_string(), "workers");
/// assert_eq!(Id::from(&[0xffu8, b'a'][..]).to_string(), "\\xffa");
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Id(Vec<u8>);

/// Longest text `Display` prints before shortening an id.
const DISPLAY_LIMIT: usize = 96;

impl Id {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The id as text, if it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Consumes the id, returning its bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for the empty id.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.0[..self.0.len().min(DISPLAY_LIMIT)];
        for chunk in shown.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c.is_control() {
                    write!(f, "{}", c.escape_default())?;
                } else {
                    write!(f, "{c}")?;
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        if self.0.len() > DISPLAY_LIMIT {
            write!(f, "... ({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id(\"{self}\")")
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        Id(s.as_bytes().to_vec())
    }
}
impl From<String> for Id {
    fn from(s: String) -> Self {
        Id(s.into_bytes())
    }
}
impl From<&String> for Id {
    fn from(s: &String) -> Self {
        Id(s.as_bytes().to_vec())
    }
}
impl From<&[u8]> for Id {
    fn from(b: &[u8]) -> Self {
        Id(b.to_vec())
    }
}
impl<const N: usize> From<&[u8; N]> for Id {
    fn from(b: &[u8; N]) -> Self {
        Id(b.to_vec())
    }
}
impl From<Vec<u8>> for Id {
    fn from(b: Vec<u8>) -> Self {
        Id(b)
    }
}
impl From<&Id> for Id {
    fn from(id: &Id) -> Self {
        id.clone()
    }
}
impl AsRef<[u8]> for Id {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}
impl PartialEq<&str> for Id {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}
