//! A synchronous facade over the async API, for programs without an async runtime.
//!
//! Each blocking [`Coordinator`] owns a small runtime (one worker thread) that also runs its
//! heartbeat and watchers. Calling it from inside an async runtime is an error, not a panic.
//!
//! ```
//! use tooz::blocking::Coordinator;
//!
//! let coord = Coordinator::connect("zake://", "worker-1")?;
//! coord.start()?;
//! coord.join_group_create("workers", b"zone-a")?;
//! let guard = coord.lock("reindex").acquire()?;
//! println!("token {}", guard.fencing_token());
//! guard.release()?;
//! coord.stop()?;
//! # Ok::<(), tooz::Error>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::runtime::Runtime;

use crate::{
    Capabilities, Characteristics, ConnectionState, Error, FencingToken, GroupEvent, Id,
    LostReason, MemberInfo, Result, Support, WatchId,
};

#[derive(Clone)]
struct Rt(Arc<Runtime>);

impl Rt {
    fn new() -> Result<Self> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tooz-blocking")
            .enable_all()
            .build()
            .map(|rt| Rt(Arc::new(rt)))
            .map_err(|e| Error::Runtime(format!("cannot start the runtime: {e}")))
    }

    fn run<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::Runtime(
                "tooz::blocking called from inside an async runtime; use the async API".into(),
            ));
        }
        self.0.block_on(fut)
    }
}

/// The blocking twin of [`crate::Coordinator`]; every method blocks until done.
#[derive(Clone)]
pub struct Coordinator {
    inner: crate::Coordinator,
    rt: Rt,
}

impl Coordinator {
    /// See [`crate::Coordinator::connect`].
    pub fn connect(url: &str, member_id: impl Into<Id>) -> Result<Self> {
        Self::connect_requiring(url, member_id, Characteristics::empty())
    }

    /// Connects, failing with [`Error::DriverChosenPoorly`] unless the driver has `required`.
    pub fn connect_requiring(
        url: &str,
        member_id: impl Into<Id>,
        required: impl Into<Characteristics>,
    ) -> Result<Self> {
        let rt = Rt::new()?;
        let builder = crate::Coordinator::builder(url, member_id).require(required);
        let inner = rt.run(builder.connect())?;
        Ok(Coordinator { inner, rt })
    }

    /// The async coordinator behind this one.
    pub fn as_async(&self) -> &crate::Coordinator {
        &self.inner
    }

    /// This coordinator's member id.
    pub fn member_id(&self) -> &Id {
        self.inner.member_id()
    }

    /// What the driver guarantees.
    pub fn characteristics(&self) -> Characteristics {
        self.inner.characteristics()
    }

    /// Which API parts the driver supports.
    pub fn support(&self) -> Support {
        self.inner.support()
    }

    /// True between `start` and `stop`.
    pub fn is_started(&self) -> bool {
        self.inner.is_started()
    }

    /// The current connection state.
    pub fn connection_state(&self) -> ConnectionState {
        self.inner.connection_state()
    }

    /// See [`crate::Coordinator::start`].
    pub fn start(&self) -> Result<()> {
        self.rt.run(self.inner.start())
    }

    /// See [`crate::Coordinator::stop`].
    pub fn stop(&self) -> Result<()> {
        self.rt.run(self.inner.stop())
    }

    /// See [`crate::Coordinator::heartbeat`].
    pub fn heartbeat(&self) -> Result<Option<Duration>> {
        self.rt.run(self.inner.heartbeat())
    }

    /// See [`crate::Coordinator::create_group`].
    pub fn create_group(&self, group: impl Into<Id>) -> Result<()> {
        self.rt.run(self.inner.create_group(group))
    }

    /// See [`crate::Coordinator::delete_group`].
    pub fn delete_group(&self, group: impl Into<Id>) -> Result<()> {
        self.rt.run(self.inner.delete_group(group))
    }

    /// See [`crate::Coordinator::get_groups`].
    pub fn get_groups(&self) -> Result<BTreeSet<Id>> {
        self.rt.run(self.inner.get_groups())
    }

    /// See [`crate::Coordinator::join_group`].
    pub fn join_group(&self, group: impl Into<Id>, caps: impl Into<Capabilities>) -> Result<()> {
        self.rt.run(self.inner.join_group(group, caps))
    }

    /// See [`crate::Coordinator::join_group_create`].
    pub fn join_group_create(
        &self,
        group: impl Into<Id>,
        caps: impl Into<Capabilities>,
    ) -> Result<()> {
        self.rt.run(self.inner.join_group_create(group, caps))
    }

    /// See [`crate::Coordinator::leave_group`].
    pub fn leave_group(&self, group: impl Into<Id>) -> Result<()> {
        self.rt.run(self.inner.leave_group(group))
    }

    /// See [`crate::Coordinator::get_members`].
    pub fn get_members(&self, group: impl Into<Id>) -> Result<BTreeSet<Id>> {
        self.rt.run(self.inner.get_members(group))
    }

    /// See [`crate::Coordinator::get_members_with_capabilities`].
    pub fn get_members_with_capabilities(
        &self,
        group: impl Into<Id>,
    ) -> Result<BTreeMap<Id, Capabilities>> {
        self.rt.run(self.inner.get_members_with_capabilities(group))
    }

    /// See [`crate::Coordinator::get_member_capabilities`].
    pub fn get_member_capabilities(
        &self,
        group: impl Into<Id>,
        member: impl Into<Id>,
    ) -> Result<Capabilities> {
        self.rt
            .run(self.inner.get_member_capabilities(group, member))
    }

    /// See [`crate::Coordinator::get_member_info`].
    pub fn get_member_info(
        &self,
        group: impl Into<Id>,
        member: impl Into<Id>,
    ) -> Result<MemberInfo> {
        self.rt.run(self.inner.get_member_info(group, member))
    }

    /// See [`crate::Coordinator::update_capabilities`].
    pub fn update_capabilities(
        &self,
        group: impl Into<Id>,
        caps: impl Into<Capabilities>,
    ) -> Result<()> {
        self.rt.run(self.inner.update_capabilities(group, caps))
    }

    /// See [`crate::Coordinator::watch_group`]; the events come as an iterator.
    pub fn watch_group(&self, group: impl Into<Id>) -> Result<GroupWatch> {
        let watch = self.rt.run(self.inner.watch_group(group))?;
        Ok(GroupWatch {
            watch,
            rt: self.rt.clone(),
        })
    }

    /// See [`crate::Coordinator::watch_join_group`].
    pub fn watch_join_group(
        &self,
        group: impl Into<Id>,
        callback: impl FnMut(&GroupEvent) + Send + 'static,
    ) -> Result<WatchId> {
        self.rt.run(self.inner.watch_join_group(group, callback))
    }

    /// See [`crate::Coordinator::watch_leave_group`].
    pub fn watch_leave_group(
        &self,
        group: impl Into<Id>,
        callback: impl FnMut(&GroupEvent) + Send + 'static,
    ) -> Result<WatchId> {
        self.rt.run(self.inner.watch_leave_group(group, callback))
    }

    /// See [`crate::Coordinator::unwatch_join_group`].
    pub fn unwatch_join_group(&self, group: impl Into<Id>, watch: WatchId) -> Result<()> {
        self.inner.unwatch_join_group(group, watch)
    }

    /// See [`crate::Coordinator::unwatch_leave_group`].
    pub fn unwatch_leave_group(&self, group: impl Into<Id>, watch: WatchId) -> Result<()> {
        self.inner.unwatch_leave_group(group, watch)
    }

    /// See [`crate::Coordinator::watch_elected_as_leader`].
    pub fn watch_elected_as_leader(
        &self,
        group: impl Into<Id>,
        callback: impl FnMut(&GroupEvent) + Send + 'static,
    ) -> Result<WatchId> {
        self.rt
            .run(self.inner.watch_elected_as_leader(group, callback))
    }

    /// See [`crate::Coordinator::unwatch_elected_as_leader`].
    pub fn unwatch_elected_as_leader(&self, group: impl Into<Id>, watch: WatchId) -> Result<()> {
        self.inner.unwatch_elected_as_leader(group, watch)
    }

    /// See [`crate::Coordinator::run_watchers`].
    pub fn run_watchers(&self, timeout: Option<Duration>) -> Result<Vec<GroupEvent>> {
        self.rt.run(self.inner.run_watchers(timeout))
    }

    /// See [`crate::Coordinator::campaign`].
    pub fn campaign(&self, group: impl Into<Id>) -> Result<Leadership> {
        let inner = self.rt.run(self.inner.campaign(group))?;
        Ok(Leadership {
            inner,
            rt: self.rt.clone(),
        })
    }

    /// See [`crate::Coordinator::get_leader`].
    pub fn get_leader(&self, group: impl Into<Id>) -> Result<Option<Id>> {
        self.rt.run(self.inner.get_leader(group))
    }

    /// See [`crate::Coordinator::stand_down_group_leader`].
    pub fn stand_down_group_leader(&self, group: impl Into<Id>) -> Result<bool> {
        self.rt.run(self.inner.stand_down_group_leader(group))
    }

    /// See [`crate::Coordinator::lock`].
    pub fn lock(&self, name: impl Into<Id>) -> Lock {
        Lock {
            inner: self.inner.lock(name),
            rt: self.rt.clone(),
        }
    }
}

/// The blocking twin of [`crate::Lock`].
#[derive(Clone)]
pub struct Lock {
    inner: crate::Lock,
    rt: Rt,
}

impl Lock {
    fn guard(&self, inner: crate::LockGuard) -> LockGuard {
        LockGuard {
            inner,
            rt: self.rt.clone(),
        }
    }

    /// The lock name.
    pub fn name(&self) -> &Id {
        self.inner.name()
    }

    /// See [`crate::Lock::acquire`].
    pub fn acquire(&self) -> Result<LockGuard> {
        Ok(self.guard(self.rt.run(self.inner.acquire())?))
    }

    /// See [`crate::Lock::try_acquire`].
    pub fn try_acquire(&self) -> Result<Option<LockGuard>> {
        Ok(self
            .rt
            .run(self.inner.try_acquire())?
            .map(|g| self.guard(g)))
    }

    /// See [`crate::Lock::acquire_timeout`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard> {
        Ok(self.guard(self.rt.run(self.inner.acquire_timeout(timeout))?))
    }

    /// See [`crate::Lock::acquire_shared`].
    pub fn acquire_shared(&self) -> Result<LockGuard> {
        Ok(self.guard(self.rt.run(self.inner.acquire_shared())?))
    }

    /// See [`crate::Lock::try_acquire_shared`].
    pub fn try_acquire_shared(&self) -> Result<Option<LockGuard>> {
        let guard = self.rt.run(self.inner.try_acquire_shared())?;
        Ok(guard.map(|g| self.guard(g)))
    }

    /// See [`crate::Lock::release`].
    pub fn release(&self) -> Result<bool> {
        self.rt.run(self.inner.release())
    }

    /// See [`crate::Lock::break_lock`].
    pub fn break_lock(&self) -> Result<bool> {
        self.rt.run(self.inner.break_lock())
    }

    /// See [`crate::Lock::is_held`].
    pub fn is_held(&self) -> bool {
        self.inner.is_held()
    }
}

/// The blocking twin of [`crate::LockGuard`]; dropping it releases the lock.
#[must_use = "dropping the guard releases the lock"]
pub struct LockGuard {
    inner: crate::LockGuard,
    rt: Rt,
}

impl LockGuard {
    /// The fencing token of this acquisition.
    pub fn fencing_token(&self) -> FencingToken {
        self.inner.fencing_token()
    }

    /// Why the lock was lost, if it was.
    pub fn lost_reason(&self) -> Option<LostReason> {
        self.inner.lost_reason()
    }

    /// Waits up to `timeout` for the lock to be lost; the reason if it was.
    pub fn wait_lost(&self, timeout: Duration) -> Option<LostReason> {
        let lost = async { Ok(tokio::time::timeout(timeout, self.inner.lost()).await.ok()) };
        self.rt.run(lost).ok().flatten()
    }

    /// See [`crate::LockGuard::release`].
    pub fn release(self) -> Result<bool> {
        let rt = self.rt.clone();
        rt.run(self.inner.release())
    }
}

/// The blocking twin of [`crate::Leadership`].
pub struct Leadership {
    inner: crate::Leadership,
    rt: Rt,
}

impl Leadership {
    /// The group led.
    pub fn group(&self) -> &Id {
        self.inner.group()
    }

    /// The term (fencing token of the leader lock).
    pub fn term(&self) -> FencingToken {
        self.inner.term()
    }

    /// Why the leadership was lost, if it was.
    pub fn lost_reason(&self) -> Option<LostReason> {
        self.inner.lost_reason()
    }

    /// Gives the leadership up.
    pub fn resign(self) -> Result<bool> {
        let rt = self.rt.clone();
        rt.run(self.inner.resign())
    }
}

/// The blocking twin of [`crate::GroupWatch`]: an iterator of events.
pub struct GroupWatch {
    watch: crate::GroupWatch,
    rt: Rt,
}

impl GroupWatch {
    /// The next event, waiting at most `timeout`.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<GroupEvent> {
        let rt = self.rt.clone();
        let next = async {
            Ok(tokio::time::timeout(timeout, self.watch.next())
                .await
                .ok()
                .flatten())
        };
        rt.run(next).ok().flatten()
    }
}

impl Iterator for GroupWatch {
    type Item = GroupEvent;

    fn next(&mut self) -> Option<GroupEvent> {
        let rt = self.rt.clone();
        rt.run(async { Ok(self.watch.next().await) }).ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_round_trip() {
        let a = Coordinator::connect("zake://blocking-test", "a").unwrap();
        let b = Coordinator::connect("zake://blocking-test", "b").unwrap();
        a.start().unwrap();
        b.start().unwrap();
        a.create_group("g").unwrap();
        let mut watch = a.watch_group("g").unwrap();
        b.join_group("g", b"caps").unwrap();
        let event = watch.next_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(event.member(), &Id::from("b"));
        let guard = a.lock("l").acquire().unwrap();
        assert!(b.lock("l").try_acquire().unwrap().is_none());
        let token = guard.fencing_token();
        drop(guard);
        let next = b.lock("l").acquire_timeout(Duration::from_secs(5)).unwrap();
        assert!(next.fencing_token() > token);
        assert!(next.release().unwrap());
        let leadership = b.campaign("g").unwrap();
        assert_eq!(a.get_leader("g").unwrap(), Some(Id::from("b")));
        assert!(leadership.resign().unwrap());
        a.stop().unwrap();
        b.stop().unwrap();
    }

    #[test]
    fn refuses_to_run_inside_a_runtime() {
        let coord = Coordinator::connect("zake://", "inside").unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let err = rt.block_on(async { coord.start() }).unwrap_err();
        assert!(matches!(err, Error::Runtime(_)), "{err:?}");
        assert!(err.to_string().contains("inside an async runtime"), "{err}");
    }

    #[test]
    fn an_async_coordinator_outside_a_runtime_is_a_runtime_error() {
        let made = futures::executor::block_on(crate::Coordinator::connect("zake://", "m"));
        let Err(err) = made else {
            panic!("no runtime, no coordinator")
        };
        assert!(matches!(err, Error::Runtime(_)), "{err:?}");
    }
}
