//! What a driver declares about itself and the change notifications it produces.

use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::characteristics::Characteristics;
use crate::id::Id;
use crate::url::{OptionSpec, Options};

/// How a driver learns of membership changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchKind {
    /// The backend pushes every change, in order.
    Push,
    /// The backend signals changes and the core re-reads membership: a join and leave that
    /// both happen between two reads may be coalesced.
    Notified,
    /// The core polls and diffs membership every `poll_interval`.
    Poll,
    /// Watching is not available.
    None,
}

/// Which parts of the API a driver supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Support {
    /// create/delete/get groups, join/leave, get_members, capabilities.
    pub groups: bool,
    /// `update_capabilities`.
    pub update_capabilities: bool,
    /// `get_member_info`.
    pub member_info: bool,
    /// Membership watchers.
    pub watch: WatchKind,
    /// Leader election (`campaign`, `get_leader`, `stand_down_group_leader`).
    pub election: bool,
    /// Exclusive locks.
    pub locks: bool,
    /// Shared (read) locks.
    pub shared_locks: bool,
    /// `Lock::break_lock`.
    pub break_lock: bool,
}

impl Support {
    /// Every part, with pushed watches: what a driver declares before saying what it lacks,
    /// as in `Support { shared_locks: false, ..Support::ALL }`.
    pub const ALL: Support = Support {
        groups: true,
        update_capabilities: true,
        member_info: true,
        watch: WatchKind::Push,
        election: true,
        locks: true,
        shared_locks: true,
        break_lock: true,
    };

    /// Names and values, for tables.
    pub fn entries(&self) -> [(&'static str, bool); 8] {
        [
            ("groups", self.groups),
            ("update_capabilities", self.update_capabilities),
            ("member_info", self.member_info),
            ("watch", self.watch != WatchKind::None),
            ("election", self.election),
            ("locks", self.locks),
            ("shared_locks", self.shared_locks),
            ("break_lock", self.break_lock),
        ]
    }
}

/// What a membership change feed yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChange {
    /// This member joined.
    Joined(Id),
    /// This member left.
    Left(Id),
    /// Something changed that the feed cannot describe (or events were dropped): re-read and diff.
    Resync,
}

/// A push feed of one group's membership changes.
pub type GroupFeed = BoxStream<'static, GroupChange>;

/// A future that resolves when a lock may have changed hands.
pub type ChangeWait = BoxFuture<'static, ()>;

/// Interval of the polling fallback when neither the URL nor the driver sets one.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What a driver declares, in one place: the registry lists a driver's static facts (`tooz
/// drivers`), and a built driver answers [`Driver::facts`](crate::driver::Driver::facts) with
/// the same facts as its URL adjusted them, so the two can never disagree.
#[derive(Debug, Clone, Copy)]
pub struct DriverFacts {
    /// What it guarantees.
    pub characteristics: Characteristics,
    /// Which API parts it supports.
    pub support: Support,
    /// Interval of the polling fallbacks (watchers without push, lock waits without push).
    pub poll_interval: Duration,
    /// The query options it accepts.
    pub options: &'static [OptionSpec],
}

impl DriverFacts {
    /// These facts with the URL's `poll_interval`, when it sets one.
    pub fn with_options(mut self, options: &Options) -> Self {
        if let Some(interval) = options.duration("poll_interval") {
            self.poll_interval = interval;
        }
        self
    }
}
