//! The few calls of etcd's v2 keys API the driver makes, over the shared HTTP client: keys
//! set with a TTL and compare-and-swap conditions (`prevExist`, `prevValue`), deletes with
//! conditions, reads of a key or a directory, and long-poll waits (`wait=true&waitIndex=`).

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use crate::drivers::http::{Body, HttpClient, Reply};
use crate::error::{Error, Result};

/// etcd's v2 error codes the driver acts on.
pub(super) const KEY_NOT_FOUND: u64 = 100;
pub(super) const COMPARE_FAILED: u64 = 101;
pub(super) const NODE_EXISTS: u64 = 105;
pub(super) const DIR_NOT_EMPTY: u64 = 108;

/// One key or directory as etcd reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Node {
    /// Its full path (`/a/b`).
    pub key: String,
    pub value: String,
    pub dir: bool,
    pub created_index: u64,
    pub modified_index: u64,
    /// Its children (a directory read).
    pub nodes: Vec<Node>,
}

/// A refusal by etcd: its error code and message, and the store's index then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub code: u64,
    pub message: String,
    pub index: u64,
}

/// What a call answered: the node (and the store's index), or a refusal.
pub(super) type Answer = std::result::Result<(Node, u64), Refusal>;

/// One change seen by a wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Change {
    /// `create`, `set`, `update`, `compareAndSwap`, `delete`, `expire`, `compareAndDelete`...
    pub action: String,
    pub node: Node,
}

fn malformed(what: impl std::fmt::Display) -> Error {
    Error::Backend {
        driver: "etcd",
        message: format!("unexpected reply from etcd: {what}"),
    }
}

fn node_of(json: &Value) -> Node {
    let index = |name: &str| json.get(name).and_then(Value::as_u64).unwrap_or(0);
    Node {
        key: json
            .get("key")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        value: json
            .get("value")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        dir: json.get("dir").and_then(Value::as_bool).unwrap_or(false),
        created_index: index("createdIndex"),
        modified_index: index("modifiedIndex"),
        nodes: match json.get("nodes") {
            Some(Value::Array(nodes)) => nodes.iter().map(node_of).collect(),
            _ => Vec::new(),
        },
    }
}

/// Percent-encodes a form or query value.
pub(super) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The v2 keys API of one server.
pub(super) struct V2 {
    pub http: HttpClient,
}

impl V2 {
    fn answer(&self, reply: Reply) -> Result<Answer> {
        let index = reply
            .headers
            .get("x-etcd-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let json: Value = serde_json::from_slice(&reply.body).map_err(malformed)?;
        if let Some(code) = json.get("errorCode").and_then(Value::as_u64) {
            return Ok(Err(Refusal {
                code,
                message: json
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                index: json.get("index").and_then(Value::as_u64).unwrap_or(index),
            }));
        }
        if !reply.status.is_success() {
            return Err(malformed(format!("HTTP {}", reply.status)));
        }
        let node = json.get("node").map(node_of).unwrap_or_default();
        Ok(Ok((node, index)))
    }

    /// `method` on `/v2/keys<path>?query` with `form` as the body.
    pub async fn call(&self, method: &str, path: &str, query: &str, form: &str) -> Result<Answer> {
        let mut target = format!("/v2/keys{path}");
        if !query.is_empty() {
            target.push('?');
            target.push_str(query);
        }
        let body = if form.is_empty() {
            Body::Empty
        } else {
            Body::Form(form.to_string())
        };
        let reply = self.http.call(method, &target, body).await?;
        self.answer(reply)
    }

    /// The server's version, as a start-up check that it speaks the v2 API.
    pub async fn check(&self) -> Result<()> {
        let reply = self.http.call("GET", "/v2/keys/", Body::Empty).await?;
        match self.answer(reply)? {
            Ok(_) => Ok(()),
            Err(refusal) => Err(malformed(refusal.message)),
        }
    }

    /// Waits for the first change of `path` (and below it, if `recursive`) at or after
    /// `index`, for at most `limit`: `Ok(None)` when nothing changed by then.
    pub async fn wait(
        &self,
        path: &str,
        index: u64,
        recursive: bool,
        limit: Duration,
    ) -> Result<std::result::Result<Option<Change>, Refusal>> {
        let target = format!(
            "/v2/keys{path}?wait=true&waitIndex={index}{}",
            if recursive { "&recursive=true" } else { "" }
        );
        let (status, headers, mut chunks) = self.http.stream("GET", &target, Body::Empty).await?;
        let read = async {
            let mut body = Vec::new();
            while let Some(chunk) = chunks.next().await {
                body.extend_from_slice(&chunk?);
            }
            Ok::<_, Error>(body)
        };
        let body = match tokio::time::timeout(limit, read).await {
            Ok(body) => body?,
            Err(_) => return Ok(Ok(None)),
        };
        let json: Value = serde_json::from_slice(&body).map_err(malformed)?;
        let answer = self.answer(Reply {
            status,
            headers,
            body: body.into(),
        })?;
        Ok(answer.map(|(node, _)| {
            Some(Change {
                action: json
                    .get("action")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                node,
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_read_recursively() {
        let json: Value = serde_json::from_str(
            r#"{"key":"/d","dir":true,"modifiedIndex":3,"createdIndex":3,
                "nodes":[{"key":"/d/a","value":"x","modifiedIndex":5,"createdIndex":4}]}"#,
        )
        .unwrap();
        let node = node_of(&json);
        assert!(node.dir);
        assert_eq!(node.nodes[0].key, "/d/a");
        assert_eq!(node.nodes[0].value, "x");
        assert_eq!(
            (node.nodes[0].created_index, node.nodes[0].modified_index),
            (4, 5)
        );
    }

    #[test]
    fn values_are_percent_encoded() {
        assert_eq!(encode("a b+c/="), "a%20b%2Bc%2F%3D");
        assert_eq!(encode("Az09-_.~"), "Az09-_.~");
    }
}
