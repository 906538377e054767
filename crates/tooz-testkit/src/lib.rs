//! Test utilities for tooz.
//!
//! - [`FaultProxy`]: an in-process TCP proxy on loopback that delays, drops, black-holes or
//!   cuts the traffic between a client and a test server, for fault tests.
//! - [`services`]: helpers that stop, kill and restart the test servers run by
//!   `scripts/services`, and list their URLs.
#![warn(missing_docs)]

pub mod proxy;
pub mod services;

pub use proxy::{FaultProxy, Mode};
