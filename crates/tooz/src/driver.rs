//! The `Driver` trait: the one seam every backend implements.
//!
//! A driver provides primitives (groups and members, a lock with fencing tokens, an optional
//! change feed, its characteristics); the [`Coordinator`](crate::Coordinator) composes them into
//! the public API: leader election is a lock per group, watchers diff membership when the driver
//! cannot push, lost-lock signals and heartbeats are driven from the core.
//!
//! Every method has a default answering [`Error::NotImplemented`], so a driver implements exactly
//! what its backend can carry and says so in its [`Support`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio::time::Instant;

use crate::characteristics::Characteristics;
use crate::error::{Error, Result};
use crate::group::{Capabilities, MemberInfo};
use crate::id::Id;
use crate::lock::{FencingToken, LockRequest};
use crate::session::SessionEvents;

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

fn not_implemented(driver: &'static str, operation: &'static str) -> Error {
    Error::NotImplemented {
        driver,
        operation,
        reason: "the backend cannot carry it",
    }
}

/// A coordination backend. See the module docs.
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// The scheme this driver answers to (its canonical name).
    fn scheme(&self) -> &'static str;

    /// What the driver guarantees.
    fn characteristics(&self) -> Characteristics;

    /// Which parts of the API it supports.
    fn support(&self) -> Support;

    /// Interval of the polling fallbacks (watchers without push, lock waits without push).
    fn poll_interval(&self) -> Duration {
        DEFAULT_POLL_INTERVAL
    }

    /// How long a session may stay suspended before its locks and memberships must be taken
    /// as lost.
    fn session_timeout(&self) -> Duration;

    /// Rejects names the backend cannot store. The core already rejects empty names.
    fn validate_name(&self, _kind: &'static str, _name: &Id) -> Result<()> {
        Ok(())
    }

    /// Connects. `events` is where the driver reports connection-state changes.
    async fn start(&self, events: SessionEvents) -> Result<()>;

    /// Disconnects, giving up every membership and lock of this session.
    async fn stop(&self) -> Result<()>;

    /// Keeps the session alive; returns the period after which it must be called again, or
    /// `None` when the driver needs no heartbeat.
    async fn heartbeat(&self) -> Result<Option<Duration>> {
        Ok(None)
    }

    /// Creates a group.
    async fn create_group(&self, _group: &Id) -> Result<()> {
        Err(not_implemented(self.scheme(), "create_group"))
    }

    /// Deletes an empty group.
    async fn delete_group(&self, _group: &Id) -> Result<()> {
        Err(not_implemented(self.scheme(), "delete_group"))
    }

    /// Lists groups.
    async fn get_groups(&self) -> Result<BTreeSet<Id>> {
        Err(not_implemented(self.scheme(), "get_groups"))
    }

    /// Joins `group` as `member`.
    async fn join_group(&self, _group: &Id, _member: &Id, _caps: &Capabilities) -> Result<()> {
        Err(not_implemented(self.scheme(), "join_group"))
    }

    /// Leaves `group`.
    async fn leave_group(&self, _group: &Id, _member: &Id) -> Result<()> {
        Err(not_implemented(self.scheme(), "leave_group"))
    }

    /// Members of `group`.
    async fn get_members(&self, group: &Id) -> Result<BTreeSet<Id>> {
        Ok(self
            .get_members_with_capabilities(group)
            .await?
            .into_keys()
            .collect())
    }

    /// Members of `group` with their capabilities.
    async fn get_members_with_capabilities(
        &self,
        _group: &Id,
    ) -> Result<BTreeMap<Id, Capabilities>> {
        Err(not_implemented(
            self.scheme(),
            "get_members_with_capabilities",
        ))
    }

    /// Capabilities of one member.
    async fn get_member_capabilities(&self, group: &Id, member: &Id) -> Result<Capabilities> {
        Ok(self.get_member_info(group, member).await?.capabilities)
    }

    /// Everything known about one member.
    async fn get_member_info(&self, _group: &Id, _member: &Id) -> Result<MemberInfo> {
        Err(not_implemented(self.scheme(), "get_member_info"))
    }

    /// Replaces the capabilities of `member` in `group`.
    async fn update_capabilities(
        &self,
        _group: &Id,
        _member: &Id,
        _caps: &Capabilities,
    ) -> Result<()> {
        Err(not_implemented(self.scheme(), "update_capabilities"))
    }

    /// A push feed of `group`'s changes with the membership at the moment it starts, or
    /// `None` when the driver cannot push (the core then polls).
    async fn subscribe_group(&self, _group: &Id) -> Result<Option<(BTreeSet<Id>, GroupFeed)>> {
        Ok(None)
    }

    /// Tries once to take the lock; `Some(token)` on success.
    async fn lock_try_acquire(&self, _req: &LockRequest) -> Result<Option<FencingToken>> {
        Err(not_implemented(self.scheme(), "locks"))
    }

    /// Takes the lock, waiting until `deadline` (forever if `None`); `None` on timeout.
    ///
    /// The default subscribes to [`Driver::lock_changed`] and retries; drivers with a native
    /// queue (fair hand-off) override it. Dropping the future must leave the lock not taken.
    async fn lock_acquire(
        &self,
        req: &LockRequest,
        deadline: Option<Instant>,
    ) -> Result<Option<FencingToken>> {
        loop {
            let changed = self.lock_changed(&req.name).await?;
            if let Some(token) = self.lock_try_acquire(req).await? {
                return Ok(Some(token));
            }
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, changed).await.is_err() {
                        return Ok(None);
                    }
                }
                None => changed.await,
            }
        }
    }

    /// A future resolving when the lock `name` may have been released. Called before a try,
    /// so that a release between the try and the wait is not missed. Default: the poll interval.
    async fn lock_changed(&self, _name: &Id) -> Result<ChangeWait> {
        Ok(Box::pin(tokio::time::sleep(self.poll_interval())))
    }

    /// Releases a lock held by `req`; `false` if it was not held by it.
    async fn lock_release(&self, _req: &LockRequest) -> Result<bool> {
        Err(not_implemented(self.scheme(), "locks"))
    }

    /// Keeps a held lock alive; `false` if it is no longer held by `req`.
    async fn lock_refresh(&self, _req: &LockRequest) -> Result<bool> {
        Ok(true)
    }

    /// Forcibly frees the lock whoever holds it; `false` if it was free.
    async fn lock_break(&self, _name: &Id) -> Result<bool> {
        Err(not_implemented(self.scheme(), "break_lock"))
    }

    /// The member holding the lock, if any.
    async fn lock_holder(&self, _name: &Id) -> Result<Option<Id>> {
        Err(not_implemented(self.scheme(), "get_leader"))
    }

    /// The name of the lock that elects the leader of `group` (drivers keep Python tooz's).
    fn leader_lock_name(&self, group: &Id) -> Id {
        let mut name = b"leader_of_".to_vec();
        name.extend_from_slice(group.as_bytes());
        Id::from(name)
    }
}
