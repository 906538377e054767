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
use tokio::time::Instant;

use crate::characteristics::Characteristics;
use crate::error::{Error, Result};
use crate::id::Id;
pub use crate::types::{
    Capabilities, ChangeWait, DriverFacts, FencingToken, GroupChange, GroupFeed, LockMode,
    LockRequest, LostReason, LostSignal, MemberInfo, SessionEvents, Support, WatchKind,
    DEFAULT_POLL_INTERVAL,
};
pub use crate::url::{OptionKind, OptionSpec, Options, COMMON_OPTIONS};

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

    /// What this driver declares: characteristics, supported API parts, poll interval and
    /// accepted options. Built once from the driver's static facts and its URL; everything
    /// else ([`characteristics`](dyn Driver::characteristics), [`support`](dyn Driver::support),
    /// `tooz drivers`) is derived from it.
    fn facts(&self) -> &DriverFacts;

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

    /// Keeps the session alive. Returns the longest the core may wait before calling it
    /// again (the core calls it when that period has passed, counted from the start of this
    /// call), or `None` when the driver needs no heartbeat. A driver whose session expires
    /// after `ttl` returns a period with room for a failed call and a retry, such as `ttl / 3`.
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
    /// The default is [`acquire_by_retrying`]; drivers with a native queue (fair hand-off)
    /// override it. Dropping the future must leave the lock not taken.
    async fn lock_acquire(
        &self,
        req: &LockRequest,
        deadline: Option<Instant>,
    ) -> Result<Option<FencingToken>> {
        acquire_by_retrying(self, req, deadline).await
    }

    /// A future resolving when the lock `name` may have been released. Called before a try,
    /// so that a release between the try and the wait is not missed. Default: the poll interval.
    async fn lock_changed(&self, _name: &Id) -> Result<ChangeWait> {
        Ok(Box::pin(tokio::time::sleep(self.facts().poll_interval)))
    }

    /// Releases a lock held by `req`; `false` if it was not held by it.
    async fn lock_release(&self, _req: &LockRequest) -> Result<bool> {
        Err(not_implemented(self.scheme(), "locks"))
    }

    /// How long the backend keeps lock `name` after the last acquisition or refresh it
    /// confirmed, where locks expire unless refreshed (a TTL or a lease); `None`, the default,
    /// where a lock lasts as long as its holder's process, connection or session.
    fn lock_lease(&self, _name: &Id) -> Option<Duration> {
        None
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

impl dyn Driver {
    /// What the driver guarantees (from its [`facts`](Driver::facts)).
    pub fn characteristics(&self) -> Characteristics {
        self.facts().characteristics
    }

    /// Which parts of the API it supports (from its [`facts`](Driver::facts)).
    pub fn support(&self) -> Support {
        self.facts().support
    }

    /// Interval of the polling fallbacks (from its [`facts`](Driver::facts)).
    pub fn poll_interval(&self) -> Duration {
        self.facts().poll_interval
    }
}

/// Takes the lock by trying, waiting for [`Driver::lock_changed`], and trying again, until
/// `deadline` (forever if `None`); `None` on timeout. The wait of drivers without a lock
/// queue of their own: no FIFO order, but no lost wake-up either, since the change
/// subscription is taken before each try. Dropping the future leaves the lock not taken, as
/// long as the driver's `lock_try_acquire` takes it in one step.
pub async fn acquire_by_retrying<D: Driver + ?Sized>(
    driver: &D,
    req: &LockRequest,
    deadline: Option<Instant>,
) -> Result<Option<FencingToken>> {
    loop {
        let changed = driver.lock_changed(&req.name).await?;
        if let Some(token) = driver.lock_try_acquire(req).await? {
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
