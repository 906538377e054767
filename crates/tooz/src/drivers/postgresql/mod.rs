//! `postgresql://`: PostgreSQL advisory locks, with groups, membership, watches, election
//! and fencing tokens in the driver's own tables.
//!
//! Python tooz's pgsql driver has locks only; its locks and ours exclude each other when
//! this driver uses Python's key derivation (`lock_keys=python`).
//!
//! # URL and options
//!
//! `postgresql://[user[:password]@]host[:port][/dbname][?option=value...]` (port 5432). As
//! in Python tooz, the options `host`, `port` and `dbname` override the URL's parts, and a
//! `host` starting with `/` is the directory of the server's unix socket
//! (`postgresql://localhost/postgres?host=/run/postgresql&port=5432`).
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `timeout` | 10 s | connect and set-up bound; the server ends a session silent this long; session timeout = timeout / 2 |
//! | `namespace` | `tooz` | prefix of the driver's tables (`<ns>_groups`, `<ns>_members`, `<ns>_locks`) and channels |
//! | `lock_keys` | `native` | `native`: one 64-bit key per name; `python`: Python tooz's two 1-byte keys |
//! | `poll_interval` | 0.5 s | longest a lock waiter sleeps when no release is announced |
//! | `resync_interval` | 1 s | how often a watch re-reads membership (members whose session died) |
//! | `break_grace` | 1 s | how long `break_lock` lets the holder give the lock up before ending its session |
//! | `connect_timeout` | `timeout` | bound of one connection attempt |
//! | `user`, `password` | — | credentials, where the URL has none |
//! | `lock_timeout`, `membership_timeout`, `leader_timeout` | — | accepted; nothing here expires |
//!
//! Unknown options and bad values are typed errors; the password never appears in errors,
//! logs or `Debug` output. TLS is not supported yet (connections are plain: loopback or a
//! unix socket).
//!
//! # Locks
//!
//! A lock is a session-level advisory lock: the server frees it when the client's database
//! session ends, whatever the client. Keys:
//!
//! * `lock_keys=native` (default): the first 8 bytes of SHA-256 of the namespace and the
//!   name, in the single-`bigint` key space. Collisions need 2³² names in one namespace.
//! * `lock_keys=python`: Python tooz's `md5(name)[0]`, `md5(name)[1]`, in the two-`int4` key
//!   space, as `pg_advisory_lock(k0, k1)`: a Rust and a Python contender of one name exclude
//!   each other. Only 65,536 keys exist, so unrelated names collide (they then exclude each
//!   other, as in Python tooz).
//!
//! The two spaces never meet: native keys cannot collide with Python's.
//!
//! Shared locks are shared advisory locks (`pg_try_advisory_lock_shared`): any number of
//! shared holders, excluding exclusive ones (Python tooz's pgsql driver has no shared mode).
//!
//! Acquiring is one statement: `pg_try_advisory_lock` and, when it succeeds, the lock's row
//! in `<ns>_locks` upserted in the same statement (its fencing token bumped: strictly
//! increasing per name across holders; a token is `epoch << 22 | counter`, the epoch being
//! the server's start time in ms (`pg_postmaster_start_time()`), so tokens keep increasing
//! across a server crash even though the driver's sessions commit asynchronously
//! (`synchronous_commit = off`) and a crash may lose the last counter bumps; the holder's
//! member id, session and server pid recorded: `get_leader` and `break_lock` read them).
//! Releasing is `pg_advisory_unlock` and a `NOTIFY` on the lock's channel in one statement;
//! waiters `LISTEN` there (on their listening connection) before each try, so a release by a
//! Rust holder wakes them at once. Releases nobody announces (a Python holder, a holder whose
//! session ended) are caught by retrying every `poll_interval`.
//!
//! # Connections
//!
//! A coordinator uses two connections, whatever it holds: its session connection, on which
//! every lock is taken (a session holds any number of advisory locks; a coordinator holding
//! 1,000 locks still has two connections), and a listening connection for notifications.
//! Advisory locks are re-entrant per session, so the driver itself keeps two acquisitions of
//! one key by the same coordinator apart: the second one is refused until the first is
//! released, as between two coordinators.
//!
//! # Groups and liveness
//!
//! Groups and members live in `<ns>_groups` and `<ns>_members` (capabilities as msgpack,
//! the bytes Python tooz's other drivers store). Each session takes an advisory lock on a
//! random session key; member rows carry it, and a row whose key is not locked (its session
//! ended) is dead: readers ignore it, a join takes it over, `delete_group` removes it. So a
//! member is alive exactly as long as its coordinator's database session, with no
//! heartbeat timeout: the driver is `NON_TIMEOUT_BASED`. Joins and leaves are announced by
//! `NOTIFY` on the group's channel (pushed watches, in commit order); a member whose session
//! ends is seen leaving by the watch's next re-read (`resync_interval`).
//!
//! # Election
//!
//! The core's: a lock per group named `leader_of_<group>`; `get_leader` answers its holder
//! from the lock's row, checked against `pg_locks`.
//!
//! # `break_lock`
//!
//! The breaker asks the holder's coordinator (a `NOTIFY` on its session channel) to give the
//! lock up; the holder fires `lost()` (`Broken`) and unlocks. If the lock is still held after
//! `break_grace` (a Python holder, a stuck client), the holder's database session is ended
//! (`pg_terminate_backend`), which frees everything that session held: its coordinator
//! reports its session lost, connects again and joins its groups again.
//!
//! # Failures
//!
//! The heartbeat (every timeout / 4) runs `SELECT 1`, and the server ends a session that
//! says nothing for `timeout` (`idle_session_timeout`), so a client cut off for good lets its
//! locks go within `timeout`. When the session connection ends (killed from another
//! connection, server restart, network), every lock of the session is reported lost
//! (`SessionLost`), `Lost` is reported, and the driver connects again (backing off up to
//! 2 s), joins again the groups this member had joined (with the capabilities it last gave)
//! and reports `Connected`. The listening connection is made again the same way; watches
//! then re-read their group.
//!
//! # Characteristics
//!
//! As Python tooz's: non-timeout-based, distributed across threads, processes and hosts.

mod feed;
mod layout;
mod options;
mod session;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_postgres::error::SqlState;

use super::common::claims::{hex, unhex};
use super::common::errors::{
    group_already_exist, group_not_created, group_not_empty, member_already_exist,
    member_not_joined,
};
use super::common::{join_again, Claims, HeldLocks, JoinedGroups, OnAbandon, SessionSlot};
use crate::characteristics::{Characteristic as C, Characteristics};
use crate::driver::{acquire_by_retrying, Driver};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::types::{
    Capabilities, ChangeWait, ConnectionState, DriverFacts, FencingToken, GroupChange, GroupFeed,
    LockMode, LockRequest, LostReason, MemberInfo, SessionEvents, Support, Value, WatchKind,
};
use crate::url::DriverUrl;
use feed::{Feed, RESYNC};
use layout::Layout;
use options::Config;
use session::Live;

pub(crate) const FACTS: DriverFacts = DriverFacts {
    characteristics: Characteristics::of(&[
        C::NonTimeoutBased,
        C::DistributedAcrossThreads,
        C::DistributedAcrossProcesses,
        C::DistributedAcrossHosts,
    ]),
    support: Support {
        watch: WatchKind::Push,
        ..Support::ALL
    },
    poll_interval: options::DEFAULT_POLL_INTERVAL,
    options: &options::OPTIONS,
};

pub(crate) fn build(url: &DriverUrl, member: &Id) -> Result<Arc<dyn Driver>> {
    let cfg = Config::parse(url)?;
    let layout = Layout::new(&cfg.namespace, cfg.keys);
    let driver: Arc<PostgresDriver> = Arc::new_cyclic(|me| PostgresDriver {
        me: me.clone(),
        facts: DriverFacts {
            poll_interval: cfg.poll_interval,
            ..FACTS
        },
        cfg,
        layout,
        member: member.clone(),
        held: HeldLocks::default(),
        claims: Claims::default(),
        joined: JoinedGroups::default(),
        session: SessionSlot::new("postgresql"),
    });
    Ok(driver)
}

/// A failed statement or connection, as a tooz error (the message never holds the password:
/// the server's and the client library's messages do not carry it).
pub(super) fn pg_error(what: &str, error: &tokio_postgres::Error) -> Error {
    let text = error.to_string();
    let transport = [
        "error communicating",
        "error connecting",
        "timeout",
        "connection",
    ];
    if error.is_closed()
        || error.as_db_error().is_none() && transport.iter().any(|t| text.starts_with(t))
    {
        return Error::Connection(format!("PostgreSQL, {what}: {error}"));
    }
    let detail = match error.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => error.to_string(),
    };
    Error::Backend {
        driver: "postgresql",
        message: format!("{what}: {detail}"),
    }
}

/// A failed connection attempt (bad address, refused, bad credentials): a connection error.
pub(super) fn connect_error(error: &tokio_postgres::Error) -> Error {
    match pg_error("connecting", error) {
        Error::Backend { message, .. } => Error::Connection(format!("PostgreSQL, {message}")),
        other => other,
    }
}

/// The PostgreSQL driver. See the module docs.
pub struct PostgresDriver {
    me: Weak<PostgresDriver>,
    facts: DriverFacts,
    cfg: Config,
    layout: Layout,
    member: Id,
    /// The locks held, by acquisition nonce, with their advisory key and whether shared.
    held: HeldLocks<(i64, bool)>,
    /// Advisory keys this coordinator holds or is taking, with the acquisition's nonce: the
    /// server's locks are re-entrant per session, this keeps two local holders apart.
    claims: Claims<i64>,
    joined: JoinedGroups,
    session: SessionSlot<Session>,
}

/// A started driver: the current database session (none while it is being made again), the
/// listening connection, and the supervisor.
struct Session {
    live: RwLock<Option<Arc<Live>>>,
    feed: Arc<Feed>,
    stopped: AtomicBool,
    supervisor: Mutex<Option<tokio::task::JoinHandle<()>>>,
    runtime: tokio::runtime::Handle,
    events: SessionEvents,
}

impl Session {
    fn live(&self) -> Result<Arc<Live>> {
        self.live.read().unwrap().clone().ok_or_else(|| {
            Error::Connection("no PostgreSQL session (it is being made again)".into())
        })
    }
}

impl PostgresDriver {
    fn live(&self) -> Result<Arc<Live>> {
        self.session.get()?.live()
    }

    fn unclaim(&self, key: i64, nonce: &str) {
        self.claims.unclaim(&key, nonce);
    }

    /// Gives up lock `name` (every acquisition of it by this coordinator) at another
    /// coordinator's request (`break_lock`).
    async fn give_up(&self, live: &Live, name: &Id) {
        let key = self.layout.lock_key(name);
        let channel = self.layout.lock_channel(name);
        for nonce in self.claims.holders(&key) {
            let Some((_, shared)) = self.held.lose(&nonce, LostReason::Broken) else {
                continue;
            };
            if let Err(error) = live
                .client
                .query_one(live.stmts.release(shared), &[&key, &channel])
                .await
            {
                tracing::warn!(lock = %name, %error, "giving up a broken lock failed");
            }
            self.unclaim(key, &nonce);
        }
    }

    /// Follows the session connection: breaks asked of us, and its end (lost, then made again).
    async fn supervise(
        me: Weak<PostgresDriver>,
        session: Arc<Session>,
        events: SessionEvents,
        mut ended: tokio::sync::oneshot::Receiver<()>,
        mut breaks: Option<broadcast::Receiver<String>>,
    ) {
        loop {
            let request = async {
                match breaks.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut ended => {}
                request = request => {
                    match request {
                        Ok(payload) if payload != RESYNC => {
                            let (Some(driver), Ok(live)) = (me.upgrade(), session.live()) else {
                                continue;
                            };
                            if let Some(name) = unhex(&payload) {
                                driver.give_up(&live, &Id::from(name)).await;
                            }
                        }
                        Err(broadcast::error::RecvError::Closed) => breaks = None,
                        _ => {}
                    }
                    continue;
                }
            }
            if session.stopped.load(Ordering::Acquire) {
                return;
            }
            // The session is gone, and everything it held with it.
            session.live.write().unwrap().take();
            if let Some(driver) = me.upgrade() {
                driver.held.lose_all(LostReason::SessionLost);
                driver.claims.clear();
            }
            tracing::warn!("PostgreSQL session lost; connecting again");
            events.report(ConnectionState::Lost);
            let mut backoff = Duration::from_millis(50);
            loop {
                let Some(driver) = me.upgrade() else { return };
                if session.stopped.load(Ordering::Acquire) {
                    return;
                }
                match session::connect(&driver.cfg, &driver.layout).await {
                    Ok((live, new_ended)) => {
                        let channel = driver.layout.session_channel(live.key);
                        breaks = session.feed.subscribe(&channel).await.ok();
                        *session.live.write().unwrap() = Some(Arc::new(live));
                        ended = new_ended;
                        for (group, caps) in driver.joined.list() {
                            if let Err(error) =
                                join_again(&*driver, &group, &driver.member, &caps).await
                            {
                                tracing::warn!(%group, %error, "joining again failed");
                            }
                        }
                        events.report(ConnectionState::Connected);
                        break;
                    }
                    Err(error) => tracing::warn!(%error, "cannot connect to PostgreSQL yet"),
                }
                drop(driver);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(session::MAX_BACKOFF);
            }
        }
    }

    /// Reads lock `name`'s state: (pid of the session holding its key, the recorded holder
    /// when that session is the one recorded, the recorded session key).
    async fn holder_state(
        &self,
        live: &Live,
        name: &Id,
    ) -> Result<(Option<i32>, Option<Vec<u8>>, Option<i64>)> {
        let key = self.layout.lock_key(name);
        let row = live
            .client
            .query_one(&live.stmts.holder, &[&key, &name.as_bytes()])
            .await
            .map_err(|e| pg_error("reading a lock's holder", &e))?;
        let pid: Option<i32> = row.get(0);
        let holder: Option<Vec<u8>> = row.get(1);
        let session: Option<i64> = row.get(2);
        let row_pid: Option<i32> = row.get(3);
        if pid.is_some() && pid == row_pid {
            Ok((pid, holder, session))
        } else {
            Ok((pid, None, None))
        }
    }

    /// Waits (bounded) until no session holds lock `name`'s key any more.
    async fn wait_free(&self, live: &Live, name: &Id, within: Duration) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.holder_state(live, name).await?.0.is_none() {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[async_trait]
impl Driver for PostgresDriver {
    fn scheme(&self) -> &'static str {
        "postgresql"
    }

    fn facts(&self) -> &DriverFacts {
        &self.facts
    }

    fn session_timeout(&self) -> Duration {
        self.cfg.timeout / 2
    }

    async fn start(&self, events: SessionEvents) -> Result<()> {
        let feed = Feed::start(self.cfg.clone()).await?;
        let (live, ended) = match session::connect(&self.cfg, &self.layout).await {
            Ok(connected) => connected,
            Err(error) => {
                feed.stop().await;
                return Err(error);
            }
        };
        let breaks = feed
            .subscribe(&self.layout.session_channel(live.key))
            .await?;
        let session = Arc::new(Session {
            live: RwLock::new(Some(Arc::new(live))),
            feed,
            stopped: AtomicBool::new(false),
            supervisor: Mutex::new(None),
            runtime: tokio::runtime::Handle::current(),
            events: events.clone(),
        });
        let task = tokio::spawn(Self::supervise(
            self.me.clone(),
            session.clone(),
            events,
            ended,
            Some(breaks),
        ));
        *session.supervisor.lock().unwrap() = Some(task);
        self.session.set(session);
        Ok(())
    }

    async fn stop(&self) -> Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        session.stopped.store(true, Ordering::Release);
        if let Some(task) = session.supervisor.lock().unwrap().take() {
            task.abort();
        }
        self.held.clear();
        self.claims.clear();
        self.joined.clear();
        // Dropping the client closes the session: the server frees its locks.
        session.live.write().unwrap().take();
        session.feed.stop().await;
        Ok(())
    }

    async fn heartbeat(&self) -> Result<Option<Duration>> {
        let period = self.cfg.timeout / 4;
        let session = self.session.get()?;
        let live = session.live()?;
        if session.events.current() == ConnectionState::Lost {
            // The core gave this session up (suspended too long) and reported everything it
            // held lost: end it, so that the server frees what it may still hold, and start
            // afresh (the supervisor connects again and joins the groups again).
            live.close();
            return Err(Error::Connection(
                "the PostgreSQL session was given up; connecting again".into(),
            ));
        }
        match tokio::time::timeout(period, live.client.simple_query("SELECT 1")).await {
            Ok(Ok(_)) => Ok(Some(period)),
            Ok(Err(error)) => Err(pg_error("heartbeat", &error)),
            Err(_) => Err(Error::OperationTimedOut(format!(
                "PostgreSQL heartbeat took longer than {period:?}"
            ))),
        }
    }

    async fn create_group(&self, group: &Id) -> Result<()> {
        let live = self.live()?;
        let created = live
            .client
            .execute(&live.stmts.create_group, &[&group.as_bytes()])
            .await
            .map_err(|e| pg_error("create_group", &e))?;
        if created == 1 {
            Ok(())
        } else {
            Err(group_already_exist(group))
        }
    }

    async fn delete_group(&self, group: &Id) -> Result<()> {
        let live = self.live()?;
        let row = live
            .client
            .query_one(&live.stmts.delete_group, &[&group.as_bytes()])
            .await
            .map_err(|e| pg_error("delete_group", &e))?;
        match (row.get::<_, bool>(0), row.get::<_, bool>(1)) {
            (true, _) => Ok(()),
            (false, true) => Err(group_not_empty(group)),
            (false, false) => Err(group_not_created(group)),
        }
    }

    async fn get_groups(&self) -> Result<BTreeSet<Id>> {
        let live = self.live()?;
        let rows = live
            .client
            .query(&live.stmts.get_groups, &[])
            .await
            .map_err(|e| pg_error("get_groups", &e))?;
        Ok(rows
            .iter()
            .map(|r| Id::from(r.get::<_, Vec<u8>>(0)))
            .collect())
    }

    async fn join_group(&self, group: &Id, member: &Id, caps: &Capabilities) -> Result<()> {
        let live = self.live()?;
        let channel = self.layout.group_channel(group);
        let encoded = caps.to_msgpack();
        let joined = live
            .client
            .query(
                &live.stmts.join,
                &[
                    &group.as_bytes(),
                    &member.as_bytes(),
                    &encoded,
                    &live.key,
                    &channel,
                ],
            )
            .await;
        match joined {
            Ok(rows) if rows.len() == 1 => {
                if member == &self.member {
                    self.joined.insert(group, caps);
                }
                Ok(())
            }
            Ok(_) => Err(member_already_exist(group, member)),
            Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                Err(group_not_created(group))
            }
            Err(e) => Err(pg_error("join_group", &e)),
        }
    }

    async fn leave_group(&self, group: &Id, member: &Id) -> Result<()> {
        let live = self.live()?;
        let channel = self.layout.group_channel(group);
        let row = live
            .client
            .query_one(
                &live.stmts.leave,
                &[&group.as_bytes(), &member.as_bytes(), &channel],
            )
            .await
            .map_err(|e| pg_error("leave_group", &e))?;
        if member == &self.member {
            self.joined.remove(group);
        }
        match (row.get::<_, Option<bool>>(0), row.get::<_, bool>(1)) {
            (Some(true), _) => Ok(()),
            (_, true) => Err(member_not_joined(group, member)),
            (_, false) => Err(group_not_created(group)),
        }
    }

    async fn get_members_with_capabilities(
        &self,
        group: &Id,
    ) -> Result<BTreeMap<Id, Capabilities>> {
        let live = self.live()?;
        let rows = live
            .client
            .query(&live.stmts.members, &[&group.as_bytes()])
            .await
            .map_err(|e| pg_error("get_members", &e))?;
        if rows.is_empty() {
            return Err(group_not_created(group));
        }
        let mut members = BTreeMap::new();
        for row in rows {
            let (Some(member), Some(caps)) = (
                row.get::<_, Option<Vec<u8>>>(0),
                row.get::<_, Option<Vec<u8>>>(1),
            ) else {
                continue;
            };
            members.insert(Id::from(member), Capabilities::from_msgpack(&caps)?);
        }
        Ok(members)
    }

    async fn get_member_info(&self, group: &Id, member: &Id) -> Result<MemberInfo> {
        let live = self.live()?;
        let row = live
            .client
            .query_opt(&live.stmts.member, &[&group.as_bytes(), &member.as_bytes()])
            .await
            .map_err(|e| pg_error("get_member_info", &e))?
            .ok_or_else(|| group_not_created(group))?;
        let Some(caps) = row.get::<_, Option<Vec<u8>>>(0) else {
            return Err(member_not_joined(group, member));
        };
        let joined_at: Option<std::time::SystemTime> = row.get(1);
        let session: Option<i64> = row.get(2);
        let mut extra = BTreeMap::new();
        if let Some(session) = session {
            extra.insert("session".to_string(), Value::from(session));
        }
        Ok(MemberInfo {
            capabilities: Capabilities::from_msgpack(&caps)?,
            joined_at,
            extra,
        })
    }

    async fn update_capabilities(
        &self,
        group: &Id,
        member: &Id,
        caps: &Capabilities,
    ) -> Result<()> {
        let live = self.live()?;
        let encoded = caps.to_msgpack();
        let row = live
            .client
            .query_one(
                &live.stmts.update_caps,
                &[&group.as_bytes(), &member.as_bytes(), &encoded],
            )
            .await
            .map_err(|e| pg_error("update_capabilities", &e))?;
        match (row.get::<_, bool>(0), row.get::<_, bool>(1)) {
            (true, _) => {
                if member == &self.member {
                    self.joined.update(group, caps);
                }
                Ok(())
            }
            (false, true) => Err(member_not_joined(group, member)),
            (false, false) => Err(group_not_created(group)),
        }
    }

    async fn subscribe_group(&self, group: &Id) -> Result<Option<(BTreeSet<Id>, GroupFeed)>> {
        let session = self.session.get()?;
        let rx = session
            .feed
            .subscribe(&self.layout.group_channel(group))
            .await?;
        let snapshot = self.get_members(group).await?;
        let period = self.cfg.resync_interval;
        let ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let feed = futures::stream::unfold((rx, ticker), |(mut rx, mut ticker)| async move {
            let change = tokio::select! {
                received = rx.recv() => match received {
                    Ok(payload) => {
                        let member = payload.get(1..).and_then(unhex).map(Id::from);
                        match (payload.as_bytes().first(), member) {
                            (Some(b'J'), Some(member)) => GroupChange::Joined(member),
                            (Some(b'L'), Some(member)) => GroupChange::Left(member),
                            _ => GroupChange::Resync,
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => GroupChange::Resync,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = ticker.tick() => GroupChange::Resync,
            };
            Some((change, (rx, ticker)))
        })
        .boxed();
        Ok(Some((snapshot, feed)))
    }

    async fn lock_try_acquire(&self, req: &LockRequest) -> Result<Option<FencingToken>> {
        let session = self.session.get()?;
        let live = session.live()?;
        let key = self.layout.lock_key(&req.name);
        let shared = req.mode == LockMode::Shared;
        let claimed = if shared {
            self.claims.claim_shared(key, &req.nonce)
        } else {
            self.claims.claim(key, &req.nonce)
        };
        if !claimed {
            return Ok(None);
        }
        // Abandoned mid-flight (the future dropped): unlock in case the server granted it.
        let abandoned = {
            let (me, live, nonce) = (self.me.clone(), live.clone(), req.nonce.clone());
            let bound = self.cfg.timeout / 4;
            OnAbandon::spawn(session.runtime.clone(), async move {
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&key];
                let unlock = live.client.query_one(live.stmts.unlock(shared), &params);
                let unlocked = tokio::time::timeout(bound, unlock).await;
                if !matches!(unlocked, Ok(Ok(_))) {
                    // Whether the server granted it is unknown: end the session, which
                    // frees whatever it holds.
                    live.close();
                }
                if let Some(driver) = me.upgrade() {
                    driver.unclaim(key, &nonce);
                }
            })
        };
        let row = live
            .client
            .query_one(
                live.stmts.acquire(shared),
                &[&key, &req.name.as_bytes(), &req.owner.as_bytes(), &live.key],
            )
            .await;
        match row {
            Ok(row) => {
                abandoned.disarm();
                if row.get::<_, bool>(0) {
                    let token: i64 = row.get(1);
                    self.held.insert(req, (key, shared));
                    Ok(Some(FencingToken(token as u64)))
                } else {
                    self.unclaim(key, &req.nonce);
                    Ok(None)
                }
            }
            Err(error) => {
                abandoned.undo_now().await;
                Err(pg_error("acquiring a lock", &error))
            }
        }
    }

    async fn lock_acquire(
        &self,
        req: &LockRequest,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Option<FencingToken>> {
        // Uncontended: one try, no subscription.
        if let Some(token) = self.lock_try_acquire(req).await? {
            return Ok(Some(token));
        }
        // Each try and change wait is bounded on its own; this bounds a try or a LISTEN on a
        // connection that stopped answering by the caller's deadline too.
        let wait = acquire_by_retrying(self, req, deadline);
        match deadline {
            Some(deadline) => Ok(tokio::time::timeout_at(deadline, wait)
                .await
                .unwrap_or(Ok(None))?),
            None => wait.await,
        }
    }

    async fn lock_changed(&self, name: &Id) -> Result<ChangeWait> {
        let session = self.session.get()?;
        let mut rx = session
            .feed
            .subscribe(&self.layout.lock_channel(name))
            .await?;
        let poll = self.facts.poll_interval;
        Ok(Box::pin(async move {
            let _ = tokio::time::timeout(poll, rx.recv()).await;
        }))
    }

    async fn lock_release(&self, req: &LockRequest) -> Result<bool> {
        let Some(held) = self.held.remove(&req.nonce) else {
            return Ok(false);
        };
        let (key, shared) = held.record;
        let live = match self.live() {
            Ok(live) => live,
            Err(error) => {
                self.unclaim(key, &req.nonce);
                return Err(error);
            }
        };
        let channel = self.layout.lock_channel(&req.name);
        // Abandoned mid-flight: whether the server released it is unknown; end the session.
        let abandoned = {
            let (me, live, nonce) = (self.me.clone(), live.clone(), req.nonce.clone());
            OnAbandon::run(move || {
                live.close();
                if let Some(driver) = me.upgrade() {
                    driver.unclaim(key, &nonce);
                }
            })
        };
        let released = live
            .client
            .query_one(live.stmts.release(shared), &[&key, &channel])
            .await;
        abandoned.disarm();
        self.unclaim(key, &req.nonce);
        let row = released.map_err(|e| pg_error("releasing a lock", &e))?;
        Ok(row.get::<_, bool>(0))
    }

    async fn lock_refresh(&self, req: &LockRequest) -> Result<bool> {
        Ok(self.held.contains(&req.nonce))
    }

    async fn lock_break(&self, name: &Id) -> Result<bool> {
        let live = self.live()?;
        let (pid, _, session) = self.holder_state(&live, name).await?;
        let Some(pid) = pid else {
            return Ok(false);
        };
        if pid == live.pid {
            // Held by this coordinator.
            self.give_up(&live, name).await;
            return Ok(true);
        }
        if let Some(session) = session {
            let channel = self.layout.session_channel(session);
            let payload = hex(name.as_bytes());
            live.client
                .query_one(&live.stmts.notify, &[&channel, &payload])
                .await
                .map_err(|e| pg_error("asking the holder to give a lock up", &e))?;
            if self.wait_free(&live, name, self.cfg.break_grace).await? {
                return Ok(true);
            }
        }
        tracing::warn!(lock = %name, pid, "ending the database session that holds the lock");
        live.client
            .query_one(&live.stmts.terminate, &[&pid])
            .await
            .map_err(|e| pg_error("ending the holder's session", &e))?;
        self.wait_free(&live, name, self.cfg.timeout).await?;
        Ok(true)
    }

    async fn lock_holder(&self, name: &Id) -> Result<Option<Id>> {
        let live = self.live()?;
        match self.holder_state(&live, name).await? {
            (None, _, _) => Ok(None),
            (Some(_), Some(holder), _) => Ok(Some(Id::from(holder))),
            (Some(_), None, _) => Err(Error::Backend {
                driver: "postgresql",
                message: format!(
                    "lock {name} is held by a client that records no holder (such as Python tooz)"
                ),
            }),
        }
    }
}

impl std::fmt::Debug for PostgresDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresDriver")
            .field("config", &self.cfg)
            .field("member", &self.member)
            .finish()
    }
}
