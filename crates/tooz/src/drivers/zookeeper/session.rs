//! The ZooKeeper session: connecting, watching its state, and re-creating it after expiry.
//!
//! The client library reconnects by itself while the session lives (to the same server or
//! another one of the ensemble) and reports `Disconnected` / `SyncConnected`; those become
//! `Suspended` / `Reconnected`. A terminal state (`Expired`, or the client's own verdict after
//! 7/5 of the session timeout without a server) ends the session: every lock and leadership
//! it held is reported lost, `Lost` is reported, and a new session is made, the groups joined
//! before are joined again with the same capabilities, and `Connected` is reported.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock, Weak};
use std::time::Duration;

use tokio::sync::watch;
use zookeeper_client::{Acl, Acls, AuthId, Client, CreateMode, Permission, SessionState};

use super::options::Config;
use super::paths::digest_id;
use super::{zk_error, Shared};
use crate::error::{Error, Result};
use crate::types::LostReason;
use crate::types::{ConnectionState, SessionEvents};

/// Longest pause between two attempts to make a new session.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long `stop` waits for the server to confirm the session is closed.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// The current client and which session (counted from 1) it is.
#[derive(Clone)]
pub struct Live {
    /// The client of the current session.
    pub client: Client,
    /// 1 for the first session, +1 for each re-created one.
    pub generation: u64,
}

/// Connection state shared by the driver's operations and background tasks.
pub struct Conn {
    config: Config,
    acls: Vec<Acl>,
    live: RwLock<Option<Live>>,
    generation: watch::Sender<u64>,
    stopped: AtomicBool,
    negotiated: Mutex<Option<Duration>>,
}

fn not_connected() -> Error {
    Error::Connection("no ZooKeeper session (not started, stopped, or being re-created)".into())
}

impl Conn {
    /// A connection manager for `config` (no I/O).
    pub fn new(config: Config) -> Self {
        let acls = match &config.digest {
            Some((user, password)) => vec![Acl::new(
                Permission::ALL,
                AuthId::new("digest", &digest_id(user, password)),
            )],
            None => vec![Acl::new(Permission::ALL, AuthId::anyone())],
        };
        Conn {
            config,
            acls,
            live: RwLock::new(None),
            generation: watch::channel(0).0,
            stopped: AtomicBool::new(true),
            negotiated: Mutex::new(None),
        }
    }

    /// The ACL every node is created with (open, or the URL user's digest with all rights).
    pub fn acls(&self) -> Acls<'_> {
        Acls::new(&self.acls)
    }

    /// Creation options for `mode` with the driver's ACL.
    pub fn options(&self, mode: CreateMode) -> zookeeper_client::CreateOptions<'_> {
        mode.with_acls(self.acls())
    }

    /// The current session's client, or a connection error.
    pub fn live(&self) -> Result<Live> {
        self.live.read().unwrap().clone().ok_or_else(not_connected)
    }

    /// The generation of the current session, 0 before the first.
    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// A receiver of session generations (it changes each time a new session is made).
    pub fn generations(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// True after `stop` (and before `start`).
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// The session timeout the server granted, or the one asked for.
    pub fn session_timeout(&self) -> Duration {
        self.negotiated
            .lock()
            .unwrap()
            .unwrap_or(self.config.timeout)
    }

    /// Makes a session, creates the chroot and the namespace, and returns its client.
    /// `eager`: give up once every host was tried (at start) rather than retrying until the
    /// session timeout.
    pub async fn connect(&self, eager: bool) -> Result<Client> {
        let config = &self.config;
        let mut connector = Client::connector().with_session_timeout(config.timeout);
        if let Some(timeout) = config.connection_timeout {
            connector = connector.with_connection_timeout(timeout);
        }
        if let Some((user, password)) = &config.digest {
            connector = connector.with_auth("digest", format!("{user}:{password}").as_bytes());
        }
        if eager {
            connector = connector.with_fail_eagerly();
        }
        let hosts = config.connect_string();
        #[cfg(feature = "zookeeper-tls")]
        let connect = match &config.tls {
            Some(tls) => {
                crate::drivers::tls::ensure_default_provider();
                futures::future::Either::Left(
                    connector.with_tls(tls.clone()).secure_connect(&hosts),
                )
            }
            None => futures::future::Either::Right(connector.connect(&hosts)),
        };
        #[cfg(not(feature = "zookeeper-tls"))]
        let connect = connector.connect(&hosts);
        let client = tokio::time::timeout(config.timeout + Duration::from_secs(1), connect)
            .await
            .map_err(|_| Error::Connection("timed out connecting to ZooKeeper".into()))?
            .map_err(|e| Error::Connection(format!("cannot connect to ZooKeeper: {e}")))?;
        let dir = self.options(CreateMode::Persistent);
        let client = if config.chroot.is_empty() {
            client
        } else {
            client.mkdir(&config.chroot, &dir).await.map_err(zk_error)?;
            client
                .chroot(config.chroot.clone())
                .map_err(|_| Error::Connection("cannot enter the chroot".into()))?
        };
        let root = format!("/{}", config.namespace);
        client.mkdir(&root, &dir).await.map_err(zk_error)?;
        *self.negotiated.lock().unwrap() = Some(client.session_timeout());
        Ok(client)
    }

    /// Installs `client` as the current session; returns its generation.
    pub fn install(&self, client: Client) -> u64 {
        let mut live = self.live.write().unwrap();
        let generation = self.generation() + 1;
        *live = Some(Live { client, generation });
        self.stopped.store(false, Ordering::Release);
        self.generation.send_replace(generation);
        generation
    }

    /// Forgets session `generation` (if still current): its client is dropped.
    fn retire(&self, generation: u64) {
        let mut live = self.live.write().unwrap();
        if live.as_ref().is_some_and(|l| l.generation == generation) {
            *live = None;
        }
    }

    /// Closes the session: waits (bounded) until the server confirms it.
    pub async fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        let live = self.live.write().unwrap().take();
        // Wake everything waiting for a new session.
        self.generation.send_modify(|_| {});
        if let Some(live) = live {
            let mut states = live.client.state_watcher();
            drop(live);
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                while !states.state().is_terminated() {
                    states.changed().await;
                }
            })
            .await;
        }
    }
}

/// Follows the session's state until the driver stops; see the module docs.
pub async fn supervise(shared: Weak<Shared>, events: SessionEvents, mut generation: u64) {
    let Some(mut states) = shared
        .upgrade()
        .and_then(|s| s.conn.live().ok())
        .map(|l| l.client.state_watcher())
    else {
        return;
    };
    loop {
        let state = states.changed().await;
        let Some(s) = shared.upgrade() else { return };
        if s.conn.is_stopped() || s.conn.generation() != generation {
            return;
        }
        match state {
            SessionState::Disconnected => {
                tracing::info!("ZooKeeper connection lost; session suspended");
                events.report(ConnectionState::Suspended);
            }
            SessionState::SyncConnected | SessionState::ConnectedReadOnly => {
                if events.current() != ConnectionState::Connected {
                    tracing::info!("ZooKeeper connection back; same session");
                    events.report(ConnectionState::Reconnected);
                }
                s.drop_lost_holds();
            }
            SessionState::Expired | SessionState::AuthFailed | SessionState::Closed => {
                tracing::warn!(?state, "ZooKeeper session ended; making a new one");
                let old_session = s.conn.live().map_or(0, |l| l.client.session_id().0);
                s.conn.retire(generation);
                s.session_ended(LostReason::SessionLost);
                events.report(ConnectionState::Lost);
                drop(s);
                let Some(next) = recreate(&shared).await else {
                    return;
                };
                generation = next.0;
                states = next.1;
                if let Some(s) = shared.upgrade() {
                    s.rejoin(old_session).await;
                }
                events.report(ConnectionState::Connected);
            }
        }
    }
}

/// Makes sessions until one works (or the driver stops); returns its generation and state
/// watcher.
async fn recreate(shared: &Weak<Shared>) -> Option<(u64, zookeeper_client::StateWatcher)> {
    let mut backoff = Duration::from_millis(50);
    loop {
        let s = shared.upgrade()?;
        if s.conn.is_stopped() {
            return None;
        }
        match s.conn.connect(true).await {
            Ok(client) => {
                if s.conn.is_stopped() {
                    return None;
                }
                let states = client.state_watcher();
                let generation = s.conn.install(client);
                tracing::info!(generation, "new ZooKeeper session");
                return Some((generation, states));
            }
            Err(error) => tracing::warn!(%error, "cannot make a new ZooKeeper session yet"),
        }
        drop(s);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Keeps a spawned task's handle so that `stop` can end it.
pub fn track(tasks: &Mutex<Vec<tokio::task::JoinHandle<()>>>, task: tokio::task::JoinHandle<()>) {
    let mut tasks = tasks.lock().unwrap();
    tasks.retain(|t| !t.is_finished());
    tasks.push(task);
}
