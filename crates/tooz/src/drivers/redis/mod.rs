//! `redis://`: Redis, directly, over a unix socket, or behind Sentinel.
//!
//! Wire-compatible with Python tooz 9.x's redis driver on the same server and namespace:
//! locks exclude each other both ways, groups, members and capabilities are read both ways,
//! and liveness is the same beat key. Beyond tooz: fencing tokens, `lost()` (pushed when a
//! lock is broken or taken over), `get_leader`, `stand_down_group_leader`, `get_member_info`,
//! push-based lock hand-off and membership watches, and atomic group operations.
//!
//! # URL and options
//!
//! `redis://[user:password@]host[:port][?option=value...]` (port 6379); `rediss://` or
//! `ssl=true` for TLS (cargo feature `redis-tls`: rustls with the ring provider, no OpenSSL;
//! without it a TLS URL is refused with [`Error::DriverUnavailable`]); `redis:///path/to/redis.sock`
//! for a unix socket (its password goes in the `password` option: `redis://:pw@/path` has an
//! empty host, which URL parsing rejects); `redis://sentinel-host:26379?sentinel=NAME&sentinel_fallback=host:port...`
//! for the master that Sentinel names. Options, with Python tooz's names and defaults:
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `timeout` | 30 s | default of `lock_timeout` and `membership_timeout` |
//! | `lock_timeout` | `timeout` | TTL of a lock key; kept alive by the heartbeat |
//! | `membership_timeout` | `timeout` | TTL of the beat key that keeps a member alive |
//! | `namespace` | `_tooz` | key prefix |
//! | `db` | 0 | database number |
//! | `socket_timeout` | min(`timeout`, window / 8, 10 s) | longest a command may take |
//! | `socket_connect_timeout` | `socket_timeout` | longest a connection attempt may take |
//! | `socket_keepalive` | false | TCP keepalive |
//! | `health_check_interval` | `socket_timeout`, at least 0.5 s | PING period of the pub/sub connection |
//! | `ssl`, `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile` | off | TLS to the data servers |
//! | `sentinel`, `sentinel_fallback` | — | master name, further Sentinels (repeatable) |
//! | `sentinel_username`, `sentinel_password`, `sentinel_ssl` | — | Sentinel credentials, TLS |
//! | `username`, `password` | — | credentials where the URL cannot carry them (ours) |
//! | `encoding`, `executor`, `retry_on_timeout`, `leader_timeout` | — | accepted for tooz URLs; no effect |
//! | `poll_interval` | 0.1 s | how often a lock waiter retries when no release is announced |
//! | `poll_cap` | `poll_interval` | longest single sleep of a waiter (it also wakes when the key expires) |
//! | `resync_interval` | 1 s | how often a watch re-reads membership (for changes nobody announces) |
//! | `wait_replicas`, `wait_timeout` | 0, 0.5 s | replicas that must acknowledge an acquisition (ours) |
//!
//! The window is min(`lock_timeout`, `membership_timeout`). Unknown options are errors;
//! passwords never appear in errors, logs or `Debug` output.
//!
//! # Layout
//!
//! Python tooz's keys (`N_groups`, `N_group:G`, `N_beats:M`, `N_<name>_lock`, leader locks
//! `N_leader_of_G_lock`) with its values (msgpack capabilities with bytes as bin and text as
//! str, `__created__` = `1`, `Not dead!`, a 32-hex-digit token), plus four fixed keys of ours
//! that no Python name can produce: see the `keys` module.
//!
//! # Locks
//!
//! Acquire is one Lua script: `SET key token NX PX lock_timeout`, and in the same atomic
//! step the fencing counter of the lock is incremented and our holder record written.
//! Release compares the token then deletes (redis-py's script) and publishes on
//! `N_rs:lock:<name>`; a waiter subscribes there before its last try, so it learns of a
//! release by one of us within one message; releases nobody announces (Python tooz, expiry)
//! are caught by retrying every min(PTTL of the key, `poll_cap`).
//!
//! Our waiters queue, first come first served: a busy attempt of `acquire` also puts its
//! token in the lock's queue (`N_rs:queue:<name>:order`, scored by arrival, and
//! `N_rs:queue:<name>:lease`, scored by expiry; see the `keys` module), in the same script.
//! While the queue has a live head, the acquire script refuses every other token of ours
//! (`try_acquire` included), so a releasing client that asks again at once goes to the back
//! and the head, woken by the release announcement, takes the lock on its next round trip.
//! A place lives max(4 × `poll_cap`, 1 s) and every retry renews it, so a crashed waiter
//! holds up a free lock at most that long; a waiter that gives up (timeout, dropped future)
//! leaves the queue at once and wakes the next. When nobody waits, the queue costs one
//! `EXISTS` inside the acquire script: still one round trip. Python tooz's clients do not
//! queue: they keep `SET NX PX` on the lock key, which still excludes everyone both ways,
//! and may take a free lock ahead of our queue.
//!
//! The heartbeat (every window / 4) refreshes the beat key and every held lock (compare
//! token then `PEXPIRE`). A lock whose key is gone or holds another token is lost: the
//! refresh says so and the core fires `lost()` (`Expired`); `break_lock` by one of us and a
//! takeover of an expired lock by one of us also tell the holder at once over its session
//! channel (`Broken`, `Expired`). A session whose heartbeat fails is `Suspended`, and `Lost`
//! (firing every `lost()`) after window / 2 without a successful heartbeat, before its keys
//! can expire.
//!
//! # Fencing tokens
//!
//! A token is `epoch << 22 | counter`. The counter is per lock name, incremented by the
//! acquire script. The epoch is bumped (to max(epoch + 1, the server's clock in ms since
//! 2020)) by the first acquisition on a master whose `run_id` differs from the one stored
//! with it, that is after every restart and every failover, and when a counter passes
//! 2²² − 1. Guaranteed: on one master, tokens of a name strictly increase. Across a restart
//! (with or without persistence) or a failover (even to a replica that missed the last
//! writes), tokens still increase provided the new master's clock reads later than the
//! previous master's did when it started its epoch: true on one host, and across hosts
//! whose clocks agree to better than the failover takes (seconds). Not guaranteed: against
//! clocks that jump back across a master change. `wait_replicas=N` additionally makes an
//! acquisition count only once N replicas acknowledged it (`WAIT`), else it is released and
//! the acquire fails, so that a failover to an acknowledging replica keeps the lock key.
//! Python tooz's acquisitions take no token.
//!
//! # Membership
//!
//! A member is alive while its beat key exists. Join, leave, and the reads are Lua scripts:
//! a join never overwrites an existing member (Python's does before failing), reads drop
//! dead members (as Python's do, never the reader itself) and announce their leave, and
//! `delete_group` ignores dead members. Our scripts publish every join and leave on
//! `N_rs:group:<G>`; watches also re-read membership every `resync_interval` and after a
//! reconnect, which is how joins and leaves by Python tooz peers and expiries nobody has
//! read yet are seen (such changes may be coalesced). `get_member_info` gives the beat
//! key's remaining TTL and, for members joined by us, the join time.
//!
//! # Failures
//!
//! With Sentinel the driver asks the Sentinels for the master whenever its connection
//! breaks or the server answers `READONLY`, and reads and lock attempts are retried once on
//! the new connection. Redis replication is asynchronous: a failover may lose the last
//! writes, so a lock held before it may be gone afterwards; the next refresh then reports
//! it lost. A server restart without persistence loses every group and lock: the locks are
//! reported lost, and the first heartbeat that reaches a server with another `run_id` joins
//! again (creating them if needed) the groups this member had joined, with the capabilities
//! it last gave.
//!
//! # Characteristics
//!
//! As Python tooz's: distributed across threads, processes and hosts, causal. Not
//! linearizable (failover loses writes) and timeout-based.

mod feed;
mod keys;
mod link;
mod options;
mod scripts;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::StreamExt;
use redis::{RedisError, Value};
use tokio::time::Instant;

use super::common::errors::{
    group_already_exist, group_not_created, group_not_empty, member_already_exist,
    member_not_joined,
};
use super::common::fencing::{self, COUNTER_LIMIT, EPOCH_BASE_MS};
use super::common::{join_again, JoinedGroups, OnAbandon, SessionSlot};
use crate::characteristics::{Characteristic as C, Characteristics};
use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::types::{
    Capabilities, DriverFacts, FencingToken, GroupChange, GroupFeed, LockMode, LockRequest,
    MemberInfo, SessionEvents, Support,
};
use crate::url::DriverUrl;
use feed::Feed;
use keys::{Keys, GROUP_EXISTS, STILL_ALIVE};
use link::{eval_on, Conn, Link};
use options::Config;
use scripts::Scripts;

pub(crate) const FACTS: DriverFacts = DriverFacts {
    characteristics: Characteristics::of(&[
        C::DistributedAcrossThreads,
        C::DistributedAcrossProcesses,
        C::DistributedAcrossHosts,
        C::Causal,
    ]),
    support: Support {
        shared_locks: false,
        ..Support::ALL
    },
    poll_interval: options::DEFAULT_POLL_INTERVAL,
    options: &options::REDIS_OPTIONS,
};

pub(crate) fn build(url: &DriverUrl, member: &Id) -> Result<Arc<dyn Driver>> {
    let cfg = Config::parse(url)?;
    let keys = Keys::new(&cfg.namespace);
    Ok(Arc::new(RedisDriver {
        facts: DriverFacts {
            poll_interval: cfg.poll_interval,
            ..FACTS
        },
        lock_ttl: millis(cfg.lock_timeout),
        queue_lease: millis(queue_lease(&cfg)),
        session_prefix: keys.session_prefix(),
        epoch_args: (
            EPOCH_BASE_MS.to_string().into_bytes(),
            COUNTER_LIMIT.to_string().into_bytes(),
        ),
        keys,
        cfg: Arc::new(cfg),
        member: member.clone(),
        joined: JoinedGroups::default(),
        session: SessionSlot::new("redis"),
    }))
}

/// The redis driver. See the module docs.
pub struct RedisDriver {
    facts: DriverFacts,
    cfg: Arc<Config>,
    keys: Keys,
    /// The lock TTL in ms, as an argument.
    lock_ttl: Vec<u8>,
    /// How long a waiter's place in a lock queue lives without a retry, in ms.
    queue_lease: Vec<u8>,
    /// `N_rs:session:`.
    session_prefix: Vec<u8>,
    /// The epoch base and counter limit, as arguments.
    epoch_args: (Vec<u8>, Vec<u8>),
    member: Id,
    /// The groups this member joined, to join again on a server that lost them.
    joined: JoinedGroups,
    session: SessionSlot<Session>,
}

/// One started session: its connections and its id.
struct Session {
    link: Arc<Link>,
    feed: Feed,
    sid: String,
    runtime: tokio::runtime::Handle,
    /// The `run_id` of the server whose data holds our memberships: a heartbeat reaching
    /// another one (a restart, a failover) joins our groups again.
    server: Mutex<Vec<u8>>,
}

/// The outcome of one acquisition attempt.
enum Attempt {
    Acquired(FencingToken),
    /// Held by someone else; the lock key expires in this many ms (negative: no TTL).
    Busy(i64),
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

fn array(value: Value) -> Option<Vec<Value>> {
    match value {
        Value::Array(items) | Value::Set(items) => Some(items),
        _ => None,
    }
}

fn unexpected(what: &str, value: &Value) -> Error {
    Error::Backend {
        driver: "redis",
        message: format!("unexpected reply to {what}: {value:?}"),
    }
}

/// How long a waiter's place in a lock queue lives: a waiter retries (and so renews it) at
/// least every `poll_cap`; a crashed waiter holds up a free lock at most this long.
fn queue_lease(cfg: &Config) -> Duration {
    (cfg.poll_cap * 4).max(Duration::from_secs(1))
}

fn millis(d: Duration) -> Vec<u8> {
    d.as_millis().max(1).to_string().into_bytes()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// Releases an acquisition whose attempt is abandoned mid-flight (its future dropped), in
/// case the server granted it.
fn release_if_granted(session: &Arc<Session>, keys: &Keys, name: &Id, token: &str) -> OnAbandon {
    let (session, keys) = (session.clone(), keys.clone());
    let (name, token) = (name.clone(), token.to_string());
    OnAbandon::spawn(session.runtime.clone(), async move {
        session.feed.forget(&token);
        let (lock_key, holders) = (keys.lock(&name), keys.holders());
        let channel = keys.lock_channel(&name);
        let args: [&[u8]; 3] = [token.as_bytes(), name.as_bytes(), &channel];
        let released = session
            .link
            .eval(&Scripts::get().release, &[&lock_key, &holders], &args, true)
            .await;
        if let Err(error) = released {
            tracing::warn!(lock = %name, %error, "releasing an abandoned acquisition failed");
        }
    })
}

/// Gives up a place in a lock's queue when a wait ends without the lock (timeout, error,
/// or its future dropped), so that the next waiter need not wait for the place to expire.
fn leave_queue_if_abandoned(
    session: &Arc<Session>,
    keys: &Keys,
    name: &Id,
    token: &str,
) -> OnAbandon {
    let (session, keys) = (session.clone(), keys.clone());
    let (name, token) = (name.clone(), token.to_string());
    OnAbandon::spawn(session.runtime.clone(), async move {
        dequeue(&session, &keys, &name, &token).await
    })
}

async fn dequeue(session: &Session, keys: &Keys, name: &Id, token: &str) {
    let (order, lease, lock) = (
        keys.queue_order(name),
        keys.queue_lease(name),
        keys.lock(name),
    );
    let channel = keys.lock_channel(name);
    let left = session
        .link
        .eval(
            &Scripts::get().dequeue,
            &[&order, &lease, &lock],
            &[token.as_bytes(), &channel],
            true,
        )
        .await;
    if let Err(error) = left {
        tracing::warn!(lock = %name, %error, "leaving the lock queue failed (the place expires)");
    }
}

impl RedisDriver {
    fn session(&self) -> Result<Arc<Session>> {
        self.session.get()
    }

    /// Joins again, with the capabilities last given, every group this member joined (and
    /// creates the ones that are gone): after a server that lost them (a restart without
    /// persistence, a failover that missed the last writes). True when every group is back.
    async fn rejoin_groups(&self) -> bool {
        let mut all_back = true;
        for (group, caps) in self.joined.list() {
            match join_again(self, &group, &self.member, &caps).await {
                Ok(true) => tracing::info!(%group, "joined the group again on a new redis server"),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%group, %error, "cannot join the group again on a new redis server");
                    all_back = false;
                }
            }
        }
        all_back
    }

    async fn eval(
        &self,
        lua: &scripts::Lua,
        keys: &[&[u8]],
        args: &[&[u8]],
        retry: bool,
    ) -> Result<Value> {
        self.session()?.link.eval(lua, keys, args, retry).await
    }

    /// Live members (with capabilities when `with_caps`), dropping dead ones.
    async fn members(&self, group: &Id, with_caps: bool) -> Result<Vec<Value>> {
        let (group_key, joined) = (self.keys.group(group), self.keys.joined());
        let (beats, channel) = (self.keys.beat_prefix(), self.keys.group_channel(group));
        let prefix = self.keys.joined_prefix(group);
        let flag: &[u8] = if with_caps { b"1" } else { b"0" };
        let reply = self
            .eval(
                &Scripts::get().members,
                &[&group_key, &joined],
                &[&beats, self.member.as_bytes(), &channel, &prefix, flag],
                true,
            )
            .await?;
        if int(&reply) == Some(-1) {
            return Err(group_not_created(group));
        }
        array(reply).ok_or_else(|| Error::Backend {
            driver: "redis",
            message: "unexpected reply to the members script".into(),
        })
    }

    /// One member's capabilities, beat TTL and join time; dead members are dropped.
    async fn member(&self, group: &Id, member: &Id) -> Result<(Capabilities, i64, Option<u64>)> {
        let keys = [
            self.keys.group(group),
            self.keys.beat(member),
            self.keys.joined(),
        ];
        let channel = self.keys.group_channel(group);
        let field = self.keys.joined_field(group, member);
        let reply = self
            .eval(
                &Scripts::get().member,
                &[&keys[0], &keys[1], &keys[2]],
                &[member.as_bytes(), self.member.as_bytes(), &channel, &field],
                true,
            )
            .await?;
        match int(&reply) {
            Some(-1) => return Err(group_not_created(group)),
            Some(-2) => return Err(member_not_joined(group, member)),
            _ => {}
        }
        let mut items = array(reply.clone())
            .filter(|items| items.len() == 3)
            .ok_or_else(|| unexpected("the member script", &reply))?
            .into_iter();
        let caps = bytes(items.next().unwrap_or_default())
            .ok_or_else(|| unexpected("the member script", &reply))?;
        let ttl = items.next().as_ref().and_then(int).unwrap_or(-2);
        let joined = items.next().as_ref().and_then(int).map(|ms| ms as u64);
        Ok((Capabilities::from_msgpack(&caps)?, ttl, joined))
    }

    fn lock_keys(&self, name: &Id) -> [Vec<u8>; 6] {
        [
            self.keys.lock(name),
            self.keys.fencing(),
            self.keys.holders(),
            self.keys.epoch(),
            self.keys.queue_order(name),
            self.keys.queue_lease(name),
        ]
    }

    /// One acquisition attempt (one round trip; two with `wait_replicas`). With `queue`, a
    /// busy attempt takes (or renews) a place in the lock's queue.
    async fn attempt(
        &self,
        session: &Arc<Session>,
        req: &LockRequest,
        queue: bool,
    ) -> Result<Attempt> {
        let keys = self.lock_keys(&req.name);
        let lease: &[u8] = if queue { &self.queue_lease } else { b"0" };
        let (ttl, prefix) = (&self.lock_ttl, &self.session_prefix);
        let (base, limit) = (&self.epoch_args.0, &self.epoch_args.1);
        let guard = release_if_granted(session, &self.keys, &req.name, &req.nonce);
        let (keys, ttl, prefix, base, limit) = (&keys, &ttl, &prefix, &base, &limit);
        let wait = (self.cfg.wait_replicas, self.cfg.wait_timeout);
        let reply = session
            .link
            .run(true, |conn| async move {
                let key_refs: [&[u8]; 6] =
                    [&keys[0], &keys[1], &keys[2], &keys[3], &keys[4], &keys[5]];
                let args: [&[u8]; 10] = [
                    req.nonce.as_bytes(),
                    ttl,
                    req.name.as_bytes(),
                    session.sid.as_bytes(),
                    req.owner.as_bytes(),
                    &conn.run_id,
                    prefix,
                    base,
                    limit,
                    lease,
                ];
                if wait.0 == 0 {
                    return eval_on(&conn, &Scripts::get().acquire, &key_refs, &args)
                        .await
                        .map(|v| (v, None));
                }
                acquire_and_wait(&conn, &key_refs, &args, wait).await
            })
            .await?;
        let (reply, acked) = reply;
        let items = array(reply.clone()).ok_or_else(|| unexpected("the acquire script", &reply))?;
        let field = |i: usize| items.get(i).and_then(int);
        let outcome = match field(0) {
            Some(1) => {
                let (epoch, counter) = (field(1).unwrap_or(0), field(2).unwrap_or(0));
                Attempt::Acquired(fencing::token(epoch.max(0) as u64, counter.max(0) as u64))
            }
            Some(0) => Attempt::Busy(field(1).unwrap_or(-1)),
            _ => return Err(unexpected("the acquire script", &reply)),
        };
        if let (Attempt::Acquired(_), Some(acked)) = (&outcome, acked) {
            if acked < self.cfg.wait_replicas as i64 {
                guard.disarm();
                if let Err(error) = self.release(&req.name, &req.nonce).await {
                    tracing::warn!(lock = %req.name, %error, "releasing an unacknowledged acquisition failed");
                }
                return Err(Error::Connection(format!(
                    "redis: acquisition of {} acknowledged by {acked} of {} replicas within {:?}",
                    req.name, self.cfg.wait_replicas, self.cfg.wait_timeout
                )));
            }
        }
        guard.disarm();
        if let Attempt::Acquired(_) = outcome {
            session.feed.hold(req);
        }
        Ok(outcome)
    }

    async fn release(&self, name: &Id, token: &str) -> Result<bool> {
        let session = self.session()?;
        session.feed.forget(token);
        let (lock_key, holders) = (self.keys.lock(name), self.keys.holders());
        let channel = self.keys.lock_channel(name);
        let reply = session
            .link
            .eval(
                &Scripts::get().release,
                &[&lock_key, &holders],
                &[token.as_bytes(), name.as_bytes(), &channel],
                true,
            )
            .await?;
        Ok(int(&reply) == Some(1))
    }
}

/// The acquire script and `WAIT` in one round trip; the number of replicas that acknowledged.
async fn acquire_and_wait(
    conn: &Arc<Conn>,
    keys: &[&[u8]],
    args: &[&[u8]],
    (replicas, timeout): (u64, Duration),
) -> std::result::Result<(Value, Option<i64>), RedisError> {
    let lua = &Scripts::get().acquire;
    let mut mux = conn.mux.clone();
    let mut pipe = redis::pipe();
    pipe.add_command(lua.evalsha(keys, args))
        .cmd("WAIT")
        .arg(replicas)
        .arg(timeout.as_millis() as u64);
    let replies: std::result::Result<Vec<Value>, RedisError> = pipe.query_async(&mut mux).await;
    let replies = match replies {
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            lua.load().query_async::<Value>(&mut mux).await?;
            pipe.query_async(&mut mux).await?
        }
        other => other?,
    };
    let mut replies = replies.into_iter();
    let reply = replies.next().unwrap_or_default();
    let acked = replies.next().as_ref().and_then(int);
    Ok((reply, acked))
}

#[async_trait]
impl Driver for RedisDriver {
    fn scheme(&self) -> &'static str {
        "redis"
    }

    fn facts(&self) -> &DriverFacts {
        &self.facts
    }

    fn session_timeout(&self) -> Duration {
        self.cfg.window() / 2
    }

    fn lock_lease(&self, _name: &Id) -> Option<Duration> {
        Some(self.cfg.lock_timeout)
    }

    fn validate_name(&self, kind: &'static str, name: &Id) -> Result<()> {
        if kind == "member" && name.as_bytes() == GROUP_EXISTS {
            return Err(Error::InvalidName {
                kind,
                name: name.to_string(),
                reason: "it is the field that marks a group as created".into(),
            });
        }
        Ok(())
    }

    async fn start(&self, events: SessionEvents) -> Result<()> {
        let link = Arc::new(Link::new(self.cfg.clone(), events)?);
        let server = Mutex::new(link.conn().await?.run_id.clone());
        let sid = format!("{:016x}", uuid::Uuid::new_v4().as_u64_pair().0);
        let feed = Feed::start(link.clone(), self.cfg.clone(), self.keys.clone(), &sid);
        let session = Session {
            link,
            feed,
            sid,
            runtime: tokio::runtime::Handle::current(),
            server,
        };
        self.session.set(Arc::new(session));
        Ok(())
    }

    async fn stop(&self) -> Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        self.joined.clear();
        let beat = self.keys.beat(&self.member);
        let result = session
            .link
            .query(redis::cmd("DEL").arg(&beat), false)
            .await;
        session.link.close();
        result.map(drop)
    }

    async fn heartbeat(&self) -> Result<Option<Duration>> {
        let session = self.session()?;
        let mut cmd = redis::cmd("PSETEX");
        cmd.arg(self.keys.beat(&self.member))
            .arg(self.cfg.membership_timeout.as_millis().max(1) as u64)
            .arg(STILL_ALIVE);
        session.link.query(&cmd, true).await?;
        let run_id = session.link.conn().await?.run_id.clone();
        if *session.server.lock().unwrap() != run_id && self.rejoin_groups().await {
            *session.server.lock().unwrap() = run_id;
        }
        // Two beats fit in the session timeout (window / 2), with room for a failed one.
        Ok(Some(self.cfg.window() / 4))
    }

    async fn create_group(&self, group: &Id) -> Result<()> {
        let (key, all) = (self.keys.group(group), self.keys.groups());
        let reply = self
            .eval(
                &Scripts::get().create_group,
                &[&key, &all],
                &[group.as_bytes()],
                false,
            )
            .await?;
        match int(&reply) {
            Some(1) => Ok(()),
            Some(0) => Err(group_already_exist(group)),
            _ => Err(unexpected("create_group", &reply)),
        }
    }

    async fn delete_group(&self, group: &Id) -> Result<()> {
        let (key, all, joined) = (
            self.keys.group(group),
            self.keys.groups(),
            self.keys.joined(),
        );
        let (beats, channel) = (self.keys.beat_prefix(), self.keys.group_channel(group));
        let prefix = self.keys.joined_prefix(group);
        let reply = self
            .eval(
                &Scripts::get().delete_group,
                &[&key, &all, &joined],
                &[group.as_bytes(), &beats, &channel, &prefix],
                false,
            )
            .await?;
        match int(&reply) {
            Some(1) => Ok(()),
            Some(-1) | Some(-2) => Err(group_not_created(group)),
            Some(-3) => Err(group_not_empty(group)),
            _ => Err(Error::Backend {
                driver: "redis",
                message: format!("could not remove group {group} from the group set"),
            }),
        }
    }

    async fn get_groups(&self) -> Result<BTreeSet<Id>> {
        let reply = self
            .session()?
            .link
            .query(redis::cmd("SMEMBERS").arg(self.keys.groups()), true)
            .await?;
        let items = array(reply.clone()).ok_or_else(|| unexpected("SMEMBERS", &reply))?;
        Ok(items.into_iter().filter_map(bytes).map(Id::from).collect())
    }

    async fn join_group(&self, group: &Id, member: &Id, caps: &Capabilities) -> Result<()> {
        let (key, joined) = (self.keys.group(group), self.keys.joined());
        let channel = self.keys.group_channel(group);
        let field = self.keys.joined_field(group, member);
        let (encoded, at) = (caps.to_msgpack(), now_ms().to_string());
        let reply = self
            .eval(
                &Scripts::get().join,
                &[&key, &joined],
                &[member.as_bytes(), &encoded, &channel, &field, at.as_bytes()],
                false,
            )
            .await?;
        match int(&reply) {
            Some(1) => {
                if member == &self.member {
                    self.joined.insert(group, caps);
                }
                Ok(())
            }
            Some(0) => Err(member_already_exist(group, member)),
            Some(-1) => Err(group_not_created(group)),
            _ => Err(unexpected("join_group", &reply)),
        }
    }

    async fn leave_group(&self, group: &Id, member: &Id) -> Result<()> {
        let (key, joined) = (self.keys.group(group), self.keys.joined());
        let channel = self.keys.group_channel(group);
        let field = self.keys.joined_field(group, member);
        let reply = self
            .eval(
                &Scripts::get().leave,
                &[&key, &joined],
                &[member.as_bytes(), &channel, &field],
                false,
            )
            .await?;
        if member == &self.member {
            self.joined.remove(group);
        }
        match int(&reply) {
            Some(1) => Ok(()),
            Some(-1) => Err(group_not_created(group)),
            Some(-2) => Err(member_not_joined(group, member)),
            _ => Err(unexpected("leave_group", &reply)),
        }
    }

    async fn get_members(&self, group: &Id) -> Result<BTreeSet<Id>> {
        let items = self.members(group, false).await?;
        Ok(items.into_iter().filter_map(bytes).map(Id::from).collect())
    }

    async fn get_members_with_capabilities(
        &self,
        group: &Id,
    ) -> Result<BTreeMap<Id, Capabilities>> {
        let items = self.members(group, true).await?;
        let mut out = BTreeMap::new();
        let mut items = items.into_iter();
        while let (Some(member), Some(caps)) = (items.next(), items.next()) {
            let (Some(member), Some(caps)) = (bytes(member), bytes(caps)) else {
                continue;
            };
            out.insert(Id::from(member), Capabilities::from_msgpack(&caps)?);
        }
        Ok(out)
    }

    async fn get_member_capabilities(&self, group: &Id, member: &Id) -> Result<Capabilities> {
        Ok(self.member(group, member).await?.0)
    }

    async fn get_member_info(&self, group: &Id, member: &Id) -> Result<MemberInfo> {
        let (capabilities, ttl, joined) = self.member(group, member).await?;
        let mut extra = BTreeMap::new();
        extra.insert(
            "heartbeat_ttl_ms".to_string(),
            crate::types::Value::from(ttl),
        );
        Ok(MemberInfo {
            capabilities,
            joined_at: joined.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
            extra,
        })
    }

    async fn update_capabilities(
        &self,
        group: &Id,
        member: &Id,
        caps: &Capabilities,
    ) -> Result<()> {
        let key = self.keys.group(group);
        let encoded = caps.to_msgpack();
        let reply = self
            .eval(
                &Scripts::get().update_capabilities,
                &[&key],
                &[member.as_bytes(), &encoded],
                true,
            )
            .await?;
        match int(&reply) {
            Some(1) => {
                if member == &self.member {
                    self.joined.update(group, caps);
                }
                Ok(())
            }
            Some(-1) => Err(group_not_created(group)),
            Some(-2) => Err(member_not_joined(group, member)),
            _ => Err(unexpected("update_capabilities", &reply)),
        }
    }

    async fn subscribe_group(&self, group: &Id) -> Result<Option<(BTreeSet<Id>, GroupFeed)>> {
        let session = self.session()?;
        let watch = session.feed.watch_group(group).await;
        let snapshot = self.get_members(group).await?;
        let period = self.cfg.resync_interval;
        let ticker = tokio::time::interval_at(Instant::now() + period, period);
        let feed = futures::stream::unfold((watch, ticker), |(mut watch, mut ticker)| async move {
            let change = tokio::select! {
                received = watch.rx.recv() => match received {
                    Ok(change) => change,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => GroupChange::Resync,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                },
                _ = ticker.tick() => GroupChange::Resync,
            };
            Some((change, (watch, ticker)))
        })
        .boxed();
        Ok(Some((snapshot, feed)))
    }

    async fn lock_try_acquire(&self, req: &LockRequest) -> Result<Option<FencingToken>> {
        debug_assert_eq!(req.mode, LockMode::Exclusive);
        let session = self.session()?;
        match self.attempt(&session, req, false).await? {
            Attempt::Acquired(token) => Ok(Some(token)),
            Attempt::Busy(_) => Ok(None),
        }
    }

    async fn lock_acquire(
        &self,
        req: &LockRequest,
        deadline: Option<Instant>,
    ) -> Result<Option<FencingToken>> {
        let session = self.session()?;
        // From the first busy attempt on, this waiter has a place in the queue.
        let queued = leave_queue_if_abandoned(&session, &self.keys, &req.name, &req.nonce);
        if let Attempt::Acquired(token) = self.attempt(&session, req, true).await? {
            queued.disarm();
            return Ok(Some(token));
        }
        // Subscribed before the next try: a release after that try is announced to us.
        let mut released = session.feed.watch_lock(&req.name).await;
        loop {
            let pttl = match self.attempt(&session, req, true).await? {
                Attempt::Acquired(token) => {
                    queued.disarm();
                    return Ok(Some(token));
                }
                Attempt::Busy(pttl) => pttl,
            };
            let mut nap = self.cfg.poll_cap;
            if pttl >= 0 {
                nap = nap.min(Duration::from_millis(pttl as u64 + 1));
            }
            let give_up = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = released.changed() => {}
                _ = tokio::time::sleep(nap) => {}
                _ = give_up => {
                    queued.undo_now().await;
                    return Ok(None);
                }
            }
        }
    }

    async fn lock_release(&self, req: &LockRequest) -> Result<bool> {
        self.release(&req.name, &req.nonce).await
    }

    async fn lock_refresh(&self, req: &LockRequest) -> Result<bool> {
        let session = self.session()?;
        let key = self.keys.lock(&req.name);
        let ttl = &self.lock_ttl;
        let reply = session
            .link
            .eval(
                &Scripts::get().refresh,
                &[&key],
                &[req.nonce.as_bytes(), ttl],
                true,
            )
            .await?;
        let held = int(&reply) == Some(1);
        if !held {
            session.feed.forget(&req.nonce);
        }
        Ok(held)
    }

    async fn lock_break(&self, name: &Id) -> Result<bool> {
        let (key, holders) = (self.keys.lock(name), self.keys.holders());
        let (channel, prefix) = (self.keys.lock_channel(name), &self.session_prefix);
        let reply = self
            .eval(
                &Scripts::get().break_lock,
                &[&key, &holders],
                &[name.as_bytes(), &channel, prefix],
                false,
            )
            .await?;
        Ok(int(&reply) == Some(1))
    }

    async fn lock_holder(&self, name: &Id) -> Result<Option<Id>> {
        let (key, holders) = (self.keys.lock(name), self.keys.holders());
        let reply = self
            .eval(
                &Scripts::get().holder,
                &[&key, &holders],
                &[name.as_bytes()],
                true,
            )
            .await?;
        if int(&reply) == Some(0) {
            return Ok(None);
        }
        let items = array(reply.clone()).ok_or_else(|| unexpected("the holder script", &reply))?;
        let mut items = items.into_iter();
        let kind = items.next().as_ref().and_then(int);
        let value = items.next().and_then(bytes);
        match (kind, value) {
            (Some(1), Some(member)) => Ok(Some(Id::from(member))),
            (Some(2), _) => Err(Error::Backend {
                driver: "redis",
                message: format!(
                    "lock {name} is held by a client that records no holder (such as Python tooz)"
                ),
            }),
            _ => Err(unexpected("the holder script", &reply)),
        }
    }
}

impl std::fmt::Debug for RedisDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDriver")
            .field("config", &self.cfg)
            .field("member", &self.member)
            .finish()
    }
}
