//! The fenced register: the resource the locks and leaders protect.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::history::{parse_lines, to_lines, ParseError};

/// One write attempt on a [`FencedRegister`], accepted or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterEntry {
    /// `CLOCK_MONOTONIC` time of the attempt, in nanoseconds.
    pub time_ns: u64,
    /// The writing process.
    pub process: u32,
    /// Resource written (a lock name or an election group name).
    pub resource: String,
    /// Fencing token presented.
    pub token: u64,
    /// Whether the register accepted the write.
    pub accepted: bool,
}

#[derive(Debug, Default)]
struct State {
    highest: HashMap<String, u64>,
    log: Vec<RegisterEntry>,
}

/// Per resource, accepts a write iff its token is at least the highest token seen, and logs
/// every attempt in the order it was decided.
#[derive(Debug, Default)]
pub struct FencedRegister {
    state: Mutex<State>,
}

impl FencedRegister {
    /// An empty register.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: each write is one update.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Attempts a write; returns whether it was accepted (`token >= highest seen`).
    pub fn write(&self, resource: &str, token: u64, process: u32, time_ns: u64) -> bool {
        let mut state = self.state();
        let accepted = match state.highest.get(resource) {
            Some(&highest) => token >= highest,
            None => true,
        };
        if accepted {
            state.highest.insert(resource.to_owned(), token);
        }
        state.log.push(RegisterEntry {
            time_ns,
            process,
            resource: resource.to_owned(),
            token,
            accepted,
        });
        accepted
    }

    /// The highest token accepted for `resource`, if any write was.
    pub fn highest(&self, resource: &str) -> Option<u64> {
        self.state().highest.get(resource).copied()
    }

    /// The process whose write to `resource` was accepted last, if any.
    pub fn last_writer(&self, resource: &str) -> Option<u32> {
        self.state()
            .log
            .iter()
            .rev()
            .find(|e| e.accepted && e.resource == resource)
            .map(|e| e.process)
    }

    /// A copy of the log of all attempts so far, in decision order.
    pub fn log(&self) -> Vec<RegisterEntry> {
        self.state().log.clone()
    }

    /// Consumes the register, returning its log.
    pub fn into_log(self) -> Vec<RegisterEntry> {
        self.state
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .log
    }
}

/// Reads a register log from JSON lines; blank lines are skipped.
pub fn read_register_jsonl(text: &str) -> Result<Vec<RegisterEntry>, ParseError> {
    parse_lines(text)
}

/// Writes a register log as JSON lines, one entry per line.
pub fn write_register_jsonl(entries: &[RegisterEntry]) -> String {
    to_lines(entries)
}
