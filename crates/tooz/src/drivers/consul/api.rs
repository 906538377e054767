//! The few calls of Consul's HTTP API the driver makes, over the shared HTTP client:
//! sessions (create, renew, destroy), KV reads (one key or a prefix, `?consistent`, blocking
//! queries with `?index=&wait=`), writes with `?acquire=`/`?cas=`, deletes, and transactions
//! (`/v1/txn`).

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::drivers::http::{Body, HttpClient, Reply};
use crate::error::{Error, Result};

/// One KV entry as Consul reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Entry {
    pub key: String,
    pub value: Vec<u8>,
    /// The session holding it, if any.
    pub session: Option<String>,
    /// How many times it was acquired.
    pub lock_index: u64,
    pub create_index: u64,
    /// The raft index of its last write: grows with every write to the store.
    pub modify_index: u64,
}

/// One operation of a transaction.
#[derive(Debug, Clone)]
pub(super) enum Op<'a> {
    /// Writes `value` if the key's `ModifyIndex` is `index` (0: if it does not exist).
    Cas {
        key: &'a str,
        value: &'a [u8],
        index: u64,
    },
    /// Fails unless the key does not exist.
    CheckNotExists { key: &'a str },
    /// Fails unless the key's `ModifyIndex` is `index`.
    CheckIndex { key: &'a str, index: u64 },
    /// Reads every key below `prefix` (fails nothing).
    GetTree { prefix: &'a str },
    /// Writes `value` and takes the key for `session`.
    Lock {
        key: &'a str,
        value: &'a [u8],
        session: &'a str,
    },
}

impl Op<'_> {
    fn json(&self) -> Value {
        match self {
            Op::Cas { key, value, index } => json!({"KV": {
                "Verb": "cas", "Key": key, "Value": STANDARD.encode(value), "Index": index}}),
            Op::CheckNotExists { key } => json!({"KV": {"Verb": "check-not-exists", "Key": key}}),
            Op::CheckIndex { key, index } => {
                json!({"KV": {"Verb": "check-index", "Key": key, "Index": index}})
            }
            Op::GetTree { prefix } => json!({"KV": {"Verb": "get-tree", "Key": prefix}}),
            Op::Lock {
                key,
                value,
                session,
            } => json!({"KV": {
                "Verb": "lock", "Key": key, "Value": STANDARD.encode(value), "Session": session}}),
        }
    }
}

/// A transaction rolled back: the index of the operation that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rollback {
    pub op: usize,
    pub what: String,
}

pub(super) fn malformed(what: impl std::fmt::Display) -> Error {
    Error::Backend {
        driver: "consul",
        message: format!("unexpected reply from Consul: {what}"),
    }
}

fn refused(what: &str, reply: &Reply) -> Error {
    let text = String::from_utf8_lossy(&reply.body);
    let text = text.trim();
    Error::Backend {
        driver: "consul",
        message: format!("{what}: HTTP {}: {}", reply.status.as_u16(), text),
    }
}

/// Reads one entry of a KV reply.
pub(super) fn entry_of(json: &Value) -> Result<Entry> {
    let index = |name: &str| json.get(name).and_then(Value::as_u64).unwrap_or(0);
    let value = match json.get("Value") {
        Some(Value::String(encoded)) => STANDARD
            .decode(encoded)
            .map_err(|e| malformed(format!("value of a key: {e}")))?,
        _ => Vec::new(),
    };
    Ok(Entry {
        key: json
            .get("Key")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("an entry without a key"))?
            .to_string(),
        value,
        session: json
            .get("Session")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        lock_index: index("LockIndex"),
        create_index: index("CreateIndex"),
        modify_index: index("ModifyIndex"),
    })
}

/// Reads the entries of a KV read's body.
pub(super) fn entries_of(body: &[u8]) -> Result<Vec<Entry>> {
    let json: Value = serde_json::from_slice(body).map_err(malformed)?;
    match json {
        Value::Array(items) => items.iter().map(entry_of).collect(),
        Value::Null => Ok(Vec::new()),
        other => Err(malformed(format!("not a list of entries: {other}"))),
    }
}

/// Reads a transaction's reply: its entries, or the first failed operation.
pub(super) fn txn_of(body: &[u8]) -> Result<std::result::Result<Vec<Entry>, Rollback>> {
    let json: Value = serde_json::from_slice(body).map_err(malformed)?;
    if let Some(Value::Array(errors)) = json.get("Errors") {
        if let Some(first) = errors.first() {
            return Ok(Err(Rollback {
                op: first.get("OpIndex").and_then(Value::as_u64).unwrap_or(0) as usize,
                what: first
                    .get("What")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            }));
        }
    }
    let mut entries = Vec::new();
    if let Some(Value::Array(results)) = json.get("Results") {
        for result in results {
            if let Some(kv) = result.get("KV") {
                entries.push(entry_of(kv)?);
            }
        }
    }
    Ok(Ok(entries))
}

/// Percent-encodes a key for a URL path, keeping its `/`.
pub(super) fn path_of(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Consul's answer to a read: what it found, and the index to wait from.
pub(super) type Read<T> = (T, u64);

/// The HTTP API of one Consul agent.
pub(super) struct Consul {
    pub http: HttpClient,
    /// Longest an ordinary call may take.
    pub call_timeout: Duration,
}

fn consul_index(reply: &Reply) -> u64 {
    reply
        .headers
        .get("x-consul-index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Consul {
    async fn read(
        &self,
        key: &str,
        query: &str,
        wait: Option<(u64, Duration)>,
    ) -> Result<Read<Vec<Entry>>> {
        let mut target = format!("/v1/kv/{}?{query}", path_of(key));
        let reply = match wait {
            None => self.http.call("GET", &target, Body::Empty).await?,
            Some((index, wait)) => {
                target.push_str(&format!("&index={index}&wait={}ms", wait.as_millis()));
                // Consul adds up to wait / 16 to a wait.
                let limit = wait + wait / 16 + self.call_timeout;
                self.http
                    .call_within("GET", &target, Body::Empty, limit)
                    .await?
            }
        };
        let index = consul_index(&reply);
        match reply.status.as_u16() {
            200 => Ok((entries_of(&reply.body)?, index)),
            404 => Ok((Vec::new(), index)),
            _ => Err(refused("reading the KV store", &reply)),
        }
    }

    /// One key (`consistent`: a linearizable read through the leader).
    pub async fn get(&self, key: &str, consistent: bool) -> Result<Read<Option<Entry>>> {
        let query = if consistent { "consistent" } else { "" };
        let (entries, index) = self.read(key, query, None).await?;
        Ok((entries.into_iter().find(|e| e.key == key), index))
    }

    /// Waits until `key` changes after `index`, for about `wait` at most.
    pub async fn wait_key(
        &self,
        key: &str,
        index: u64,
        wait: Duration,
    ) -> Result<Read<Option<Entry>>> {
        let (entries, index) = self.read(key, "", Some((index, wait))).await?;
        Ok((entries.into_iter().find(|e| e.key == key), index))
    }

    /// Every key below `prefix`, with the values.
    pub async fn get_prefix(&self, prefix: &str) -> Result<Read<Vec<Entry>>> {
        self.read(prefix, "recurse", None).await
    }

    /// Waits until a key below `prefix` changes after `index`, for about `wait` at most.
    pub async fn wait_prefix(
        &self,
        prefix: &str,
        index: u64,
        wait: Duration,
    ) -> Result<Read<Vec<Entry>>> {
        self.read(prefix, "recurse", Some((index, wait))).await
    }

    /// The key names below `prefix` (`?keys`); one level below it only if `one_level`
    /// (`&separator=/`).
    pub async fn keys(&self, prefix: &str, one_level: bool) -> Result<Vec<String>> {
        let separator = if one_level { "&separator=/" } else { "" };
        let target = format!("/v1/kv/{}?keys{separator}", path_of(prefix));
        let reply = self.http.call("GET", &target, Body::Empty).await?;
        match reply.status.as_u16() {
            200 => serde_json::from_slice(&reply.body).map_err(malformed),
            404 => Ok(Vec::new()),
            _ => Err(refused("listing keys", &reply)),
        }
    }

    /// `PUT /v1/kv/<key>?query` with `value`: whether Consul applied it.
    pub async fn put(&self, key: &str, query: &str, value: &[u8]) -> Result<bool> {
        let target = format!("/v1/kv/{}?{query}", path_of(key));
        let reply = self
            .http
            .call("PUT", &target, Body::Bytes(value.to_vec()))
            .await?;
        self.applied("writing a key", &reply)
    }

    /// `DELETE /v1/kv/<key>?query`: whether Consul applied it.
    pub async fn delete(&self, key: &str, query: &str) -> Result<bool> {
        let target = format!("/v1/kv/{}?{query}", path_of(key));
        let reply = self.http.call("DELETE", &target, Body::Empty).await?;
        self.applied("deleting a key", &reply)
    }

    fn applied(&self, what: &str, reply: &Reply) -> Result<bool> {
        if !reply.status.is_success() {
            return Err(refused(what, reply));
        }
        match serde_json::from_slice(&reply.body).map_err(malformed)? {
            Value::Bool(applied) => Ok(applied),
            other => Err(malformed(format!("{what}: {other}"))),
        }
    }

    /// Applies `ops` atomically: the entries they wrote, or why it rolled back.
    pub async fn txn(&self, ops: &[Op<'_>]) -> Result<std::result::Result<Vec<Entry>, Rollback>> {
        let body: Vec<Value> = ops.iter().map(Op::json).collect();
        let body = serde_json::to_vec(&body).map_err(malformed)?;
        let reply = self.http.call("PUT", "/v1/txn", Body::Json(body)).await?;
        match reply.status.as_u16() {
            200 | 409 => txn_of(&reply.body),
            _ => Err(refused("a transaction", &reply)),
        }
    }

    /// Creates a session deleting its keys when it ends: its id.
    pub async fn create_session(
        &self,
        name: &str,
        ttl: Duration,
        lock_delay: Duration,
    ) -> Result<String> {
        let body = json!({
            "Name": name,
            "TTL": format!("{}s", ttl.as_secs()),
            "LockDelay": format!("{}ms", lock_delay.as_millis()),
            "Behavior": "delete",
        });
        let body = serde_json::to_vec(&body).map_err(malformed)?;
        let reply = self
            .http
            .call("PUT", "/v1/session/create", Body::Json(body))
            .await?;
        if !reply.status.is_success() {
            return Err(refused("creating a session", &reply));
        }
        let json: Value = serde_json::from_slice(&reply.body).map_err(malformed)?;
        json.get("ID")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| malformed("a session without an ID"))
    }

    /// Renews a session: `false` if Consul no longer knows it.
    pub async fn renew_session(&self, id: &str) -> Result<bool> {
        let target = format!("/v1/session/renew/{}", path_of(id));
        let reply = self.http.call("PUT", &target, Body::Empty).await?;
        match reply.status.as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(refused("renewing the session", &reply)),
        }
    }

    /// Ends a session: Consul deletes the keys it holds.
    pub async fn destroy_session(&self, id: &str) -> Result<()> {
        let target = format!("/v1/session/destroy/{}", path_of(id));
        let reply = self.http.call("PUT", &target, Body::Empty).await?;
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(refused("ending the session", &reply))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_read() {
        let body = br#"[{"LockIndex":2,"Key":"tooz/locks/a","Flags":0,"Value":"djI=",
            "Session":"9e18","CreateIndex":16,"ModifyIndex":19},
            {"LockIndex":0,"Key":"tooz/groups/g/","Flags":0,"Value":null,
            "CreateIndex":3,"ModifyIndex":3}]"#;
        let entries = entries_of(body).unwrap();
        assert_eq!(
            entries[0],
            Entry {
                key: "tooz/locks/a".into(),
                value: b"v2".to_vec(),
                session: Some("9e18".into()),
                lock_index: 2,
                create_index: 16,
                modify_index: 19,
            }
        );
        assert_eq!(entries[1].session, None);
        assert!(entries[1].value.is_empty());
        assert!(entries_of(b"{\"a\":1}").is_err());
        assert!(entries_of(b"[{\"Value\":\"!!\",\"Key\":\"k\"}]").is_err());
    }

    #[test]
    fn transactions_are_read() {
        let ok = br#"{"Results":[{"KV":{"LockIndex":1,"Key":"k","Flags":0,"Value":null,
            "Session":"s","CreateIndex":27,"ModifyIndex":27}}],"Errors":null}"#;
        let entries = txn_of(ok).unwrap().unwrap();
        assert_eq!(entries[0].modify_index, 27);
        let failed = br#"{"Results":null,"Errors":[{"OpIndex":1,"What":"key \"k\" exists"}]}"#;
        let rollback = txn_of(failed).unwrap().unwrap_err();
        assert_eq!(rollback.op, 1);
        assert!(rollback.what.contains("exists"));
    }

    #[test]
    fn keys_are_percent_encoded_but_for_slashes() {
        assert_eq!(path_of("tooz/locks/a b?#%"), "tooz/locks/a%20b%3F%23%25");
        assert_eq!(path_of("ns/ünï"), "ns/%C3%BCn%C3%AF");
    }
}
