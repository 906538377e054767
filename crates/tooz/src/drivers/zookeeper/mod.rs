//! `zookeeper://` (alias `kazoo://`): Apache ZooKeeper, wire-compatible with Python tooz's
//! kazoo driver.
//!
//! # URL
//!
//! `zookeeper://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...][/CHROOT][?OPTION=VALUE...]`
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `timeout` | `10` | session timeout in seconds (asked of the server, which may clamp it) |
//! | `namespace` | `tooz` | the node under which everything lives |
//! | `hosts` | — | more `host:port`s, repeatable (Python tooz's form of a host list) |
//! | `randomize_hosts` | `true` | try the hosts in random order |
//! | `connection_timeout` | 2/5 of `timeout` | idle time after which a connection counts as broken |
//! | `use_ssl` | `false` | TLS to every server (cargo feature `zookeeper-tls`; without it `true` is refused) |
//! | `ca` | the system's bundle | PEM file of the CA certificates the servers' must chain to |
//! | `certfile`, `keyfile` | — | PEM client certificate and its unencrypted key, for servers that require one |
//! | `verify_certs` | `true` | `false` skips the host name check (the chain is still checked) |
//! | `keyfile_password` | — | refused: encrypted keys are not supported |
//! | `handler` | — | Python tooz's kazoo handler: only `threading`, ignored |
//! | `poll_interval`, `lock_timeout`, `membership_timeout`, `leader_timeout` | — | common options; nothing here uses them |
//!
//! Unknown options are errors. `USER:PASSWORD@` authenticates with the `digest` scheme and
//! creates every node with the ACL "that user, all rights", as Python tooz does. The chroot
//! is a Rust addition (Python tooz ignores the URL path): it is created if missing, and a
//! Python peer only shares nodes with a Rust process that uses no chroot (or the same
//! connect string with kazoo's own chroot syntax).
//!
//! # Layout (Python tooz's)
//!
//! | path | kind | data |
//! |---|---|---|
//! | `/<ns>` | persistent | empty |
//! | `/<ns>/<G>` | persistent (group) | empty |
//! | `/<ns>/<G>/<M>` | ephemeral (member) | msgpack of the capabilities |
//! | `/<ns>/<G>/leader` | persistent, parent of the election queue | empty |
//! | `/<ns>/<G>/leader/<32 hex>__lock__<10-digit seq>` | ephemeral sequential (candidate) | member id |
//! | `/<ns>/locks/<L>` | persistent, parent of the lock queue | empty |
//! | `/<ns>/locks/<L>/<32 hex>__lock__<10-digit seq>` | ephemeral sequential (contender) | member id |
//!
//! Ids are bytes; an id that is a valid node name (UTF-8, no `/`, not `.` or `..`, no
//! character ZooKeeper refuses) is stored as itself, so plain ASCII ids give exactly Python's
//! paths. Every other id, and the member id `leader`, the group id `locks` and ids starting
//! with `~b64~`, is stored as `~b64~` + unpadded URL-safe base64 of its bytes (see
//! [`paths::encode_name`]): any byte string works, and Python peers see the encoded name.
//!
//! # Guarantees
//!
//! * Sessions, not timeouts: members, candidates and lock contenders are ephemeral nodes
//!   that live exactly as long as the session (`NON_TIMEOUT_BASED`). No heartbeat is needed:
//!   the client pings the server itself.
//! * Locks follow kazoo's recipe (module `lock`): FIFO, each waiter watches only its
//!   predecessor, Python and Rust contenders share one queue. Fencing tokens are the
//!   contender node's `czxid`, which ZooKeeper makes strictly increasing.
//! * Elections are the same recipe on `/<ns>/<G>/leader` (Python tooz's): Rust and Python
//!   candidates exclude each other. Unlike Python tooz, `leader` is never listed as a member
//!   nor reported by watchers, `locks` is never listed as a group, `get_leader` creates no
//!   node, and deleting a group whose only child is an empty election node succeeds.
//! * Reads (members, capabilities, groups, a lock's holder) are preceded by a `sync`, so
//!   that a read started after another client's write completed sees it, whichever server of
//!   the ensemble each client is on. Writes and lock queues are ordered by the leader.
//! * `get_member_info` gives the member node's creation time, and in `extra` its
//!   `updated_at` (seconds since the epoch), `session`, `version` and `czxid`.
//! * Watches are pushed (module `watch`): one persistent recursive watch per watched group.
//! * Connection states (module `session`): `Suspended` when the connection drops, `Reconnected`
//!   when it comes back with the same session (to any server of the ensemble), `Lost` when
//!   the session expires: every lock and leadership of the session is then reported lost,
//!   a new session is made, the groups joined before are joined again with the same
//!   capabilities, and `Connected` is reported.
//!
//! # Limits
//!
//! * TLS needs the `zookeeper-tls` cargo feature: the client library's TLS support also
//!   compiles the aws-lc-rs crypto provider (C code, built by the system compiler). The driver
//!   installs ring as the process's rustls provider if the application set none. The server
//!   needs ZooKeeper's Netty connection factory and a `secureClientPort`. Python tooz's
//!   `verify_certs=false` (no check at all) is weaker than what is offered here: only the
//!   host name check can be skipped, and the certificate must still chain to `ca`.
//! * Shared locks: kazoo's lock has no shared mode here (not implemented).
//! * A lock's holder may not know it lost the lock until its client notices the session
//!   expired: from `Suspended` on, treat what is held as at risk (and use fencing tokens).
//! * Persistent recursive watches need ZooKeeper 3.6 or later, and the server cannot remove
//!   one of them alone (ZOOKEEPER-4472): a watch dropped by the application may keep being
//!   served (and ignored) until the session ends.
//! * A blocked acquire whose session expires (or whose request fails on the wire) loses its
//!   place in the queue: it waits for the session to be back (a new one if need be) and
//!   queues again at the back, until its deadline.

mod lock;
mod options;
pub mod paths;
mod session;
mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::time::Instant;
use zookeeper_client::CreateMode;

use super::common::errors::{
    group_already_exist, group_not_created, group_not_empty, member_already_exist,
    member_not_joined,
};
use super::common::{HeldLocks, JoinedGroups};
use crate::characteristics::{Characteristic as C, Characteristics};
use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::types::{
    Capabilities, DriverFacts, FencingToken, GroupFeed, LockMode, LockRequest, LostReason,
    MemberInfo, SessionEvents, Support, Value, DEFAULT_POLL_INTERVAL,
};
use crate::url::DriverUrl;
use options::Config;
use paths::{decode_name, Layout, LEADER, LOCKS};
use session::Conn;

pub(crate) const FACTS: DriverFacts = DriverFacts {
    characteristics: Characteristics::of(&[
        C::NonTimeoutBased,
        C::DistributedAcrossThreads,
        C::DistributedAcrossProcesses,
        C::DistributedAcrossHosts,
        C::Sequential,
    ]),
    support: Support {
        shared_locks: false,
        ..Support::ALL
    },
    poll_interval: DEFAULT_POLL_INTERVAL,
    options: &options::OPTIONS,
};

pub(crate) fn build(url: &DriverUrl, member: &Id) -> Result<Arc<dyn Driver>> {
    let config = Config::from_url(url)?;
    let facts = FACTS.with_options(&url.options("zookeeper", FACTS.options)?);
    Ok(Arc::new(ZooKeeperDriver::new(
        config,
        facts,
        member.clone(),
    )))
}

/// Maps a client error to the crate's error.
pub(crate) fn zk_error(error: zookeeper_client::Error) -> Error {
    use zookeeper_client::Error as Z;
    match error {
        Z::ConnectionLoss
        | Z::NoHosts
        | Z::Timeout
        | Z::SessionExpired
        | Z::SessionMoved
        | Z::ClientClosed
        | Z::AuthFailed
        // The client library's own errors come from its connection layer (I/O errors, "no
        // response from connection in ..."): the request's outcome is unknown.
        | Z::Custom(_) => Error::Connection(format!("ZooKeeper: {error}")),
        other => Error::Backend {
            driver: "zookeeper",
            message: other.to_string(),
        },
    }
}

/// Member nodes read per multi-read request by `get_members_with_capabilities`.
const READ_BATCH: usize = 256;

/// A member node's capabilities; a node made without data (by another tool) has none.
fn decode_caps(data: &[u8]) -> Result<Capabilities> {
    if data.is_empty() {
        return Ok(Capabilities::none());
    }
    Capabilities::from_msgpack(data)
}

/// State shared by the driver and its background tasks.
pub(crate) struct Shared {
    pub(crate) facts: DriverFacts,
    pub(crate) layout: Layout,
    pub(crate) member: Id,
    pub(crate) conn: Conn,
    /// Groups joined by this session, with their capabilities (re-joined after an expiry).
    pub(crate) joined: JoinedGroups,
    /// Locks held, by acquisition nonce.
    pub(crate) held: HeldLocks<lock::Held>,
    pub(crate) tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Shared {
    /// The current session's client after a `sync`: what it reads next includes every write
    /// that completed, from any client, before this call (a server of the ensemble may
    /// otherwise lag behind the leader).
    pub(crate) async fn synced(&self) -> Result<session::Live> {
        let live = self.conn.live()?;
        live.client
            .sync(self.layout.root())
            .await
            .map_err(zk_error)?;
        Ok(live)
    }

    /// The members of `group` (the election node is not one).
    pub(crate) async fn members(&self, group: &Id) -> Result<BTreeSet<Id>> {
        let live = self.synced().await?;
        match live.client.list_children(&self.layout.group(group)).await {
            Ok(children) => Ok(children
                .iter()
                .filter(|c| c.as_str() != LEADER)
                .map(|c| decode_name(c))
                .collect()),
            Err(zookeeper_client::Error::NoNode) => Err(group_not_created(group)),
            Err(error) => Err(zk_error(error)),
        }
    }

    /// The session is over: every held lock is lost.
    pub(crate) fn session_ended(&self, reason: LostReason) {
        self.held.lose_all(reason);
    }

    /// Deletes the nodes of locks that were reported lost (the core gave up on a suspended
    /// session), now that the same session is back.
    pub(crate) fn drop_lost_holds(self: &Arc<Self>) {
        let Ok(live) = self.conn.live() else { return };
        let stale = self.held.remove_lost();
        for h in stale.iter().filter(|h| h.generation == live.generation) {
            lock::spawn_cleanup(self, h.generation, lock::contender_place(&h.path));
        }
    }

    /// Joins again, in the new session, the groups the previous one (`old_session`) had
    /// joined. A member node the old session still owns (the server may not have expired it
    /// yet) is waited for, bounded by the session timeout.
    pub(crate) async fn rejoin(&self, old_session: i64) {
        let Ok(live) = self.conn.live() else { return };
        let joined = self.joined.list();
        let options = self.conn.options(CreateMode::Ephemeral);
        for (group, caps) in joined {
            let path = self.layout.member(&group, &self.member);
            let mut created = live
                .client
                .create(&path, &caps.to_msgpack(), &options)
                .await;
            if created == Err(zookeeper_client::Error::NodeExists) {
                if let Ok((Some(stat), watcher)) = live.client.check_and_watch_stat(&path).await {
                    if stat.ephemeral_owner == old_session {
                        let bound = 2 * self.conn.session_timeout();
                        let _ = tokio::time::timeout(bound, watcher.changed()).await;
                        created = live
                            .client
                            .create(&path, &caps.to_msgpack(), &options)
                            .await;
                    }
                }
            }
            match created {
                Ok(_) => tracing::info!(%group, "joined the group again after a session expiry"),
                Err(error) => {
                    tracing::warn!(%group, %error, "cannot join the group again after a session expiry");
                    if error == zookeeper_client::Error::NoNode {
                        self.joined.remove(&group);
                    }
                }
            }
        }
    }
}

/// The ZooKeeper driver. See the module docs.
pub struct ZooKeeperDriver {
    shared: Arc<Shared>,
}

impl ZooKeeperDriver {
    fn new(config: Config, facts: DriverFacts, member: Id) -> Self {
        ZooKeeperDriver {
            shared: Arc::new(Shared {
                facts,
                layout: Layout::new(&config.namespace),
                member,
                conn: Conn::new(config),
                joined: JoinedGroups::default(),
                held: HeldLocks::default(),
                tasks: Mutex::new(Vec::new()),
            }),
        }
    }

    fn abort_tasks(&self) {
        for task in self.shared.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    async fn data_of(&self, group: &Id, member: &Id) -> Result<(Vec<u8>, zookeeper_client::Stat)> {
        let live = self.shared.synced().await?;
        let path = self.shared.layout.member(group, member);
        match live.client.get_data(&path).await {
            Ok(found) => Ok(found),
            Err(zookeeper_client::Error::NoNode) => Err(self.missing_member(group, member).await),
            Err(error) => Err(zk_error(error)),
        }
    }

    /// `GroupNotCreated` or `MemberNotJoined`, whichever is the case.
    async fn missing_member(&self, group: &Id, member: &Id) -> Error {
        let exists = match self.shared.conn.live() {
            Ok(live) => {
                live.client
                    .check_stat(&self.shared.layout.group(group))
                    .await
            }
            Err(error) => return error,
        };
        match exists {
            Ok(None) => group_not_created(group),
            _ => member_not_joined(group, member),
        }
    }
}

impl Drop for ZooKeeperDriver {
    fn drop(&mut self) {
        self.abort_tasks();
    }
}

fn millis_to_time(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

#[async_trait]
impl Driver for ZooKeeperDriver {
    fn scheme(&self) -> &'static str {
        "zookeeper"
    }

    fn facts(&self) -> &DriverFacts {
        &self.shared.facts
    }

    fn session_timeout(&self) -> Duration {
        self.shared.conn.session_timeout()
    }

    async fn start(&self, events: SessionEvents) -> Result<()> {
        let client = self.shared.conn.connect(true).await?;
        let generation = self.shared.conn.install(client);
        let task = tokio::spawn(session::supervise(
            Arc::downgrade(&self.shared),
            events,
            generation,
        ));
        session::track(&self.shared.tasks, task);
        Ok(())
    }

    async fn stop(&self) -> Result<()> {
        self.abort_tasks();
        self.shared.joined.clear();
        self.shared.held.clear();
        self.shared.conn.stop().await;
        Ok(())
    }

    async fn create_group(&self, group: &Id) -> Result<()> {
        let live = self.shared.conn.live()?;
        let path = self.shared.layout.group(group);
        let options = self.shared.conn.options(CreateMode::Persistent);
        for attempt in 0..2 {
            match live.client.create(&path, &[], &options).await {
                Ok(_) => return Ok(()),
                Err(zookeeper_client::Error::NodeExists) => return Err(group_already_exist(group)),
                Err(zookeeper_client::Error::NoNode) if attempt == 0 => {
                    // The namespace was deleted under us: make it again.
                    live.client
                        .mkdir(self.shared.layout.root(), &options)
                        .await
                        .map_err(zk_error)?;
                }
                Err(error) => return Err(zk_error(error)),
            }
        }
        Err(Error::Backend {
            driver: "zookeeper",
            message: format!("namespace {} keeps vanishing", self.shared.layout.root()),
        })
    }

    async fn delete_group(&self, group: &Id) -> Result<()> {
        let live = self.shared.conn.live()?;
        let path = self.shared.layout.group(group);
        match live.client.delete(&path, None).await {
            Ok(()) => Ok(()),
            Err(zookeeper_client::Error::NoNode) => Err(group_not_created(group)),
            Err(zookeeper_client::Error::NotEmpty) => {
                // Only an empty election node left? Then the group is empty: delete both at once.
                let not_empty = || group_not_empty(group);
                let children = live.client.list_children(&path).await.map_err(zk_error)?;
                if children != [LEADER] {
                    return Err(not_empty());
                }
                let mut multi = live.client.new_multi_writer();
                let leader = format!("{path}/{LEADER}");
                multi.add_delete(&leader, None).map_err(zk_error)?;
                multi.add_delete(&path, None).map_err(zk_error)?;
                match multi.commit().await {
                    Ok(_) => Ok(()),
                    Err(zookeeper_client::MultiWriteError::OperationFailed { .. }) => {
                        Err(not_empty())
                    }
                    Err(error) => Err(zk_error(error.into())),
                }
            }
            Err(error) => Err(zk_error(error)),
        }
    }

    async fn get_groups(&self) -> Result<BTreeSet<Id>> {
        let live = self.shared.synced().await?;
        let children = live
            .client
            .list_children(self.shared.layout.root())
            .await
            .map_err(zk_error)?;
        Ok(children
            .iter()
            .filter(|c| c.as_str() != LOCKS)
            .map(|c| decode_name(c))
            .collect())
    }

    async fn join_group(&self, group: &Id, member: &Id, caps: &Capabilities) -> Result<()> {
        let live = self.shared.conn.live()?;
        let path = self.shared.layout.member(group, member);
        let options = self.shared.conn.options(CreateMode::Ephemeral);
        match live
            .client
            .create(&path, &caps.to_msgpack(), &options)
            .await
        {
            Ok(_) => {
                if member == &self.shared.member {
                    self.shared.joined.insert(group, caps);
                }
                Ok(())
            }
            Err(zookeeper_client::Error::NodeExists) => Err(member_already_exist(group, member)),
            Err(zookeeper_client::Error::NoNode) => Err(group_not_created(group)),
            Err(error) => Err(zk_error(error)),
        }
    }

    async fn leave_group(&self, group: &Id, member: &Id) -> Result<()> {
        let live = self.shared.conn.live()?;
        let path = self.shared.layout.member(group, member);
        match live.client.delete(&path, None).await {
            Ok(()) => {
                self.shared.joined.remove(group);
                Ok(())
            }
            Err(zookeeper_client::Error::NoNode) => {
                self.shared.joined.remove(group);
                Err(self.missing_member(group, member).await)
            }
            Err(error) => Err(zk_error(error)),
        }
    }

    async fn get_members(&self, group: &Id) -> Result<BTreeSet<Id>> {
        self.shared.members(group).await
    }

    async fn get_members_with_capabilities(
        &self,
        group: &Id,
    ) -> Result<BTreeMap<Id, Capabilities>> {
        let members = self.shared.members(group).await?;
        let live = self.shared.conn.live()?;
        let layout = &self.shared.layout;
        let members: Vec<Id> = members.into_iter().collect();
        // Multi-reads of READ_BATCH nodes each, all sent before the first answer is awaited.
        let mut batches = Vec::new();
        for chunk in members.chunks(READ_BATCH) {
            let mut reader = live.client.new_multi_reader();
            for member in chunk {
                reader
                    .add_get_data(&layout.member(group, member))
                    .map_err(zk_error)?;
            }
            batches.push(reader.commit());
        }
        let answers = futures::future::try_join_all(batches)
            .await
            .map_err(zk_error)?;
        let mut out = BTreeMap::new();
        for (member, answer) in members.into_iter().zip(answers.into_iter().flatten()) {
            match answer {
                zookeeper_client::MultiReadResult::Data { data, .. } => {
                    out.insert(member, decode_caps(&data)?);
                }
                zookeeper_client::MultiReadResult::Error {
                    err: zookeeper_client::Error::NoNode,
                } => {} // left meanwhile
                zookeeper_client::MultiReadResult::Error { err } => return Err(zk_error(err)),
                other => {
                    return Err(Error::Backend {
                        driver: "zookeeper",
                        message: format!("unexpected multi-read answer {other:?}"),
                    })
                }
            }
        }
        Ok(out)
    }

    async fn get_member_capabilities(&self, group: &Id, member: &Id) -> Result<Capabilities> {
        let (data, _) = self.data_of(group, member).await?;
        decode_caps(&data)
    }

    async fn get_member_info(&self, group: &Id, member: &Id) -> Result<MemberInfo> {
        let (data, stat) = self.data_of(group, member).await?;
        let updated = Duration::from_millis(stat.mtime.max(0) as u64).as_secs_f64();
        Ok(MemberInfo {
            capabilities: decode_caps(&data)?,
            joined_at: Some(millis_to_time(stat.ctime)),
            extra: BTreeMap::from([
                ("updated_at".to_string(), Value::F64(updated)),
                ("session".to_string(), Value::from(stat.ephemeral_owner)),
                ("version".to_string(), Value::from(stat.version)),
                ("czxid".to_string(), Value::from(stat.czxid)),
            ]),
        })
    }

    async fn update_capabilities(
        &self,
        group: &Id,
        member: &Id,
        caps: &Capabilities,
    ) -> Result<()> {
        let live = self.shared.conn.live()?;
        let path = self.shared.layout.member(group, member);
        match live.client.set_data(&path, &caps.to_msgpack(), None).await {
            Ok(_) => {
                if member == &self.shared.member {
                    self.shared.joined.update(group, caps);
                }
                Ok(())
            }
            Err(zookeeper_client::Error::NoNode) => Err(self.missing_member(group, member).await),
            Err(error) => Err(zk_error(error)),
        }
    }

    async fn subscribe_group(&self, group: &Id) -> Result<Option<(BTreeSet<Id>, GroupFeed)>> {
        watch::subscribe(&self.shared, group).await.map(Some)
    }

    async fn lock_try_acquire(&self, req: &LockRequest) -> Result<Option<FencingToken>> {
        check_mode(req)?;
        lock::acquire(&self.shared, req, lock::Wait::No).await
    }

    async fn lock_acquire(
        &self,
        req: &LockRequest,
        deadline: Option<Instant>,
    ) -> Result<Option<FencingToken>> {
        check_mode(req)?;
        let wait = deadline.map_or(lock::Wait::Forever, lock::Wait::Until);
        lock::acquire(&self.shared, req, wait).await
    }

    async fn lock_release(&self, req: &LockRequest) -> Result<bool> {
        lock::release(&self.shared, req).await
    }

    async fn lock_break(&self, name: &Id) -> Result<bool> {
        lock::break_lock(&self.shared, name).await
    }

    async fn lock_holder(&self, name: &Id) -> Result<Option<Id>> {
        lock::holder(&self.shared, name).await
    }

    fn leader_lock_name(&self, group: &Id) -> Id {
        Layout::leader_lock_name(group)
    }
}

fn check_mode(req: &LockRequest) -> Result<()> {
    match req.mode {
        LockMode::Exclusive => Ok(()),
        LockMode::Shared => Err(Error::NotImplemented {
            driver: "zookeeper",
            operation: "shared locks",
            reason: "kazoo's lock recipe has no shared mode",
        }),
    }
}
