//! Pure data model and history checker for tooz fault-injection safety tests; the
//! `tooz-safety` binary of this crate makes the histories (see docs/safety.md).
//!
//! Client processes record a [`History`](history) of [`Event`]s (operation invokes and
//! completions, and instant observations such as a lost lock) while a nemesis (process 0)
//! injects faults and records them as events too. Writes made under a lock or a leadership go
//! to a [`FencedRegister`], whose log of [`RegisterEntry`]s records which tokens it accepted.
//! [`check`] then judges the history and the log against seven checks, per lock or group:
//!
//! - **C1 mutual exclusion**: a process believes it holds an acquisition from its `Acquire`
//!   `Ok` until its release invoke, its lost signal, its suspension, its kill, or a pause of
//!   it (a stopped process does nothing useful with a lock; its later writes are judged by C2
//!   and its lost signal by C6). Two such intervals of one lock must not overlap.
//! - **C2 fenced writes**: accepted tokens per resource never decrease, each was granted to
//!   the writer, and a token granted to two acquisitions is not accepted from both.
//! - **C3 tokens**: every acquisition gets a fresh token, and an acquisition that completed
//!   before another was invoked has the smaller token.
//! - **C4 releases**: a release that freed a lock was of an acquisition the process made, and
//!   no newer acquisition by another process was still held at the release invoke.
//! - **C5 recovery**: after a heal that leaves no fault active, each lock still in use is
//!   acquired, and each election group has a leader, within the recovery bound (from the end
//!   of the hold, for a lock whose holder keeps it across the heal).
//! - **C6 lost signal**: a holder overtaken by another process while it still believes it
//!   holds (ignoring suspension and pause) stops believing, by a lost signal, release or
//!   death, within ttl + margin of the overtake or of the heal of a pause covering it.
//! - **C7 elections**: one leader per (group, term), terms increasing in real-time order, and
//!   C2's register rules for the group's resource with terms as tokens.
//!
//! Events with equal `time_ns` are concurrent: a check reports only what a strict order
//! proves (see [`checker`]).
#![warn(missing_docs)]

pub mod checker;
pub mod history;
pub mod register;

pub use checker::{check, CheckId, CheckResult, Expectations, Report, Stats, Violation};
pub use history::{read_jsonl, write_jsonl, Event, FaultClass, Kind, Op, ParseError};
pub use register::{read_register_jsonl, write_register_jsonl, FencedRegister, RegisterEntry};
