//! The driver toolkit: the pieces every driver needs, written once.
//!
//! A driver is its transport and its key layout; what is the same from one backend to the
//! next lives here and is called, never inherited:
//!
//! - [`errors`]: tooz's typed errors for groups and members, and I/O mapping;
//! - [`options`]: a driver's option list as the common options plus its own;
//! - [`SessionSlot`]: the started session, and the error a call gets before `start`;
//! - [`OnAbandon`]: the clean-up of an acquire that gives up or whose future is dropped;
//! - [`HeldLocks`]: the locks a driver holds, with their lost signals;
//! - [`JoinedGroups`]: the groups this member joined, with their capabilities, and
//!   [`join_again`] for a backend that lost them;
//! - [`fencing`]: fencing tokens made of an epoch and a counter;
//! - [`holder`]: the value a lock key holds (acquisition nonce and member id);
//! - [`Claims`]: local exclusion on server locks that are re-entrant per session (SQL
//!   advisory and named locks), and hex for payloads and hashed names.

pub(crate) mod claims;
pub(crate) mod errors;
pub(crate) mod fencing;
mod held;
pub(crate) mod holder;
mod joined;
mod on_abandon;
pub(crate) mod options;
mod session;

pub(crate) use claims::Claims;
pub(crate) use held::HeldLocks;
pub(crate) use joined::{join_again, JoinedGroups};
pub(crate) use on_abandon::OnAbandon;
pub(crate) use session::SessionSlot;
