//! The primitives a lease-based key-value store offers (etcd's v3 API is the model): leases,
//! reads of a key or range with the store's revision, transactions that compare and then
//! write, and watches of a range from a revision. A transport implements [`KvStore`]; the
//! recipes of this module are written once over it.

use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::error::Result;

/// One stored key as the store reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Revision of the write that created the key (0: absent).
    pub create_revision: i64,
    pub mod_revision: i64,
    /// The lease the key lives on (0: none).
    pub lease: i64,
}

/// A key range: one key, or `[key, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyRange {
    pub key: Vec<u8>,
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    /// Exactly `key`.
    pub fn key(key: Vec<u8>) -> Self {
        KeyRange { key, end: None }
    }

    /// Every key starting with `prefix`.
    pub fn prefix(prefix: Vec<u8>) -> Self {
        let end = prefix_end(&prefix);
        KeyRange {
            key: prefix,
            end: Some(end),
        }
    }

    /// Every key starting with `prefix` but `prefix` itself.
    pub fn below(prefix: &[u8]) -> Self {
        let mut key = prefix.to_vec();
        key.push(0);
        KeyRange {
            key,
            end: Some(prefix_end(prefix)),
        }
    }
}

/// The first key after every key starting with `prefix` (etcd's convention: `[0]` when no
/// such key exists, meaning "to the end").
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A read of a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Read {
    pub range: KeyRange,
    /// At most this many keys (0: all).
    pub limit: i64,
    /// Only keys created at or before this revision (0: any).
    pub max_create_revision: i64,
    /// Newest (by create revision) first; else in key order.
    pub newest_first: bool,
    /// Values left out.
    pub keys_only: bool,
}

impl Read {
    /// Every key of `range`, in key order.
    pub fn all(range: KeyRange) -> Self {
        Read {
            range,
            limit: 0,
            max_create_revision: 0,
            newest_first: false,
            keys_only: false,
        }
    }
}

/// What a comparison looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    CreateRevision(i64),
    Value(Vec<u8>),
}

/// How it compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Equal,
    Greater,
}

/// One condition of a transaction; over a range, every key must satisfy it (an empty range
/// compares as one absent key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Compare {
    pub range: KeyRange,
    pub cmp: Cmp,
    pub target: Target,
}

impl Compare {
    /// No key of `range` exists.
    pub fn absent(range: KeyRange) -> Self {
        Compare {
            range,
            cmp: Cmp::Equal,
            target: Target::CreateRevision(0),
        }
    }

    /// `key` exists.
    pub fn exists(key: Vec<u8>) -> Self {
        Compare {
            range: KeyRange::key(key),
            cmp: Cmp::Greater,
            target: Target::CreateRevision(0),
        }
    }

    /// `key` was created at `revision` (it is that same key, not a later one).
    pub fn created_at(key: Vec<u8>, revision: i64) -> Self {
        Compare {
            range: KeyRange::key(key),
            cmp: Cmp::Equal,
            target: Target::CreateRevision(revision),
        }
    }

    /// `key` holds `value` (false when `key` is absent).
    pub fn value_is(key: Vec<u8>, value: Vec<u8>) -> Self {
        Compare {
            range: KeyRange::key(key),
            cmp: Cmp::Equal,
            target: Target::Value(value),
        }
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// Stores `value` at `key` on `lease` (0: none).
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
    },
    Delete(KeyRange),
    Get(Read),
}

/// What an operation answered, in the order the operations were given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OpResult {
    Put,
    /// How many keys were deleted.
    Deleted(i64),
    Got(Vec<Kv>),
}

/// A transaction's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TxnResult {
    /// Whether every comparison held (the `then` branch ran).
    pub succeeded: bool,
    /// The store's revision after the transaction (a write's revision).
    pub revision: i64,
    pub results: Vec<OpResult>,
}

impl TxnResult {
    /// The keys read by the `n`th operation (empty if it was not a read).
    pub fn got(&self, n: usize) -> &[Kv] {
        match self.results.get(n) {
            Some(OpResult::Got(kvs)) => kvs,
            _ => &[],
        }
    }

    /// Keys deleted by all the delete operations.
    pub fn deleted(&self) -> i64 {
        self.results
            .iter()
            .map(|r| match r {
                OpResult::Deleted(n) => *n,
                _ => 0,
            })
            .sum()
    }
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    Put(Kv),
    /// The key deleted (or expired with its lease), with the revision of the deletion.
    Delete(Kv),
}

/// What a watch stream yields: changes in revision order, or `Err` once when it broke
/// (connection lost, history compacted past its start, canceled by the server); the stream
/// ends after an error, and the caller resyncs from a fresh read.
pub(crate) type WatchStream = BoxStream<'static, Result<Vec<Event>>>;

/// A lease-based key-value store. Writes are linearizable; reads are too unless the transport
/// says otherwise.
#[async_trait]
pub(crate) trait KvStore: Send + Sync + 'static {
    /// Connects (bounded by the transport's timeouts).
    async fn connect(&self) -> Result<()>;

    /// Closes the connections.
    async fn close(&self);

    /// A new lease that lives `ttl` unless kept alive.
    async fn grant(&self, ttl: Duration) -> Result<i64>;

    /// Renews `lease`; `false` when it no longer exists (expired or revoked).
    async fn keep_alive(&self, lease: i64) -> Result<bool>;

    /// Ends `lease`, deleting every key on it.
    async fn revoke(&self, lease: i64) -> Result<()>;

    /// Reads a range; returns its keys and the store's revision at the read.
    async fn range(&self, read: Read) -> Result<(Vec<Kv>, i64)>;

    /// If every comparison holds, runs `then`, else `otherwise`, atomically.
    async fn txn(&self, when: Vec<Compare>, then: Vec<Op>, otherwise: Vec<Op>)
        -> Result<TxnResult>;

    /// Changes to `range` from revision `from` on (0: from now). Returns once the server
    /// confirmed the watch: a change after that is never missed.
    async fn watch(&self, range: KeyRange, from: i64) -> Result<WatchStream>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a/"), b"a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        let below = KeyRange::below(b"g/");
        assert_eq!(below.key, b"g/\0".to_vec());
        assert_eq!(below.end, Some(b"g0".to_vec()));
    }
}
