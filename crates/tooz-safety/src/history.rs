//! The history model: what clients and the nemesis did, one [`Event`] at a time, and its
//! JSON-lines form.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// One entry of a history: an operation boundary or an instant observation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `CLOCK_MONOTONIC` time in nanoseconds; comparable across the processes of one host.
    pub time_ns: u64,
    /// The process that recorded the event; `0` is the runner / nemesis.
    pub process: u32,
    /// Pairs an [`Kind::Invoke`] with its completion within one process.
    pub op_id: u64,
    /// Whether this starts, completes or observes an operation.
    pub kind: Kind,
    /// What the operation is.
    pub op: Op,
}

/// The role of an [`Event`] in its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The operation was started.
    Invoke,
    /// The operation completed and took effect.
    Ok,
    /// The operation completed and certainly did not take effect.
    Fail,
    /// The operation may or may not have taken effect (lost reply, timeout, killed process).
    Unknown,
    /// An instant observation with no invoke.
    Info,
}

/// What an [`Event`] is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Op {
    /// Acquire `lock`; `token` (the fencing token of this acquisition) is set on `Ok`.
    Acquire {
        /// Lock name.
        lock: String,
        /// Fencing token granted, known once acquired.
        token: Option<u64>,
    },
    /// Release the acquisition of `lock` that was granted `token`.
    Release {
        /// Lock name.
        lock: String,
        /// Token of the acquisition being released.
        token: u64,
        /// Set on `Ok`: `true` if the lock was freed, `false` if it was not held.
        released: Option<bool>,
    },
    /// Info: the library's lost signal fired for acquisition (`lock`, `token`).
    Lost {
        /// Lock name.
        lock: String,
        /// Token of the acquisition that was lost.
        token: u64,
    },
    /// Info: the process's connection was suspended; it must assume its locks may be gone.
    Suspended,
    /// A write to the fenced register: `Ok` = accepted, `Fail` = rejected as stale.
    Write {
        /// Register resource name (a lock name or an election group name).
        resource: String,
        /// Fencing token presented with the write.
        token: u64,
    },
    /// Info or `Ok`: the process became leader of `group` with `term` (its fencing token).
    Elected {
        /// Election group name.
        group: String,
        /// Leadership term.
        term: u64,
    },
    /// Info: the process's leadership of `group` for `term` ended (resigned or lost).
    Resigned {
        /// Election group name.
        group: String,
        /// Leadership term that ended.
        term: u64,
    },
    /// Info from process 0: process `target` exited without being killed by the nemesis.
    /// Treated like a [`FaultClass::Kill`] of `target`.
    Crashed {
        /// The process that died.
        target: u32,
    },
    /// Info from process 0: the nemesis started a fault.
    Fault {
        /// What kind of fault.
        class: FaultClass,
        /// Client process (client classes) or server node (server classes); `None` = all.
        target: Option<u32>,
        /// Free-form description (duration, parameters).
        detail: String,
    },
    /// Info from process 0: the fault of `class` on `target` ended.
    Heal {
        /// What kind of fault ended.
        class: FaultClass,
        /// Same meaning as in [`Op::Fault`].
        target: Option<u32>,
    },
}

/// The kinds of fault a nemesis injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultClass {
    /// SIGSTOP of a client process (SIGCONT at heal).
    Pause,
    /// Only the client's keepalive / lease renewal is paused; the process keeps running.
    PauseKeepalive,
    /// Replies to the client are dropped, so its operations end as `Unknown`.
    LostReply,
    /// SIGKILL of a client process: its open operations become `Unknown`, it holds nothing
    /// after (though the server may keep its locks until the session or lease expires).
    Kill,
    /// The client's traffic is silently discarded in both directions.
    BlackHole,
    /// The client's traffic is delayed.
    Delay,
    /// The client's connection is cut.
    Drop,
    /// The coordination server is restarted.
    ServerRestart,
    /// A server node is killed.
    NodeKill,
    /// The server cluster fails over to another primary.
    Failover,
    /// The client's server-side session is expired / killed.
    SessionKill,
}

/// A line of a JSON-lines file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong with it.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Reads a history from JSON lines; blank lines are skipped.
pub fn read_jsonl(text: &str) -> Result<Vec<Event>, ParseError> {
    parse_lines(text)
}

/// Writes a history as JSON lines, one event per line, each ending in `\n`.
pub fn write_jsonl(events: &[Event]) -> String {
    to_lines(events)
}

pub(crate) fn parse_lines<T: DeserializeOwned>(text: &str) -> Result<Vec<T>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let item = serde_json::from_str(line).map_err(|e| ParseError {
            line: i + 1,
            message: e.to_string(),
        })?;
        out.push(item);
    }
    Ok(out)
}

pub(crate) fn to_lines<T: Serialize>(items: &[T]) -> String {
    let mut out = String::new();
    for item in items {
        // Only used for this crate's types: plain fields, string keys, no failing serialiser.
        let line = serde_json::to_string(item).expect("plain data always serialises");
        out.push_str(&line);
        out.push('\n');
    }
    out
}
