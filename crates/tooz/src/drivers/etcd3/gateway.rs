//! `etcd3+http://`: the lease-KV store over etcd's JSON gateway (what Python tooz 5+ speaks).
//! Keys and values travel base64-encoded, 64-bit integers as JSON strings, and watches as a
//! streamed reply of one JSON object per line.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures::StreamExt;
use serde_json::{json, Map, Value};
use tokio::sync::OnceCell;

use super::Config;
use crate::driver::Driver;
use crate::drivers::http::{Body, HttpClient};
use crate::drivers::lease_kv::store::{
    Cmp, Compare, Event, KeyRange, Kv, KvStore, Op, OpResult, Read, Target, TxnResult, WatchStream,
};
use crate::drivers::lease_kv::{LeaseKvDriver, Settings};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::types::DriverFacts;
use crate::url::DriverUrl;

pub(crate) const FACTS: DriverFacts = super::FACTS;

pub(crate) fn build(url: &DriverUrl, member: &Id) -> Result<Arc<dyn Driver>> {
    let tls = url.scheme() == "etcd3+https";
    let (cfg, facts) = Config::parse(url, "etcd3+http", tls)?;
    if cfg.endpoints.len() > 1 {
        return Err(Error::InvalidUrl {
            url: url.to_string(),
            reason: "the gateway driver talks to one endpoint; list several with etcd3://".into(),
        });
    }
    let settings = Settings {
        scheme: "etcd3+http",
        facts,
        ttl: cfg.ttl,
        namespace: cfg.namespace.clone(),
    };
    let http = match &cfg.tls {
        None => HttpClient::plain(&cfg.endpoints[0], cfg.call_timeout),
        #[cfg(feature = "etcd3-http-tls")]
        Some(tls) => {
            let files = crate::drivers::tls_config::TlsFiles {
                ca_cert: tls.ca_cert.clone(),
                cert: tls.cert.clone(),
                key: tls.key.clone(),
                // Python's etcd3gw (requests) checks the server's name.
                check_hostname: true,
            };
            let config = crate::drivers::tls_config::client_config(&files)?;
            HttpClient::tls(&cfg.endpoints[0], cfg.call_timeout, config)
        }
        #[cfg(not(feature = "etcd3-http-tls"))]
        Some(_) => {
            return Err(Error::DriverUnavailable {
                scheme: "etcd3+http".to_string(),
                why: "built without TLS (enable the cargo feature `etcd3-http-tls` of the tooz \
                      crate)"
                    .into(),
            })
        }
    };
    let store = GatewayStore {
        cfg,
        http,
        prefix: OnceCell::new(),
    };
    Ok(Arc::new(LeaseKvDriver::new(settings, store, member)))
}

/// The gateway transport.
pub(crate) struct GatewayStore {
    cfg: Config,
    http: HttpClient,
    /// The API prefix (`/v3/`, `/v3beta/`, `/v3alpha/`), set or found at connect.
    prefix: OnceCell<String>,
}

fn b64(bytes: &[u8]) -> Value {
    Value::String(B64.encode(bytes))
}

fn int(value: Option<&Value>) -> i64 {
    match value {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn bytes_of(value: Option<&Value>) -> Result<Vec<u8>> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => B64
            .decode(s)
            .map_err(|e| malformed(&format!("base64: {e}"))),
        Some(other) => Err(malformed(&format!("expected base64, got {other}"))),
    }
}

fn malformed(what: &str) -> Error {
    Error::Backend {
        driver: "etcd3+http",
        message: format!("unexpected reply from the gateway: {what}"),
    }
}

fn kv_of(value: &Value) -> Result<Kv> {
    Ok(Kv {
        key: bytes_of(value.get("key"))?,
        value: bytes_of(value.get("value"))?,
        create_revision: int(value.get("create_revision")),
        mod_revision: int(value.get("mod_revision")),
        lease: int(value.get("lease")),
    })
}

fn kvs_of(reply: &Value) -> Result<Vec<Kv>> {
    match reply.get("kvs") {
        Some(Value::Array(kvs)) => kvs.iter().map(kv_of).collect(),
        _ => Ok(Vec::new()),
    }
}

fn revision_of(reply: &Value) -> i64 {
    int(reply.get("header").and_then(|h| h.get("revision")))
}

fn range_fields(map: &mut Map<String, Value>, range: &KeyRange) {
    map.insert("key".into(), b64(&range.key));
    if let Some(end) = &range.end {
        map.insert("range_end".into(), b64(end));
    }
}

fn read_json(read: &Read) -> Value {
    let mut map = Map::new();
    range_fields(&mut map, &read.range);
    if read.limit > 0 {
        map.insert("limit".into(), json!(read.limit.to_string()));
    }
    if read.max_create_revision > 0 {
        map.insert(
            "max_create_revision".into(),
            json!(read.max_create_revision.to_string()),
        );
    }
    if read.newest_first {
        map.insert("sort_order".into(), json!("DESCEND"));
        map.insert("sort_target".into(), json!("CREATE"));
    }
    if read.keys_only {
        map.insert("keys_only".into(), json!(true));
    }
    Value::Object(map)
}

fn compare_json(c: &Compare) -> Value {
    let mut map = Map::new();
    range_fields(&mut map, &c.range);
    let result = match c.cmp {
        Cmp::Equal => "EQUAL",
        Cmp::Greater => "GREATER",
    };
    map.insert("result".into(), json!(result));
    let (target, field, value) = match &c.target {
        Target::CreateRevision(r) => ("CREATE", "create_revision", json!(r.to_string())),
        Target::Value(v) => ("VALUE", "value", b64(v)),
    };
    map.insert("target".into(), json!(target));
    map.insert(field.into(), value);
    Value::Object(map)
}

fn op_json(op: &Op) -> Value {
    match op {
        Op::Put { key, value, lease } => {
            let mut put = json!({"key": b64(key), "value": b64(value)});
            if *lease != 0 {
                put["lease"] = json!(lease.to_string());
            }
            json!({ "request_put": put })
        }
        Op::Delete(range) => {
            let mut map = Map::new();
            range_fields(&mut map, range);
            json!({ "request_delete_range": Value::Object(map) })
        }
        Op::Get(read) => json!({ "request_range": read_json(read) }),
    }
}

impl GatewayStore {
    fn prefix(&self) -> Result<&str> {
        self.prefix
            .get()
            .map(String::as_str)
            .ok_or(Error::NotStarted)
    }

    /// One API call; the reply's JSON, or the gateway's error.
    async fn call(&self, endpoint: &str, body: Value) -> Result<Value> {
        let path = format!("{}{endpoint}", self.prefix()?);
        let reply = self
            .http
            .call("POST", &path, Body::Json(body.to_string().into_bytes()))
            .await?;
        let json: Value = serde_json::from_slice(&reply.body)
            .map_err(|e| malformed(&format!("{endpoint}: {e}")))?;
        if !reply.status.is_success() {
            let message = json
                .get("error")
                .or(json.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("no message")
                .to_string();
            return Err(self.refused(reply.status.as_u16(), endpoint, &message));
        }
        Ok(json)
    }

    fn refused(&self, status: u16, endpoint: &str, message: &str) -> Error {
        let text = format!(
            "{} {endpoint}: {message} (HTTP {status})",
            self.http.server()
        );
        if status == 503 {
            Error::Connection(text)
        } else {
            Error::Backend {
                driver: "etcd3+http",
                message: text,
            }
        }
    }

    /// The API prefix from the server's version, as Python's etcd3gw finds it.
    async fn discover_prefix(&self) -> Result<String> {
        let reply = self.http.call("GET", "/version", Body::Empty).await?;
        let json: Value = serde_json::from_slice(&reply.body)
            .map_err(|e| malformed(&format!("/version: {e}")))?;
        let version = json
            .get("etcdserver")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("/version names no etcdserver"))?;
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        Ok(match (major, minor) {
            (3, 0..=2) => "/v3alpha/",
            (3, 3) => "/v3beta/",
            _ => "/v3/",
        }
        .to_string())
    }
}

#[async_trait]
impl KvStore for GatewayStore {
    async fn connect(&self) -> Result<()> {
        let prefix = match &self.cfg.api_version {
            Some(version) => format!("/{version}/"),
            None => self.discover_prefix().await?,
        };
        let _ = self.prefix.set(prefix);
        if let Some((user, password)) = &self.cfg.user {
            let reply = self
                .call(
                    "auth/authenticate",
                    json!({"name": user, "password": password}),
                )
                .await?;
            let token = reply.get("token").and_then(Value::as_str);
            self.http.set_token(token.map(str::to_string));
        }
        // A first read, so that a server that is not etcd fails the start.
        self.call(
            "kv/range",
            json!({"key": b64(b"tooz/"), "count_only": true}),
        )
        .await
        .map(drop)
    }

    async fn close(&self) {
        self.http.set_token(None);
    }

    async fn grant(&self, ttl: Duration) -> Result<i64> {
        let secs = ttl.as_secs().max(1);
        let reply = self
            .call("lease/grant", json!({"TTL": secs.to_string(), "ID": "0"}))
            .await?;
        match int(reply.get("ID")) {
            0 => Err(malformed("lease/grant answered no ID")),
            id => Ok(id),
        }
    }

    async fn keep_alive(&self, lease: i64) -> Result<bool> {
        match self
            .call("lease/keepalive", json!({"ID": lease.to_string()}))
            .await
        {
            Ok(reply) => {
                let result = reply.get("result").unwrap_or(&reply);
                if int(result.get("TTL")) > 0 {
                    return Ok(true);
                }
            }
            // The gateway's word for a lease the server no longer has; checked below.
            Err(Error::Backend { message, .. }) if message.contains("not found") => {}
            Err(error) => return Err(error),
        }
        // A keep-alive answered without a TTL: the lease is gone only if the server says so
        // when asked about it (TTL -1), not when it answered in a hurry (a restart).
        let reply = self
            .call("lease/timetolive", json!({"ID": lease.to_string()}))
            .await?;
        Ok(int(reply.get("TTL")) > 0)
    }

    async fn revoke(&self, lease: i64) -> Result<()> {
        match self
            .call("lease/revoke", json!({"ID": lease.to_string()}))
            .await
        {
            Ok(_) => Ok(()),
            // Already gone: what revoking wanted.
            Err(Error::Backend { message, .. }) if message.contains("lease not found") => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn range(&self, read: Read) -> Result<(Vec<Kv>, i64)> {
        let reply = self.call("kv/range", read_json(&read)).await?;
        Ok((kvs_of(&reply)?, revision_of(&reply)))
    }

    async fn txn(
        &self,
        when: Vec<Compare>,
        then: Vec<Op>,
        otherwise: Vec<Op>,
    ) -> Result<TxnResult> {
        let body = json!({
            "compare": when.iter().map(compare_json).collect::<Vec<_>>(),
            "success": then.iter().map(op_json).collect::<Vec<_>>(),
            "failure": otherwise.iter().map(op_json).collect::<Vec<_>>(),
        });
        let reply = self.call("kv/txn", body).await?;
        let succeeded = reply
            .get("succeeded")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let ran = if succeeded { &then } else { &otherwise };
        let responses = match reply.get("responses") {
            Some(Value::Array(r)) => r.as_slice(),
            _ => &[],
        };
        let mut results = Vec::with_capacity(ran.len());
        for (n, op) in ran.iter().enumerate() {
            let response = responses.get(n).unwrap_or(&Value::Null);
            results.push(match op {
                Op::Put { .. } => OpResult::Put,
                Op::Delete(_) => OpResult::Deleted(int(response
                    .get("response_delete_range")
                    .and_then(|d| d.get("deleted")))),
                Op::Get(_) => OpResult::Got(kvs_of(
                    response.get("response_range").unwrap_or(&Value::Null),
                )?),
            });
        }
        Ok(TxnResult {
            succeeded,
            revision: revision_of(&reply),
            results,
        })
    }

    async fn watch(&self, range: KeyRange, from: i64) -> Result<WatchStream> {
        let mut create = Map::new();
        range_fields(&mut create, &range);
        if from > 0 {
            create.insert("start_revision".into(), json!(from.to_string()));
        }
        let body = json!({ "create_request": Value::Object(create) });
        let path = format!("{}watch", self.prefix()?);
        let body = Body::Json(body.to_string().into_bytes());
        let (status, _, chunks) = self.http.stream("POST", &path, body).await?;
        if !status.is_success() {
            return Err(self.refused(status.as_u16(), "watch", "the watch was refused"));
        }
        let server = self.http.server().to_string();
        let mut lines = split_lines(chunks);
        // The server's confirmation: from then on, no change is missed.
        let created = tokio::time::timeout(self.cfg.call_timeout, lines.next())
            .await
            .map_err(|_| {
                Error::OperationTimedOut(format!("{server}: the watch was not confirmed"))
            })?;
        match created {
            Some(Ok(line)) if is_created(&line) => {}
            Some(Ok(_)) | None => {
                return Err(Error::Connection(format!(
                    "{server}: the watch was not confirmed"
                )))
            }
            Some(Err(error)) => return Err(error),
        }
        let events = lines.filter_map(move |line| {
            let item = match line {
                Err(error) => Some(Err(error)),
                Ok(line) => watch_message(&server, &line).transpose(),
            };
            async move { item }
        });
        // The first error ends the stream.
        let mut broken = false;
        let events = events.take_while(move |item| {
            let go = !broken;
            broken |= item.is_err();
            async move { go }
        });
        Ok(events.boxed())
    }
}

/// Events of one streamed watch message; `None` for messages without any (created,
/// progress); an error when the watch was canceled or compacted.
fn watch_message(server: &str, line: &[u8]) -> Result<Option<Vec<Event>>> {
    let json: Value =
        serde_json::from_slice(line).map_err(|e| malformed(&format!("watch: {e}")))?;
    if let Some(error) = json.get("error") {
        return Err(Error::Connection(format!("{server} watch: {error}")));
    }
    let result = json.get("result").unwrap_or(&json);
    if result.get("canceled").and_then(Value::as_bool) == Some(true)
        || int(result.get("compact_revision")) > 0
    {
        return Err(Error::Connection(format!("{server}: watch canceled")));
    }
    let Some(Value::Array(events)) = result.get("events") else {
        return Ok(None);
    };
    let events = events
        .iter()
        .map(|e| {
            let kv = kv_of(e.get("kv").unwrap_or(&Value::Null))?;
            Ok(match e.get("type").and_then(Value::as_str) {
                Some("DELETE") => Event::Delete(kv),
                _ => Event::Put(kv),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(events))
}

/// Whether a streamed watch message confirms the watch's creation.
fn is_created(line: &[u8]) -> bool {
    serde_json::from_slice::<Value>(line).is_ok_and(|json| {
        let result = json.get("result").unwrap_or(&json);
        result.get("created").and_then(Value::as_bool) == Some(true)
            && result.get("canceled").and_then(Value::as_bool) != Some(true)
    })
}

/// Splits a byte stream into its non-empty lines.
fn split_lines(
    chunks: futures::stream::BoxStream<'static, Result<bytes::Bytes>>,
) -> futures::stream::BoxStream<'static, Result<Vec<u8>>> {
    futures::stream::unfold(
        (chunks, Vec::<u8>::new(), false),
        |(mut chunks, mut buffer, done)| async move {
            loop {
                if let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).take(end).collect();
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    return Some((Ok(line), (chunks, buffer, done)));
                }
                if done {
                    return None;
                }
                match chunks.next().await {
                    Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                    Some(Err(error)) => return Some((Err(error), (chunks, buffer, true))),
                    None => {
                        let why = "the watch stream ended".to_string();
                        return Some((Err(Error::Connection(why)), (chunks, buffer, true)));
                    }
                }
            }
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_messages() {
        let created = br#"{"result":{"header":{"revision":"7"},"created":true}}"#;
        assert_eq!(watch_message("s", created).unwrap(), None);
        let events = br#"{"result":{"events":[{"kv":{"key":"YQ==","create_revision":"8","mod_revision":"8","lease":"5"}},{"type":"DELETE","kv":{"key":"Yg==","mod_revision":"9"}}]}}"#;
        let events = watch_message("s", events).unwrap().unwrap();
        assert!(
            matches!(&events[0], Event::Put(kv) if kv.key == b"a" && kv.lease == 5 && kv.create_revision == 8)
        );
        assert!(matches!(&events[1], Event::Delete(kv) if kv.key == b"b"));
        let canceled = br#"{"result":{"canceled":true,"compact_revision":"3"}}"#;
        assert!(watch_message("s", canceled).is_err());
        assert!(watch_message("s", b"not json").is_err());
    }

    #[test]
    fn requests_encode_keys_and_integers() {
        let compare = compare_json(&Compare::created_at(b"k".to_vec(), 12));
        assert_eq!(compare["key"], "aw==");
        assert_eq!(compare["create_revision"], "12");
        assert_eq!(compare["target"], "CREATE");
        let put = op_json(&Op::Put {
            key: b"k".to_vec(),
            value: b"\xff".to_vec(),
            lease: 9,
        });
        assert_eq!(put["request_put"]["lease"], "9");
        assert_eq!(put["request_put"]["value"], "/w==");
    }
}
