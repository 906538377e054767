//! `etcd://`: etcd's v2 keys API (etcd 3.4 started with `--enable-v2`), over the HTTP
//! client the gateway driver uses.
//!
//! Locks are Python tooz 8.1's, so that Python and Rust processes exclude each other: the key
//! `/<urlsafe base64 of the name>` at the root of the keyspace, created with
//! `prevExist=false` and a TTL. Beyond Python tooz (locks only): groups, membership with
//! capabilities, watches, leader election, `get_leader`, fencing tokens and `lost()`.
//!
//! v2 has no leases and no multi-key transactions, so the lease-KV recipes (`lease_kv`) do
//! not fit: every key of a coordinator carries its own TTL, renewed by the heartbeat.
//!
//! # URL and options
//!
//! `etcd://host[:port][?option=value...]` (localhost, 2379).
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `timeout` | 30 s | TTL of every key of this coordinator (whole seconds, at least 1 s) |
//! | `lock_timeout`, `membership_timeout`, `leader_timeout` | `timeout` | the TTL is the shortest of these |
//! | `protocol` | `http` | `https` for TLS (cargo feature `etcd-tls`), as in Python tooz |
//! | `ca_cert` | the system's roots | CA certificates (PEM) for `https` |
//! | `cert_cert`, `cert_key` | — | client certificate and key (PEM) for `https` |
//! | `operation_timeout` | TTL / 8, 0.1 s to 5 s | longest one call may take |
//!
//! # Locks
//!
//! Acquire is one `PUT prevExist=false` whose value is the acquisition's nonce and member id
//! (`common::holder`); the fencing token is the key's `createdIndex`, which grows with every
//! write to the store. A waiter long-polls the key (`wait=true&waitIndex=` the index after
//! its failed attempt, so no release is missed) and tries again when it changes: woken by
//! push, but in no particular order (no queue). Release is a `DELETE prevValue=` its own
//! value; a refresh (each heartbeat) a `PUT refresh=true prevValue=`; a lock found gone or
//! rewritten at a refresh was broken (`lost()`).
//!
//! # Groups
//!
//! A group is the directory `/_tooz/groups/~<base64 of its name>` (`/_tooz` is a name
//! Python's base64 lock keys, whose lengths are multiples of 4, never take); a member is a
//! key in it, `~<base64 of its id>`, holding the base64 of its msgpack capabilities, with
//! the TTL. A join reads the directory, creates the member key, and reads the directory
//! again: v2 makes missing directories, so one made anew meanwhile means the group was
//! deleted, and the join is undone. Names are at most 1,024 bytes (etcd refuses long request
//! lines). Watches long-poll the directory recursively, and re-read it when etcd's history
//! of 1,000 events moved past them ("event index cleared"). A `namespace` puts every key,
//! Python's lock keys included, under the directory `/~<base64 of the namespace>` (sharing
//! nothing with Python tooz, which has none).
//!
//! # Guarantees
//!
//! Writes and reads go through raft (linearizable; reads are not quorum reads: a member cut
//! off from its cluster may answer stale reads). A key lives TTL after its last renewal (etcd
//! expires keys every 0.5 s); the session is reported lost after half the TTL without one.

mod api;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::common::errors::{
    group_already_exist, group_not_created, group_not_empty, member_already_exist,
    member_not_joined,
};
use super::common::holder::{holder_of, holder_value};
use super::common::options::{count_with_common, with_common};
use super::common::{join_again, JoinedGroups, SessionSlot};
use super::http::HttpClient;
use crate::characteristics::{Characteristic as C, Characteristics};
use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::types::{
    Capabilities, ConnectionState, DriverFacts, FencingToken, GroupChange, GroupFeed, LockMode,
    LockRequest, LostReason, MemberInfo, SessionEvents, Support, DEFAULT_POLL_INTERVAL,
};
use crate::url::{DriverUrl, OptionKind, OptionSpec};
use api::{Answer, Node, Refusal, V2};

const OWN_OPTIONS: [OptionSpec; 4] = [
    OptionSpec {
        name: "protocol",
        kind: OptionKind::Text,
        help: "http (default) or https, as in Python tooz",
    },
    OptionSpec {
        name: "ca_cert",
        kind: OptionKind::Text,
        help: "CA certificates (PEM) for https (default: the system's)",
    },
    OptionSpec {
        name: "cert_cert",
        kind: OptionKind::Text,
        help: "client certificate (PEM) for https",
    },
    OptionSpec {
        name: "cert_key",
        kind: OptionKind::Text,
        help: "client key (PEM, unencrypted) for https",
    },
];
const OPTIONS: [OptionSpec; count_with_common(&OWN_OPTIONS)] = with_common(&OWN_OPTIONS);

pub(crate) const FACTS: DriverFacts = DriverFacts {
    characteristics: Characteristics::of(&[
        C::DistributedAcrossThreads,
        C::DistributedAcrossProcesses,
        C::DistributedAcrossHosts,
        C::Linearizable,
    ]),
    support: Support {
        shared_locks: false,
        ..Support::ALL
    },
    poll_interval: DEFAULT_POLL_INTERVAL,
    options: &OPTIONS,
};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const GROUPS: &str = "/_tooz/groups";
/// Longest one long poll lasts before it is sent again (etcd keeps it open indefinitely).
const LONG_POLL: Duration = Duration::from_secs(60);
/// How long a broken group watch waits before it reads again.
const REWATCH_DELAY: Duration = Duration::from_millis(100);

pub(crate) fn build(url: &DriverUrl, member: &Id) -> Result<Arc<dyn Driver>> {
    let options = url.options("etcd", &OPTIONS)?;
    let timeout = options.duration("timeout").unwrap_or(DEFAULT_TIMEOUT);
    let ttl = timeout
        .min(options.duration("lock_timeout").unwrap_or(timeout))
        .min(options.duration("membership_timeout").unwrap_or(timeout))
        .min(options.duration("leader_timeout").unwrap_or(timeout));
    let ttl_secs = ttl.as_secs_f64().ceil() as u64;
    if ttl_secs < 1 {
        return Err(Error::InvalidOption {
            option: "timeout".into(),
            value: format!("{ttl:?}"),
            expected: "at least 1 s (etcd's TTLs are whole seconds)".into(),
        });
    }
    let call_timeout = options
        .duration("operation_timeout")
        .unwrap_or((ttl / 8).clamp(Duration::from_millis(100), Duration::from_secs(5)));
    if url.hosts().len() > 1 {
        return Err(Error::InvalidUrl {
            url: url.to_string(),
            reason: "one endpoint per etcd:// URL".into(),
        });
    }
    let host = url.host().unwrap_or("localhost");
    let host_port = format!("{host}:{}", url.port().unwrap_or(2379));
    let http = match options.text("protocol").unwrap_or("http") {
        "http" => HttpClient::plain(&host_port, call_timeout),
        "https" => https(&host_port, call_timeout, &options)?,
        other => {
            return Err(Error::InvalidOption {
                option: "protocol".into(),
                value: other.to_string(),
                expected: "http or https".into(),
            })
        }
    };
    Ok(Arc::new(EtcdV2Driver {
        facts: FACTS.with_options(&options),
        paths: Paths::new(options.text("namespace")),
        api: Arc::new(V2 { http }),
        ttl: Duration::from_secs(ttl_secs),
        member: member.clone(),
        session: SessionSlot::new("etcd"),
        joined: JoinedGroups::default(),
    }))
}

#[cfg(feature = "etcd-tls")]
fn https(host_port: &str, timeout: Duration, options: &crate::url::Options) -> Result<HttpClient> {
    let file = |name| options.text(name).map(std::path::PathBuf::from);
    let files = crate::drivers::tls_config::TlsFiles {
        ca_cert: file("ca_cert"),
        cert: file("cert_cert"),
        key: file("cert_key"),
        check_hostname: true,
    };
    let config = crate::drivers::tls_config::client_config(&files)?;
    Ok(HttpClient::tls(host_port, timeout, config))
}

#[cfg(not(feature = "etcd-tls"))]
fn https(_: &str, _: Duration, _: &crate::url::Options) -> Result<HttpClient> {
    Err(Error::DriverUnavailable {
        scheme: "etcd".into(),
        why: "built without TLS (enable the cargo feature `etcd-tls` of the tooz crate)".into(),
    })
}

/// The etcd v2 driver. See the module docs.
pub struct EtcdV2Driver {
    facts: DriverFacts,
    paths: Paths,
    api: Arc<V2>,
    ttl: Duration,
    member: Id,
    session: SessionSlot<SessionEvents>,
    joined: JoinedGroups,
}

/// Longest name accepted: etcd refuses request lines much over 4 KB, and a member's path
/// holds two names, base64-encoded.
const MAX_NAME: usize = 1024;

/// A path segment for a group or member name (or a namespace): `~` and its url-safe base64
/// (etcd hides keys that start with `_`, which base64 may).
fn segment(name: &[u8]) -> String {
    format!("~{}", URL_SAFE_NO_PAD.encode(name))
}

/// The driver's keys, under the namespace's directory when there is one.
#[derive(Debug, Clone)]
struct Paths {
    root: String,
}

impl Paths {
    fn new(namespace: Option<&str>) -> Self {
        let root = namespace.map_or_else(String::new, |ns| format!("/{}", segment(ns.as_bytes())));
        Paths { root }
    }

    /// Python tooz's lock key: the name's padded url-safe base64 (at the root of the
    /// keyspace without a namespace).
    fn lock(&self, name: &Id) -> String {
        format!("{}/{}", self.root, URL_SAFE.encode(name.as_bytes()))
    }

    fn groups(&self) -> String {
        format!("{}{GROUPS}", self.root)
    }

    fn group(&self, group: &Id) -> String {
        format!("{}/{}", self.groups(), segment(group.as_bytes()))
    }

    fn member(&self, group: &Id, member: &Id) -> String {
        format!("{}/{}", self.group(group), segment(member.as_bytes()))
    }
}

/// The name in the last segment of `key`.
fn name_of(key: &str) -> Option<Id> {
    let last = key.rsplit('/').next()?.strip_prefix('~')?;
    URL_SAFE_NO_PAD.decode(last).ok().map(Id::from)
}

fn caps_of(value: &str) -> Result<Capabilities> {
    if value.is_empty() {
        return Ok(Capabilities::none());
    }
    let bytes = STANDARD
        .decode(value)
        .map_err(|e| Error::Serialization(format!("member capabilities: {e}")))?;
    Capabilities::from_msgpack(&bytes)
}

fn refused(what: &str, refusal: Refusal) -> Error {
    Error::Backend {
        driver: "etcd",
        message: format!("{what}: {} (etcd error {})", refusal.message, refusal.code),
    }
}

fn check_mode(req: &LockRequest) -> Result<()> {
    match req.mode {
        LockMode::Exclusive => Ok(()),
        LockMode::Shared => Err(Error::NotImplemented {
            driver: "etcd",
            operation: "shared locks",
            reason: "a v2 key has one holder",
        }),
    }
}

impl EtcdV2Driver {
    fn ttl_form(&self) -> String {
        format!("ttl={}", self.ttl.as_secs())
    }

    fn lock_value(&self, req: &LockRequest) -> String {
        String::from_utf8_lossy(&holder_value(&req.nonce, &self.member)).into_owned()
    }

    /// One attempt: `Ok(token)`, or the store's index when the lock was taken.
    async fn try_once(&self, req: &LockRequest) -> Result<std::result::Result<FencingToken, u64>> {
        self.session.get()?;
        let form = format!(
            "value={}&{}",
            api::encode(&self.lock_value(req)),
            self.ttl_form()
        );
        match self
            .api
            .call("PUT", &self.paths.lock(&req.name), "prevExist=false", &form)
            .await?
        {
            Ok((node, _)) => Ok(Ok(FencingToken(node.created_index))),
            Err(r) if r.code == api::NODE_EXISTS => Ok(Err(r.index)),
            Err(r) => Err(refused("taking the lock", r)),
        }
    }

    /// Whether the group's directory exists.
    async fn group_exists(&self, group: &Id) -> Result<bool> {
        match self
            .api
            .call("GET", &self.paths.group(group), "", "")
            .await?
        {
            Ok(_) => Ok(true),
            Err(r) if r.code == api::KEY_NOT_FOUND => Ok(false),
            Err(r) => Err(refused("reading the group", r)),
        }
    }

    /// The error for `member` missing from `group`.
    async fn not_joined(&self, group: &Id, member: &Id) -> Error {
        match self.group_exists(group).await {
            Ok(true) => member_not_joined(group, member),
            Ok(false) => group_not_created(group),
            Err(error) => error,
        }
    }

    async fn read_group(&self, group: &Id) -> Result<(Vec<Node>, u64)> {
        match self
            .api
            .call("GET", &self.paths.group(group), "", "")
            .await?
        {
            Ok((node, index)) => Ok((node.nodes, index)),
            Err(r) if r.code == api::KEY_NOT_FOUND => Err(group_not_created(group)),
            Err(r) => Err(refused("reading the group", r)),
        }
    }

    /// Renews this member's keys; joins again where one expired.
    async fn renew_memberships(&self) -> Result<()> {
        for (group, caps) in self.joined.list() {
            let path = self.paths.member(&group, &self.member);
            let query = "prevExist=true&refresh=true";
            match self.api.call("PUT", &path, query, &self.ttl_form()).await? {
                Ok(_) => {}
                Err(r) if r.code == api::KEY_NOT_FOUND => {
                    match join_again(self, &group, &self.member, &caps).await {
                        Ok(_) => tracing::info!(%group, "joined the group again"),
                        Err(error) => tracing::warn!(%group, %error, "cannot join again"),
                    }
                }
                Err(r) => return Err(refused("renewing a membership", r)),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Driver for EtcdV2Driver {
    fn scheme(&self) -> &'static str {
        "etcd"
    }

    fn facts(&self) -> &DriverFacts {
        &self.facts
    }

    /// Half the TTL: heartbeats come every quarter (see the module docs).
    fn session_timeout(&self) -> Duration {
        self.ttl / 2
    }

    fn lock_lease(&self, _name: &Id) -> Option<Duration> {
        Some(self.ttl)
    }

    fn validate_name(&self, kind: &'static str, name: &Id) -> Result<()> {
        if name.as_bytes().len() > MAX_NAME {
            return Err(Error::InvalidName {
                kind,
                name: name.to_string(),
                reason: format!("longer than {MAX_NAME} bytes (etcd's request lines are short)"),
            });
        }
        Ok(())
    }

    async fn start(&self, events: SessionEvents) -> Result<()> {
        self.api.check().await?;
        self.session.set(Arc::new(events));
        Ok(())
    }

    async fn stop(&self) -> Result<()> {
        if self.session.take().is_none() {
            return Ok(());
        }
        let mut result = Ok(());
        for group in self.joined.names() {
            let path = self.paths.member(&group, &self.member);
            if let Err(error) = self.api.call("DELETE", &path, "", "").await {
                result = Err(error);
            }
        }
        self.joined.clear();
        result
    }

    async fn heartbeat(&self) -> Result<Option<Duration>> {
        let events = self.session.get()?;
        if events.current() == ConnectionState::Lost {
            // The core gave the session up: what it held was reported lost. Memberships are
            // joined again below; locks are the application's to take again.
            tracing::info!("a new session after a lost one");
        }
        self.renew_memberships().await?;
        Ok(Some(self.ttl / 4))
    }

    async fn create_group(&self, group: &Id) -> Result<()> {
        match self
            .api
            .call(
                "PUT",
                &self.paths.group(group),
                "dir=true&prevExist=false",
                "",
            )
            .await?
        {
            Ok(_) => Ok(()),
            Err(r) if r.code == api::NODE_EXISTS || r.code == 102 => {
                Err(group_already_exist(group))
            }
            Err(r) => Err(refused("creating the group", r)),
        }
    }

    async fn delete_group(&self, group: &Id) -> Result<()> {
        match self
            .api
            .call("DELETE", &self.paths.group(group), "dir=true", "")
            .await?
        {
            Ok(_) => Ok(()),
            Err(r) if r.code == api::KEY_NOT_FOUND => Err(group_not_created(group)),
            Err(r) if r.code == api::DIR_NOT_EMPTY => Err(group_not_empty(group)),
            Err(r) => Err(refused("deleting the group", r)),
        }
    }

    async fn get_groups(&self) -> Result<BTreeSet<Id>> {
        match self.api.call("GET", &self.paths.groups(), "", "").await? {
            Ok((node, _)) => Ok(node
                .nodes
                .iter()
                .filter(|n| n.dir)
                .filter_map(|n| name_of(&n.key))
                .collect()),
            Err(r) if r.code == api::KEY_NOT_FOUND => Ok(BTreeSet::new()),
            Err(r) => Err(refused("listing groups", r)),
        }
    }

    async fn join_group(&self, group: &Id, member: &Id, caps: &Capabilities) -> Result<()> {
        self.session.get()?;
        let dir = match self
            .api
            .call("GET", &self.paths.group(group), "", "")
            .await?
        {
            Ok((dir, _)) => dir,
            Err(r) if r.code == api::KEY_NOT_FOUND => return Err(group_not_created(group)),
            Err(r) => return Err(refused("reading the group", r)),
        };
        let path = self.paths.member(group, member);
        let form = format!(
            "value={}&{}",
            api::encode(&STANDARD.encode(caps.to_msgpack())),
            self.ttl_form()
        );
        match self
            .api
            .call("PUT", &path, "prevExist=false", &form)
            .await?
        {
            Ok(_) => {}
            Err(r) if r.code == api::NODE_EXISTS => {
                return Err(member_already_exist(group, member))
            }
            Err(r) => return Err(refused("joining the group", r)),
        }
        // etcd makes missing directories: if the group was deleted between the read and the
        // write, the write made it again, and the join is undone.
        let now: Answer = self
            .api
            .call("GET", &self.paths.group(group), "", "")
            .await?;
        if !matches!(&now, Ok((again, _)) if again.created_index == dir.created_index) {
            let _ = self.api.call("DELETE", &path, "", "").await;
            let _ = self
                .api
                .call("DELETE", &self.paths.group(group), "dir=true", "")
                .await;
            return Err(group_not_created(group));
        }
        if *member == self.member {
            self.joined.insert(group, caps);
        }
        Ok(())
    }

    async fn leave_group(&self, group: &Id, member: &Id) -> Result<()> {
        match self
            .api
            .call("DELETE", &self.paths.member(group, member), "", "")
            .await?
        {
            Ok(_) => {
                if *member == self.member {
                    self.joined.remove(group);
                }
                Ok(())
            }
            Err(r) if r.code == api::KEY_NOT_FOUND => Err(self.not_joined(group, member).await),
            Err(r) => Err(refused("leaving the group", r)),
        }
    }

    async fn get_members_with_capabilities(
        &self,
        group: &Id,
    ) -> Result<BTreeMap<Id, Capabilities>> {
        let (nodes, _) = self.read_group(group).await?;
        nodes
            .iter()
            .filter(|n| !n.dir)
            .filter_map(|n| Some((name_of(&n.key)?, n)))
            .map(|(id, n)| Ok((id, caps_of(&n.value)?)))
            .collect()
    }

    async fn get_member_info(&self, group: &Id, member: &Id) -> Result<MemberInfo> {
        match self
            .api
            .call("GET", &self.paths.member(group, member), "", "")
            .await?
        {
            Ok((node, _)) => {
                let mut extra = BTreeMap::new();
                extra.insert(
                    "created_index".to_string(),
                    rmpv::Value::from(node.created_index),
                );
                Ok(MemberInfo {
                    capabilities: caps_of(&node.value)?,
                    joined_at: None,
                    extra,
                })
            }
            Err(r) if r.code == api::KEY_NOT_FOUND => Err(self.not_joined(group, member).await),
            Err(r) => Err(refused("reading the member", r)),
        }
    }

    async fn update_capabilities(
        &self,
        group: &Id,
        member: &Id,
        caps: &Capabilities,
    ) -> Result<()> {
        let form = format!(
            "value={}&{}",
            api::encode(&STANDARD.encode(caps.to_msgpack())),
            self.ttl_form()
        );
        match self
            .api
            .call(
                "PUT",
                &self.paths.member(group, member),
                "prevExist=true",
                &form,
            )
            .await?
        {
            Ok(_) => {
                if *member == self.member {
                    self.joined.update(group, caps);
                }
                Ok(())
            }
            Err(r) if r.code == api::KEY_NOT_FOUND => Err(self.not_joined(group, member).await),
            Err(r) => Err(refused("updating capabilities", r)),
        }
    }

    async fn subscribe_group(&self, group: &Id) -> Result<Option<(BTreeSet<Id>, GroupFeed)>> {
        let (nodes, index) = self.read_group(group).await?;
        let snapshot = nodes
            .iter()
            .filter(|n| !n.dir)
            .filter_map(|n| name_of(&n.key))
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(follow(
            self.api.clone(),
            self.paths.group(group),
            index + 1,
            tx,
        ));
        Ok(Some((snapshot, UnboundedReceiverStream::new(rx).boxed())))
    }

    async fn lock_try_acquire(&self, req: &LockRequest) -> Result<Option<FencingToken>> {
        check_mode(req)?;
        Ok(self.try_once(req).await?.ok())
    }

    async fn lock_acquire(
        &self,
        req: &LockRequest,
        deadline: Option<Instant>,
    ) -> Result<Option<FencingToken>> {
        check_mode(req)?;
        loop {
            let index = match self.try_once(req).await? {
                Ok(token) => return Ok(Some(token)),
                Err(index) => index,
            };
            let limit = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => LONG_POLL,
            };
            if limit.is_zero() {
                return Ok(None);
            }
            // Any change of the key after the failed attempt (a release, an expiry) or a
            // history that moved past it: try again.
            self.api
                .wait(&self.paths.lock(&req.name), index + 1, false, limit)
                .await?
                .ok();
        }
    }

    async fn lock_release(&self, req: &LockRequest) -> Result<bool> {
        let query = format!("prevValue={}", api::encode(&self.lock_value(req)));
        match self
            .api
            .call("DELETE", &self.paths.lock(&req.name), &query, "")
            .await?
        {
            Ok(_) => Ok(true),
            Err(r) if r.code == api::KEY_NOT_FOUND || r.code == api::COMPARE_FAILED => Ok(false),
            Err(r) => Err(refused("releasing the lock", r)),
        }
    }

    async fn lock_refresh(&self, req: &LockRequest) -> Result<bool> {
        let query = format!(
            "refresh=true&prevValue={}",
            api::encode(&self.lock_value(req))
        );
        match self
            .api
            .call("PUT", &self.paths.lock(&req.name), &query, &self.ttl_form())
            .await?
        {
            Ok(_) => Ok(true),
            // The heartbeat just worked: a key gone or rewritten was broken.
            Err(r) if r.code == api::KEY_NOT_FOUND || r.code == api::COMPARE_FAILED => {
                req.lost.fire(LostReason::Broken);
                Ok(false)
            }
            Err(r) => Err(refused("refreshing the lock", r)),
        }
    }

    async fn lock_break(&self, name: &Id) -> Result<bool> {
        match self
            .api
            .call("DELETE", &self.paths.lock(name), "", "")
            .await?
        {
            Ok(_) => Ok(true),
            Err(r) if r.code == api::KEY_NOT_FOUND => Ok(false),
            Err(r) => Err(refused("breaking the lock", r)),
        }
    }

    async fn lock_holder(&self, name: &Id) -> Result<Option<Id>> {
        match self.api.call("GET", &self.paths.lock(name), "", "").await? {
            Ok((node, _)) => holder_of("etcd", name, node.value.as_bytes()).map(Some),
            Err(r) if r.code == api::KEY_NOT_FOUND => Ok(None),
            Err(r) => Err(refused("reading the lock", r)),
        }
    }
}

/// Turns the directory's changes into group changes until the feed's reader goes away.
async fn follow(api: Arc<V2>, dir: String, mut index: u64, tx: mpsc::UnboundedSender<GroupChange>) {
    loop {
        let waited = tokio::select! {
            waited = api.wait(&dir, index, true, LONG_POLL) => waited,
            () = tx.closed() => return,
        };
        let change = match waited {
            Ok(Ok(None)) => continue,
            Ok(Ok(Some(change))) => {
                index = change.node.modified_index + 1;
                let member = name_of(&change.node.key).filter(|_| change.node.key != dir);
                match (change.action.as_str(), member) {
                    ("create", Some(member)) => GroupChange::Joined(member),
                    ("delete" | "expire" | "compareAndDelete", Some(member)) => {
                        GroupChange::Left(member)
                    }
                    (_, Some(_)) => continue,
                    (_, None) => GroupChange::Resync,
                }
            }
            // History moved on, or the server is away: read again from now, and diff.
            Ok(Err(_)) | Err(_) => {
                tokio::select! {
                    () = tokio::time::sleep(REWATCH_DELAY) => {}
                    () = tx.closed() => return,
                }
                match api.call("GET", &dir, "", "").await {
                    Ok(Ok((_, now))) => index = now + 1,
                    Ok(Err(refusal)) => index = refusal.index + 1,
                    Err(_) => continue,
                }
                GroupChange::Resync
            }
        };
        if tx.send(change).is_err() {
            return;
        }
    }
}

impl std::fmt::Debug for EtcdV2Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdV2Driver")
            .field("server", &self.api.http.server())
            .field("ttl", &self.ttl)
            .field("member", &self.member)
            .finish()
    }
}
