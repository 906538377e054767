//! `consul://`: HashiCorp Consul's sessions and KV store, over the HTTP client the etcd
//! drivers use.
//!
//! Keys are Python tooz 8.1's (see `layout`), so that a Python process and ours exclude each
//! other on a lock. Beyond Python tooz: members bound to the session (no ghost members),
//! pushed watches, leader election, `get_leader`, fencing tokens, `lost()`, and a session
//! that is made again when Consul lost it (Python's driver failed every call until a
//! restart).
//!
//! The lease-KV recipes (`lease_kv`, etcd v3's) are not used: a Consul session is a lease,
//! but a key joins a session only by being locked with it (`acquire`), which is already the
//! lock, and which the same session may take again; Consul's transactions compare a key's
//! `ModifyIndex` only; and its blocking queries return a key's or prefix's current state
//! rather than a stream of events from a revision. Consul's own primitives (`acquire` with
//! the session, blocking queries on the key) give the lock directly, and one key per lock.
//!
//! # URL and options
//!
//! `consul://host[:port][?option=value...]` (localhost, 8500).
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `ttl` | `timeout`, else 15 s | the session's TTL (whole seconds, 10 s to 24 h: Consul's range; a `timeout` under 10 s gives 10 s) |
//! | `namespace` | `tooz` | prefix of every key |
//! | `token` (or Python's `acl_token`) | — | ACL token, sent as `X-Consul-Token`; never shown |
//! | `lock_delay` | 15 s (Consul's) | the session's lock-delay, 0 to 60 s (see below) |
//! | `protocol` | `http` | `https` for TLS (cargo feature `consul-tls`) |
//! | `ca_cert`, `cert_cert`, `cert_key` | — | CA and client certificate (PEM) for `https` |
//! | `operation_timeout` | TTL / 8, 0.1 s to 2 s | longest one ordinary call may take |
//!
//! Python tooz 8.1 reads `ttl`, `namespace` and `acl_token` and has no TLS options.
//!
//! # Sessions
//!
//! One Consul session per coordinator, created at start with the TTL, `Behavior=delete` (the
//! keys it holds, locks and members, are deleted when it ends) and the lock-delay. The core's
//! heartbeat renews it every quarter of the TTL (`PUT /v1/session/renew/<id>`). Consul ends a
//! session no sooner than its TTL after the last renewal, and may take up to twice the TTL
//! (its timers run at 2 × TTL: measured, a cut-off holder's lock was taken 19.7 s after the
//! cut with a TTL of 10 s). The session timeout is half the TTL: renewals come every TTL / 4
//! and a failing one fails within `operation_timeout` (TTL / 8), so a coordinator whose
//! renewals fail reports its session lost (every `lost()` fires) at most 7/8 of the TTL after
//! its last renewal, before Consul can free anything it held. A renewal answered 404 means Consul ended the session: the coordinator
//! reports `Lost`, creates a new session and joins its groups again, without a restart.
//!
//! # Locks
//!
//! The key `<ns>/locks/<name>` is taken with a transaction holding one `lock` operation
//! (Consul's `?acquire=<session>`, whose reply also gives the key's new `ModifyIndex`); its
//! value is the acquisition's nonce and member (`common::holder`), so `get_leader` and
//! `holder()` name the holder. The fencing token is that `ModifyIndex`, the raft index of the
//! acquiring write, in the low 36 bits, under the store's epoch: the index grows with every
//! write to the store, so it strictly increases across holders and across deletions of the
//! key (where `LockIndex` starts again at 1); the epoch (seconds since 2020, kept in the key
//! `<ns>/epoch`, written by the first client to find it missing) grows when a store loses its
//! data and starts its indexes again (a dev-mode server restarted), as long as clients'
//! clocks agree to better than the outage. Consul lets a session take a key it holds again,
//! so the acquisitions of one coordinator exclude each other in the driver first. Release deletes the key if it is still the acquiring
//! write (`DELETE ?cas=<ModifyIndex>`): one round trip, and no stale keys left behind
//! (Python releases with `?release=` and leaves the key; either finds it free). A waiter
//! reads the key (`?consistent`) and then waits with a blocking query (`?index=&wait=`) for
//! it to change: woken by push, in no particular order (no queue). Each heartbeat checks the
//! held keys (`?consistent`): one gone or taken by someone else was broken (`lost()`).
//!
//! **Shared locks** (tooz-rs only): a shared holder takes a key of its own,
//! `<ns>/shared/<name>/<nonce>`, in a transaction that checks the lock key is free as just
//! read (absent, or at the index read with no session); an exclusive try reads the shared
//! keys in its own transaction (`get-tree`) and, finding any, gives the lock key back and
//! waits for them to change. Python tooz's exclusive lock does not look at shared holders.
//!
//! **Lock-delay.** When a session ends (expired, destroyed, or its node failed), Consul
//! refuses to let anyone take the keys it held for the lock-delay (default 15 s), so a holder
//! that paused past its TTL has time to notice. Measured on Consul 1.8.7: an explicit
//! release (`?release=`, or the delete this driver does) does not start it: the next
//! contender takes the key at once. A killed holder's lock is therefore free at most
//! 2 × TTL + lock-delay after its last renewal. The lock-delay applies to member keys too: a
//! coordinator whose session was lost joins its groups again once it has passed (the
//! heartbeat tries at each beat).
//!
//! # Groups
//!
//! A group is the key `<ns>/groups/<group>/` (empty); a member the key
//! `<ns>/groups/<group>/<member>` holding its msgpack capabilities, taken by the member's
//! session, so it vanishes when the session ends. A join is one transaction: rewrite the
//! group key at the index just read (so a concurrent delete fails), check the member key does
//! not exist, take it. A delete reads the group and deletes its key at the index read, so a
//! join in between makes it fail and read again. Watches read the group and then follow it
//! with blocking queries on its prefix, diffing snapshots.
//!
//! # Measured
//!
//! `tooz bench consul://127.0.0.1:8500` (release build, Consul 1.8.7 in dev mode on loopback,
//! Python tooz 8.1 in the same run): acquire + release 2,360/s, 0.91 of the floor (the same
//! two requests written by hand on one connection, 2,590/s) and 9.2× Python (257/s);
//! contended hand-off p50 0.40 ms, p99 1.6 ms (Python: 1 s, its poll); `get_members` of
//! 1,000 members 0.96 ms (Python 6.7 ms), of 10,000 13.8 ms, all in one process; a join seen
//! by a watcher in 0.57 ms (p50). Figures vary with the host's load from run to run.
//!
//! # Guarantees
//!
//! Writes go through raft; lock checks read with `?consistent` (linearizable), other reads
//! in Consul's default mode (from the leader, which may for a moment after losing its
//! leadership answer stale reads). On the dev-mode single server of the test setup nothing
//! survives a restart and there is no partition to survive; a cluster of 3 or 5 servers
//! keeps working with a majority, and a client cut off from the majority cannot renew its
//! session and reports it lost (not the same view under partitions for reads in default mode).

mod api;
mod layout;
pub(crate) mod options;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::common::errors::{
    group_already_exist, group_not_created, group_not_empty, member_already_exist,
    member_not_joined,
};
use super::common::holder::{holder_of, holder_value};
use super::common::{join_again, HeldLocks, JoinedGroups, OnAbandon, SessionSlot};
use super::http::HttpClient;
use crate::characteristics::{Characteristic as C, Characteristics};
use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::types::{
    Capabilities, ConnectionState, DriverFacts, FencingToken, GroupChange, GroupFeed, LockMode,
    LockRequest, LostReason, MemberInfo, SessionEvents, Support, DEFAULT_POLL_INTERVAL,
};
use crate::url::DriverUrl;
use api::{Consul, Entry, Op};
use layout::Layout;
use options::{Settings, OPTIONS};

pub(crate) const FACTS: DriverFacts = DriverFacts {
    characteristics: Characteristics::of(&[
        C::DistributedAcrossThreads,
        C::DistributedAcrossProcesses,
        C::DistributedAcrossHosts,
        C::Sequential,
        C::Serializable,
    ]),
    support: Support::ALL,
    poll_interval: DEFAULT_POLL_INTERVAL,
    options: &OPTIONS,
};

/// Longest one blocking query waits before it is sent again.
const LONG_POLL: Duration = Duration::from_secs(30);
/// How long a waiter pauses when the key is free but Consul refused it (the lock-delay).
const DELAY_RETRY: Duration = Duration::from_millis(200);
/// How long a waiter pauses when it found the key free but claimed by this coordinator.
const LOCAL_RETRY: Duration = Duration::from_millis(20);
/// How often the undoing of an acquire whose reply was lost is tried.
const UNDO_RETRY: Duration = Duration::from_millis(100);
/// How long a broken group watch waits before it reads again.
const REWATCH_DELAY: Duration = Duration::from_millis(100);
/// How many times a write that lost a race with another writer is tried again.
const RACE_RETRIES: usize = 16;
/// How many times a join that raced with other joins of the group is tried again.
const JOIN_RETRIES: usize = 256;
/// Longest name accepted: a key is part of a request line, and a name may be base64'd.
const MAX_NAME: usize = 2048;

pub(crate) fn build(url: &DriverUrl, member: &Id) -> Result<Arc<dyn Driver>> {
    Ok(Arc::new(ConsulDriver::new(url, member)?))
}

impl ConsulDriver {
    /// The driver of `url` for `member`, not started.
    fn new(url: &DriverUrl, member: &Id) -> Result<Self> {
        let (settings, options) = options::settings(url)?;
        let http = if settings.tls {
            https(&settings, &options)?
        } else {
            HttpClient::plain(&settings.host_port, settings.call_timeout)
        };
        http.set_token_header("x-consul-token", settings.token.clone());
        Ok(ConsulDriver {
            facts: FACTS.with_options(&options),
            api: Arc::new(Consul {
                http,
                call_timeout: settings.call_timeout,
            }),
            layout: Layout::new(&settings.namespace),
            member: member.clone(),
            settings,
            session: SessionSlot::new("consul"),
            joined: JoinedGroups::default(),
            held: Arc::new(HeldLocks::default()),
            claims: Arc::new(Mutex::new(HashMap::new())),
        })
    }
}

#[cfg(feature = "consul-tls")]
fn https(settings: &Settings, options: &crate::url::Options) -> Result<HttpClient> {
    let file = |name| options.text(name).map(std::path::PathBuf::from);
    let files = crate::drivers::tls_config::TlsFiles {
        ca_cert: file("ca_cert"),
        cert: file("cert_cert"),
        key: file("cert_key"),
        check_hostname: true,
    };
    let config = crate::drivers::tls_config::client_config(&files)?;
    Ok(HttpClient::tls(
        &settings.host_port,
        settings.call_timeout,
        config,
    ))
}

#[cfg(not(feature = "consul-tls"))]
fn https(_: &Settings, _: &crate::url::Options) -> Result<HttpClient> {
    Err(Error::DriverUnavailable {
        scheme: "consul".into(),
        why: "built without TLS (enable the cargo feature `consul-tls` of the tooz crate)".into(),
    })
}

/// The started session: Consul's session id (replaced when lost) and where state changes go.
struct Session {
    id: RwLock<String>,
    /// The store's epoch when the session was made (the high bits of fencing tokens).
    epoch: std::sync::atomic::AtomicU64,
    events: SessionEvents,
    /// Set when the groups must be joined again (a new session); cleared once they are.
    rejoin: Mutex<bool>,
}

impl Session {
    fn id(&self) -> String {
        self.id.read().unwrap().clone()
    }
}

/// What the driver keeps of a held lock.
#[derive(Debug, Clone)]
struct Held {
    name: Id,
    key: String,
    /// The `ModifyIndex` of the acquiring write.
    index: u64,
    session: String,
}

/// What one try to take a lock found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// Taken, with this token.
    Taken(FencingToken),
    /// Held by someone (or by another acquisition of this coordinator).
    Held,
    /// Free, but held back by Consul's lock-delay.
    Delayed,
    /// Free, but held shared (an exclusive try only).
    Readers,
}

/// Lock names taken (or being taken) by this coordinator, with the acquisition's nonce.
type Claims = Arc<Mutex<HashMap<Id, String>>>;

/// The Consul driver. See the module docs.
pub struct ConsulDriver {
    facts: DriverFacts,
    api: Arc<Consul>,
    layout: Layout,
    member: Id,
    settings: Settings,
    session: SessionSlot<Session>,
    joined: JoinedGroups,
    held: Arc<HeldLocks<Held>>,
    claims: Claims,
}

fn caps_of(value: &[u8]) -> Result<Capabilities> {
    if value.is_empty() {
        return Ok(Capabilities::none());
    }
    Capabilities::from_msgpack(value)
}

/// Drops the claim of `name` if it is `nonce`'s.
fn unclaim(claims: &Claims, name: &Id, nonce: &str) {
    let mut claims = claims.lock().unwrap();
    if claims.get(name).map(String::as_str) == Some(nonce) {
        claims.remove(name);
    }
}

/// Undoes an acquire whose outcome is unknown (its reply lost, or its future dropped
/// mid-call): deletes the key if it holds this acquisition's value, and drops the claim.
/// Tried every [`UNDO_RETRY`] until Consul answers, for at most `give_up` (by then a session
/// that could not be renewed has ended, and the key with it).
async fn undo_acquire(
    api: Arc<Consul>,
    claims: Claims,
    name: Id,
    key: String,
    value: Vec<u8>,
    give_up: Duration,
) {
    // The claim goes at once, so that this coordinator's next acquisition need not wait for
    // Consul: if this one's write lands after the next one's, the next one's refresh sees the
    // key rewritten and reports it lost, and the delete below finds it changed.
    let nonce_len = value.iter().position(|b| *b == b':').unwrap_or(0);
    unclaim(
        &claims,
        &name,
        std::str::from_utf8(&value[..nonce_len]).unwrap_or(""),
    );
    let attempts = (give_up.as_millis() / UNDO_RETRY.as_millis()).max(1);
    for _ in 0..attempts {
        let undone = match api.get(&key, true).await {
            Ok((Some(entry), _)) if entry.value == value && entry.session.is_some() => api
                .delete(&key, &format!("cas={}", entry.modify_index))
                .await
                .map(|_| ()),
            Ok(_) => Ok(()),
            Err(error) => Err(error),
        };
        if undone.is_ok() {
            break;
        }
        tokio::time::sleep(UNDO_RETRY).await;
    }
}

/// Bits of a fencing token that carry the acquiring write's `ModifyIndex`; the bits above
/// carry the epoch.
const INDEX_BITS: u32 = 36;

/// The fencing token of an acquiring write at `index` in `epoch`.
fn fencing_token(epoch: u64, index: u64) -> FencingToken {
    FencingToken((epoch << INDEX_BITS) | (index & ((1 << INDEX_BITS) - 1)))
}

/// Seconds since 2020-01-01, by this host's clock.
fn epoch_now() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    now.saturating_sub(super::common::fencing::EPOCH_BASE_MS) / 1000
}

/// The store's epoch: read from its key, which the first client to find it missing writes
/// (a new store, or one that lost its data, as a dev-mode server does when restarted).
async fn store_epoch(api: &Consul, key: &str) -> Result<u64> {
    for _ in 0..RACE_RETRIES {
        if let (Some(entry), _) = api.get(key, true).await? {
            return std::str::from_utf8(&entry.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| api::malformed(format!("the epoch key {key}")));
        }
        api.put(key, "cas=0", epoch_now().to_string().as_bytes())
            .await?;
    }
    Err(api::malformed(format!(
        "the epoch key {key} keeps vanishing"
    )))
}

impl ConsulDriver {
    fn session_id(&self) -> Result<String> {
        Ok(self.session.get()?.id())
    }

    /// The session id and the epoch of its store, read before any write that uses them: a
    /// replacement publishes its epoch before its id, so a new id never comes with an old
    /// epoch.
    fn session_and_epoch(&self) -> Result<(String, u64)> {
        let session = self.session.get()?;
        let id = session.id();
        Ok((id, session.epoch.load(std::sync::atomic::Ordering::Acquire)))
    }

    /// One attempt: the token, or why not.
    async fn try_once(&self, req: &LockRequest) -> Result<Attempt> {
        if req.mode == LockMode::Shared {
            return self.try_shared(req).await;
        }
        let (session, epoch) = self.session_and_epoch()?;
        {
            let mut claims = self.claims.lock().unwrap();
            if claims.contains_key(&req.name) {
                return Ok(Attempt::Held);
            }
            claims.insert(req.name.clone(), req.nonce.clone());
        }
        let key = self.layout.lock(&req.name);
        let value = holder_value(&req.nonce, &self.member);
        let guard = OnAbandon::spawn(
            tokio::runtime::Handle::current(),
            undo_acquire(
                self.api.clone(),
                self.claims.clone(),
                req.name.clone(),
                key.clone(),
                value.clone(),
                self.settings.ttl * 2,
            ),
        );
        let shared = self.layout.shared(&req.name);
        let taken = self
            .api
            .txn(&[
                Op::Lock {
                    key: &key,
                    value: &value,
                    session: &session,
                },
                Op::GetTree { prefix: &shared },
            ])
            .await;
        let entry = match taken {
            Ok(Ok(entries)) if entries.iter().any(|e| e.key.starts_with(&shared)) => {
                // Shared holders: give the key back (in the background if Consul does not
                // answer) and wait for them.
                let index = entries
                    .iter()
                    .find(|e| e.key == key)
                    .map_or(0, |e| e.modify_index);
                match self.api.delete(&key, &format!("cas={index}")).await {
                    Ok(_) => {
                        guard.disarm();
                        unclaim(&self.claims, &req.name, &req.nonce);
                    }
                    Err(_) => drop(guard),
                }
                return Ok(Attempt::Readers);
            }
            Ok(Ok(entries)) => entries.into_iter().find(|e| e.key == key),
            Ok(Err(rollback)) => {
                guard.disarm();
                unclaim(&self.claims, &req.name, &req.nonce);
                return Ok(if rollback.what.contains("lock delay") {
                    Attempt::Delayed
                } else {
                    Attempt::Held
                });
            }
            Err(error) => {
                // The lock may have been taken: undone in the background.
                drop(guard);
                return Err(error);
            }
        };
        guard.disarm();
        let Some(entry) = entry else {
            unclaim(&self.claims, &req.name, &req.nonce);
            return Err(api::malformed("a lock operation that reported no key"));
        };
        self.held.insert(
            req,
            Held {
                name: req.name.clone(),
                key,
                index: entry.modify_index,
                session,
            },
        );
        Ok(Attempt::Taken(fencing_token(epoch, entry.modify_index)))
    }

    /// One attempt at a shared hold: a key of its own below `<ns>/shared/<name>/`, taken by
    /// the session in a transaction that also checks the lock key is as just read, free.
    async fn try_shared(&self, req: &LockRequest) -> Result<Attempt> {
        let (session, epoch) = self.session_and_epoch()?;
        let key = self.layout.lock(&req.name);
        let mine = format!("{}{}", self.layout.shared(&req.name), req.nonce);
        let (entry, _) = self.api.get(&key, true).await?;
        let check = match &entry {
            Some(e) if e.session.is_some() => return Ok(Attempt::Held),
            Some(e) => Op::CheckIndex {
                key: &key,
                index: e.modify_index,
            },
            None => Op::CheckNotExists { key: &key },
        };
        let value = holder_value(&req.nonce, &self.member);
        let guard = OnAbandon::spawn(
            tokio::runtime::Handle::current(),
            undo_acquire(
                self.api.clone(),
                self.claims.clone(),
                req.name.clone(),
                mine.clone(),
                value.clone(),
                self.settings.ttl * 2,
            ),
        );
        let ops = [
            check,
            Op::Lock {
                key: &mine,
                value: &value,
                session: &session,
            },
        ];
        let entry = match self.api.txn(&ops).await {
            Ok(Ok(entries)) => entries.into_iter().find(|e| e.key == mine),
            Ok(Err(rollback)) => {
                guard.disarm();
                return Ok(if rollback.what.contains("lock delay") {
                    Attempt::Delayed
                } else {
                    Attempt::Held
                });
            }
            Err(error) => {
                drop(guard);
                return Err(error);
            }
        };
        guard.disarm();
        let entry = entry.ok_or_else(|| api::malformed("a lock operation that reported no key"))?;
        self.held.insert(
            req,
            Held {
                name: req.name.clone(),
                key: mine,
                index: entry.modify_index,
                session,
            },
        );
        Ok(Attempt::Taken(fencing_token(epoch, entry.modify_index)))
    }

    /// Whether the group's key exists.
    async fn group_exists(&self, group: &Id) -> Result<bool> {
        Ok(self
            .api
            .get(&self.layout.group(group), false)
            .await?
            .0
            .is_some())
    }

    /// The error for `member` missing from `group`.
    async fn not_joined(&self, group: &Id, member: &Id) -> Error {
        match self.group_exists(group).await {
            Ok(true) => member_not_joined(group, member),
            Ok(false) => group_not_created(group),
            Err(error) => error,
        }
    }

    /// The group's members (keys and entries), and the index to wait from.
    async fn read_group(&self, group: &Id) -> Result<(Vec<(Id, Entry)>, u64)> {
        let prefix = self.layout.group(group);
        let (entries, index) = self.api.get_prefix(&prefix).await?;
        if !entries.iter().any(|e| e.key == prefix) {
            return Err(group_not_created(group));
        }
        let members = entries
            .into_iter()
            .filter_map(|e| Some((self.layout.member_of(&prefix, &e.key)?, e)))
            .collect();
        Ok((members, index))
    }

    /// A new session after the old one was lost: what it held is reported lost, and the
    /// groups are to be joined again.
    async fn replace_session(&self, session: &Session) -> Result<()> {
        let lost = self.held.lose_where(|_| true, LostReason::SessionLost);
        {
            let mut claims = self.claims.lock().unwrap();
            for held in &lost {
                claims.remove(&held.name);
            }
        }
        let id = self
            .api
            .create_session(
                &self.member.to_string(),
                self.settings.ttl,
                self.settings.lock_delay,
            )
            .await?;
        // The epoch is read after the session is made (a server that lost its data since
        // cannot have this session) and published before it: an acquisition that uses the
        // new session always finds the new epoch.
        let epoch = store_epoch(&self.api, &self.layout.epoch()).await?;
        session
            .epoch
            .store(epoch, std::sync::atomic::Ordering::Release);
        *session.id.write().unwrap() = id;
        *session.rejoin.lock().unwrap() = true;
        Ok(())
    }

    /// Joins the groups again on a new session; keeps asking while one fails (a member key
    /// in its lock-delay).
    async fn rejoin(&self, session: &Session) {
        if !*session.rejoin.lock().unwrap() {
            return;
        }
        let mut all = true;
        for (group, caps) in self.joined.list() {
            match join_again(self, &group, &self.member, &caps).await {
                Ok(_) => tracing::info!(%group, "joined the group again on a new session"),
                Err(error) => {
                    all = false;
                    tracing::warn!(%group, %error, "cannot join the group again yet");
                }
            }
        }
        if all {
            *session.rejoin.lock().unwrap() = false;
        }
    }
}

#[async_trait]
impl Driver for ConsulDriver {
    fn scheme(&self) -> &'static str {
        "consul"
    }

    fn facts(&self) -> &DriverFacts {
        &self.facts
    }

    /// Half the TTL: renewals come every quarter, and Consul ends a session no sooner than
    /// its TTL after the last one (see the module docs).
    fn session_timeout(&self) -> Duration {
        self.settings.ttl / 2
    }

    /// A lock lives on the coordinator's session.
    fn lock_lease(&self, _name: &Id) -> Option<Duration> {
        Some(self.settings.ttl)
    }

    fn validate_name(&self, kind: &'static str, name: &Id) -> Result<()> {
        if name.as_bytes().len() > MAX_NAME {
            return Err(Error::InvalidName {
                kind,
                name: name.to_string(),
                reason: format!("longer than {MAX_NAME} bytes (a Consul key is in the URL)"),
            });
        }
        Ok(())
    }

    async fn start(&self, events: SessionEvents) -> Result<()> {
        let id = self
            .api
            .create_session(
                &self.member.to_string(),
                self.settings.ttl,
                self.settings.lock_delay,
            )
            .await?;
        // After the session, as in `replace_session`.
        let epoch = store_epoch(&self.api, &self.layout.epoch()).await?;
        self.session.set(Arc::new(Session {
            id: RwLock::new(id),
            events,
            rejoin: Mutex::new(false),
            epoch: epoch.into(),
        }));
        Ok(())
    }

    async fn stop(&self) -> Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let mut result = Ok(());
        // Locks are released and members deleted before the session ends, so that no
        // lock-delay starts on them.
        for held in self
            .held
            .lose_where(|_| true, LostReason::CoordinatorStopped)
        {
            if let Err(error) = self
                .api
                .delete(&held.key, &format!("cas={}", held.index))
                .await
            {
                result = Err(error);
            }
        }
        self.claims.lock().unwrap().clear();
        for group in self.joined.names() {
            let key = self.layout.member(&group, &self.member);
            if let Err(error) = self.api.delete(&key, "").await {
                result = Err(error);
            }
        }
        self.joined.clear();
        if let Err(error) = self.api.destroy_session(&session.id()).await {
            result = Err(error);
        }
        result
    }

    async fn heartbeat(&self) -> Result<Option<Duration>> {
        let session = self.session.get()?;
        if session.events.current() == ConnectionState::Lost {
            // The core gave the session up (suspended too long) and reported everything on it
            // lost, but Consul may have kept it: end it, so nothing reported lost stays held.
            let _ = self.api.destroy_session(&session.id()).await;
            self.replace_session(&session).await?;
        } else if !self.api.renew_session(&session.id()).await? {
            tracing::warn!("Consul ended the session: every lock and membership is lost");
            session.events.report(ConnectionState::Lost);
            self.replace_session(&session).await?;
        }
        self.rejoin(&session).await;
        Ok(Some(self.settings.ttl / 4))
    }

    async fn create_group(&self, group: &Id) -> Result<()> {
        if self
            .api
            .put(&self.layout.group(group), "cas=0", b"")
            .await?
        {
            Ok(())
        } else {
            Err(group_already_exist(group))
        }
    }

    async fn delete_group(&self, group: &Id) -> Result<()> {
        let prefix = self.layout.group(group);
        for _ in 0..RACE_RETRIES {
            let (entries, _) = self.api.get_prefix(&prefix).await?;
            let Some(dir) = entries.iter().find(|e| e.key == prefix) else {
                return Err(group_not_created(group));
            };
            if entries.len() > 1 {
                return Err(group_not_empty(group));
            }
            let query = format!("cas={}", dir.modify_index);
            if self.api.delete(&prefix, &query).await? {
                return Ok(());
            }
        }
        Err(Error::Backend {
            driver: "consul",
            message: format!("deleting group {group}: it kept changing"),
        })
    }

    async fn get_groups(&self) -> Result<BTreeSet<Id>> {
        let keys = self.api.keys(&self.layout.groups(), true).await?;
        Ok(keys
            .iter()
            .filter_map(|k| self.layout.group_of(k))
            .collect())
    }

    async fn join_group(&self, group: &Id, member: &Id, caps: &Capabilities) -> Result<()> {
        let session = self.session_id()?;
        let prefix = self.layout.group(group);
        let key = self.layout.member(group, member);
        let value = caps.to_msgpack();
        for _ in 0..JOIN_RETRIES {
            let (dir, _) = self.api.get(&prefix, false).await?;
            let Some(dir) = dir else {
                return Err(group_not_created(group));
            };
            let ops = [
                Op::Cas {
                    key: &prefix,
                    value: &dir.value,
                    index: dir.modify_index,
                },
                Op::CheckNotExists { key: &key },
                Op::Lock {
                    key: &key,
                    value: &value,
                    session: &session,
                },
            ];
            match self.api.txn(&ops).await? {
                Ok(_) => {
                    if *member == self.member {
                        self.joined.insert(group, caps);
                    }
                    return Ok(());
                }
                // The group changed (another join, a delete): read it again, after a pause
                // that spreads out joins racing on one group.
                Err(rollback) if rollback.op == 0 => {
                    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 8);
                    tokio::time::sleep(Duration::from_millis(1 + jitter)).await;
                    continue;
                }
                Err(rollback) if rollback.op == 1 => {
                    return Err(member_already_exist(group, member))
                }
                Err(rollback) => {
                    return Err(Error::Backend {
                        driver: "consul",
                        message: format!(
                            "joining group {group}: {} (a member key of an ended session is \
                             held back for the lock-delay)",
                            rollback.what
                        ),
                    })
                }
            }
        }
        Err(Error::Backend {
            driver: "consul",
            message: format!("joining group {group}: it kept changing"),
        })
    }

    async fn leave_group(&self, group: &Id, member: &Id) -> Result<()> {
        let key = self.layout.member(group, member);
        let (entry, _) = self.api.get(&key, false).await?;
        let Some(entry) = entry else {
            return Err(self.not_joined(group, member).await);
        };
        if !self
            .api
            .delete(&key, &format!("cas={}", entry.modify_index))
            .await?
        {
            // Changed meanwhile (capabilities updated, or left): delete what is there.
            if !self.api.delete(&key, "").await? {
                return Err(self.not_joined(group, member).await);
            }
        }
        if *member == self.member {
            self.joined.remove(group);
        }
        Ok(())
    }

    async fn get_members_with_capabilities(
        &self,
        group: &Id,
    ) -> Result<BTreeMap<Id, Capabilities>> {
        let (members, _) = self.read_group(group).await?;
        members
            .into_iter()
            .map(|(id, e)| Ok((id, caps_of(&e.value)?)))
            .collect()
    }

    /// The keys alone (`?keys`): no values to send and decode.
    async fn get_members(&self, group: &Id) -> Result<BTreeSet<Id>> {
        let prefix = self.layout.group(group);
        let keys = self.api.keys(&prefix, false).await?;
        if !keys.contains(&prefix) {
            return Err(group_not_created(group));
        }
        Ok(keys
            .iter()
            .filter_map(|k| self.layout.member_of(&prefix, k))
            .collect())
    }

    async fn get_member_info(&self, group: &Id, member: &Id) -> Result<MemberInfo> {
        let (entry, _) = self
            .api
            .get(&self.layout.member(group, member), false)
            .await?;
        let Some(entry) = entry else {
            return Err(self.not_joined(group, member).await);
        };
        let mut extra = BTreeMap::new();
        extra.insert(
            "create_index".to_string(),
            rmpv::Value::from(entry.create_index),
        );
        if let Some(session) = &entry.session {
            extra.insert("session".to_string(), rmpv::Value::from(session.as_str()));
        }
        Ok(MemberInfo {
            capabilities: caps_of(&entry.value)?,
            joined_at: None,
            extra,
        })
    }

    async fn update_capabilities(
        &self,
        group: &Id,
        member: &Id,
        caps: &Capabilities,
    ) -> Result<()> {
        let key = self.layout.member(group, member);
        let value = caps.to_msgpack();
        for _ in 0..RACE_RETRIES {
            let (entry, _) = self.api.get(&key, false).await?;
            let Some(entry) = entry else {
                return Err(self.not_joined(group, member).await);
            };
            // A write at the index read keeps the key's session.
            let query = format!("cas={}", entry.modify_index);
            if self.api.put(&key, &query, &value).await? {
                if *member == self.member {
                    self.joined.update(group, caps);
                }
                return Ok(());
            }
        }
        Err(Error::Backend {
            driver: "consul",
            message: format!("updating capabilities in group {group}: they kept changing"),
        })
    }

    async fn subscribe_group(&self, group: &Id) -> Result<Option<(BTreeSet<Id>, GroupFeed)>> {
        let (members, index) = self.read_group(group).await?;
        let snapshot: BTreeSet<Id> = members.into_iter().map(|(id, _)| id).collect();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(follow(
            self.api.clone(),
            self.layout.clone(),
            self.layout.group(group),
            snapshot.clone(),
            index,
            tx,
        ));
        Ok(Some((snapshot, UnboundedReceiverStream::new(rx).boxed())))
    }

    async fn lock_try_acquire(&self, req: &LockRequest) -> Result<Option<FencingToken>> {
        match self.try_once(req).await? {
            Attempt::Taken(token) => Ok(Some(token)),
            Attempt::Held | Attempt::Delayed | Attempt::Readers => Ok(None),
        }
    }

    async fn lock_acquire(
        &self,
        req: &LockRequest,
        deadline: Option<Instant>,
    ) -> Result<Option<FencingToken>> {
        let key = self.layout.lock(&req.name);
        loop {
            let attempt = self.try_once(req).await?;
            if let Attempt::Taken(token) = attempt {
                return Ok(Some(token));
            }
            let limit = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => LONG_POLL,
            }
            .min(LONG_POLL);
            if limit.is_zero() {
                return Ok(None);
            }
            if attempt == Attempt::Readers {
                // Wait for the shared holders to change.
                let shared = self.layout.shared(&req.name);
                let (holders, index) = self.api.get_prefix(&shared).await?;
                if !holders.is_empty() {
                    self.api.wait_prefix(&shared, index, limit).await?;
                }
                continue;
            }
            if attempt == Attempt::Delayed {
                // Consul holds the key back for the lock-delay of a session that ended.
                tokio::time::sleep(DELAY_RETRY.min(limit)).await;
                continue;
            }
            // Held: wait for the key to change (a release, a delete, an expiry). Found free,
            // it changed hands since the try (or an acquisition of ours is under way): try
            // again at once.
            let (entry, index) = self.api.get(&key, true).await?;
            if entry.is_some_and(|e| e.session.is_some()) {
                self.api.wait_key(&key, index, limit).await?;
            } else if self.claims.lock().unwrap().contains_key(&req.name) {
                // Free, yet claimed here: an acquisition of ours under way, or a holder whose
                // key was broken and whose refresh has not seen it yet. Pause.
                tokio::time::sleep(LOCAL_RETRY.min(limit)).await;
            }
        }
    }

    async fn lock_release(&self, req: &LockRequest) -> Result<bool> {
        let Some(held) = self.held.remove(&req.nonce) else {
            return Ok(false);
        };
        unclaim(&self.claims, &req.name, &req.nonce);
        self.api
            .delete(&held.record.key, &format!("cas={}", held.record.index))
            .await
    }

    async fn lock_refresh(&self, req: &LockRequest) -> Result<bool> {
        let Some(held) = self.held.read(&req.nonce, Held::clone) else {
            return Ok(false);
        };
        let (entry, _) = self.api.get(&held.key, true).await?;
        let ours = matches!(&entry, Some(e) if e.modify_index == held.index
            && e.session.as_deref() == Some(held.session.as_str()));
        if !ours {
            self.held.lose(&req.nonce, LostReason::Broken);
            req.lost.fire(LostReason::Broken);
            unclaim(&self.claims, &req.name, &req.nonce);
        }
        Ok(ours)
    }

    async fn lock_break(&self, name: &Id) -> Result<bool> {
        let key = self.layout.lock(name);
        // Shared holders are broken all at once.
        let shared = self.layout.shared(name);
        let readers = !self.api.keys(&shared, false).await?.is_empty()
            && self.api.delete(&shared, "recurse").await?;
        if readers {
            self.held
                .lose_where(|h| h.key.starts_with(&shared), LostReason::Broken);
        }
        let (entry, _) = self.api.get(&key, true).await?;
        let Some(entry) = entry.filter(|e| e.session.is_some()) else {
            return Ok(readers);
        };
        let broken = self
            .api
            .delete(&key, &format!("cas={}", entry.modify_index))
            .await?;
        if broken {
            // A holder in this coordinator loses it now.
            let lost = self.held.lose_where(
                |h| h.key == key && h.index == entry.modify_index,
                LostReason::Broken,
            );
            let mut claims = self.claims.lock().unwrap();
            for held in lost {
                claims.remove(&held.name);
            }
        }
        Ok(broken || readers)
    }

    async fn lock_holder(&self, name: &Id) -> Result<Option<Id>> {
        let (entry, _) = self.api.get(&self.layout.lock(name), true).await?;
        match entry.filter(|e| e.session.is_some()) {
            Some(entry) => holder_of("consul", name, &entry.value).map(Some),
            None => Ok(None),
        }
    }
}

/// Turns the group's snapshots into changes until the feed's reader goes away.
async fn follow(
    api: Arc<Consul>,
    layout: Layout,
    prefix: String,
    mut known: BTreeSet<Id>,
    mut index: u64,
    tx: mpsc::UnboundedSender<GroupChange>,
) {
    loop {
        let waited = tokio::select! {
            waited = api.wait_prefix(&prefix, index, LONG_POLL) => waited,
            () = tx.closed() => return,
        };
        let (entries, now) = match waited {
            Ok(read) => read,
            Err(_) => {
                tokio::select! {
                    () = tokio::time::sleep(REWATCH_DELAY) => {}
                    () = tx.closed() => return,
                }
                continue;
            }
        };
        // Consul's index may go back (a snapshot restore): start again from 0.
        index = if now < index { 0 } else { now };
        let members: BTreeSet<Id> = entries
            .iter()
            .filter_map(|e| layout.member_of(&prefix, &e.key))
            .collect();
        let mut changes: Vec<GroupChange> = members
            .difference(&known)
            .cloned()
            .map(GroupChange::Joined)
            .collect();
        changes.extend(known.difference(&members).cloned().map(GroupChange::Left));
        known = members;
        for change in changes {
            if tx.send(change).is_err() {
                return;
            }
        }
    }
}

/// A driver dropped while started (its coordinator dropped without `stop`) ends its session
/// in the background where a runtime is at hand, releasing its locks first: otherwise its
/// locks and memberships would stay for up to twice the TTL.
impl Drop for ConsulDriver {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let held = self
            .held
            .lose_where(|_| true, LostReason::CoordinatorStopped);
        let api = self.api.clone();
        runtime.spawn(async move {
            for held in held {
                let query = format!("cas={}", held.index);
                let _ = api.delete(&held.key, &query).await;
            }
            let _ = api.destroy_session(&session.id()).await;
        });
    }
}

impl std::fmt::Debug for ConsulDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsulDriver")
            .field("settings", &self.settings)
            .field("member", &self.member)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_order_by_epoch_then_index() {
        assert!(fencing_token(1, 3318) < fencing_token(2, 15));
        assert!(fencing_token(7, 15) < fencing_token(7, 16));
        assert!(epoch_now() > 200_000_000, "after 2026");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let url = DriverUrl::parse("consul://127.0.0.1:8500?token=hunter2").unwrap();
        let driver = ConsulDriver::new(&url, &Id::from("me")).unwrap();
        let shown = format!("{driver:?}");
        assert!(shown.contains("127.0.0.1:8500"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connection_error() {
        // Port 9 (discard) on loopback: nothing listens there in the test setup.
        let url = DriverUrl::parse("consul://127.0.0.1:9?token=hunter2").unwrap();
        let driver = build(&url, &Id::from("me")).unwrap();
        let (tx, _rx) = tokio::sync::watch::channel(ConnectionState::Disconnected);
        let error = driver
            .start(SessionEvents::new(Arc::new(tx)))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, Error::Connection(_) | Error::OperationTimedOut(_)),
            "{error:?}"
        );
        assert!(!error.to_string().contains("hunter2"));
    }
}
