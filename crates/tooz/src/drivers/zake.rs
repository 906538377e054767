//! `zake://` (alias `memory://`): an in-process coordination server.
//!
//! Every coordinator of one process that names the same server (`zake://` is the default
//! server, `zake://NAME` another one) shares its groups and locks. Full API, push-based
//! (membership changes and lock hand-offs wake waiters directly), FIFO lock queues, fencing
//! tokens, shared locks. It is the reference the other drivers are compared with, and its
//! [`Server`] can simulate faults (suspended or expired sessions) for tests.
//!
//! Options: the common ones; `timeout` is the session timeout (default 10 s) after which a
//! suspended session counts as lost. `watch=poll` turns push off, so that the core's polling
//! and diffing fallback (what backends without push use) can be exercised; `lock_wait=retry`
//! replaces the FIFO queue by the retrying wait of [`acquire_by_retrying`] (what backends
//! without a lock queue use), so that it is exercised too.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::{broadcast, oneshot};
use tokio::time::Instant;
use tokio_stream::wrappers::BroadcastStream;

use super::common::errors::{
    group_already_exist, group_not_created, group_not_empty, member_already_exist,
    member_not_joined,
};
use super::common::options::{count_with_common, with_common};
use super::common::{OnAbandon, SessionSlot};
use crate::characteristics::{Characteristic as C, Characteristics};
use crate::driver::{acquire_by_retrying, Driver};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::types::{
    Capabilities, ConnectionState, DriverFacts, FencingToken, GroupChange, GroupFeed, LockMode,
    LockRequest, LostReason, LostSignal, MemberInfo, SessionEvents, Support, Value, WatchKind,
    DEFAULT_POLL_INTERVAL,
};
use crate::url::{DriverUrl, OptionKind, OptionSpec, Options};

pub(crate) const FACTS: DriverFacts = DriverFacts {
    characteristics: Characteristics::of(&[
        C::DistributedAcrossThreads,
        C::NonTimeoutBased,
        C::Linearizable,
        C::Sequential,
        C::SameViewAcrossClients,
    ]),
    support: Support::ALL,
    poll_interval: DEFAULT_POLL_INTERVAL,
    options: &ZAKE_OPTIONS,
};

const OWN_OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "watch",
        kind: OptionKind::Text,
        help: "`push` (default) or `poll`: poll and diff membership, as backends without push do",
    },
    OptionSpec {
        name: "lock_wait",
        kind: OptionKind::Text,
        help: "`queue` (default): FIFO hand-off; `retry`: try, wait for a change, try again (the \
               wait every driver without a queue of its own uses)",
    },
];

const ZAKE_OPTIONS: [OptionSpec; count_with_common(OWN_OPTIONS)] = with_common(OWN_OPTIONS);

const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
const FEED_CAPACITY: usize = 1024;

pub(crate) fn build(url: &DriverUrl, member: &Id) -> Result<Arc<dyn Driver>> {
    let options = url.options("zake", FACTS.options)?;
    if !matches!(url.path().as_str(), "" | "/") {
        return Err(Error::InvalidUrl {
            url: url.to_string(),
            reason: "a zake URL has no path: use zake:// or zake://SERVER-NAME".into(),
        });
    }
    let push = choice(&options, "watch", ["push", "poll"])? == "push";
    let queue = choice(&options, "lock_wait", ["queue", "retry"])? == "queue";
    let mut facts = FACTS.with_options(&options);
    if !push {
        facts.support.watch = WatchKind::Poll;
    }
    Ok(Arc::new(ZakeDriver {
        server: Server::named(url.host().unwrap_or("")),
        facts,
        queue,
        member: member.clone(),
        session: SessionSlot::new("zake"),
        timeout: options
            .duration("timeout")
            .unwrap_or(DEFAULT_SESSION_TIMEOUT),
    }))
}

/// The value of a text option that takes one of `allowed` (the first is the default).
fn choice(options: &Options, name: &str, allowed: [&'static str; 2]) -> Result<&'static str> {
    match options.text(name) {
        None => Ok(allowed[0]),
        Some(value) => {
            allowed
                .into_iter()
                .find(|a| *a == value)
                .ok_or_else(|| Error::InvalidOption {
                    option: name.into(),
                    value: value.chars().take(64).collect(),
                    expected: format!("`{}` or `{}`", allowed[0], allowed[1]),
                })
        }
    }
}

/// One in-process coordination server, shared by every coordinator whose URL names it.
pub struct Server {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_session: u64,
    sessions: HashMap<u64, SessionRec>,
    groups: BTreeMap<Id, BTreeMap<Id, MemberRec>>,
    feeds: HashMap<Id, broadcast::Sender<GroupChange>>,
    locks: HashMap<Id, LockRec>,
}

struct SessionRec {
    member: Id,
    events: SessionEvents,
    suspended: bool,
}

struct MemberRec {
    caps: Capabilities,
    joined_at: SystemTime,
    session: u64,
}

#[derive(Default)]
struct LockRec {
    holders: Vec<Holder>,
    waiters: VecDeque<Waiter>,
    last_token: u64,
}

struct Holder {
    nonce: String,
    owner: Id,
    mode: LockMode,
    session: u64,
    lost: LostSignal,
}

struct Waiter {
    req: LockRequest,
    session: u64,
    grant: oneshot::Sender<FencingToken>,
}

impl LockRec {
    fn compatible(&self, mode: LockMode) -> bool {
        match mode {
            LockMode::Exclusive => self.holders.is_empty(),
            LockMode::Shared => self.holders.iter().all(|h| h.mode == LockMode::Shared),
        }
    }

    fn grant(&mut self, req: &LockRequest, session: u64) -> FencingToken {
        self.last_token += 1;
        self.holders.push(Holder {
            nonce: req.nonce.clone(),
            owner: req.owner.clone(),
            mode: req.mode,
            session,
            lost: req.lost.clone(),
        });
        FencingToken(self.last_token)
    }

    fn remove_holder(&mut self, nonce: &str) -> Option<Holder> {
        let at = self.holders.iter().position(|h| h.nonce == nonce)?;
        Some(self.holders.remove(at))
    }

    /// Hands the lock to the waiters at the head of the queue, in order.
    fn grant_waiters(&mut self) {
        while let Some(front) = self.waiters.front() {
            if !self.compatible(front.req.mode) {
                return;
            }
            let waiter = self.waiters.pop_front().expect("front exists");
            let token = self.grant(&waiter.req, waiter.session);
            if waiter.grant.send(token).is_err() {
                self.remove_holder(&waiter.req.nonce);
            }
        }
    }
}

fn registry() -> &'static Mutex<HashMap<String, Arc<Server>>> {
    static SERVERS: OnceLock<Mutex<HashMap<String, Arc<Server>>>> = OnceLock::new();
    SERVERS.get_or_init(Default::default)
}

impl Server {
    /// The server called `name` (`""` is the one `zake://` uses), created on first use.
    pub fn named(name: &str) -> Arc<Server> {
        registry()
            .lock()
            .unwrap()
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Server {
                    state: Mutex::new(State::default()),
                })
            })
            .clone()
    }

    fn sessions_of(state: &State, member: &Id) -> Vec<u64> {
        state
            .sessions
            .iter()
            .filter(|(_, s)| &s.member == member)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Simulates a network cut for `member`'s sessions: their calls fail with
    /// [`Error::Connection`] and they report `Suspended`. Returns false if it has no session.
    pub fn suspend(&self, member: &Id) -> bool {
        self.set_suspended(member, true, ConnectionState::Suspended)
    }

    /// Ends a [`Server::suspend`]: the sessions report `Reconnected`, nothing held was lost.
    pub fn resume(&self, member: &Id) -> bool {
        self.set_suspended(member, false, ConnectionState::Reconnected)
    }

    fn set_suspended(&self, member: &Id, suspended: bool, state: ConnectionState) -> bool {
        let mut guard = self.state.lock().unwrap();
        let ids = Self::sessions_of(&guard, member);
        for id in &ids {
            let session = guard.sessions.get_mut(id).expect("listed");
            session.suspended = suspended;
            session.events.report(state);
        }
        !ids.is_empty()
    }

    /// Expires `member`'s sessions as a server would: its memberships and locks are gone,
    /// their `lost()` signals fire, and the coordinator reports `Lost`. Returns false if it
    /// has no session.
    pub fn expire_session(&self, member: &Id) -> bool {
        let mut state = self.state.lock().unwrap();
        let ids = Self::sessions_of(&state, member);
        for id in &ids {
            let session = state.end_session(*id, LostReason::SessionLost);
            if let Some(session) = session {
                session.events.report(ConnectionState::Lost);
            }
        }
        !ids.is_empty()
    }
}

impl State {
    fn feed(&mut self, group: &Id) -> &broadcast::Sender<GroupChange> {
        self.feeds
            .entry(group.clone())
            .or_insert_with(|| broadcast::channel(FEED_CAPACITY).0)
    }

    fn publish(&mut self, group: &Id, change: GroupChange) {
        if let Some(feed) = self.feeds.get(group) {
            let _ = feed.send(change);
        }
    }

    /// Removes a session and everything bound to it.
    fn end_session(&mut self, id: u64, reason: LostReason) -> Option<SessionRec> {
        let session = self.sessions.remove(&id)?;
        let mut left = Vec::new();
        for (group, members) in self.groups.iter_mut() {
            members.retain(|member, rec| {
                let keep = rec.session != id;
                if !keep {
                    left.push((group.clone(), member.clone()));
                }
                keep
            });
        }
        for (group, member) in left {
            self.publish(&group, GroupChange::Left(member));
        }
        for rec in self.locks.values_mut() {
            rec.waiters.retain(|w| w.session != id);
            let before = rec.holders.len();
            rec.holders.retain(|h| {
                let keep = h.session != id;
                if !keep {
                    h.lost.fire(reason);
                }
                keep
            });
            if rec.holders.len() != before {
                rec.grant_waiters();
            }
        }
        Some(session)
    }
}

/// The zake driver: one coordinator's session on a [`Server`].
pub struct ZakeDriver {
    server: Arc<Server>,
    facts: DriverFacts,
    /// FIFO hand-off (`lock_wait=queue`) rather than the retrying wait.
    queue: bool,
    member: Id,
    session: SessionSlot<u64>,
    timeout: Duration,
}

impl ZakeDriver {
    /// Runs `f` on the server state with this driver's live session id.
    fn with_session<T>(&self, f: impl FnOnce(&mut State, u64) -> Result<T>) -> Result<T> {
        let id = *self.session.get()?;
        let mut state = self.server.state.lock().unwrap();
        match state.sessions.get(&id) {
            None => Err(Error::Connection("zake session expired".into())),
            Some(s) if s.suspended => Err(Error::Connection("zake session suspended".into())),
            Some(_) => f(&mut state, id),
        }
    }
}

#[async_trait]
impl Driver for ZakeDriver {
    fn scheme(&self) -> &'static str {
        "zake"
    }

    fn facts(&self) -> &DriverFacts {
        &self.facts
    }

    fn session_timeout(&self) -> Duration {
        self.timeout
    }

    async fn start(&self, events: SessionEvents) -> Result<()> {
        let mut state = self.server.state.lock().unwrap();
        state.next_session += 1;
        let id = state.next_session;
        state.sessions.insert(
            id,
            SessionRec {
                member: self.member.clone(),
                events,
                suspended: false,
            },
        );
        self.session.set(Arc::new(id));
        Ok(())
    }

    async fn stop(&self) -> Result<()> {
        if let Some(id) = self.session.take() {
            let id = *id;
            let mut state = self.server.state.lock().unwrap();
            state.end_session(id, LostReason::CoordinatorStopped);
        }
        Ok(())
    }

    async fn create_group(&self, group: &Id) -> Result<()> {
        self.with_session(|state, _| {
            if state.groups.contains_key(group) {
                return Err(group_already_exist(group));
            }
            state.groups.insert(group.clone(), BTreeMap::new());
            Ok(())
        })
    }

    async fn delete_group(&self, group: &Id) -> Result<()> {
        self.with_session(|state, _| {
            let members = state
                .groups
                .get(group)
                .ok_or_else(|| group_not_created(group))?;
            if !members.is_empty() {
                return Err(group_not_empty(group));
            }
            state.groups.remove(group);
            Ok(())
        })
    }

    async fn get_groups(&self) -> Result<BTreeSet<Id>> {
        self.with_session(|state, _| Ok(state.groups.keys().cloned().collect()))
    }

    async fn join_group(&self, group: &Id, member: &Id, caps: &Capabilities) -> Result<()> {
        self.with_session(|state, session| {
            let members = state
                .groups
                .get_mut(group)
                .ok_or_else(|| group_not_created(group))?;
            if members.contains_key(member) {
                return Err(member_already_exist(group, member));
            }
            let rec = MemberRec {
                caps: caps.clone(),
                joined_at: SystemTime::now(),
                session,
            };
            members.insert(member.clone(), rec);
            state.publish(group, GroupChange::Joined(member.clone()));
            Ok(())
        })
    }

    async fn leave_group(&self, group: &Id, member: &Id) -> Result<()> {
        self.with_session(|state, _| {
            let members = state
                .groups
                .get_mut(group)
                .ok_or_else(|| group_not_created(group))?;
            members
                .remove(member)
                .ok_or_else(|| member_not_joined(group, member))?;
            state.publish(group, GroupChange::Left(member.clone()));
            Ok(())
        })
    }

    async fn get_members(&self, group: &Id) -> Result<BTreeSet<Id>> {
        self.with_session(|state, _| {
            let members = state
                .groups
                .get(group)
                .ok_or_else(|| group_not_created(group))?;
            Ok(members.keys().cloned().collect())
        })
    }

    async fn get_members_with_capabilities(
        &self,
        group: &Id,
    ) -> Result<BTreeMap<Id, Capabilities>> {
        self.with_session(|state, _| {
            let members = state
                .groups
                .get(group)
                .ok_or_else(|| group_not_created(group))?;
            Ok(members
                .iter()
                .map(|(m, rec)| (m.clone(), rec.caps.clone()))
                .collect())
        })
    }

    async fn get_member_info(&self, group: &Id, member: &Id) -> Result<MemberInfo> {
        self.with_session(|state, _| {
            let rec = state
                .groups
                .get(group)
                .ok_or_else(|| group_not_created(group))?
                .get(member)
                .ok_or_else(|| member_not_joined(group, member))?;
            Ok(MemberInfo {
                capabilities: rec.caps.clone(),
                joined_at: Some(rec.joined_at),
                extra: BTreeMap::from([("session".to_string(), Value::from(rec.session))]),
            })
        })
    }

    async fn update_capabilities(
        &self,
        group: &Id,
        member: &Id,
        caps: &Capabilities,
    ) -> Result<()> {
        self.with_session(|state, _| {
            let rec = state
                .groups
                .get_mut(group)
                .ok_or_else(|| group_not_created(group))?
                .get_mut(member)
                .ok_or_else(|| member_not_joined(group, member))?;
            rec.caps = caps.clone();
            Ok(())
        })
    }

    async fn subscribe_group(&self, group: &Id) -> Result<Option<(BTreeSet<Id>, GroupFeed)>> {
        if self.facts.support.watch != WatchKind::Push {
            return Ok(None);
        }
        self.with_session(|state, _| {
            let snapshot: BTreeSet<Id> = state
                .groups
                .get(group)
                .ok_or_else(|| group_not_created(group))?
                .keys()
                .cloned()
                .collect();
            let rx = state.feed(group).subscribe();
            let feed = BroadcastStream::new(rx)
                .map(|change| change.unwrap_or(GroupChange::Resync))
                .boxed();
            Ok(Some((snapshot, feed)))
        })
    }

    async fn lock_try_acquire(&self, req: &LockRequest) -> Result<Option<FencingToken>> {
        self.with_session(|state, session| {
            let rec = state.locks.entry(req.name.clone()).or_default();
            if rec.waiters.is_empty() && rec.compatible(req.mode) {
                return Ok(Some(rec.grant(req, session)));
            }
            Ok(None)
        })
    }

    async fn lock_acquire(
        &self,
        req: &LockRequest,
        deadline: Option<Instant>,
    ) -> Result<Option<FencingToken>> {
        if !self.queue {
            return acquire_by_retrying(self, req, deadline).await;
        }
        let rx = self.with_session(|state, session| {
            let rec = state.locks.entry(req.name.clone()).or_default();
            if rec.waiters.is_empty() && rec.compatible(req.mode) {
                return Ok(Err(rec.grant(req, session)));
            }
            let (grant, rx) = oneshot::channel();
            rec.waiters.push_back(Waiter {
                req: req.clone(),
                session,
                grant,
            });
            Ok(Ok(rx))
        })?;
        let rx = match rx {
            Err(token) => return Ok(Some(token)),
            Ok(rx) => rx,
        };
        // Given up or dropped: leave the queue, and hand on the lock if it came meanwhile.
        let (server, name, nonce) = (self.server.clone(), req.name.clone(), req.nonce.clone());
        let abandoned = OnAbandon::run(move || {
            let mut state = server.state.lock().unwrap();
            if let Some(rec) = state.locks.get_mut(&name) {
                rec.waiters.retain(|w| w.req.nonce != nonce);
                if rec.remove_holder(&nonce).is_some() {
                    rec.grant_waiters();
                }
            }
        });
        let outcome = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, rx).await {
                Ok(granted) => granted,
                Err(_) => return Ok(None),
            },
            None => rx.await,
        };
        abandoned.disarm();
        outcome
            .map(Some)
            .map_err(|_| Error::Connection("zake session ended while waiting for the lock".into()))
    }

    async fn lock_release(&self, req: &LockRequest) -> Result<bool> {
        self.with_session(|state, _| {
            let Some(rec) = state.locks.get_mut(&req.name) else {
                return Ok(false);
            };
            if rec.remove_holder(&req.nonce).is_none() {
                return Ok(false);
            }
            rec.grant_waiters();
            Ok(true)
        })
    }

    async fn lock_break(&self, name: &Id) -> Result<bool> {
        self.with_session(|state, _| {
            let Some(rec) = state.locks.get_mut(name) else {
                return Ok(false);
            };
            let broken = std::mem::take(&mut rec.holders);
            for holder in &broken {
                holder.lost.fire(LostReason::Broken);
            }
            rec.grant_waiters();
            Ok(!broken.is_empty())
        })
    }

    async fn lock_holder(&self, name: &Id) -> Result<Option<Id>> {
        self.with_session(|state, _| {
            Ok(state
                .locks
                .get(name)
                .and_then(|rec| rec.holders.first())
                .map(|h| h.owner.clone()))
        })
    }
}
