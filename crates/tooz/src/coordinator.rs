//! The `Coordinator`: the public API over one driver, with the heartbeat and session
//! supervision every driver shares.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::characteristics::Characteristics;
use crate::driver::{Driver, Support};
use crate::election::Leadership;
use crate::error::{Error, Result};
use crate::group::{self, Capabilities, GroupEvent, GroupWatch, MemberInfo};
use crate::id::Id;
use crate::lock::{Acquisition, Lock, LostReason};
use crate::session::{ConnectionState, SessionEvents};
use crate::url::DriverUrl;
use crate::watchers::{Hub, WatchId};

/// Longest name (group, member or lock) accepted by the core, in bytes. Drivers may accept less.
pub const MAX_NAME_LEN: usize = 64 * 1024;

/// How many times `join_group_create` retries when the group vanishes between create and join.
const JOIN_CREATE_ATTEMPTS: usize = 16;

/// A member of the coordination service: the entry point of the API.
///
/// Cheap to clone (clones share one session). Made by [`Coordinator::connect`], then
/// [`start`](Coordinator::start)ed; [`stop`](Coordinator::stop) leaves every group and releases
/// every lock.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use tooz::Coordinator;
/// let coord = Coordinator::connect("zake://", "worker-1").await?;
/// coord.start().await?;
/// coord.join_group_create("workers", b"zone-a").await?;
/// assert!(coord.get_members("workers").await?.contains(&"worker-1".into()));
/// coord.stop().await?;
/// # Ok::<(), tooz::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct Coordinator {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) driver: Arc<dyn Driver>,
    pub(crate) member: Id,
    pub(crate) runtime: tokio::runtime::Handle,
    url: DriverUrl,
    started: AtomicBool,
    lifecycle: tokio::sync::Mutex<()>,
    state: Arc<watch::Sender<ConnectionState>>,
    joined: Mutex<BTreeSet<Id>>,
    held: Mutex<HashMap<String, Arc<Acquisition>>>,
    background: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) hub: Hub,
}

impl Inner {
    pub(crate) fn check_started(&self) -> Result<()> {
        if self.started.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(Error::NotStarted)
        }
    }

    pub(crate) fn check_name(&self, kind: &'static str, name: &Id) -> Result<()> {
        let reason = if name.is_empty() {
            "it is empty".to_string()
        } else if name.len() > MAX_NAME_LEN {
            format!("it is longer than {MAX_NAME_LEN} bytes")
        } else {
            return self.driver.validate_name(kind, name);
        };
        Err(Error::InvalidName {
            kind,
            name: name.to_string(),
            reason,
        })
    }

    pub(crate) fn track(&self, acq: Arc<Acquisition>) {
        self.held.lock().unwrap().insert(acq.req.nonce.clone(), acq);
    }

    pub(crate) fn untrack(&self, acq: &Acquisition) {
        self.held.lock().unwrap().remove(&acq.req.nonce);
    }

    fn held(&self) -> Vec<Arc<Acquisition>> {
        self.held.lock().unwrap().values().cloned().collect()
    }

    /// Fires `lost` on every held acquisition and forgets them.
    fn lose_all(&self, reason: LostReason) {
        let all: Vec<_> = self.held.lock().unwrap().drain().map(|(_, a)| a).collect();
        for acq in all {
            acq.req.lost.fire(reason);
        }
    }

    fn abort_background(&self) {
        for task in self.background.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.abort_background();
    }
}

/// Builds a [`Coordinator`] with requirements; see [`Coordinator::builder`].
#[derive(Debug)]
pub struct CoordinatorBuilder {
    url: String,
    member: Id,
    required: Characteristics,
}

impl CoordinatorBuilder {
    /// Fails the connect with [`Error::DriverChosenPoorly`] unless the driver has all of
    /// `required` (tooz's `characteristics=` argument).
    pub fn require(mut self, required: impl Into<Characteristics>) -> Self {
        let required: Characteristics = required.into();
        for c in required.iter() {
            self.required.insert(c);
        }
        self
    }

    /// Parses the URL, picks the driver and checks the requirements. Does no I/O: the
    /// connection is made by [`Coordinator::start`].
    pub async fn connect(self) -> Result<Coordinator> {
        let url = DriverUrl::parse(&self.url)?;
        let driver = crate::drivers::build(&url, &self.member)?;
        let has = driver.characteristics();
        if !has.is_superset(self.required) {
            return Err(Error::DriverChosenPoorly {
                driver: driver.scheme(),
                missing: self.required.difference(has).to_string(),
                has: has.to_string(),
            });
        }
        Coordinator::assemble(driver, url, self.member)
    }
}

impl Coordinator {
    /// Picks the driver for `url` and makes a coordinator for `member_id` (not started).
    ///
    /// The URL scheme selects the driver (`zake://`, `redis://host:6379`, ...); query options
    /// are validated against what the driver accepts.
    pub async fn connect(url: &str, member_id: impl Into<Id>) -> Result<Coordinator> {
        Coordinator::builder(url, member_id).connect().await
    }

    /// A builder, to require characteristics before connecting.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use tooz::{Characteristic, Coordinator, Error};
    /// let err = Coordinator::builder("zake://", "m")
    ///     .require([Characteristic::DistributedAcrossHosts])
    ///     .connect()
    ///     .await
    ///     .unwrap_err();
    /// assert!(matches!(err, Error::DriverChosenPoorly { .. }));
    /// # });
    /// ```
    pub fn builder(url: &str, member_id: impl Into<Id>) -> CoordinatorBuilder {
        CoordinatorBuilder {
            url: url.to_string(),
            member: member_id.into(),
            required: Characteristics::empty(),
        }
    }

    /// A coordinator over a driver built outside the registry (a driver of your own).
    /// Must be called within a tokio runtime, which then runs its background work.
    pub fn with_driver(driver: Arc<dyn Driver>, member_id: impl Into<Id>) -> Result<Coordinator> {
        let url = DriverUrl::parse(&format!("{}://", driver.scheme()))?;
        Coordinator::assemble(driver, url, member_id.into())
    }

    fn assemble(driver: Arc<dyn Driver>, url: DriverUrl, member: Id) -> Result<Coordinator> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::Backend {
            driver: driver.scheme(),
            message: "a coordinator must be made within a tokio runtime".into(),
        })?;
        Ok(Coordinator {
            inner: Arc::new(Inner {
                driver,
                member,
                runtime,
                url,
                started: AtomicBool::new(false),
                lifecycle: tokio::sync::Mutex::new(()),
                state: Arc::new(watch::channel(ConnectionState::Disconnected).0),
                joined: Mutex::new(BTreeSet::new()),
                held: Mutex::new(HashMap::new()),
                background: Mutex::new(Vec::new()),
                hub: Hub::new(),
            }),
        })
    }

    /// This coordinator's member id.
    pub fn member_id(&self) -> &Id {
        &self.inner.member
    }

    /// The URL, with secrets redacted when displayed.
    pub fn url(&self) -> &DriverUrl {
        &self.inner.url
    }

    /// The driver's scheme.
    pub fn driver_name(&self) -> &'static str {
        self.inner.driver.scheme()
    }

    /// What the driver guarantees.
    pub fn characteristics(&self) -> Characteristics {
        self.inner.driver.characteristics()
    }

    /// Which API parts the driver supports.
    pub fn support(&self) -> Support {
        self.inner.driver.support()
    }

    /// True between `start` and `stop`.
    pub fn is_started(&self) -> bool {
        self.inner.started.load(Ordering::Acquire)
    }

    /// The current connection state.
    pub fn connection_state(&self) -> ConnectionState {
        *self.inner.state.borrow()
    }

    /// A receiver of connection-state changes (`changed().await`, then `borrow()`).
    pub fn connection_states(&self) -> watch::Receiver<ConnectionState> {
        self.inner.state.subscribe()
    }

    /// Connects and starts the background work: a heartbeat if the driver needs one, and the
    /// session supervisor that fires `lost()` when the session is lost.
    pub async fn start(&self) -> Result<()> {
        let _lifecycle = self.inner.lifecycle.lock().await;
        if self.is_started() {
            return Err(Error::AlreadyStarted);
        }
        let events = SessionEvents::new(self.inner.state.clone());
        let driver = &self.inner.driver;
        driver
            .start(events.clone())
            .instrument(tracing::debug_span!("tooz.start", driver = driver.scheme()))
            .await?;
        events.report(ConnectionState::Connected);
        let period = driver.heartbeat().await?;
        let mut background = vec![self.spawn_supervisor()];
        if let Some(period) = period {
            background.push(self.spawn_heartbeat(period, events));
        }
        self.inner.background.lock().unwrap().extend(background);
        self.inner.started.store(true, Ordering::Release);
        tracing::debug!(url = %self.inner.url, member = %self.inner.member, "coordinator started");
        Ok(())
    }

    /// Leaves every joined group, releases every lock and leadership, stops the background
    /// work and disconnects.
    pub async fn stop(&self) -> Result<()> {
        let _lifecycle = self.inner.lifecycle.lock().await;
        if !self.is_started() {
            return Err(Error::NotStarted);
        }
        self.inner.hub.clear();
        let joined: Vec<Id> = std::mem::take(&mut *self.inner.joined.lock().unwrap())
            .into_iter()
            .collect();
        for group in joined {
            if let Err(error) = self
                .inner
                .driver
                .leave_group(&group, &self.inner.member)
                .await
            {
                tracing::debug!(%group, %error, "leave on stop failed");
            }
        }
        for acq in self.inner.held() {
            acq.req.lost.fire(LostReason::CoordinatorStopped);
            if let Err(error) = self.inner.driver.lock_release(&acq.req).await {
                tracing::debug!(lock = %acq.req.name, %error, "release on stop failed");
            }
        }
        self.inner.held.lock().unwrap().clear();
        self.inner.abort_background();
        self.inner.started.store(false, Ordering::Release);
        let result = self.inner.driver.stop().await;
        self.inner.state.send_replace(ConnectionState::Disconnected);
        result
    }

    fn spawn_heartbeat(&self, mut period: Duration, events: SessionEvents) -> JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period / 2).await;
                let Some(inner) = weak.upgrade() else { return };
                match inner.driver.heartbeat().await {
                    Ok(next) => {
                        period = next.unwrap_or(period);
                        match events.current() {
                            ConnectionState::Suspended => {
                                events.report(ConnectionState::Reconnected)
                            }
                            // Everything held was reported lost: this is a new session, and
                            // its own failures must be noticed (and reported) in turn.
                            ConnectionState::Lost => events.report(ConnectionState::Connected),
                            _ => {}
                        }
                        refresh_locks(&inner).await;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "heartbeat failed");
                        metrics::counter!("tooz_heartbeats_missed_total").increment(1);
                        if events.current().is_connected() {
                            events.report(ConnectionState::Suspended);
                        }
                    }
                }
            }
        })
    }

    /// Watches the connection state: counts reconnects, and fires `lost()` on everything held
    /// when the session is lost or stays suspended past the session timeout.
    fn spawn_supervisor(&self) -> JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let mut states = self.inner.state.subscribe();
        let grace = self.inner.driver.session_timeout();
        tokio::spawn(async move {
            loop {
                if states.changed().await.is_err() {
                    return;
                }
                let state = *states.borrow_and_update();
                let Some(inner) = weak.upgrade() else { return };
                match state {
                    ConnectionState::Lost => inner.lose_all(LostReason::SessionLost),
                    ConnectionState::Reconnected => {
                        metrics::counter!("tooz_reconnects_total").increment(1)
                    }
                    ConnectionState::Suspended => {
                        drop(inner);
                        let back = tokio::time::timeout(grace, async {
                            while states.changed().await.is_ok() {
                                if states.borrow().is_connected() {
                                    return true;
                                }
                            }
                            false
                        })
                        .await;
                        if back != Ok(true) {
                            if let Some(inner) = weak.upgrade() {
                                tracing::warn!("session suspended past its timeout: lost");
                                inner.lose_all(LostReason::SessionLost);
                                inner.state.send_replace(ConnectionState::Lost);
                                states.borrow_and_update();
                            }
                        }
                    }
                    ConnectionState::Connected | ConnectionState::Disconnected => {}
                }
            }
        })
    }

    /// Keeps the session alive by hand (the background heartbeat does it after `start`).
    /// Returns the period after which it must be called again, if the driver needs it.
    pub async fn heartbeat(&self) -> Result<Option<Duration>> {
        self.inner.check_started()?;
        self.inner.driver.heartbeat().await
    }

    /// Runs one driver call after the common checks, in a span, bounded by the session timeout.
    async fn call<T>(
        &self,
        op: &'static str,
        names: &[(&'static str, &Id)],
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.inner.check_started()?;
        for (kind, name) in names {
            self.inner.check_name(kind, name)?;
        }
        let bound = self.inner.driver.session_timeout();
        let span = tracing::debug_span!("tooz.op", op, driver = self.inner.driver.scheme());
        match tokio::time::timeout(bound, fut.instrument(span)).await {
            Ok(result) => result,
            Err(_) => Err(Error::OperationTimedOut(format!(
                "{op} took longer than {bound:?}"
            ))),
        }
    }

    /// Creates a group; [`Error::GroupAlreadyExist`] if it exists.
    pub async fn create_group(&self, group: impl Into<Id>) -> Result<()> {
        let group = group.into();
        let d = &self.inner.driver;
        self.call("create_group", &[("group", &group)], d.create_group(&group))
            .await
    }

    /// Deletes an empty group; [`Error::GroupNotEmpty`] if members remain.
    pub async fn delete_group(&self, group: impl Into<Id>) -> Result<()> {
        let group = group.into();
        let d = &self.inner.driver;
        self.call("delete_group", &[("group", &group)], d.delete_group(&group))
            .await
    }

    /// Lists the groups.
    pub async fn get_groups(&self) -> Result<BTreeSet<Id>> {
        self.call("get_groups", &[], self.inner.driver.get_groups())
            .await
    }

    /// Joins `group` with `capabilities`; [`Error::GroupNotCreated`] if it does not exist,
    /// [`Error::MemberAlreadyExist`] if this member id is already in it.
    pub async fn join_group(
        &self,
        group: impl Into<Id>,
        capabilities: impl Into<Capabilities>,
    ) -> Result<()> {
        let group = group.into();
        let caps = capabilities.into();
        let (d, me) = (&self.inner.driver, &self.inner.member);
        self.call(
            "join_group",
            &[("group", &group), ("member", me)],
            d.join_group(&group, me, &caps),
        )
        .await?;
        self.inner.joined.lock().unwrap().insert(group);
        Ok(())
    }

    /// Joins `group`, creating it first if needed.
    pub async fn join_group_create(
        &self,
        group: impl Into<Id>,
        capabilities: impl Into<Capabilities>,
    ) -> Result<()> {
        let group = group.into();
        let caps = capabilities.into();
        let mut attempt = 0;
        loop {
            match self.join_group(group.clone(), caps.clone()).await {
                Err(Error::GroupNotCreated { .. }) if attempt < JOIN_CREATE_ATTEMPTS => {
                    attempt += 1;
                    match self.create_group(group.clone()).await {
                        Ok(()) | Err(Error::GroupAlreadyExist { .. }) => {}
                        Err(other) => return Err(other),
                    }
                }
                other => return other,
            }
        }
    }

    /// Leaves `group`; [`Error::MemberNotJoined`] or [`Error::GroupNotCreated`] otherwise.
    pub async fn leave_group(&self, group: impl Into<Id>) -> Result<()> {
        let group = group.into();
        let (d, me) = (&self.inner.driver, &self.inner.member);
        self.call(
            "leave_group",
            &[("group", &group)],
            d.leave_group(&group, me),
        )
        .await?;
        self.inner.joined.lock().unwrap().remove(&group);
        Ok(())
    }

    /// The groups this coordinator has joined (and not left).
    pub fn joined_groups(&self) -> BTreeSet<Id> {
        self.inner.joined.lock().unwrap().clone()
    }

    /// The members of `group`.
    pub async fn get_members(&self, group: impl Into<Id>) -> Result<BTreeSet<Id>> {
        let group = group.into();
        let d = &self.inner.driver;
        self.call("get_members", &[("group", &group)], d.get_members(&group))
            .await
    }

    /// The members of `group` with their capabilities.
    pub async fn get_members_with_capabilities(
        &self,
        group: impl Into<Id>,
    ) -> Result<BTreeMap<Id, Capabilities>> {
        let group = group.into();
        let d = &self.inner.driver;
        self.call(
            "get_members_with_capabilities",
            &[("group", &group)],
            d.get_members_with_capabilities(&group),
        )
        .await
    }

    /// The capabilities of `member` in `group`.
    pub async fn get_member_capabilities(
        &self,
        group: impl Into<Id>,
        member: impl Into<Id>,
    ) -> Result<Capabilities> {
        let (group, member) = (group.into(), member.into());
        let d = &self.inner.driver;
        self.call(
            "get_member_capabilities",
            &[("group", &group), ("member", &member)],
            d.get_member_capabilities(&group, &member),
        )
        .await
    }

    /// Everything the driver knows about `member` in `group`.
    pub async fn get_member_info(
        &self,
        group: impl Into<Id>,
        member: impl Into<Id>,
    ) -> Result<MemberInfo> {
        let (group, member) = (group.into(), member.into());
        let d = &self.inner.driver;
        self.call(
            "get_member_info",
            &[("group", &group), ("member", &member)],
            d.get_member_info(&group, &member),
        )
        .await
    }

    /// Replaces this member's capabilities in `group`.
    pub async fn update_capabilities(
        &self,
        group: impl Into<Id>,
        capabilities: impl Into<Capabilities>,
    ) -> Result<()> {
        let group = group.into();
        let caps = capabilities.into();
        let (d, me) = (&self.inner.driver, &self.inner.member);
        self.call(
            "update_capabilities",
            &[("group", &group)],
            d.update_capabilities(&group, me, &caps),
        )
        .await
    }

    /// A stream of `group`'s joins and leaves, pushed by the backend where it can (polled and
    /// diffed otherwise). [`Error::GroupNotCreated`] if the group does not exist.
    pub async fn watch_group(&self, group: impl Into<Id>) -> Result<GroupWatch> {
        let group = group.into();
        let driver = self.inner.driver.clone();
        self.call(
            "watch_group",
            &[("group", &group)],
            group::watch(driver, group.clone()),
        )
        .await
    }

    /// Calls `callback` (from [`run_watchers`](Coordinator::run_watchers)) for each member
    /// that joins `group` (tooz's `watch_join_group`). Callbacks run while the coordinator's
    /// table of watches is locked: a callback must not add or remove watches itself.
    pub async fn watch_join_group(
        &self,
        group: impl Into<Id>,
        callback: impl FnMut(&GroupEvent) + Send + 'static,
    ) -> Result<WatchId> {
        self.inner.check_started()?;
        let group = group.into();
        self.inner.check_name("group", &group)?;
        self.inner
            .hub
            .watch_membership(self, group, true, Box::new(callback))
            .await
    }

    /// Calls `callback` for each member that leaves `group` (tooz's `watch_leave_group`).
    pub async fn watch_leave_group(
        &self,
        group: impl Into<Id>,
        callback: impl FnMut(&GroupEvent) + Send + 'static,
    ) -> Result<WatchId> {
        self.inner.check_started()?;
        let group = group.into();
        self.inner.check_name("group", &group)?;
        self.inner
            .hub
            .watch_membership(self, group, false, Box::new(callback))
            .await
    }

    /// Removes a join watch; [`Error::WatchCallbackNotFound`] if it is not registered.
    pub fn unwatch_join_group(&self, group: impl Into<Id>, watch: WatchId) -> Result<()> {
        self.inner
            .hub
            .unwatch_membership(&group.into(), watch, true)
    }

    /// Removes a leave watch; [`Error::WatchCallbackNotFound`] if it is not registered.
    pub fn unwatch_leave_group(&self, group: impl Into<Id>, watch: WatchId) -> Result<()> {
        self.inner
            .hub
            .unwatch_membership(&group.into(), watch, false)
    }

    /// Runs for leader of `group` in the background and calls `callback` (from
    /// [`run_watchers`](Coordinator::run_watchers)) each time this member is elected.
    pub async fn watch_elected_as_leader(
        &self,
        group: impl Into<Id>,
        callback: impl FnMut(&GroupEvent) + Send + 'static,
    ) -> Result<WatchId> {
        self.inner.check_started()?;
        self.check_election()?;
        let group = group.into();
        self.inner.check_name("group", &group)?;
        Ok(self
            .inner
            .hub
            .watch_election(self, group, Box::new(callback)))
    }

    /// Removes an election watch; the last one removed withdraws from the election.
    pub fn unwatch_elected_as_leader(&self, group: impl Into<Id>, watch: WatchId) -> Result<()> {
        self.inner.hub.unwatch_election(&group.into(), watch)
    }

    /// Number of callbacks registered on `group` (join, leave, elected).
    pub fn watch_count(&self, group: impl Into<Id>) -> (usize, usize, usize) {
        self.inner.hub.count(&group.into())
    }

    /// Delivers the events that arrived since the last call to their callbacks, waiting up
    /// to `timeout` for the first one if none is pending. Returns the events delivered.
    pub async fn run_watchers(&self, timeout: Option<Duration>) -> Result<Vec<GroupEvent>> {
        self.inner.check_started()?;
        self.inner.hub.run(self, timeout).await
    }

    pub(crate) fn forget_joined(&self, group: &Id) {
        self.inner.joined.lock().unwrap().remove(group);
    }

    fn check_election(&self) -> Result<()> {
        let driver = &self.inner.driver;
        if driver.support().election {
            return Ok(());
        }
        Err(Error::NotImplemented {
            driver: driver.scheme(),
            operation: "leader election",
            reason: "the backend has no lock that can elect a leader",
        })
    }

    /// Resolves once this member is leader of `group` (FIFO among candidates where the
    /// driver queues them).
    pub async fn campaign(&self, group: impl Into<Id>) -> Result<Leadership> {
        self.inner.check_started()?;
        self.check_election()?;
        let group = group.into();
        self.inner.check_name("group", &group)?;
        let guard = self.leader_lock(group.clone()).acquire().await?;
        Ok(Leadership::new(group, guard))
    }

    /// The current leader of `group`, if any.
    pub async fn get_leader(&self, group: impl Into<Id>) -> Result<Option<Id>> {
        self.check_election()?;
        let group = group.into();
        let d = &self.inner.driver;
        let name = d.leader_lock_name(&group);
        self.call("get_leader", &[("group", &group)], d.lock_holder(&name))
            .await
    }

    /// Gives up leadership of `group` if this coordinator has it; `true` if it had. An
    /// election watch re-enters the election at the next `run_watchers`.
    pub async fn stand_down_group_leader(&self, group: impl Into<Id>) -> Result<bool> {
        self.inner.check_started()?;
        self.check_election()?;
        let name = self.inner.driver.leader_lock_name(&group.into());
        let mine: Vec<_> = self
            .inner
            .held()
            .into_iter()
            .filter(|a| a.req.name == name)
            .collect();
        for acq in &mine {
            self.inner.untrack(acq);
            acq.req.lost.fire(LostReason::SteppedDown);
            self.inner.driver.lock_release(&acq.req).await?;
        }
        Ok(!mine.is_empty())
    }

    /// The lock whose holder leads `group` (named as Python tooz names it on this backend).
    pub fn leader_lock(&self, group: impl Into<Id>) -> Lock {
        self.lock(self.inner.driver.leader_lock_name(&group.into()))
    }

    /// A lock object for `name`. No I/O until it is acquired.
    pub fn lock(&self, name: impl Into<Id>) -> Lock {
        Lock::new(self.inner.clone(), name.into())
    }
}

/// Refreshes every held lock; those the backend no longer has are reported lost.
async fn refresh_locks(inner: &Inner) {
    for acq in inner.held() {
        match inner.driver.lock_refresh(&acq.req).await {
            Ok(true) => {}
            Ok(false) => {
                inner.untrack(&acq);
                acq.req.lost.fire(LostReason::Expired);
            }
            Err(error) => tracing::warn!(lock = %acq.req.name, %error, "lock refresh failed"),
        }
    }
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("url", &self.inner.url)
            .field("member", &self.inner.member)
            .field("started", &self.is_started())
            .finish()
    }
}

impl Coordinator {
    pub(crate) fn support_poll_interval(&self) -> Duration {
        self.inner.driver.poll_interval()
    }
}
