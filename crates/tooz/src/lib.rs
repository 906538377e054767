//! # tooz
//!
//! Distributed coordination for Rust services: group membership, leader election, locks
//! with fencing tokens, and consistent-hash partitioning, over interchangeable backends
//! chosen by URL. The API follows OpenStack's Python tooz; the storage layout of each
//! backend follows Python tooz's too, so Rust and Python services can share a lock or group.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use tooz::Coordinator;
//! use futures::StreamExt;
//!
//! let coord = Coordinator::connect("zake://", "worker-1").await?;
//! coord.start().await?;
//!
//! coord.create_group("workers").await?;
//! let mut events = coord.watch_group("workers").await?;
//! coord.join_group("workers", b"zone-a").await?;
//! let event = events.next().await.unwrap();
//! assert_eq!(event.member(), &tooz::Id::from("worker-1"));
//!
//! let guard = coord.lock("reindex").acquire().await?;
//! println!("fencing token {}", guard.fencing_token());
//! guard.release().await?;
//!
//! let leadership = coord.campaign("workers").await?;
//! leadership.resign().await?;
//! coord.stop().await?;
//! # Ok::<(), tooz::Error>(()) }).unwrap();
//! ```
//!
//! `Coordinator::builder(url, member).start()` connects and starts in one step; the two steps
//! of Python tooz (`connect`, then `start`) stay available.
//!
//! # Names
//!
//! The tooz-shaped calls keep their tooz names (`get_members`, `get_leader`,
//! `get_member_capabilities`, ...) and get no Rust-style aliases: two names for each would
//! double the surface to learn and document. Where Rust-style verbs exist they do something
//! of their own (`campaign` returns a [`Leadership`], `watch_group` a stream, `lock(..).acquire()`
//! a guard). Driver-facing types (`LockRequest`, `SessionEvents`, `OptionSpec`, ...) live in
//! [`driver`], not at the crate root.
//!
//! Drivers are listed by [`drivers::registry`]; each declares its [`Characteristics`] and
//! which API parts it [`Support`]s. A call a backend cannot carry answers
//! [`Error::NotImplemented`].
//!
//! # Logs and metrics
//!
//! Every operation runs in a `tracing` span (`tooz.op`, `tooz.start`, `tooz.lock.acquire`);
//! warnings (a failed heartbeat, a lost lock) are `tracing` events. Metrics go through the
//! `metrics` facade: `tooz_lock_wait_seconds` and `tooz_lock_hold_seconds` (histograms),
//! `tooz_locks_lost_total`, `tooz_heartbeats_missed_total`, `tooz_reconnects_total`,
//! `tooz_elections_won_total` and `tooz_group_operations_total` (label `op`: `create_group`,
//! `delete_group`, `join_group`, `leave_group`) (counters), and `tooz_coordinators` (a gauge
//! of the started coordinators in each [`ConnectionState`], label `state`).
#![warn(missing_docs)]

pub mod blocking;
mod callbacks;
mod characteristics;
mod coordinator;
mod core;
pub mod driver;
pub mod drivers;
mod election;
mod error;
#[cfg(test)]
mod fuzz;
mod group;
pub mod hashring;
mod id;
mod lock;
pub mod partitioner;
mod types;
mod url;
mod watchers;

pub use crate::core::MAX_NAME_LEN;
pub use callbacks::WatchId;
pub use characteristics::{Characteristic, Characteristics};
pub use coordinator::{Coordinator, CoordinatorBuilder};
pub use election::Leadership;
pub use error::{Error, Result};
pub use group::{GroupEvent, GroupWatch};
pub use id::Id;
pub use lock::{Lock, LockGuard};
pub use partitioner::{PartitionKey, Partitioner};
pub use types::{Capabilities, ConnectionState, FencingToken, LostReason, MemberInfo, Value};
pub use types::{Support, WatchKind};
pub use url::{duration, DriverUrl};
