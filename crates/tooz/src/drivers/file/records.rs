//! The msgpack records of Python tooz's file driver, byte for byte.
//!
//! Group metadata: `{'group_id': <bin>, 'encoded': <bool>}`. Member record:
//! `{'capabilities': <any>, 'joined_on': <datetime ext 1>, 'member_id': <bin>, 'encoded': <bool>}`,
//! where the datetime is oslo.serialization's extension type 1: a msgpack map of `day`, `month`,
//! `year`, `hour`, `minute`, `second`, `microsecond`, in that order. Readers accept the older
//! forms too (bytes keys, no `encoded`), and ids stored as str.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rmpv::Value;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::types::Capabilities;

const DATETIME_EXT: i8 = 1;

fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).expect("writing to a Vec cannot fail");
    out
}

fn decode(bytes: &[u8], what: &str) -> Result<Vec<(Value, Value)>> {
    let value = rmpv::decode::read_value(&mut &bytes[..])
        .map_err(|e| Error::Serialization(format!("corrupt {what}: {e}")))?;
    match value {
        Value::Map(entries) => Ok(entries),
        other => Err(Error::Serialization(format!(
            "corrupt {what}: expected a map, found {other}"
        ))),
    }
}

/// A field by name, whether the key is stored as str or (older writers) as bin.
fn field<'a>(entries: &'a [(Value, Value)], name: &str) -> Option<&'a Value> {
    entries.iter().find_map(|(k, v)| {
        let matches = match k {
            Value::String(s) => s.as_str() == Some(name),
            Value::Binary(b) => b == name.as_bytes(),
            _ => false,
        };
        matches.then_some(v)
    })
}

fn id_field(entries: &[(Value, Value)], name: &str, what: &str) -> Result<Id> {
    match field(entries, name) {
        Some(Value::Binary(b)) => Ok(Id::from(b.clone())),
        Some(Value::String(s)) => Ok(Id::from(s.as_bytes())),
        _ => Err(Error::Serialization(format!("corrupt {what}: no {name}"))),
    }
}

/// Encodes a group's `.metadata`.
pub(super) fn group_metadata(group: &Id) -> Vec<u8> {
    encode(&Value::Map(vec![
        ("group_id".into(), Value::Binary(group.as_bytes().to_vec())),
        ("encoded".into(), Value::Boolean(false)),
    ]))
}

/// Decodes a group's `.metadata` into its id.
pub(super) fn read_group_metadata(bytes: &[u8]) -> Result<Id> {
    id_field(
        &decode(bytes, "group metadata")?,
        "group_id",
        "group metadata",
    )
}

/// A decoded member record.
pub(super) struct MemberRecord {
    pub(super) member: Id,
    pub(super) capabilities: Capabilities,
    pub(super) joined_on: SystemTime,
}

/// Encodes a member record.
pub(super) fn member_record(member: &Id, caps: &Capabilities, joined_on: SystemTime) -> Vec<u8> {
    encode(&Value::Map(vec![
        ("capabilities".into(), caps.value().clone()),
        ("joined_on".into(), datetime_ext(joined_on)),
        (
            "member_id".into(),
            Value::Binary(member.as_bytes().to_vec()),
        ),
        ("encoded".into(), Value::Boolean(false)),
    ]))
}

/// Decodes a member record; fails on anything Python tooz would also reject.
pub(super) fn read_member_record(bytes: &[u8]) -> Result<MemberRecord> {
    let entries = decode(bytes, "member record")?;
    let member = id_field(&entries, "member_id", "member record")?;
    let joined_on = match field(&entries, "joined_on") {
        Some(Value::Ext(DATETIME_EXT, payload)) => parse_datetime(payload)?,
        _ => {
            return Err(Error::Serialization(
                "corrupt member record: no joined_on datetime".into(),
            ))
        }
    };
    let capabilities = field(&entries, "capabilities")
        .cloned()
        .map(Capabilities::from)
        .unwrap_or_default();
    Ok(MemberRecord {
        member,
        capabilities,
        joined_on,
    })
}

/// Days since 1970-01-01 to a (year, month, day) civil date, proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = i64::from(if month > 2 { month - 3 } else { month + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A naive datetime (written in UTC) as oslo.serialization's extension type 1.
fn datetime_ext(at: SystemTime) -> Value {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let of_day = secs.rem_euclid(86_400);
    let inner = Value::Map(vec![
        ("day".into(), day.into()),
        ("month".into(), month.into()),
        ("year".into(), year.into()),
        ("hour".into(), (of_day / 3600).into()),
        ("minute".into(), (of_day % 3600 / 60).into()),
        ("second".into(), (of_day % 60).into()),
        ("microsecond".into(), since.subsec_micros().into()),
    ]);
    Value::Ext(DATETIME_EXT, encode(&inner))
}

fn parse_datetime(payload: &[u8]) -> Result<SystemTime> {
    let entries = decode(payload, "joined_on datetime")?;
    let part = |name: &str| -> Result<i64> {
        field(&entries, name)
            .and_then(Value::as_i64)
            .ok_or_else(|| Error::Serialization(format!("corrupt joined_on: no {name}")))
    };
    let days = days_from_civil(part("year")?, part("month")? as u32, part("day")? as u32);
    let secs = days * 86_400 + part("hour")? * 3600 + part("minute")? * 60 + part("second")?;
    let micros = field(&entries, "microsecond")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let secs =
        u64::try_from(secs).map_err(|_| Error::Serialization("joined_on before 1970".into()))?;
    Ok(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn corpus() -> Vec<Vec<u8>> {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456);
        vec![
            group_metadata(&Id::from("my_group")),
            member_record(&Id::from("m"), &Capabilities::none(), at),
            member_record(
                &Id::from(&b"\xff\x00"[..]),
                &Capabilities::from("zone=a"),
                at,
            ),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        #[test]
        fn corrupt_records_give_typed_errors(bytes in crate::fuzz::garbage(corpus())) {
            for outcome in [
                read_member_record(&bytes).map(|_| ()),
                read_group_metadata(&bytes).map(|_| ()),
                parse_datetime(&bytes).map(|_| ()),
            ] {
                if let Err(error) = outcome {
                    prop_assert!(matches!(error, Error::Serialization(_)), "{error}");
                }
            }
        }
    }

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn group_metadata_matches_python_bytes() {
        let expected = unhex("82 a8 67726f75705f6964 c4 08 6d795f67726f7570 a7 656e636f646564 c2");
        assert_eq!(group_metadata(&Id::from("my_group")), expected);
        assert_eq!(
            read_group_metadata(&expected).unwrap(),
            Id::from("my_group")
        );
    }

    #[test]
    fn member_record_matches_python_bytes() {
        let expected = unhex(
            "84 ac 6361706162696c6974696573 c0 a9 6a6f696e65645f6f6e c7 38 01 87 a3 646179 02 \
             a5 6d6f6e7468 01 a4 79656172 cd 07ea a4 686f7572 03 a6 6d696e757465 04 a6 7365636f6e64 \
             05 ab 6d6963726f7365636f6e64 06 a9 6d656d6265725f6964 c4 08 6d656d6265722d31 a7 \
             656e636f646564 c2",
        );
        let days = days_from_civil(2026, 1, 2) as u64;
        let at = UNIX_EPOCH
            + Duration::from_secs(days * 86_400 + 3 * 3600 + 4 * 60 + 5)
            + Duration::from_micros(6);
        let bytes = member_record(&Id::from("member-1"), &Capabilities::none(), at);
        assert_eq!(bytes, expected);
        let record = read_member_record(&expected).unwrap();
        assert_eq!(record.member, Id::from("member-1"));
        assert_eq!(record.joined_on, at);
        assert!(record.capabilities.is_none());
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in [-1_000_000, -1, 0, 1, 19_000, 20_454, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_455), (2026, 1, 2));
    }

    #[test]
    fn old_and_corrupt_records() {
        // A pre-1.36 record: bytes keys, no `encoded`, id as bin.
        let old = encode(&Value::Map(vec![
            (
                Value::Binary(b"member_id".to_vec()),
                Value::Binary(b"m".to_vec()),
            ),
            (
                Value::Binary(b"joined_on".to_vec()),
                datetime_ext(UNIX_EPOCH),
            ),
        ]));
        assert_eq!(read_member_record(&old).unwrap().member, Id::from("m"));
        let full = member_record(&Id::from("m"), &Capabilities::from(b"c"), SystemTime::now());
        for cut in [0, 1, full.len() / 2, full.len() - 1] {
            assert!(matches!(
                read_member_record(&full[..cut]),
                Err(Error::Serialization(_))
            ));
        }
        assert!(read_group_metadata(b"\x93\x01\x02\x03").is_err());
    }
}
