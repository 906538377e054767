//! What a member tells its group: capabilities (any msgpack value) and member info.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::error::{Error, Result};

pub use rmpv::Value;

/// What a member tells the group about itself: any msgpack value, as in tooz.
///
/// Bytes, text, maps and numbers convert into it; `Capabilities::none()` (msgpack nil) is
/// what a member that gave nothing has.
///
/// ```
/// use tooz::{Capabilities, Value};
/// let caps = Capabilities::from(b"zone-a");
/// assert_eq!(caps.as_bytes(), Some(&b"zone-a"[..]));
/// let caps = Capabilities::from(Value::Map(vec![("weight".into(), 1.into())]));
/// assert_eq!(caps.get("weight").and_then(|v| v.as_i64()), Some(1));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Capabilities(Value);

impl Capabilities {
    /// No capabilities (msgpack nil).
    pub fn none() -> Self {
        Capabilities(Value::Nil)
    }

    /// True if no capabilities were given.
    pub fn is_none(&self) -> bool {
        self.0.is_nil()
    }

    /// The value.
    pub fn value(&self) -> &Value {
        &self.0
    }

    /// Consumes, returning the value.
    pub fn into_value(self) -> Value {
        self.0
    }

    /// The bytes, when the capabilities are a byte string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.0 {
            Value::Binary(b) => Some(b),
            Value::String(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// The msgpack bytes Python tooz stores (bytes as bin, text as str).
    pub fn to_msgpack(&self) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &self.0).expect("writing to a Vec cannot fail");
        out
    }

    /// Reads stored msgpack bytes: one value, nothing after it (as msgpack-python reads
    /// them). Anything else is [`Error::Serialization`], never a panic.
    ///
    /// ```
    /// use tooz::Capabilities;
    /// let caps = Capabilities::from("zone=a");
    /// assert_eq!(Capabilities::from_msgpack(&caps.to_msgpack()).unwrap(), caps);
    /// assert!(Capabilities::from_msgpack(&[0x81]).is_err()); // a map cut short
    /// ```
    pub fn from_msgpack(bytes: &[u8]) -> Result<Capabilities> {
        let mut rest = bytes;
        let value = rmpv::decode::read_value(&mut rest)
            .map_err(|e| Error::Serialization(format!("corrupt capabilities: {e}")))?;
        if !rest.is_empty() {
            return Err(Error::Serialization(format!(
                "corrupt capabilities: {} trailing bytes",
                rest.len()
            )));
        }
        Ok(Capabilities(value))
    }

    /// Capabilities from any serde value (feature `serde`), as msgpack with field names: a
    /// struct or map becomes a msgpack map with string keys, the shape of Python tooz's dict
    /// capabilities. A `Vec<u8>` becomes an array of numbers; use `serde_bytes` for a byte
    /// string. [`Error::Serialization`] if the value cannot be written.
    ///
    /// ```
    /// # #[cfg(feature = "serde")] {
    /// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    /// struct Caps { zone: String, weight: u32 }
    /// let caps = tooz::Capabilities::from_serde(&Caps { zone: "a".into(), weight: 2 }).unwrap();
    /// assert_eq!(caps.get("weight").and_then(|v| v.as_u64()), Some(2));
    /// let back: Caps = caps.to_serde().unwrap();
    /// assert_eq!(back, Caps { zone: "a".into(), weight: 2 });
    /// # }
    /// ```
    #[cfg(feature = "serde")]
    pub fn from_serde<T: serde::Serialize + ?Sized>(value: &T) -> Result<Capabilities> {
        let bytes = rmp_serde::to_vec_named(value)
            .map_err(|e| Error::Serialization(format!("capabilities: {e}")))?;
        Capabilities::from_msgpack(&bytes)
    }

    /// The capabilities read as `T` (feature `serde`); [`Error::Serialization`] when they do
    /// not have its shape.
    #[cfg(feature = "serde")]
    pub fn to_serde<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        rmp_serde::from_slice(&self.to_msgpack())
            .map_err(|e| Error::Serialization(format!("capabilities: {e}")))
    }

    /// A field of map capabilities, by string key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match &self.0 {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities::none()
    }
}

impl From<Value> for Capabilities {
    fn from(v: Value) -> Self {
        Capabilities(v)
    }
}
impl From<&[u8]> for Capabilities {
    fn from(b: &[u8]) -> Self {
        Capabilities(Value::Binary(b.to_vec()))
    }
}
impl<const N: usize> From<&[u8; N]> for Capabilities {
    fn from(b: &[u8; N]) -> Self {
        Capabilities(Value::Binary(b.to_vec()))
    }
}
impl From<Vec<u8>> for Capabilities {
    fn from(b: Vec<u8>) -> Self {
        Capabilities(Value::Binary(b))
    }
}
impl From<&str> for Capabilities {
    fn from(s: &str) -> Self {
        Capabilities(Value::from(s))
    }
}
impl From<String> for Capabilities {
    fn from(s: String) -> Self {
        Capabilities(Value::from(s))
    }
}
impl From<()> for Capabilities {
    fn from(_: ()) -> Self {
        Capabilities::none()
    }
}

/// Everything a driver knows about one member (tooz's `get_member_info`).
#[derive(Debug, Clone, PartialEq)]
pub struct MemberInfo {
    /// The member's capabilities.
    pub capabilities: Capabilities,
    /// When it joined, where the backend records it.
    pub joined_at: Option<SystemTime>,
    /// Backend-specific details (e.g. a ZooKeeper node's version or session).
    pub extra: BTreeMap<String, Value>,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Valid encodings: nil, bin, str, nested maps and arrays, every int width, float, ext.
    fn corpus() -> Vec<Vec<u8>> {
        let values = [
            Value::Nil,
            Value::Binary(b"zone-a".to_vec()),
            Value::from("text"),
            Value::Map(vec![
                ("weight".into(), 1.into()),
                (
                    "tags".into(),
                    Value::Array(vec![Value::from(-1), u64::MAX.into()]),
                ),
                (
                    "nested".into(),
                    Value::Map(vec![(2.into(), Value::F64(0.5))]),
                ),
            ]),
            Value::from(i64::MIN),
            Value::Ext(-1, vec![0, 0, 0, 1]),
        ];
        values
            .into_iter()
            .map(|v| Capabilities(v).to_msgpack())
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        #[test]
        fn corrupt_capabilities_give_typed_errors(bytes in crate::fuzz::garbage(corpus())) {
            match Capabilities::from_msgpack(&bytes) {
                // What decodes re-encodes to bytes that decode to the same value.
                Ok(caps) => {
                    let again = Capabilities::from_msgpack(&caps.to_msgpack()).unwrap();
                    prop_assert_eq!(again.to_msgpack(), caps.to_msgpack());
                }
                Err(Error::Serialization(_)) => {}
                Err(other) => prop_assert!(false, "untyped error: {other}"),
            }
        }
    }

    #[test]
    fn capabilities_round_trip() {
        for bytes in corpus() {
            assert_eq!(
                Capabilities::from_msgpack(&bytes).unwrap().to_msgpack(),
                bytes
            );
        }
        assert!(Capabilities::from_msgpack(&[0xc0, 0xc0]).is_err());
        assert!(Capabilities::from_msgpack(&[]).is_err());
    }
}
