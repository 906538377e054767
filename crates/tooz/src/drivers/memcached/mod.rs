//! `memcached://`: one memcached server (1.6 or later: the meta protocol), keys with TTLs.
//!
//! Wire-compatible with Python tooz 9.x's memcached driver on the same server: locks exclude
//! each other both ways, groups, members and capabilities are read and written both ways,
//! and liveness is the same member key (see the `layout` module for keys and values). Beyond
//! tooz: fencing tokens, `lost()`, `stand_down_group_leader`, `get_member_info`, a release
//! and a refresh that only ever touch this acquisition's own lock, and lock waits and
//! membership watches that poll (every 10 and 50 ms by default) rather than every second.
//!
//! # URL and options
//!
//! `memcached://[host[:port]][?option=value...]` (localhost, port 11211): one server. A
//! list of servers is refused: sharding keys over servers on the client side lets two
//! clients whose lists differ both take one lock. Options, with Python tooz's names and
//! defaults:
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `timeout` | 30 s | default of the three timeouts below |
//! | `lock_timeout` | `timeout` | lifetime of a lock key; kept alive by the heartbeat |
//! | `leader_timeout` | `timeout` | lifetime of a leader lock key |
//! | `membership_timeout` | `timeout` | lifetime of the key that keeps a member alive |
//! | `socket_timeout` | min(`timeout`, window / 8, 10 s), ≥ 50 ms | longest one call waits for its replies (ours) |
//! | `poll_interval` | 50 ms | interval of membership watches |
//! | `lock_poll_interval` | min(`poll_interval`, 10 ms) | how often a lock waiter tries again (ours) |
//! | `namespace` | none | prefix of every key (ours: Python tooz has none, so a namespace shares nothing with it) |
//! | `max_pool_size`, `executor` | — | accepted for tooz URLs; no effect (calls are pipelined on one connection) |
//! | `use_ssl` | false | TLS (cargo feature `memcached-tls`: rustls with the ring provider, no OpenSSL; without it a TLS URL is refused with [`Error::DriverUnavailable`]) |
//! | `ca_cert` | the system's roots | CA certificates (PEM) the server's chain is verified against |
//! | `ssl_cert`, `ssl_key` | — | client certificate and unencrypted key (PEM; the key may be in the certificate file) |
//! | `ssl_check_hostname` | false | also check the server's name (the chain is always checked), as in tooz |
//! | `ssl_key_password` | — | refused with `use_ssl`: rustls reads no encrypted keys |
//! | `ssl_ciphers` | — | accepted for tooz URLs; not applied (rustls offers only its safe suites) |
//!
//! The window is the shortest of the three timeouts. memcached counts expiry in whole
//! seconds on a coarse clock (a key stored with TTL n lives between n − 1 and n seconds), so
//! keys of ours are stored with TTL ⌈timeout⌉ + 1 s: they live at least their timeout and at
//! most one second more.
//!
//! # Locks
//!
//! Acquire is one round trip: an `add` of the lock key (`ms ... ME`, value: the member id,
//! as Python tooz writes it) pipelined with an `ma` of the lock's fencing counter. The `CAS`
//! value the server returns for the added item identifies this acquisition: the refresh is
//! a CAS-guarded set (`ms ... C<cas>`, which also renews the TTL and yields the next CAS), and
//! release is a CAS-guarded delete (`md ... C<cas>`), so neither ever extends or deletes a
//! lock that is not this acquisition's, not even one held by the same member id. A refresh
//! that finds the key gone or changed reports the lock lost (`Expired`; `Broken` when
//! `break_lock` removed it, which leaves a marker with the CAS it removed). A release that
//! fails leaves the lock to its TTL: it is forgotten first, so no heartbeat renews it again.
//! An acquire whose future is dropped while its request is on the wire releases the lock if
//! the server granted it. A refresh whose reply is lost (a timeout) may have renewed the key
//! under a CAS this client never learnt: the next refresh then reports the lock lost (a false
//! alarm, never a false hold) and the key expires after its TTL.
//!
//! Waiting is polling (the `Driver` trait's default wait, trying every
//! `lock_poll_interval`): memcached tells nobody of a release, so a waiter sees one within
//! that interval, and waiters are not served in order. So that a client taking a lock again
//! and again does not starve the others, each try counts (it increments the fencing
//! counter), and a client releasing a lock that was tried while it held it does not take it
//! again for 1.5 × `lock_poll_interval` (its tries say busy meanwhile): every waiter's next
//! try falls in that window. Python tooz's tries do not count. The heartbeat (every window / 4) renews the member key and every held lock. A
//! session whose heartbeat fails is `Suspended`, and `Lost` (firing every `lost()`) after
//! window / 2 without a successful one, before the keys it kept alive can expire.
//!
//! # Fencing tokens
//!
//! A token is `epoch << 22 | counter`, one 64-bit counter per lock name
//! (`__TOOZ_FENCE_<name>`) that `ma` increments in the acquire's round trip, after the add
//! (so a busy attempt also increments it: tokens have gaps, and still only grow).
//! When the counter does not exist (first use, evicted, or the server restarted), `ma`
//! creates it at `epoch << 22` with epoch = milliseconds since 2020 on this client's clock.
//! Guaranteed: tokens of one name strictly increase while the counter lives; across its
//! loss they still do provided the creating client's clock reads later than when the lost
//! counter was created, plus one millisecond per 4 million acquisitions in between: true
//! unless clocks across clients disagree by more than the time since the counter was made.
//! Python tooz's acquisitions take no token.
//!
//! # Membership
//!
//! A member is alive while its member key exists; readers drop dead members from the group
//! value (never themselves), as Python tooz does, but with one pipelined multi-get for all
//! members instead of a round trip each. Every group change is a CAS loop (read with CAS,
//! write with `C<cas>`), bounded, backing off with jitter on conflicts. `delete_group`
//! ignores dead members, and deletes with a CAS-guarded `md` instead of Python's nil-then-
//! delete (a nil group, Python mid-delete, reads as not created). Watches poll.
//!
//! # What memcached does not guarantee
//!
//! memcached is a cache. It may evict any key under memory pressure (least recently used
//! first) and forgets everything when it restarts. Then:
//!
//! - an evicted or forgotten lock key is free for anyone at once: two holders are possible
//!   until the old holder's next refresh (at most window / 4 later) finds the key gone and
//!   fires `lost()`. Fencing tokens (above) are what protects a resource meanwhile;
//! - an evicted member key makes readers drop the member; its next heartbeat stores the key
//!   again and joins its groups again (creating a group whose key is gone), with the
//!   capabilities it last gave;
//! - a restart is seen at the next heartbeat (the server's pid and start time change): every
//!   lock is reported lost and the groups are joined again;
//! - the group list (`get_groups`) may lose groups to eviction, as in Python tooz.
//!
//! Give memcached memory enough that nothing is evicted (`stats`: `evictions` stays 0) if
//! that matters.
//!
//! # Characteristics
//!
//! As Python tooz's: distributed across threads, processes and hosts, causal; timeout-based,
//! not linearizable (eviction).

mod client;
mod layout;
mod options;
mod proto;
#[cfg(feature = "memcached-tls")]
mod tls;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::common::errors::{
    group_already_exist, group_not_created, group_not_empty, member_already_exist,
    member_not_joined,
};
use super::common::fencing::{self, COUNTER_BITS, COUNTER_LIMIT, EPOCH_BASE_MS};
use super::common::{join_again, HeldLocks, JoinedGroups, OnAbandon, SessionSlot};
use crate::characteristics::{Characteristic as C, Characteristics};
use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::types::{
    Capabilities, ChangeWait, DriverFacts, FencingToken, LockMode, LockRequest, LostReason,
    MemberInfo, SessionEvents, Support, WatchKind,
};
use crate::url::DriverUrl;
use client::{Batch, CallError, Client, Hook, Target};
use layout::{Group, Keys, EMPTY_GROUP, LEADER_PREFIX, MSGPACK, RAW, STILL_ALIVE};
use options::Config;
use proto::{Flag, Reply, Verb};

pub(crate) const FACTS: DriverFacts = DriverFacts {
    characteristics: Characteristics::of(&[
        C::DistributedAcrossThreads,
        C::DistributedAcrossProcesses,
        C::DistributedAcrossHosts,
        C::Causal,
    ]),
    support: Support {
        watch: WatchKind::Poll,
        shared_locks: false,
        ..Support::ALL
    },
    poll_interval: options::DEFAULT_POLL_INTERVAL,
    options: &options::MEMCACHED_OPTIONS,
};

/// Most attempts of one CAS loop before it gives up.
const CAS_TRIES: u32 = 64;
/// Longest back-off between two attempts of a CAS loop.
const CAS_BACKOFF_CAP: Duration = Duration::from_millis(50);
/// Most attempts of `break_lock` against a lock that keeps changing.
const BREAK_TRIES: u32 = 8;

pub(crate) fn build(url: &DriverUrl, member: &Id) -> Result<Arc<dyn Driver>> {
    Ok(Arc::new(MemcachedDriver::new(url, member)?))
}

impl MemcachedDriver {
    fn new(url: &DriverUrl, member: &Id) -> Result<MemcachedDriver> {
        let cfg = Config::parse(url)?;
        Ok(MemcachedDriver {
            facts: DriverFacts {
                poll_interval: cfg.poll_interval,
                ..FACTS
            },
            keys: Keys::new(&cfg.namespace),
            cfg: Arc::new(cfg),
            member: member.clone(),
            joined: JoinedGroups::default(),
            held: Arc::new(HeldLocks::default()),
            session: SessionSlot::new("memcached"),
            yields: Mutex::new(HashMap::new()),
        })
    }
}

/// The memcached driver. See the module docs.
pub struct MemcachedDriver {
    facts: DriverFacts,
    cfg: Arc<Config>,
    keys: Keys,
    member: Id,
    /// The groups this member joined, to join again where they lost it.
    joined: JoinedGroups,
    held: Arc<HeldLocks<Arc<Held>>>,
    session: SessionSlot<Session>,
    /// Locks this client released while others tried them: not taken again before the
    /// instant given, so that a waiter's next try finds them free.
    yields: Mutex<HashMap<Id, std::time::Instant>>,
}

/// One held lock.
struct Held {
    key: Vec<u8>,
    /// The fencing counter's key, and its value at this acquisition.
    fence: Vec<u8>,
    token: u64,
    ttl: u64,
    /// The CAS of the item as this acquisition last wrote it; held while a refresh or the
    /// release uses it, so that a release always sees the latest.
    cas: tokio::sync::Mutex<u64>,
}

/// The started session: the client and the server it talks to.
struct Session {
    client: Arc<Client>,
    runtime: tokio::runtime::Handle,
    /// The server's pid and start time, to tell a restart at the next heartbeat.
    server: Mutex<Option<(String, i64)>>,
}

fn call_error(cfg: &Config, error: CallError) -> Error {
    let server = format!("memcached {}:{}", cfg.host, cfg.port);
    match error {
        CallError::Connection(why) => Error::Connection(format!("{server}: {why}")),
        CallError::Timeout(after) => {
            Error::OperationTimedOut(format!("{server}: no reply within {after:?}"))
        }
        CallError::Protocol(e) => Error::Backend {
            driver: "memcached",
            message: format!("{server}: {e}"),
        },
        CallError::Refused(line) => refused(&line),
    }
}

fn refused(line: &str) -> Error {
    Error::Backend {
        driver: "memcached",
        message: format!("the server refused a request: {line}"),
    }
}

fn unexpected(what: &str, reply: Option<&Reply>) -> Error {
    match reply {
        Some(Reply::Error(line)) => refused(line),
        _ => {
            // Shown shortened: a value may be large.
            let shown: String = format!("{reply:?}").chars().take(200).collect();
            Error::Backend {
                driver: "memcached",
                message: format!("unexpected reply to {what}: {shown}"),
            }
        }
    }
}

/// A TTL in whole seconds that lives at least `d` (see the module docs).
fn ttl_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0) + 1
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// The value a fencing counter starts at: a new epoch, counter 0.
fn fresh_counter() -> u64 {
    fencing::token(now_ms().saturating_sub(EPOCH_BASE_MS), 0).0
}

/// A jittered back-off for attempt `n` of a CAS loop.
fn backoff(n: u32) -> Duration {
    let base = Duration::from_millis(1 << n.min(6)).min(CAS_BACKOFF_CAP);
    let jitter = uuid::Uuid::new_v4().as_u128() as u64 % 1000;
    base / 2 + base.mul_f64(jitter as f64 / 2000.0)
}

fn req(verb: Verb, key: &[u8], flags: &[Flag], data: &[u8]) -> Batch {
    Batch::one(verb, key, flags, data)
}

/// `mg key v c f`: value, CAS and flags.
fn get_cas(key: &[u8]) -> Batch {
    req(
        Verb::Get,
        key,
        &[Flag::Bare('v'), Flag::Bare('c'), Flag::Bare('f')],
        b"",
    )
}

/// What one CAS-loop step decides.
enum Edit<T> {
    /// Store this msgpack value (an add when the key was missing).
    Write(Vec<u8>, T),
    /// Nothing to write.
    Done(T),
}

/// An acquisition's grant as the reply and an abandoned caller see it, so that whichever
/// comes second releases a lock granted to nobody.
enum Grant {
    Waiting,
    Granted(u64),
    Abandoned,
    Kept,
}

impl MemcachedDriver {
    fn session(&self) -> Result<Arc<Session>> {
        self.session.get()
    }

    async fn call(&self, batch: Batch) -> Result<Vec<Reply>> {
        let session = self.session()?;
        session
            .client
            .call(batch)
            .await
            .map_err(|e| call_error(&self.cfg, e))
    }

    async fn call1(&self, batch: Batch) -> Result<Reply> {
        let mut replies = self.call(batch).await?;
        match replies.pop() {
            Some(Reply::Error(line)) => Err(refused(&line)),
            Some(reply) => Ok(reply),
            None => Err(unexpected("a request", None)),
        }
    }

    /// How long a released lock is left to others: a waiter's sleep and a try.
    fn yield_window(&self) -> Duration {
        self.cfg.lock_poll_interval + self.cfg.lock_poll_interval / 2
    }

    /// True while this client leaves `name` to the clients that tried it (see `yields`).
    fn yielding(&self, name: &Id) -> bool {
        let mut yields = self.yields.lock().unwrap();
        let now = std::time::Instant::now();
        yields.retain(|_, until| *until > now);
        yields.contains_key(name)
    }

    fn lock_ttl(&self, name: &Id) -> u64 {
        if name.as_bytes().starts_with(LEADER_PREFIX) {
            ttl_secs(self.cfg.leader_timeout)
        } else {
            ttl_secs(self.cfg.lock_timeout)
        }
    }

    /// Reads `key` and applies `edit` until its write wins (bounded, with back-off).
    async fn cas_loop<T>(
        &self,
        key: &[u8],
        mut edit: impl FnMut(Option<(u32, &[u8])>) -> Result<Edit<T>>,
    ) -> Result<T> {
        for attempt in 0..CAS_TRIES {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let read = self.call1(get_cas(key)).await?;
            let (current, cas) = match &read {
                Reply::Miss(_) => (None, None),
                Reply::Value(meta, data) => (Some((meta.flags.unwrap_or(0), &data[..])), meta.cas),
                other => return Err(unexpected("mg", Some(other))),
            };
            let written = match (edit(current)?, cas) {
                (Edit::Done(out), _) => return Ok(out),
                (Edit::Write(value, out), None) => {
                    let flags = [Flag::Word('M', "E"), Flag::Num('F', u64::from(MSGPACK))];
                    (self.call1(req(Verb::Set, key, &flags, &value)).await?, out)
                }
                (Edit::Write(value, out), Some(cas)) => {
                    let flags = [Flag::Num('C', cas), Flag::Num('F', u64::from(MSGPACK))];
                    (self.call1(req(Verb::Set, key, &flags, &value)).await?, out)
                }
            };
            match written {
                (Reply::Done(_), out) => return Ok(out),
                (Reply::NotStored(_) | Reply::Exists(_) | Reply::NotFound(_), _) => continue,
                (other, _) => return Err(unexpected("a CAS write", Some(&other))),
            }
        }
        Err(Error::Backend {
            driver: "memcached",
            message: format!(
                "{} kept changing: gave up after {CAS_TRIES} attempts",
                String::from_utf8_lossy(key)
            ),
        })
    }

    /// The group `group` as stored: `None` if it does not exist (or is being deleted).
    async fn read_group(&self, group: &Id) -> Result<Option<(Group, u64)>> {
        match self.call1(get_cas(&self.keys.group(group))).await? {
            Reply::Miss(_) => Ok(None),
            Reply::Value(meta, data) => {
                Ok(Group::decode(meta.flags.unwrap_or(0), &data)?
                    .map(|g| (g, meta.cas.unwrap_or(0))))
            }
            other => Err(unexpected("mg", Some(&other))),
        }
    }

    /// Which of `members` are alive (their member key exists): one pipelined multi-get.
    async fn alive(&self, members: &[Id]) -> Result<BTreeSet<Id>> {
        let mut alive = BTreeSet::new();
        // A member whose key cannot exist (an id too long, stored by another client) is dead.
        let others: Vec<&Id> = members
            .iter()
            .filter(|m| **m != self.member && proto::key_fits(&self.keys.member(m)))
            .collect();
        if members.contains(&self.member) {
            alive.insert(self.member.clone());
        }
        if others.is_empty() {
            return Ok(alive);
        }
        let mut batch = Batch::default();
        let mut by_tag = HashMap::with_capacity(others.len());
        for member in &others {
            let tag = batch.push_quiet(Verb::Get, &self.keys.member(member), &[], b"");
            by_tag.insert(tag.to_string().into_bytes(), *member);
        }
        // The end of the quiet gets: a request that always answers.
        batch.push(Verb::Get, &self.keys.group_list(), &[], b"");
        let replies = self.call(batch).await?;
        let last = replies.len().saturating_sub(1);
        for (i, reply) in replies.into_iter().enumerate() {
            match reply {
                Reply::Done(_) | Reply::Value(..) | Reply::Miss(_) if i == last => {}
                Reply::Done(meta) | Reply::Value(meta, _) => {
                    let member = meta.opaque.and_then(|o| by_tag.get(&o).copied());
                    match member {
                        Some(member) => {
                            alive.insert(member.clone());
                        }
                        None => return Err(unexpected("a multi-get", None)),
                    }
                }
                other => return Err(unexpected("a multi-get", Some(&other))),
            }
        }
        Ok(alive)
    }

    /// The live members of `group`; dead ones are dropped from the stored group on the way
    /// (best effort: a conflicting write means someone else wrote a newer group).
    async fn live_group(&self, group: &Id) -> Result<Group> {
        let (mut stored, cas) = self
            .read_group(group)
            .await?
            .ok_or_else(|| group_not_created(group))?;
        let alive = self.alive(&stored.members()).await?;
        let before = stored.members().len();
        stored.retain(|m| alive.contains(m));
        if stored.members().len() != before {
            let flags = [Flag::Num('C', cas), Flag::Num('F', u64::from(MSGPACK))];
            let key = self.keys.group(group);
            let pruned = self
                .call1(req(Verb::Set, &key, &flags, &stored.encode()))
                .await;
            if let Err(error) = pruned {
                tracing::debug!(%group, %error, "dropping dead members failed");
            }
        }
        Ok(stored)
    }

    async fn add_to_group_list(&self, group: &Id) -> Result<()> {
        self.cas_loop(&self.keys.group_list(), |current| {
            let mut items = match current {
                Some((flags, bytes)) => layout::decode_group_list(flags, bytes)?,
                None => Vec::new(),
            };
            if layout::list_contains(&items, group) {
                return Ok(Edit::Done(()));
            }
            layout::list_insert(&mut items, group);
            Ok(Edit::Write(layout::encode_group_list(&items), ()))
        })
        .await
    }

    async fn remove_from_group_list(&self, group: &Id) -> Result<()> {
        self.cas_loop(&self.keys.group_list(), |current| {
            let Some((flags, bytes)) = current else {
                return Ok(Edit::Done(()));
            };
            let mut items = layout::decode_group_list(flags, bytes)?;
            if !layout::list_contains(&items, group) {
                return Ok(Edit::Done(()));
            }
            layout::list_remove(&mut items, group);
            Ok(Edit::Write(layout::encode_group_list(&items), ()))
        })
        .await
    }

    /// The server's pid and start time (`stats`).
    async fn server_id(&self, client: &Client) -> Result<(String, i64)> {
        // A tagged request first: the stats lines that follow are this call's.
        let mut batch = Batch::one(Verb::Get, &self.keys.group_list(), &[], b"");
        batch.stats();
        let replies = client
            .call(batch)
            .await
            .map_err(|e| call_error(&self.cfg, e))?;
        let stat = |name: &str| {
            replies.iter().find_map(|r| match r {
                Reply::Stat(n, v) if n == name => Some(v.clone()),
                _ => None,
            })
        };
        let number = |name: &str| stat(name).and_then(|v| v.parse::<i64>().ok());
        match (stat("pid"), number("time"), number("uptime")) {
            (Some(pid), Some(time), Some(uptime)) => Ok((pid, time - uptime)),
            _ => Err(unexpected("stats", replies.last())),
        }
    }

    /// True when the server is not the one of the last heartbeat (it restarted).
    async fn server_changed(&self, session: &Session) -> Result<bool> {
        let (pid, started) = self.server_id(&session.client).await?;
        let mut known = session.server.lock().unwrap();
        let changed = match known.as_ref() {
            // `time - uptime` may move by a second as the two are read.
            Some((p, s)) => *p != pid || (started - s).abs() > 2,
            None => false,
        };
        *known = Some((pid, started));
        Ok(changed)
    }

    /// Joins again, with the capabilities last given, every group this member joined that
    /// no longer lists it (evicted, dropped as dead, or forgotten by a restart), creating
    /// groups that are gone.
    async fn rejoin_groups(&self) {
        for (group, caps) in self.joined.list() {
            let listed = match self.read_group(&group).await {
                Ok(Some((stored, _))) => stored.contains(&self.member),
                Ok(None) => false,
                Err(error) => {
                    tracing::warn!(%group, %error, "cannot check this member's group");
                    continue;
                }
            };
            if listed {
                continue;
            }
            match join_again(self, &group, &self.member, &caps).await {
                Ok(true) => tracing::info!(%group, "joined the group again (its record was gone)"),
                Ok(false) => {}
                Err(error) => tracing::warn!(%group, %error, "cannot join the group again"),
            }
        }
    }

    /// Deletes the keys of locks reported lost elsewhere (the core, on a lost session), if
    /// they are still this acquisition's.
    async fn drop_lost_locks(&self, session: &Session) {
        for held in self.held.remove_lost() {
            let cas = *held.cas.lock().await;
            let bytes = req(Verb::Delete, &held.key, &[Flag::Num('C', cas)], b"");
            if let Err(error) = session.client.call(bytes).await {
                tracing::debug!(%error, "deleting a lost lock failed (it expires)");
            }
        }
    }

    /// A clean-up for an acquisition abandoned while its request is on the wire, and the
    /// hook that tells it what the server granted.
    fn grant_guard(
        &self,
        session: &Arc<Session>,
        key: &[u8],
    ) -> (Arc<Mutex<Grant>>, OnAbandon, Hook) {
        let grant = Arc::new(Mutex::new(Grant::Waiting));
        let release = {
            let (client, key, runtime) = (
                session.client.clone(),
                key.to_vec(),
                session.runtime.clone(),
            );
            move |cas: u64| {
                runtime.spawn(async move {
                    let bytes = req(Verb::Delete, &key, &[Flag::Num('C', cas)], b"");
                    if let Err(error) = client.call(bytes).await {
                        tracing::warn!(%error, "releasing an abandoned acquisition failed (it expires)");
                    }
                });
            }
        };
        let abandon = {
            let (grant, release) = (grant.clone(), release.clone());
            OnAbandon::run(move || {
                let mut state = grant.lock().unwrap();
                match *state {
                    Grant::Granted(cas) => release(cas),
                    Grant::Waiting => *state = Grant::Abandoned,
                    Grant::Abandoned | Grant::Kept => {}
                }
            })
        };
        let hook: Hook = {
            let grant = grant.clone();
            Box::new(move |replies: &[Reply]| {
                let Some(Reply::Done(meta)) = replies.first() else {
                    return;
                };
                let Some(cas) = meta.cas else { return };
                let mut state = grant.lock().unwrap();
                match *state {
                    Grant::Waiting => *state = Grant::Granted(cas),
                    Grant::Abandoned => release(cas),
                    Grant::Granted(_) | Grant::Kept => {}
                }
            })
        };
        (grant, abandon, hook)
    }

    /// Releases the acquisition whose item has `cas` (after a failed fencing counter).
    async fn delete_if(&self, key: &[u8], cas: u64) {
        let bytes = req(Verb::Delete, key, &[Flag::Num('C', cas)], b"");
        if let Err(error) = self.call(bytes).await {
            tracing::warn!(%error, "releasing an acquisition failed (it expires)");
        }
    }

    /// Why the lock of `held` is gone: `Broken` when `break_lock` left its CAS as a marker.
    async fn why_gone(&self, name: &Id, cas: u64) -> LostReason {
        let bytes = req(Verb::Get, &self.keys.broken(name), &[Flag::Bare('v')], b"");
        match self.call1(bytes).await {
            Ok(Reply::Value(_, data)) if data == cas.to_string().as_bytes() => LostReason::Broken,
            _ => LostReason::Expired,
        }
    }
}

#[async_trait]
impl Driver for MemcachedDriver {
    fn scheme(&self) -> &'static str {
        "memcached"
    }

    fn facts(&self) -> &DriverFacts {
        &self.facts
    }

    fn session_timeout(&self) -> Duration {
        self.cfg.window() / 2
    }

    /// The key's TTL less a second: memcached counts whole seconds.
    fn lock_lease(&self, name: &Id) -> Option<Duration> {
        Some(Duration::from_secs(self.lock_ttl(name).saturating_sub(1)))
    }

    fn validate_name(&self, kind: &'static str, name: &Id) -> Result<()> {
        match self.keys.misfit(kind, name) {
            Some(reason) => Err(Error::InvalidName {
                kind,
                name: name.to_string(),
                reason,
            }),
            None => Ok(()),
        }
    }

    async fn start(&self, _events: SessionEvents) -> Result<()> {
        #[allow(unused_mut)]
        let mut target = Target::tcp(
            &self.cfg.host,
            self.cfg.port,
            self.cfg.call_timeout,
            self.cfg.call_timeout,
        );
        #[cfg(feature = "memcached-tls")]
        if let Some(tls) = &self.cfg.tls {
            let (connector, name) = tls::connector(tls, &self.cfg.host)?;
            target.tls = Some(client::TlsTarget { connector, name });
        }
        let client = Arc::new(Client::new(target));
        let server = self.server_id(&client).await?;
        let session = Session {
            client,
            runtime: tokio::runtime::Handle::current(),
            server: Mutex::new(Some(server)),
        };
        self.session.set(Arc::new(session));
        Ok(())
    }

    async fn stop(&self) -> Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        self.joined.clear();
        self.held.clear();
        let key = self.keys.member(&self.member);
        let result = if proto::key_fits(&key) {
            let bytes = req(Verb::Delete, &key, &[], b"");
            session.client.call(bytes).await.map(drop)
        } else {
            Ok(())
        };
        session.client.close().await;
        result.map_err(|e| call_error(&self.cfg, e))
    }

    async fn heartbeat(&self) -> Result<Option<Duration>> {
        let session = self.session()?;
        let ttl = ttl_secs(self.cfg.membership_timeout);
        let flags = [Flag::Num('T', ttl), Flag::Num('F', u64::from(RAW))];
        let key = self.keys.member(&self.member);
        // A member id too long for a key cannot join a group (its name is refused there):
        // it has nothing to keep alive but its locks.
        if proto::key_fits(&key) {
            match self
                .call1(req(Verb::Set, &key, &flags, STILL_ALIVE))
                .await?
            {
                Reply::Done(_) => {}
                other => return Err(unexpected("the heartbeat", Some(&other))),
            }
        }
        if self.server_changed(&session).await? {
            tracing::warn!("the memcached server restarted: every lock is lost");
            self.held.lose_all(LostReason::Expired);
        }
        self.drop_lost_locks(&session).await;
        self.rejoin_groups().await;
        // Two beats fit in the session timeout (window / 2), with room for a failed one.
        Ok(Some(self.cfg.window() / 4))
    }

    async fn create_group(&self, group: &Id) -> Result<()> {
        let key = self.keys.group(group);
        let flags = [Flag::Word('M', "E"), Flag::Num('F', u64::from(MSGPACK))];
        match self
            .call1(req(Verb::Set, &key, &flags, EMPTY_GROUP))
            .await?
        {
            Reply::Done(_) => {}
            Reply::NotStored(_) => return Err(group_already_exist(group)),
            other => return Err(unexpected("create_group", Some(&other))),
        }
        self.add_to_group_list(group).await
    }

    async fn delete_group(&self, group: &Id) -> Result<()> {
        let key = self.keys.group(group);
        let mut deleted = false;
        for attempt in 0..CAS_TRIES {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let (stored, cas) = self
                .read_group(group)
                .await?
                .ok_or_else(|| group_not_created(group))?;
            if !self.alive(&stored.members()).await?.is_empty() {
                return Err(group_not_empty(group));
            }
            match self
                .call1(req(Verb::Delete, &key, &[Flag::Num('C', cas)], b""))
                .await?
            {
                Reply::Done(_) => {
                    deleted = true;
                    break;
                }
                Reply::NotFound(_) => return Err(group_not_created(group)),
                Reply::Exists(_) => continue,
                other => return Err(unexpected("delete_group", Some(&other))),
            }
        }
        if !deleted {
            return Err(Error::Backend {
                driver: "memcached",
                message: format!("group {group} kept changing: gave up deleting it"),
            });
        }
        self.joined.remove(group);
        self.remove_from_group_list(group).await
    }

    async fn get_groups(&self) -> Result<BTreeSet<Id>> {
        let key = self.keys.group_list();
        let bytes = req(Verb::Get, &key, &[Flag::Bare('v'), Flag::Bare('f')], b"");
        match self.call1(bytes).await? {
            Reply::Miss(_) => Ok(BTreeSet::new()),
            Reply::Value(meta, data) => {
                let items = layout::decode_group_list(meta.flags.unwrap_or(0), &data)?;
                Ok(layout::group_ids(&items).into_iter().collect())
            }
            other => Err(unexpected("get_groups", Some(&other))),
        }
    }

    async fn join_group(&self, group: &Id, member: &Id, caps: &Capabilities) -> Result<()> {
        self.cas_loop(&self.keys.group(group), |current| {
            let Some((flags, bytes)) = current else {
                return Err(group_not_created(group));
            };
            let mut stored =
                Group::decode(flags, bytes)?.ok_or_else(|| group_not_created(group))?;
            if stored.contains(member) {
                return Err(member_already_exist(group, member));
            }
            stored.insert(member, caps);
            Ok(Edit::Write(stored.encode(), ()))
        })
        .await?;
        if member == &self.member {
            self.joined.insert(group, caps);
        }
        Ok(())
    }

    async fn leave_group(&self, group: &Id, member: &Id) -> Result<()> {
        if member == &self.member {
            self.joined.remove(group);
        }
        self.cas_loop(&self.keys.group(group), |current| {
            let Some((flags, bytes)) = current else {
                return Err(group_not_created(group));
            };
            let mut stored =
                Group::decode(flags, bytes)?.ok_or_else(|| group_not_created(group))?;
            if !stored.remove(member) {
                return Err(member_not_joined(group, member));
            }
            Ok(Edit::Write(stored.encode(), ()))
        })
        .await
    }

    async fn get_members(&self, group: &Id) -> Result<BTreeSet<Id>> {
        Ok(self
            .live_group(group)
            .await?
            .members()
            .into_iter()
            .collect())
    }

    async fn get_members_with_capabilities(
        &self,
        group: &Id,
    ) -> Result<BTreeMap<Id, Capabilities>> {
        let live = self.live_group(group).await?;
        Ok(live
            .members()
            .into_iter()
            .filter_map(|m| live.capabilities(&m).map(|c| (m, c)))
            .collect())
    }

    async fn get_member_capabilities(&self, group: &Id, member: &Id) -> Result<Capabilities> {
        Ok(self.get_member_info(group, member).await?.capabilities)
    }

    async fn get_member_info(&self, group: &Id, member: &Id) -> Result<MemberInfo> {
        let (stored, _) = self
            .read_group(group)
            .await?
            .ok_or_else(|| group_not_created(group))?;
        let capabilities = stored
            .capabilities(member)
            .ok_or_else(|| member_not_joined(group, member))?;
        let key = self.keys.member(member);
        let ttl = match self
            .call1(req(Verb::Get, &key, &[Flag::Bare('t')], b""))
            .await?
        {
            Reply::Done(meta) => meta.ttl,
            Reply::Miss(_) if member == &self.member => None,
            Reply::Miss(_) => return Err(member_not_joined(group, member)),
            other => return Err(unexpected("mg", Some(&other))),
        };
        let mut extra = BTreeMap::new();
        if let Some(ttl) = ttl {
            extra.insert(
                "heartbeat_ttl_s".to_string(),
                crate::types::Value::from(ttl),
            );
        }
        Ok(MemberInfo {
            capabilities,
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
        self.cas_loop(&self.keys.group(group), |current| {
            let Some((flags, bytes)) = current else {
                return Err(group_not_created(group));
            };
            let mut stored =
                Group::decode(flags, bytes)?.ok_or_else(|| group_not_created(group))?;
            if !stored.set_capabilities(member, caps) {
                return Err(member_not_joined(group, member));
            }
            Ok(Edit::Write(stored.encode(), ()))
        })
        .await?;
        if member == &self.member {
            self.joined.update(group, caps);
        }
        Ok(())
    }

    async fn lock_try_acquire(&self, req_: &LockRequest) -> Result<Option<FencingToken>> {
        debug_assert_eq!(req_.mode, LockMode::Exclusive);
        let session = self.session()?;
        if self.yielding(&req_.name) {
            return Ok(None);
        }
        let key = self.keys.lock(&req_.name);
        let ttl = self.lock_ttl(&req_.name);
        let mut bytes = Batch::default();
        let add = [
            Flag::Word('M', "E"),
            Flag::Num('T', ttl),
            Flag::Num('F', u64::from(RAW)),
            Flag::Bare('c'),
        ];
        bytes.push(Verb::Set, &key, &add, req_.owner.as_bytes());
        let count = [
            Flag::Num('N', 0),
            Flag::Num('J', fresh_counter()),
            Flag::Bare('v'),
        ];
        bytes.push(Verb::Arithmetic, &self.keys.fence(&req_.name), &count, b"");
        let (grant, abandon, hook) = self.grant_guard(&session, &key);
        let replies = session
            .client
            .call_with_hook(bytes, Some(hook))
            .await
            .map_err(|e| call_error(&self.cfg, e));
        let replies = match replies {
            Ok(replies) => {
                // From here on nothing awaits before the outcome is recorded, but for the
                // clean-up of a failed fencing counter.
                *grant.lock().unwrap() = Grant::Kept;
                abandon.disarm();
                replies
            }
            // A grant that comes after all is released by the hook.
            Err(error) => {
                drop(abandon);
                return Err(error);
            }
        };
        let cas = match replies.first() {
            Some(Reply::Done(meta)) => meta.cas.unwrap_or(0),
            Some(Reply::NotStored(_)) => return Ok(None),
            other => return Err(unexpected("the lock add", other)),
        };
        let token = match replies.get(1) {
            Some(Reply::Value(_, digits)) => std::str::from_utf8(digits)
                .ok()
                .and_then(|d| d.trim().parse::<u64>().ok()),
            _ => None,
        };
        let Some(token) = token else {
            self.delete_if(&key, cas).await;
            return Err(unexpected("the fencing counter", replies.get(1)));
        };
        self.held.insert(
            req_,
            Arc::new(Held {
                key,
                fence: self.keys.fence(&req_.name),
                token,
                ttl,
                cas: tokio::sync::Mutex::new(cas),
            }),
        );
        Ok(Some(fencing::token(
            token >> COUNTER_BITS,
            token & COUNTER_LIMIT,
        )))
    }

    async fn lock_release(&self, req_: &LockRequest) -> Result<bool> {
        // Forgotten first: whatever happens next, no heartbeat renews it again.
        let Some(held) = self.held.remove(&req_.nonce) else {
            return Ok(false);
        };
        let held = held.record;
        let cas = held.cas.lock().await;
        let mut bytes = req(Verb::Delete, &held.key, &[Flag::Num('C', *cas)], b"");
        bytes.push(Verb::Get, &held.fence, &[Flag::Bare('v')], b"");
        let replies = self.call(bytes).await?;
        let released = match replies.first() {
            Some(Reply::Done(_)) => true,
            Some(Reply::Exists(_) | Reply::NotFound(_)) => false,
            other => return Err(unexpected("the lock delete", other)),
        };
        // Someone tried the lock while it was held (each try counts): let them have it.
        let counter = match replies.get(1) {
            Some(Reply::Value(_, digits)) => std::str::from_utf8(digits)
                .ok()
                .and_then(|d| d.trim().parse::<u64>().ok()),
            _ => None,
        };
        if released && counter.is_some_and(|c| c > held.token) {
            let until = std::time::Instant::now() + self.yield_window();
            self.yields.lock().unwrap().insert(req_.name.clone(), until);
        }
        Ok(released)
    }

    async fn lock_refresh(&self, req_: &LockRequest) -> Result<bool> {
        let Some(held) = self.held.read(&req_.nonce, Arc::clone) else {
            return Ok(false);
        };
        let mut cas = held.cas.lock().await;
        if !self.held.contains(&req_.nonce) {
            // Released meanwhile.
            return Ok(false);
        }
        let flags = [
            Flag::Num('C', *cas),
            Flag::Num('T', held.ttl),
            Flag::Num('F', u64::from(RAW)),
            Flag::Bare('c'),
        ];
        let bytes = req(Verb::Set, &held.key, &flags, req_.owner.as_bytes());
        match self.call1(bytes).await? {
            Reply::Done(meta) => {
                *cas = meta.cas.unwrap_or(*cas);
                Ok(true)
            }
            Reply::Exists(_) | Reply::NotFound(_) | Reply::NotStored(_) => {
                let reason = self.why_gone(&req_.name, *cas).await;
                self.held.lose(&req_.nonce, reason);
                Ok(false)
            }
            other => Err(unexpected("the lock refresh", Some(&other))),
        }
    }

    async fn lock_break(&self, name: &Id) -> Result<bool> {
        let key = self.keys.lock(name);
        for attempt in 0..BREAK_TRIES {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let cas = match self
                .call1(req(Verb::Get, &key, &[Flag::Bare('c')], b""))
                .await?
            {
                Reply::Miss(_) => return Ok(false),
                Reply::Done(meta) | Reply::Value(meta, _) => meta.cas.unwrap_or(0),
                other => return Err(unexpected("mg", Some(&other))),
            };
            // The marker first: a holder that finds its lock gone finds it too.
            let marker = [Flag::Num('T', self.lock_ttl(name))];
            let broken = self.keys.broken(name);
            let mut bytes = req(Verb::Set, &broken, &marker, cas.to_string().as_bytes());
            bytes.push(Verb::Delete, &key, &[Flag::Num('C', cas)], b"");
            let replies = self.call(bytes).await?;
            match replies.get(1) {
                Some(Reply::Done(_)) => {
                    // Holders in this process learn it at once.
                    self.held.lose_where(
                        |h| h.key == key && h.cas.try_lock().is_ok_and(|c| *c == cas),
                        LostReason::Broken,
                    );
                    return Ok(true);
                }
                Some(Reply::NotFound(_)) => return Ok(false),
                Some(Reply::Exists(_)) => continue,
                other => return Err(unexpected("the lock delete", other)),
            }
        }
        Err(Error::Backend {
            driver: "memcached",
            message: format!("lock {name} kept changing hands: gave up breaking it"),
        })
    }

    async fn lock_holder(&self, name: &Id) -> Result<Option<Id>> {
        let key = self.keys.lock(name);
        let bytes = req(Verb::Get, &key, &[Flag::Bare('v'), Flag::Bare('f')], b"");
        match self.call1(bytes).await? {
            Reply::Miss(_) => Ok(None),
            Reply::Value(meta, data) => Ok(Some(layout::holder(meta.flags.unwrap_or(0), &data)?)),
            other => Err(unexpected("mg", Some(&other))),
        }
    }

    async fn lock_changed(&self, _name: &Id) -> Result<ChangeWait> {
        Ok(Box::pin(tokio::time::sleep(self.cfg.lock_poll_interval)))
    }

    fn leader_lock_name(&self, group: &Id) -> Id {
        Id::from([LEADER_PREFIX, group.as_bytes()].concat())
    }
}

impl std::fmt::Debug for MemcachedDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemcachedDriver")
            .field("config", &self.cfg)
            .field("member", &self.member)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_cover_the_timeout_on_a_coarse_clock() {
        assert_eq!(ttl_secs(Duration::from_secs(30)), 31);
        assert_eq!(ttl_secs(Duration::from_millis(1500)), 3);
        assert_eq!(ttl_secs(Duration::from_millis(1)), 2);
    }

    #[test]
    fn fresh_counters_start_a_new_epoch() {
        let first = fresh_counter();
        assert_eq!(first & COUNTER_LIMIT, 0);
        assert!(first >> COUNTER_BITS > 0);
        std::thread::sleep(Duration::from_millis(2));
        assert!(fresh_counter() > first);
    }

    #[test]
    fn backoff_is_bounded_and_jittered() {
        for n in 0..CAS_TRIES {
            let wait = backoff(n);
            assert!(wait <= CAS_BACKOFF_CAP && wait > Duration::ZERO);
        }
    }

    #[test]
    fn leader_locks_are_named_as_python_names_them() {
        let url =
            DriverUrl::parse("memcached://127.0.0.1?leader_timeout=3&lock_timeout=9").unwrap();
        let driver = MemcachedDriver::new(&url, &"me".into()).unwrap();
        let name = driver.leader_lock_name(&"g".into());
        assert_eq!(name.as_bytes(), b"_TOOZ_GROUP_LEADER_g");
        assert_eq!(driver.lock_ttl(&name), 4);
        assert_eq!(driver.lock_ttl(&"g".into()), 10);
        assert_eq!(driver.session_timeout(), Duration::from_millis(1500));
    }
}
