//! The vocabulary shared by the core and the drivers.
//!
//! Everything a driver needs to speak to the core lives here, and nothing here imports the
//! user-facing handles (`Coordinator`, `Lock`, `GroupWatch`, ...): the layers above import
//! this module, never the other way round.

mod lock;
mod member;
mod session;
mod support;

pub(crate) use lock::next_nonce;
pub use lock::{FencingToken, LockMode, LockRequest, LostReason, LostSignal};
pub use member::{Capabilities, MemberInfo, Value};
pub(crate) use session::set_state;
pub use session::{ConnectionState, SessionEvents};
pub use support::{
    ChangeWait, DriverFacts, GroupChange, GroupFeed, Support, WatchKind, DEFAULT_POLL_INTERVAL,
};
