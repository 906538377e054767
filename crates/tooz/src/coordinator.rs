//! The `Coordinator`: the public API over one driver, with the heartbeat and session
//! supervision every driver shares.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::callbacks::Hub;
use crate::characteristics::Characteristics;
use crate::core::Core;
use crate::driver::Driver;
use crate::election::Leadership;
use crate::error::{Error, Result};
use crate::group::{self, GroupWatch};
use crate::id::Id;
use crate::lock::Lock;
use crate::types::{Capabilities, ConnectionState, LostReason, MemberInfo, SessionEvents, Support};
use crate::url::DriverUrl;

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
    inner: Arc<Core>,
}

impl Coordinator {
    /// The shared state, for the layers built on the coordinator (watchers, locks).
    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.inner
    }
}

/// Builds a [`Coordinator`] with requirements; see [`Coordinator::builder`].
#[derive(Debug)]
pub struct CoordinatorBuilder {
    url: String,
    member: Id,
    required: Characteristics,
    manual_heartbeat: bool,
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

    /// Leaves the heartbeat to the caller, as Python tooz does: `start` runs no background
    /// heartbeat, and the session, memberships and locks of a backend that needs one expire
    /// unless [`Coordinator::heartbeat`] is called often enough (it refreshes held locks
    /// too). For bindings that keep tooz's contract; a Rust service wants the default.
    pub fn manual_heartbeat(mut self) -> Self {
        self.manual_heartbeat = true;
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
        Coordinator::assemble(driver, url, self.member, !self.manual_heartbeat)
    }

    /// Connects and starts in one step: [`connect`](Self::connect), then
    /// [`Coordinator::start`]. (The two steps stay available, as in Python tooz.)
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let coord = tooz::Coordinator::builder("zake://", "worker-1").start().await?;
    /// assert!(coord.is_started());
    /// coord.stop().await?;
    /// # Ok::<(), tooz::Error>(()) }).unwrap();
    /// ```
    pub async fn start(self) -> Result<Coordinator> {
        let coord = self.connect().await?;
        coord.start().await?;
        Ok(coord)
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
            manual_heartbeat: false,
        }
    }

    /// A coordinator over a driver built outside the registry (a driver of your own).
    /// Must be called within a tokio runtime, which then runs its background work.
    pub fn with_driver(driver: Arc<dyn Driver>, member_id: impl Into<Id>) -> Result<Coordinator> {
        let url = DriverUrl::parse(&format!("{}://", driver.scheme()))?;
        Coordinator::assemble(driver, url, member_id.into(), true)
    }

    fn assemble(
        driver: Arc<dyn Driver>,
        url: DriverUrl,
        member: Id,
        auto_heartbeat: bool,
    ) -> Result<Coordinator> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Runtime("a coordinator must be made within a tokio runtime".into())
        })?;
        let operation_timeout = url
            .duration_option("operation_timeout")
            .unwrap_or_else(|| driver.session_timeout());
        Ok(Coordinator {
            inner: Arc::new(Core {
                operation_timeout,
                auto_heartbeat,
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
        if let Some(period) = period.filter(|_| self.inner.auto_heartbeat) {
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
        let (driver, me) = (&self.inner.driver, &self.inner.member);
        for group in joined {
            let leave = driver.leave_group(&group, me);
            if let Err(error) = self.inner.call("leave_group", &[], leave).await {
                tracing::debug!(%group, %error, "leave on stop failed");
            }
        }
        for acq in self.inner.held() {
            acq.req.lost.fire(LostReason::CoordinatorStopped);
            let release = driver.lock_release(&acq.req);
            if let Err(error) = self.inner.call("lock_release", &[], release).await {
                tracing::debug!(lock = %acq.req.name, %error, "release on stop failed");
            }
        }
        self.inner.held.lock().unwrap().clear();
        self.inner.abort_background();
        self.inner.started.store(false, Ordering::Release);
        let bound = self.inner.operation_timeout;
        let result = tokio::time::timeout(bound, self.inner.driver.stop())
            .await
            .unwrap_or_else(|_| {
                let late = format!("disconnecting took longer than {bound:?}");
                Err(Error::OperationTimedOut(late))
            });
        crate::types::set_state(&self.inner.state, ConnectionState::Disconnected);
        result
    }

    fn spawn_heartbeat(&self, mut period: Duration, events: SessionEvents) -> JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut next_beat = tokio::time::Instant::now() + period;
            loop {
                tokio::time::sleep_until(next_beat).await;
                let Some(inner) = weak.upgrade() else { return };
                let beat_started = tokio::time::Instant::now();
                let bound = inner.operation_timeout;
                let beat = tokio::time::timeout(bound, inner.driver.heartbeat())
                    .await
                    .unwrap_or_else(|_| {
                        let late = format!("heartbeat took longer than {bound:?}");
                        Err(Error::OperationTimedOut(late))
                    });
                match beat {
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
                        inner.refresh_locks().await;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "heartbeat failed");
                        metrics::counter!("tooz_heartbeats_missed_total").increment(1);
                        if events.current().is_connected() {
                            events.report(ConnectionState::Suspended);
                        }
                    }
                }
                next_beat = beat_started + period;
            }
        })
    }

    /// Watches the connection state: counts reconnects, and fires `lost()` on everything held
    /// when the session is lost or stays suspended past the session timeout.
    fn spawn_supervisor(&self) -> JoinHandle<()> {
        let weak: Weak<Core> = Arc::downgrade(&self.inner);
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
                                crate::types::set_state(&inner.state, ConnectionState::Lost);
                                states.borrow_and_update();
                            }
                        }
                    }
                    ConnectionState::Connected | ConnectionState::Disconnected => {}
                }
            }
        })
    }

    /// Keeps the session alive by hand (the background heartbeat does it after `start`,
    /// unless the builder asked for [`manual_heartbeat`](CoordinatorBuilder::manual_heartbeat),
    /// in which case this also refreshes the locks held). Returns the longest wait before
    /// the next call, if the driver needs one.
    pub async fn heartbeat(&self) -> Result<Option<Duration>> {
        self.inner.check_started()?;
        let next = self.inner.driver.heartbeat().await?;
        if !self.inner.auto_heartbeat {
            self.inner.refresh_locks().await;
        }
        Ok(next)
    }

    /// Creates a group; [`Error::GroupAlreadyExist`] if it exists.
    pub async fn create_group(&self, group: impl Into<Id>) -> Result<()> {
        let group = group.into();
        let d = &self.inner.driver;
        self.inner
            .call("create_group", &[("group", &group)], d.create_group(&group))
            .await
    }

    /// Deletes an empty group; [`Error::GroupNotEmpty`] if members remain.
    pub async fn delete_group(&self, group: impl Into<Id>) -> Result<()> {
        let group = group.into();
        let d = &self.inner.driver;
        self.inner
            .call("delete_group", &[("group", &group)], d.delete_group(&group))
            .await
    }

    /// Lists the groups.
    pub async fn get_groups(&self) -> Result<BTreeSet<Id>> {
        self.inner
            .call("get_groups", &[], self.inner.driver.get_groups())
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
        self.inner
            .call(
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
        self.inner
            .call(
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
        self.inner
            .call("get_members", &[("group", &group)], d.get_members(&group))
            .await
    }

    /// The members of `group` with their capabilities.
    pub async fn get_members_with_capabilities(
        &self,
        group: impl Into<Id>,
    ) -> Result<BTreeMap<Id, Capabilities>> {
        let group = group.into();
        let d = &self.inner.driver;
        self.inner
            .call(
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
        self.inner
            .call(
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
        self.inner
            .call(
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
        self.inner
            .call(
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
        self.inner
            .call(
                "watch_group",
                &[("group", &group)],
                group::watch(driver, group.clone()),
            )
            .await
    }

    /// Resolves once this member is leader of `group` (FIFO among candidates where the
    /// driver queues them).
    pub async fn campaign(&self, group: impl Into<Id>) -> Result<Leadership> {
        self.inner.check_started()?;
        self.inner.check_election()?;
        let group = group.into();
        self.inner.check_name("group", &group)?;
        let guard = self.leader_lock(group.clone()).acquire().await?;
        Ok(Leadership::new(group, guard))
    }

    /// Tries once to become leader of `group`: `None` if another member leads it.
    pub async fn try_campaign(&self, group: impl Into<Id>) -> Result<Option<Leadership>> {
        self.inner.check_started()?;
        self.inner.check_election()?;
        let group = group.into();
        self.inner.check_name("group", &group)?;
        let guard = self.leader_lock(group.clone()).try_acquire().await?;
        Ok(guard.map(|guard| Leadership::new(group, guard)))
    }

    /// The current leader of `group`, if any.
    pub async fn get_leader(&self, group: impl Into<Id>) -> Result<Option<Id>> {
        self.inner.check_election()?;
        let group = group.into();
        let d = &self.inner.driver;
        let name = d.leader_lock_name(&group);
        self.inner
            .call("get_leader", &[("group", &group)], d.lock_holder(&name))
            .await
    }

    /// Gives up leadership of `group` if this coordinator has it; `true` if it had. An
    /// election watch re-enters the election at the next `run_watchers`.
    pub async fn stand_down_group_leader(&self, group: impl Into<Id>) -> Result<bool> {
        self.inner.check_started()?;
        self.inner.check_election()?;
        let name = self.inner.driver.leader_lock_name(&group.into());
        let mine: Vec<_> = self
            .inner
            .held()
            .into_iter()
            .filter(|a| a.req.name == name)
            .collect();
        let driver = &self.inner.driver;
        for acq in &mine {
            self.inner.untrack(acq);
            acq.req.lost.fire(LostReason::SteppedDown);
            let release = driver.lock_release(&acq.req);
            self.inner.call("stand_down", &[], release).await?;
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

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("url", &self.inner.url)
            .field("member", &self.inner.member)
            .field("started", &self.is_started())
            .finish()
    }
}
