//! `mysql://`: MySQL and MariaDB named locks (`GET_LOCK`), with groups, membership,
//! watches, election and fencing tokens in the driver's own tables.
//!
//! Python tooz's mysql driver has locks only; its locks and ours exclude each other: both
//! take `GET_LOCK(<name>)` with the lock's name as given.
//!
//! # URL and options
//!
//! `mysql://[user[:password]@]host[:port][/dbname][?option=value...]` (port 3306);
//! `unix_socket=PATH` connects through the server's socket instead, as in Python tooz.
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `timeout` | 10 s | connect bound; session timeout = timeout / 2, the bound of one statement |
//! | `namespace` | `tooz` | prefix of the driver's tables and of its session lock names |
//! | `poll_interval` | 10 ms | how often a watch reads its group's change counter |
//! | `resync_interval` | 1 s | how often a watch re-reads membership (members whose session died) |
//! | `wait_slice` | 5 s | longest single server-side `GET_LOCK` wait of a lock waiter |
//! | `connect_timeout` | `timeout` | bound of one connection attempt |
//! | `user`, `password` | — | credentials, where the URL has none |
//! | `ssl_ca`, `ssl_capath`, `ssl_cert`, `ssl_key`, `ssl_cipher`, `ssl_verify_mode`, `ssl_check_hostname` | — | Python tooz's TLS options: refused (TLS is not supported yet) |
//! | `lock_timeout`, `membership_timeout`, `leader_timeout` | — | accepted; nothing here expires |
//!
//! Unknown options and bad values are typed errors; the password never appears in errors,
//! logs or `Debug` output.
//!
//! # Lock names
//!
//! A lock named `N` is `GET_LOCK('N')`, Python tooz's name, when `N` is UTF-8 of at most 64
//! characters. Longer names (MySQL refuses them) and names that are not UTF-8 become `~h~`
//! and 61 hex digits of their SHA-256: deterministic, so every tooz-rs process agrees (a
//! Python peer would use the raw name, which MySQL refuses anyway).
//!
//! Case: MySQL compares lock names case-insensitively (`Lock` and `lock` are one lock);
//! MariaDB 10.11 compares them exactly (two locks; measured on the server of
//! `scripts/services`). The driver measures which on connecting and keeps its own
//! bookkeeping the same way, so a coordinator behaves as the server does, and fencing
//! counters are per server lock.
//!
//! # Locks and connections
//!
//! Every lock a coordinator takes without waiting is taken on its one session connection (a
//! session can hold any number of named locks since MySQL 5.7 and MariaDB 10.0.2), so a
//! coordinator holding 1,000 uncontended locks has one session connection (measured in
//! `tests/mysql.rs`). Named locks are re-entrant per session, so the driver keeps two
//! acquisitions of one name by the same coordinator apart itself.
//!
//! Acquiring is one statement: `INSERT ... SELECT ... WHERE GET_LOCK(name, 0) = 1 ON
//! DUPLICATE KEY UPDATE token = LAST_INSERT_ID(...)`: the try and, when it succeeds, the
//! lock's fencing token bumped and the holder recorded, in one round trip. A token is
//! `epoch << 22 | counter`, the epoch being the server's start time in seconds (since
//! 2020): strictly increasing per lock across holders, and across a server crash even when
//! the server lost its last commits (`innodb_flush_log_at_trx_commit=0`, as in
//! `scripts/services`): the first acquisition after the restart starts a new epoch. Not
//! guaranteed: a crash that lost commits within about a second of the previous start (the
//! epochs are whole seconds).
//!
//! Waiting is server-side, not polling: a waiter runs the acquiring statement itself with
//! `GET_LOCK(name, remaining)` (at most `wait_slice` at a time) on a waiting connection of its
//! own, which the server wakes as soon as the lock is free; one more round trip on that
//! connection confirms the grant is still held (a reply read late, after the process was
//! paused past the connection's end, is not believed). The lock then stays on that
//! waiting connection until it is released (handing it to the session connection would let
//! another client take it in between), after which the connection is kept for the next wait.
//! So a coordinator uses its session connection, plus one connection per acquire waiting at
//! the moment and per lock it got by waiting and still holds. The heartbeat pings those
//! connections too: a lock whose connection is gone is reported lost.
//!
//! # Groups and liveness
//!
//! Groups and members live in tables (capabilities as msgpack, the bytes Python tooz's other
//! drivers store). Each session connection holds a named lock of its own (`<ns>.s.<random>`);
//! member rows carry its name and a row whose lock is free (`IS_USED_LOCK` is null: its
//! session ended) is dead: readers ignore it, a join takes it over, `delete_group` removes it.
//! So a member lives exactly as long as its coordinator's database session, with no
//! heartbeat timeout (`NON_TIMEOUT_BASED`). Every join and leave bumps the group's change
//! counter; a watch reads it every `poll_interval` on a connection of its own and re-reads
//! membership when it moved, and every `resync_interval` in any case (the core diffs, so a
//! join and a leave between two reads may be coalesced: `WatchKind::Notified`).
//!
//! # Election
//!
//! The core's: a lock per group named `leader_of_<group>`; `get_leader` answers the holder
//! recorded in the lock's row when `IS_USED_LOCK` says that connection still holds it.
//!
//! # `break_lock`
//!
//! A named lock can only be freed by its session, so `break_lock` records the break and ends
//! the holder's connection (`KILL`), which frees everything that connection held. Its
//! coordinator notices at its next statement or heartbeat, reports the broken locks `Broken`
//! and its other locks `SessionLost`, connects again and joins its groups again.
//!
//! # Failures
//!
//! The heartbeat (every timeout / 4) pings the session connection. A statement that fails
//! on the connection, or gets no answer within timeout / 2, ends the session: every lock is
//! reported lost, `Lost` is reported, and the driver connects again (backing off up to 2 s),
//! joins its groups again and reports `Connected`. The release of a lock whose session is
//! gone says `false`. A client cut off for good keeps its locks on the server until the
//! server notices the connection is gone (TCP keepalive, `wait_timeout`).
//!
//! # Characteristics
//!
//! As Python tooz's: non-timeout-based, distributed across threads, processes and hosts.

mod layout;
mod options;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::common::errors::{
    group_already_exist, group_not_created, group_not_empty, member_already_exist,
    member_not_joined,
};
use super::common::{join_again, Claims, HeldLocks, JoinedGroups, SessionSlot};
use crate::characteristics::{Characteristic as C, Characteristics};
use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::types::{
    Capabilities, ConnectionState, DriverFacts, FencingToken, GroupChange, GroupFeed, LockMode,
    LockRequest, LostReason, MemberInfo, SessionEvents, Support, Value, WatchKind,
};
use crate::url::DriverUrl;
use layout::{digest, lock_name, Layout};
use options::Config;

pub(crate) const FACTS: DriverFacts = DriverFacts {
    characteristics: Characteristics::of(&[
        C::NonTimeoutBased,
        C::DistributedAcrossThreads,
        C::DistributedAcrossProcesses,
        C::DistributedAcrossHosts,
    ]),
    support: Support {
        shared_locks: false,
        watch: WatchKind::Notified,
        ..Support::ALL
    },
    poll_interval: options::DEFAULT_POLL_INTERVAL,
    options: &options::OPTIONS,
};

pub(crate) fn build(url: &DriverUrl, member: &Id) -> Result<Arc<dyn Driver>> {
    let cfg = Config::parse(url)?;
    let layout = Layout::new(&cfg.namespace);
    let driver: Arc<MysqlDriver> = Arc::new_cyclic(|me| MysqlDriver {
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
        session: SessionSlot::new("mysql"),
    });
    Ok(driver)
}

/// Longest pause between two attempts to connect again.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

type MyResult<T> = std::result::Result<T, mysql_async::Error>;

/// True when `error` means the connection is gone (not a statement the server refused).
fn is_connection_error(error: &mysql_async::Error) -> bool {
    match error {
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => true,
        // Server shutdown, connection killed (MySQL / MariaDB), gone away, lost.
        mysql_async::Error::Server(e) => matches!(e.code, 1053 | 1927 | 2006 | 2013 | 4031),
        _ => false,
    }
}

/// A failed statement, as a tooz error (the client library's and the server's messages do
/// not carry the password).
fn my_error(what: &str, error: &mysql_async::Error) -> Error {
    if is_connection_error(error) {
        return Error::Connection(format!("MySQL, {what}: {error}"));
    }
    Error::Backend {
        driver: "mysql",
        message: format!("{what}: {error}"),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

/// A waiting connection that holds the lock it got, and its server id.
type Promoted = (Arc<tokio::sync::Mutex<Conn>>, u32);

/// One live session connection.
struct Live {
    conn: Conn,
    /// The named lock this connection holds while it lives: member rows carry it.
    session: String,
    /// The server's id of the connection.
    id: u32,
}

/// A started driver: the session connection (none while it is being made again), waiting
/// connections for reuse, and what the recovery needs.
struct Session {
    live: Arc<tokio::sync::Mutex<Option<Live>>>,
    /// Waiting connections for reuse, with when they were last used.
    spare: Mutex<Vec<(Conn, Instant)>>,
    /// Locks granted on a waiting connection, which keeps them: by acquisition nonce, the
    /// connection and its server id.
    promoted: Mutex<HashMap<String, Promoted>>,
    events: SessionEvents,
    stopped: AtomicBool,
    recovering: AtomicBool,
    /// The server compares lock names case-insensitively (MySQL; not MariaDB).
    fold_case: AtomicBool,
    /// The connection id of the last session, whose breaks are read after it is lost.
    last_id: Mutex<u32>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The MySQL / MariaDB driver. See the module docs.
pub struct MysqlDriver {
    me: Weak<MysqlDriver>,
    facts: DriverFacts,
    cfg: Config,
    layout: Layout,
    member: Id,
    /// The locks held, by acquisition nonce, with their claim key and whether a waiting
    /// connection holds it (see `promoted`).
    held: HeldLocks<(String, bool)>,
    /// Server lock names (folded as the server folds them) held or being taken.
    claims: Claims<String>,
    joined: JoinedGroups,
    session: SessionSlot<Session>,
}

/// Connects one connection.
async fn connect_one(cfg: &Config) -> Result<Conn> {
    tokio::time::timeout(cfg.connect_timeout, Conn::new(cfg.client_opts()))
        .await
        .map_err(|_| Error::Connection("timed out connecting to MySQL".into()))?
        .map_err(|e| Error::Connection(format!("cannot connect to MySQL: {e}")))
}

/// Connects the session connection: tables, session lock, case rule.
async fn connect_session(cfg: &Config, layout: &Layout) -> Result<(Live, bool)> {
    let mut conn = connect_one(cfg).await?;
    let setup = async {
        for statement in layout.create_tables() {
            conn.query_drop(statement).await?;
        }
        conn.query_drop(layout.set_epoch()).await?;
        let random = uuid::Uuid::new_v4().as_u64_pair().0;
        let session = layout.session_lock(random);
        let probe = format!("{}.c.{random:016x}", cfg.namespace);
        let row: Option<(Option<i64>, Option<i64>, u32)> = conn
            .exec_first(
                "SELECT GET_LOCK(?, 0), IS_USED_LOCK(?) IS NOT NULL, CONNECTION_ID()",
                (&session, probe.to_uppercase()),
            )
            .await?;
        let folded: Option<(Option<i64>, Option<i64>)> = conn
            .exec_first(
                "SELECT GET_LOCK(?, 0), IS_USED_LOCK(?) IS NOT NULL",
                (&probe, probe.to_uppercase()),
            )
            .await?;
        conn.exec_drop("DO RELEASE_LOCK(?)", (&probe,)).await?;
        Ok::<_, mysql_async::Error>((session, row, folded))
    };
    let (session, row, folded) = tokio::time::timeout(cfg.timeout, setup)
        .await
        .map_err(|_| Error::Connection("timed out setting up the MySQL session".into()))?
        .map_err(|e| my_error("setting up the session", &e))?;
    let (got, id) = match row {
        Some((Some(1), _, id)) => (true, id),
        _ => (false, 0),
    };
    if !got {
        return Err(Error::Connection("could not take the session lock".into()));
    }
    let fold_case = matches!(folded, Some((Some(1), Some(1))));
    Ok((Live { conn, session, id }, fold_case))
}

impl MysqlDriver {
    /// The claim key of lock `name`: its server name, folded as the server folds it.
    fn claim_key(&self, session: &Session, name: &Id) -> String {
        let server = lock_name(name);
        if session.fold_case.load(Ordering::Acquire) {
            server.to_lowercase()
        } else {
            server
        }
    }

    /// Runs `op` on the session connection, in a task of its own (so that a caller giving up
    /// never leaves the connection half-way through a statement), bounded by the session
    /// timeout. A connection failure ends the session (see [`MysqlDriver::recover`]). When the
    /// caller is gone by the time `op` succeeded, `undo` runs on the connection.
    async fn run<T, F, U>(&self, what: &'static str, op: F, undo: U) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Live) -> BoxFuture<'static, (Live, MyResult<T>)> + Send + 'static,
        U: FnOnce(Live, T) -> BoxFuture<'static, Live> + Send + 'static,
    {
        let session = self.session.get()?;
        let bound = self.session_timeout();
        let (tx, rx) = oneshot::channel();
        let me = self.me.clone();
        let task_session = session.clone();
        tokio::spawn(async move {
            let session = task_session;
            let mut slot = session.live.clone().lock_owned().await;
            let Some(live) = slot.take() else {
                let _ = tx.send(Err(Error::Connection(
                    "no MySQL session (it is being made again)".into(),
                )));
                return;
            };
            let outcome = tokio::time::timeout(bound, op(live)).await;
            let result = match outcome {
                Ok((live, Ok(value))) => {
                    *slot = Some(live);
                    Ok(value)
                }
                Ok((live, Err(error))) if !is_connection_error(&error) => {
                    *slot = Some(live);
                    Err(my_error(what, &error))
                }
                Ok((_, Err(error))) => Err(my_error(what, &error)),
                Err(_) => Err(Error::OperationTimedOut(format!(
                    "MySQL, {what}: no answer within {bound:?}"
                ))),
            };
            let failed = slot.is_none();
            drop(slot);
            if failed {
                if let Some(driver) = me.upgrade() {
                    driver.recover(&session);
                }
            }
            if let Err(Ok(value)) = tx.send(result) {
                let mut slot = session.live.clone().lock_owned().await;
                if let Some(live) = slot.take() {
                    *slot = Some(undo(live, value).await);
                }
            }
        });
        rx.await
            .unwrap_or_else(|_| Err(Error::Connection("the MySQL statement task ended".into())))
    }

    /// Ends the session after a connection failure, once: reports broken and lost locks,
    /// `Lost`, connects again, joins the groups again, reports `Connected`.
    fn recover(&self, session: &Arc<Session>) {
        if session.stopped.load(Ordering::Acquire)
            || session.recovering.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let me = self.me.clone();
        let task_session = session.clone();
        let task = tokio::spawn(async move {
            let session = task_session;
            let mut backoff = Duration::from_millis(50);
            let mut reported = false;
            loop {
                let Some(driver) = me.upgrade() else { return };
                if session.stopped.load(Ordering::Acquire) {
                    return;
                }
                // The first attempt is short: the session's loss is reported after it.
                let attempt = connect_session(&driver.cfg, &driver.layout);
                let connected = if reported {
                    attempt.await
                } else {
                    tokio::time::timeout(driver.cfg.timeout / 4, attempt)
                        .await
                        .unwrap_or_else(|_| Err(Error::Connection("timed out".into())))
                };
                if !reported {
                    // Locks broken by another coordinator are told apart from the rest.
                    let old = *session.last_id.lock().unwrap();
                    let mut broken = Vec::new();
                    if let Ok((mut live, fold)) = connected {
                        if let Ok(names) = live
                            .conn
                            .exec::<Vec<u8>, _, _>(driver.layout.breaks_of(), (old,))
                            .await
                        {
                            broken = names;
                        }
                        let _ = live
                            .conn
                            .exec_drop(driver.layout.forget_breaks(), (old,))
                            .await;
                        session.fold_case.store(fold, Ordering::Release);
                        for name in broken {
                            let key = String::from_utf8_lossy(&name).into_owned();
                            if let Some(nonce) = driver.claims.holder(&key) {
                                driver.held.lose(&nonce, LostReason::Broken);
                            }
                        }
                        driver.held.lose_all(LostReason::SessionLost);
                        driver.claims.clear();
                        driver.drop_promoted(&session);
                        tracing::warn!("MySQL session lost; connected again");
                        session.events.report(ConnectionState::Lost);
                        driver.install(&session, live).await;
                        return;
                    }
                    driver.held.lose_all(LostReason::SessionLost);
                    driver.claims.clear();
                    driver.drop_promoted(&session);
                    tracing::warn!("MySQL session lost; connecting again");
                    session.events.report(ConnectionState::Lost);
                    reported = true;
                } else if let Ok((live, fold)) = connected {
                    session.fold_case.store(fold, Ordering::Release);
                    driver.install(&session, live).await;
                    return;
                }
                drop(driver);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        });
        let mut tasks = session.tasks.lock().unwrap();
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Installs a new session connection, joins the groups again, reports `Connected`.
    async fn install(&self, session: &Arc<Session>, live: Live) {
        *session.last_id.lock().unwrap() = live.id;
        *session.live.lock().await = Some(live);
        session.recovering.store(false, Ordering::Release);
        for (group, caps) in self.joined.list() {
            if let Err(error) = join_again(self, &group, &self.member, &caps).await {
                tracing::warn!(%group, %error, "joining again failed");
            }
        }
        session.events.report(ConnectionState::Connected);
    }

    /// A waiting connection: a spare one, or a new one.
    async fn waiting_conn(&self, session: &Session) -> Result<Conn> {
        // The server ends connections idle for `timeout`: only recent ones are reused.
        let fresh = Instant::now() - self.cfg.timeout / 2;
        let spare = {
            let mut spare = session.spare.lock().unwrap();
            spare.retain(|(_, used)| *used > fresh);
            spare.pop()
        };
        match spare {
            Some((conn, _)) => Ok(conn),
            None => {
                let mut conn = connect_one(&self.cfg).await?;
                conn.query_drop(self.layout.set_epoch())
                    .await
                    .map_err(|e| my_error("setting up a waiting connection", &e))?;
                Ok(conn)
            }
        }
    }

    fn give_back(&self, session: &Session, conn: Conn) {
        let mut spare = session.spare.lock().unwrap();
        if spare.len() < 8 && !session.stopped.load(Ordering::Acquire) {
            spare.push((conn, Instant::now()));
        }
    }

    /// Waits server-side (up to `within`) for lock `req` on a waiting connection, with the
    /// acquiring statement itself (`GET_LOCK(name, within)`): when the server grants it, the
    /// waiting connection keeps it (handing it to the session connection would let another
    /// client take it in between), and is kept with it until the release.
    async fn wait_and_take(
        &self,
        session: &Session,
        req: &LockRequest,
        within: Duration,
    ) -> Result<Option<FencingToken>> {
        let mut conn = self.waiting_conn(session).await?;
        let key = self.claim_key(session, &req.name);
        let seconds = within.as_secs_f64().max(0.001);
        let sql = self.layout.acquire_waiting();
        let params = (
            key.clone().into_bytes(),
            req.owner.as_bytes().to_vec(),
            lock_name(&req.name),
            seconds,
        );
        let attempt = async {
            conn.exec_drop(sql, params).await?;
            Ok::<_, mysql_async::Error>((conn.affected_rows(), conn.last_insert_id()))
        };
        let outcome = tokio::time::timeout(within + Duration::from_millis(500), attempt).await;
        if let Ok(Ok((affected, _))) = &outcome {
            if *affected > 0 {
                // The grant may have waited in the socket while this process was paused, past
                // the end of its connection: ask again, on the same connection, before
                // believing it.
                let check = conn.exec_first::<Option<i64>, _, _>(
                    "SELECT IS_USED_LOCK(?) = CONNECTION_ID()",
                    (lock_name(&req.name),),
                );
                let fresh = tokio::time::timeout(self.cfg.timeout / 4, check).await;
                if !matches!(fresh, Ok(Ok(Some(Some(1))))) {
                    // Dropped: the server frees whatever this connection still holds.
                    return Ok(None);
                }
            }
        }
        match outcome {
            Ok(Ok((affected, token))) if affected > 0 => {
                let id = conn.id();
                self.held.insert(req, (key, true));
                let conn = Arc::new(tokio::sync::Mutex::new(conn));
                session
                    .promoted
                    .lock()
                    .unwrap()
                    .insert(req.nonce.clone(), (conn, id));
                Ok(Some(FencingToken(token.unwrap_or(0))))
            }
            Ok(Ok(_)) => {
                self.give_back(session, conn);
                Ok(None)
            }
            Ok(Err(error)) => Err(my_error("waiting for a lock", &error)),
            // Dropped mid-wait: the server ends the connection (and any hold it got).
            Err(_) => Ok(None),
        }
    }

    /// Checks the waiting connections that hold locks; a lock whose connection is gone is
    /// reported lost (`Broken` when `break_lock` ended it).
    async fn check_promoted(&self, session: &Arc<Session>) {
        let all: Vec<(String, Arc<tokio::sync::Mutex<Conn>>, u32)> = session
            .promoted
            .lock()
            .unwrap()
            .iter()
            .map(|(n, (c, id))| (n.clone(), c.clone(), *id))
            .collect();
        let bound = self.cfg.timeout / 4;
        for (nonce, conn, id) in all {
            let Ok(mut conn) = conn.try_lock() else {
                continue;
            };
            if matches!(tokio::time::timeout(bound, conn.ping()).await, Ok(Ok(()))) {
                continue;
            }
            drop(conn);
            session.promoted.lock().unwrap().remove(&nonce);
            let (breaks, forget) = (self.layout.breaks_of(), self.layout.forget_breaks());
            let broken = self
                .run(
                    "reading breaks",
                    move |mut live| {
                        Box::pin(async move {
                            let r = async {
                                let names: Vec<Vec<u8>> = live.conn.exec(breaks, (id,)).await?;
                                live.conn.exec_drop(forget, (id,)).await?;
                                Ok(!names.is_empty())
                            }
                            .await;
                            (live, r)
                        })
                    },
                    keep,
                )
                .await
                .unwrap_or(false);
            let reason = if broken {
                LostReason::Broken
            } else {
                LostReason::SessionLost
            };
            self.held.lose(&nonce, reason);
        }
    }

    /// Closes every waiting connection that holds a lock (their locks are reported lost by
    /// the caller).
    fn drop_promoted(&self, session: &Session) {
        session.promoted.lock().unwrap().clear();
    }

    async fn group_exists(&self, group: &Id) -> Result<bool> {
        let sql = self.layout.group_exists();
        let id = digest(group.as_bytes());
        self.run(
            "reading a group",
            move |mut live| {
                Box::pin(async move {
                    let r = live.conn.exec_first::<i64, _, _>(sql, (id,)).await;
                    (live, r.map(|n| n.unwrap_or(0) > 0))
                })
            },
            keep,
        )
        .await
    }
}

/// No undo.
fn keep<T>(live: Live, _: T) -> BoxFuture<'static, Live> {
    Box::pin(async move { live })
}

/// Outcome of a join or leave statement group.
enum Change {
    Done,
    NoGroup,
    /// Join: a live member already; leave: no live member.
    Member,
}

#[async_trait]
impl Driver for MysqlDriver {
    fn scheme(&self) -> &'static str {
        "mysql"
    }

    fn facts(&self) -> &DriverFacts {
        &self.facts
    }

    fn session_timeout(&self) -> Duration {
        self.cfg.timeout / 2
    }

    async fn start(&self, events: SessionEvents) -> Result<()> {
        let (live, fold_case) = connect_session(&self.cfg, &self.layout).await?;
        let session = Arc::new(Session {
            last_id: Mutex::new(live.id),
            live: Arc::new(tokio::sync::Mutex::new(Some(live))),
            spare: Mutex::new(Vec::new()),
            promoted: Mutex::new(HashMap::new()),
            events,
            stopped: AtomicBool::new(false),
            recovering: AtomicBool::new(false),
            fold_case: AtomicBool::new(fold_case),
            tasks: Mutex::new(Vec::new()),
        });
        self.session.set(session);
        Ok(())
    }

    async fn stop(&self) -> Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        session.stopped.store(true, Ordering::Release);
        for task in session.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
        self.held.clear();
        self.claims.clear();
        self.joined.clear();
        self.drop_promoted(&session);
        let live = tokio::time::timeout(self.session_timeout(), session.live.lock())
            .await
            .ok()
            .and_then(|mut slot| slot.take());
        if let Some(live) = live {
            let _ = tokio::time::timeout(self.session_timeout(), live.conn.disconnect()).await;
        }
        let spare: Vec<(Conn, Instant)> = session.spare.lock().unwrap().drain(..).collect();
        for (conn, _) in spare {
            let _ = tokio::time::timeout(Duration::from_millis(200), conn.disconnect()).await;
        }
        Ok(())
    }

    async fn heartbeat(&self) -> Result<Option<Duration>> {
        let period = self.cfg.timeout / 4;
        let session = self.session.get()?;
        if session.events.current() == ConnectionState::Lost
            && !session.recovering.load(Ordering::Acquire)
        {
            // The core gave this session up (suspended too long): end it and start afresh.
            let stale = session.live.lock().await.take();
            drop(stale);
            self.recover(&session);
            return Err(Error::Connection(
                "the MySQL session was given up; connecting again".into(),
            ));
        }
        self.run(
            "heartbeat",
            |mut live| {
                Box::pin(async move {
                    let r = live.conn.ping().await;
                    (live, r)
                })
            },
            keep,
        )
        .await?;
        self.check_promoted(&session).await;
        Ok(Some(period))
    }

    async fn create_group(&self, group: &Id) -> Result<()> {
        let sql = self.layout.create_group();
        let (id, name) = (digest(group.as_bytes()), group.as_bytes().to_vec());
        let created = self
            .run(
                "create_group",
                move |mut live| {
                    Box::pin(async move {
                        let r = live.conn.exec_drop(sql, (id, name)).await;
                        let affected = live.conn.affected_rows();
                        (live, r.map(|()| affected))
                    })
                },
                keep,
            )
            .await?;
        if created == 1 {
            Ok(())
        } else {
            Err(group_already_exist(group))
        }
    }

    async fn delete_group(&self, group: &Id) -> Result<()> {
        let l = self.layout.clone();
        let id = digest(group.as_bytes());
        let outcome = self
            .run(
                "delete_group",
                move |mut live| {
                    Box::pin(async move {
                        let r = async {
                            let c = &mut live.conn;
                            c.query_drop("START TRANSACTION").await?;
                            let found: Option<i64> = c.exec_first(l.lock_group(), (&id,)).await?;
                            if found.is_none() {
                                c.query_drop("ROLLBACK").await?;
                                return Ok(Change::NoGroup);
                            }
                            let alive: Option<i64> = c.exec_first(l.live_count(), (&id,)).await?;
                            if alive.unwrap_or(0) > 0 {
                                c.query_drop("ROLLBACK").await?;
                                return Ok(Change::Member);
                            }
                            c.exec_drop(l.delete_group(), (&id,)).await?;
                            c.query_drop("COMMIT").await?;
                            Ok(Change::Done)
                        }
                        .await;
                        (live, r)
                    })
                },
                keep,
            )
            .await?;
        match outcome {
            Change::Done => Ok(()),
            Change::NoGroup => Err(group_not_created(group)),
            Change::Member => Err(group_not_empty(group)),
        }
    }

    async fn get_groups(&self) -> Result<BTreeSet<Id>> {
        let sql = self.layout.get_groups();
        let names = self
            .run(
                "get_groups",
                move |mut live| {
                    Box::pin(async move {
                        let r = live.conn.query::<Vec<u8>, _>(sql).await;
                        (live, r)
                    })
                },
                keep,
            )
            .await?;
        Ok(names.into_iter().map(Id::from).collect())
    }

    async fn join_group(&self, group: &Id, member: &Id, caps: &Capabilities) -> Result<()> {
        let l = self.layout.clone();
        let (gid, mid) = (digest(group.as_bytes()), digest(member.as_bytes()));
        let (raw_member, encoded) = (member.as_bytes().to_vec(), caps.to_msgpack());
        let outcome = self
            .run(
                "join_group",
                move |mut live| {
                    Box::pin(async move {
                        let session = live.session.clone();
                        let r = async {
                            let c = &mut live.conn;
                            c.query_drop("START TRANSACTION").await?;
                            let found: Option<i64> = c.exec_first(l.lock_group(), (&gid,)).await?;
                            if found.is_none() {
                                c.query_drop("ROLLBACK").await?;
                                return Ok(Change::NoGroup);
                            }
                            let alive: Option<Option<i64>> =
                                c.exec_first(l.member_alive(), (&gid, &mid)).await?;
                            if alive == Some(Some(1)) {
                                c.query_drop("ROLLBACK").await?;
                                return Ok(Change::Member);
                            }
                            c.exec_drop(
                                l.join(),
                                (&gid, &mid, raw_member, encoded, session, now_ms()),
                            )
                            .await?;
                            c.exec_drop(l.bump_group(), (&gid,)).await?;
                            c.query_drop("COMMIT").await?;
                            Ok(Change::Done)
                        }
                        .await;
                        (live, r)
                    })
                },
                keep,
            )
            .await?;
        match outcome {
            Change::Done => {
                if member == &self.member {
                    self.joined.insert(group, caps);
                }
                Ok(())
            }
            Change::NoGroup => Err(group_not_created(group)),
            Change::Member => Err(member_already_exist(group, member)),
        }
    }

    async fn leave_group(&self, group: &Id, member: &Id) -> Result<()> {
        let l = self.layout.clone();
        let (gid, mid) = (digest(group.as_bytes()), digest(member.as_bytes()));
        let outcome = self
            .run(
                "leave_group",
                move |mut live| {
                    Box::pin(async move {
                        let r = async {
                            let c = &mut live.conn;
                            c.query_drop("START TRANSACTION").await?;
                            let found: Option<i64> = c.exec_first(l.lock_group(), (&gid,)).await?;
                            if found.is_none() {
                                c.query_drop("ROLLBACK").await?;
                                return Ok(Change::NoGroup);
                            }
                            let alive: Option<Option<i64>> =
                                c.exec_first(l.member_alive(), (&gid, &mid)).await?;
                            c.exec_drop(l.leave(), (&gid, &mid)).await?;
                            if alive != Some(Some(1)) {
                                c.query_drop("COMMIT").await?;
                                return Ok(Change::Member);
                            }
                            c.exec_drop(l.bump_group(), (&gid,)).await?;
                            c.query_drop("COMMIT").await?;
                            Ok(Change::Done)
                        }
                        .await;
                        (live, r)
                    })
                },
                keep,
            )
            .await?;
        if member == &self.member {
            self.joined.remove(group);
        }
        match outcome {
            Change::Done => Ok(()),
            Change::NoGroup => Err(group_not_created(group)),
            Change::Member => Err(member_not_joined(group, member)),
        }
    }

    async fn get_members_with_capabilities(
        &self,
        group: &Id,
    ) -> Result<BTreeMap<Id, Capabilities>> {
        let sql = self.layout.members();
        let gid = digest(group.as_bytes());
        let rows = self
            .run(
                "get_members",
                move |mut live| {
                    Box::pin(async move {
                        let r = live
                            .conn
                            .exec::<(Option<Vec<u8>>, Option<Vec<u8>>), _, _>(sql, (gid,))
                            .await;
                        (live, r)
                    })
                },
                keep,
            )
            .await?;
        if rows.is_empty() {
            return Err(group_not_created(group));
        }
        let mut members = BTreeMap::new();
        for row in rows {
            if let (Some(member), Some(caps)) = row {
                members.insert(Id::from(member), Capabilities::from_msgpack(&caps)?);
            }
        }
        Ok(members)
    }

    async fn get_member_info(&self, group: &Id, member: &Id) -> Result<MemberInfo> {
        let sql = self.layout.member();
        let (gid, mid) = (digest(group.as_bytes()), digest(member.as_bytes()));
        type Found = (Option<Vec<u8>>, Option<i64>, Option<String>);
        let row = self
            .run(
                "get_member_info",
                move |mut live| {
                    Box::pin(async move {
                        let r = live.conn.exec_first::<Found, _, _>(sql, (mid, gid)).await;
                        (live, r)
                    })
                },
                keep,
            )
            .await?
            .ok_or_else(|| group_not_created(group))?;
        let (Some(caps), joined_at, session) = row else {
            return Err(member_not_joined(group, member));
        };
        let mut extra = BTreeMap::new();
        if let Some(session) = session {
            extra.insert("session".to_string(), Value::from(session));
        }
        Ok(MemberInfo {
            capabilities: Capabilities::from_msgpack(&caps)?,
            joined_at: joined_at.map(|ms| UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)),
            extra,
        })
    }

    async fn update_capabilities(
        &self,
        group: &Id,
        member: &Id,
        caps: &Capabilities,
    ) -> Result<()> {
        let sql = self.layout.update_caps();
        let (gid, mid, encoded) = (
            digest(group.as_bytes()),
            digest(member.as_bytes()),
            caps.to_msgpack(),
        );
        let (matched, _) = self
            .run(
                "update_capabilities",
                move |mut live| {
                    Box::pin(async move {
                        let r = live.conn.exec_drop(sql, (encoded, gid, mid)).await;
                        let info = live.conn.info();
                        let matched = info
                            .split_whitespace()
                            .skip_while(|w| *w != "matched:")
                            .nth(1)
                            .and_then(|n| n.parse::<u64>().ok())
                            .unwrap_or_else(|| live.conn.affected_rows());
                        (live, r.map(|()| (matched, ())))
                    })
                },
                keep,
            )
            .await?;
        if matched > 0 {
            if member == &self.member {
                self.joined.update(group, caps);
            }
            return Ok(());
        }
        if self.group_exists(group).await? {
            Err(member_not_joined(group, member))
        } else {
            Err(group_not_created(group))
        }
    }

    async fn subscribe_group(&self, group: &Id) -> Result<Option<(BTreeSet<Id>, GroupFeed)>> {
        let session = self.session.get()?;
        let mut conn = self.waiting_conn(&session).await?;
        let sql = self.layout.group_version();
        let gid = digest(group.as_bytes());
        let version = conn
            .exec_first::<i64, _, _>(sql.clone(), (gid.clone(),))
            .await
            .map_err(|e| my_error("reading a group's version", &e))?;
        let snapshot = self.get_members(group).await?;
        let (poll, resync) = (self.cfg.poll_interval, self.cfg.resync_interval);
        let (cfg, bound) = (self.cfg.clone(), self.session_timeout());
        let state = (Some(conn), version, Instant::now() + resync);
        let feed =
            futures::stream::unfold(state, move |(mut conn, mut version, mut next_resync)| {
                let (sql, gid, cfg) = (sql.clone(), gid.clone(), cfg.clone());
                async move {
                    loop {
                        tokio::time::sleep(poll).await;
                        if Instant::now() >= next_resync {
                            next_resync = Instant::now() + resync;
                            return Some((GroupChange::Resync, (conn, version, next_resync)));
                        }
                        if conn.is_none() {
                            conn = connect_one(&cfg).await.ok();
                        }
                        let Some(c) = conn.as_mut() else { continue };
                        let read = c.exec_first::<i64, _, _>(sql.clone(), (gid.clone(),));
                        match tokio::time::timeout(bound, read).await {
                            Ok(Ok(now)) if now != version => {
                                version = now;
                                return Some((GroupChange::Resync, (conn, version, next_resync)));
                            }
                            Ok(Ok(_)) => {}
                            _ => conn = None,
                        }
                    }
                }
            })
            .boxed();
        Ok(Some((snapshot, feed)))
    }

    async fn lock_try_acquire(&self, req: &LockRequest) -> Result<Option<FencingToken>> {
        debug_assert_eq!(req.mode, LockMode::Exclusive);
        let session = self.session.get()?;
        let key = self.claim_key(&session, &req.name);
        if !self.claims.claim(key.clone(), &req.nonce) {
            return Ok(None);
        }
        let sql = self.layout.acquire();
        let server_name = lock_name(&req.name);
        let (row_key, owner) = (key.clone().into_bytes(), req.owner.as_bytes().to_vec());
        let undo_name = server_name.clone();
        let attempt = self
            .run(
                "acquiring a lock",
                move |mut live| {
                    Box::pin(async move {
                        let r = live
                            .conn
                            .exec_drop(sql, (row_key, owner, server_name))
                            .await;
                        let (affected, token) =
                            (live.conn.affected_rows(), live.conn.last_insert_id());
                        (
                            live,
                            r.map(|()| (affected > 0).then_some(token.unwrap_or(0))),
                        )
                    })
                },
                move |mut live, got: Option<u64>| {
                    Box::pin(async move {
                        if got.is_some() {
                            let _ = live
                                .conn
                                .exec_drop("DO RELEASE_LOCK(?)", (undo_name,))
                                .await;
                        }
                        live
                    })
                },
            )
            .await;
        match attempt {
            Ok(Some(token)) => {
                self.held.insert(req, (key, false));
                Ok(Some(FencingToken(token)))
            }
            Ok(None) => {
                self.claims.unclaim(&key, &req.nonce);
                Ok(None)
            }
            Err(error) => {
                self.claims.unclaim(&key, &req.nonce);
                Err(error)
            }
        }
    }

    async fn lock_acquire(
        &self,
        req: &LockRequest,
        deadline: Option<Instant>,
    ) -> Result<Option<FencingToken>> {
        let session = self.session.get()?;
        loop {
            if let Some(token) = self.lock_try_acquire(req).await? {
                return Ok(Some(token));
            }
            let slice = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    left.min(self.cfg.wait_slice)
                }
                None => self.cfg.wait_slice,
            };
            let waited = match deadline {
                Some(deadline) => {
                    tokio::time::timeout_at(deadline, self.wait_and_take(&session, req, slice))
                        .await
                        .unwrap_or(Ok(None))
                }
                None => self.wait_and_take(&session, req, slice).await,
            };
            match waited {
                Ok(Some(token)) => return Ok(Some(token)),
                Ok(None) => {}
                Err(error) => {
                    // No waiting connection: a short sleep before the next try.
                    tracing::debug!(%error, "waiting server-side failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn lock_release(&self, req: &LockRequest) -> Result<bool> {
        let Some(held) = self.held.remove(&req.nonce) else {
            return Ok(false);
        };
        let (key, promoted) = held.record;
        let server_name = lock_name(&req.name);
        if promoted {
            let session = self.session.get()?;
            let Some((conn, _)) = session.promoted.lock().unwrap().remove(&req.nonce) else {
                return Ok(false);
            };
            let mut guard = conn.lock().await;
            let released = guard
                .exec_first::<Option<i64>, _, _>("SELECT RELEASE_LOCK(?)", (server_name,))
                .await;
            drop(guard);
            return match released {
                Ok(answer) => {
                    // Free again: kept for the next wait.
                    if let Ok(conn) = Arc::try_unwrap(conn) {
                        self.give_back(&session, conn.into_inner());
                    }
                    Ok(answer.flatten() == Some(1))
                }
                // The connection is gone, and the lock with it.
                Err(error) if is_connection_error(&error) => Ok(false),
                Err(error) => Err(my_error("releasing a lock", &error)),
            };
        }
        let released = self
            .run(
                "releasing a lock",
                move |mut live| {
                    Box::pin(async move {
                        let r = live
                            .conn
                            .exec_first::<Option<i64>, _, _>(
                                "SELECT RELEASE_LOCK(?)",
                                (server_name,),
                            )
                            .await;
                        (live, r.map(|v| v.flatten() == Some(1)))
                    })
                },
                keep,
            )
            .await;
        self.claims.unclaim(&key, &req.nonce);
        match released {
            Ok(released) => Ok(released),
            // The session is gone, and the lock with it.
            Err(Error::Connection(_)) => Ok(false),
            Err(error) => Err(error),
        }
    }

    async fn lock_refresh(&self, req: &LockRequest) -> Result<bool> {
        Ok(self.held.contains(&req.nonce))
    }

    async fn lock_break(&self, name: &Id) -> Result<bool> {
        let session = self.session.get()?;
        let key = self.claim_key(&session, name);
        let server_name = lock_name(name);
        let l = self.layout.clone();
        let row_key = key.clone().into_bytes();
        let found_name = server_name.clone();
        let (holder, mine) = self
            .run(
                "breaking a lock",
                move |mut live| {
                    Box::pin(async move {
                        let own = live.id;
                        let r = async {
                            let c = &mut live.conn;
                            let holder: Option<Option<u64>> = c
                                .exec_first("SELECT IS_USED_LOCK(?)", (&found_name,))
                                .await?;
                            let holder = holder.flatten();
                            if let Some(id) = holder {
                                if id != u64::from(own) {
                                    c.exec_drop(l.record_break(), (id, &row_key)).await?;
                                    c.query_drop(format!("KILL CONNECTION {id}")).await?;
                                }
                            }
                            Ok((holder, holder == Some(u64::from(own))))
                        }
                        .await;
                        (live, r)
                    })
                },
                keep,
            )
            .await?;
        if holder.is_none() {
            return Ok(false);
        }
        if mine {
            if let Some(nonce) = self.claims.holder(&key) {
                if self.held.lose(&nonce, LostReason::Broken).is_some() {
                    let release_name = server_name.clone();
                    let _ = self
                        .run(
                            "giving up a broken lock",
                            move |mut live| {
                                Box::pin(async move {
                                    let r = live
                                        .conn
                                        .exec_drop("DO RELEASE_LOCK(?)", (release_name,))
                                        .await;
                                    (live, r)
                                })
                            },
                            keep,
                        )
                        .await;
                    self.claims.unclaim(&key, &nonce);
                }
            }
            return Ok(true);
        }
        // Ended: the server frees the lock as the connection goes.
        let deadline = Instant::now() + self.cfg.timeout;
        while Instant::now() < deadline {
            let free = self
                .run(
                    "breaking a lock",
                    {
                        let server_name = server_name.clone();
                        move |mut live| {
                            Box::pin(async move {
                                let r = live
                                    .conn
                                    .exec_first::<Option<i64>, _, _>(
                                        "SELECT IS_FREE_LOCK(?)",
                                        (server_name,),
                                    )
                                    .await;
                                (live, r.map(|v| v.flatten() == Some(1)))
                            })
                        }
                    },
                    keep,
                )
                .await?;
            if free {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(true)
    }

    async fn lock_holder(&self, name: &Id) -> Result<Option<Id>> {
        let session = self.session.get()?;
        let key = self.claim_key(&session, name).into_bytes();
        let server_name = lock_name(name);
        let sql = self.layout.holder();
        type Found = (Option<u64>, Option<(Option<Vec<u8>>, Option<u64>)>);
        let (holder, row): Found = self
            .run(
                "reading a lock's holder",
                move |mut live| {
                    Box::pin(async move {
                        let r = async {
                            let c = &mut live.conn;
                            let holder: Option<Option<u64>> = c
                                .exec_first("SELECT IS_USED_LOCK(?)", (server_name,))
                                .await?;
                            let row: Option<(Option<Vec<u8>>, Option<u64>)> =
                                c.exec_first(sql, (key,)).await?;
                            Ok((holder.flatten(), row))
                        }
                        .await;
                        (live, r)
                    })
                },
                keep,
            )
            .await?;
        let Some(conn_id) = holder else {
            return Ok(None);
        };
        match row {
            Some((Some(member), Some(recorded))) if recorded == conn_id => {
                Ok(Some(Id::from(member)))
            }
            _ => Err(Error::Backend {
                driver: "mysql",
                message: format!(
                    "lock {name} is held by a client that records no holder (such as Python tooz)"
                ),
            }),
        }
    }
}

impl std::fmt::Debug for MysqlDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlDriver")
            .field("config", &self.cfg)
            .field("member", &self.member)
            .finish()
    }
}
