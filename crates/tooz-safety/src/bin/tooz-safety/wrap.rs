//! The client's driver wrapper: keep-alive starvation on the nemesis's signal, and seeded
//! bugs that prove the checker can fail (mutant `d`, a client that ignores its lost signal,
//! lives in the client loop).

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tooz::driver::{
    ChangeWait, Driver, DriverFacts, GroupFeed, LockRequest, LostSignal, SessionEvents,
};
use tooz::{Capabilities, FencingToken, Id, MemberInfo, Result};

/// The seeded bugs (the letters of the safety issue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mutant {
    /// No owner checks: release frees the lock whoever holds it, refreshing "succeeds"
    /// whoever holds it, and the driver's own loss detection is not heard.
    A,
    /// A waiter is granted the lock once it changed hands, without checking again.
    B,
    /// Fencing tokens come from a per-process counter that restarts at 1.
    C,
    /// The client ignores its lost signal.
    D,
    /// An acquire retried after a "lost reply" does not find its first attempt, which stays
    /// held (kept alive) for ever.
    E,
    /// No lock at all: every acquire succeeds at once (negative control).
    F,
}

impl FromStr for Mutant {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        <Mutant as clap::ValueEnum>::from_str(s, true)
    }
}

/// A driver whose keep-alive can be starved, with at most one seeded bug.
pub struct WrappedDriver {
    inner: Arc<dyn Driver>,
    mutant: Option<Mutant>,
    counter: AtomicU64,
    starved: Arc<AtomicBool>,
}

impl WrappedDriver {
    /// Wraps `inner`; while `starved` is set, heartbeats and lock refreshes wait.
    pub fn new(inner: Arc<dyn Driver>, mutant: Option<Mutant>, starved: Arc<AtomicBool>) -> Self {
        WrappedDriver {
            inner,
            mutant,
            counter: AtomicU64::new(0),
            starved,
        }
    }

    /// Waits while the keep-alive is starved.
    async fn fed(&self) {
        while self.starved.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn next_count(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A token no real acquisition gave: the clock, so that it looks plausible.
    fn made_up_token(&self) -> FencingToken {
        FencingToken(crate::record::now_ns())
    }

    /// Mutant E: takes the lock, "loses the reply", keeps that acquisition alive for ever and
    /// queues again under a new nonce.
    async fn acquire_losing_reply(
        &self,
        req: &LockRequest,
        deadline: Option<Instant>,
    ) -> Result<Option<FencingToken>> {
        if self.next_count() % 4 == 0 {
            let mut orphan = req.clone();
            orphan.nonce = format!("{:032x}", crate::record::now_ns());
            orphan.lost = LostSignal::default();
            if self.inner.lock_acquire(&orphan, deadline).await?.is_some() {
                let inner = self.inner.clone();
                let period = self.inner.session_timeout() / 3;
                tokio::spawn(async move {
                    while inner.lock_refresh(&orphan).await.unwrap_or(true) {
                        tokio::time::sleep(period.max(Duration::from_millis(100))).await;
                    }
                });
            }
        }
        self.inner.lock_acquire(req, deadline).await
    }
}

/// `req` with a lost signal nobody listens to: what the driver reports is not heard.
fn deaf(req: &LockRequest) -> LockRequest {
    let mut deaf = req.clone();
    deaf.lost = LostSignal::default();
    deaf
}

#[async_trait]
impl Driver for WrappedDriver {
    fn scheme(&self) -> &'static str {
        self.inner.scheme()
    }
    fn facts(&self) -> &DriverFacts {
        self.inner.facts()
    }

    fn session_timeout(&self) -> Duration {
        self.inner.session_timeout()
    }
    fn validate_name(&self, kind: &'static str, name: &Id) -> Result<()> {
        self.inner.validate_name(kind, name)
    }
    async fn start(&self, events: SessionEvents) -> Result<()> {
        self.inner.start(events).await
    }
    async fn stop(&self) -> Result<()> {
        self.inner.stop().await
    }
    async fn heartbeat(&self) -> Result<Option<Duration>> {
        self.fed().await;
        self.inner.heartbeat().await
    }
    async fn create_group(&self, group: &Id) -> Result<()> {
        self.inner.create_group(group).await
    }
    async fn delete_group(&self, group: &Id) -> Result<()> {
        self.inner.delete_group(group).await
    }
    async fn get_groups(&self) -> Result<BTreeSet<Id>> {
        self.inner.get_groups().await
    }
    async fn join_group(&self, group: &Id, member: &Id, caps: &Capabilities) -> Result<()> {
        self.inner.join_group(group, member, caps).await
    }
    async fn leave_group(&self, group: &Id, member: &Id) -> Result<()> {
        self.inner.leave_group(group, member).await
    }
    async fn get_members_with_capabilities(
        &self,
        group: &Id,
    ) -> Result<BTreeMap<Id, Capabilities>> {
        self.inner.get_members_with_capabilities(group).await
    }
    async fn get_member_info(&self, group: &Id, member: &Id) -> Result<MemberInfo> {
        self.inner.get_member_info(group, member).await
    }
    async fn update_capabilities(
        &self,
        group: &Id,
        member: &Id,
        caps: &Capabilities,
    ) -> Result<()> {
        self.inner.update_capabilities(group, member, caps).await
    }
    async fn subscribe_group(&self, group: &Id) -> Result<Option<(BTreeSet<Id>, GroupFeed)>> {
        self.inner.subscribe_group(group).await
    }
    async fn lock_try_acquire(&self, req: &LockRequest) -> Result<Option<FencingToken>> {
        match self.mutant {
            Some(Mutant::A) => self.inner.lock_try_acquire(&deaf(req)).await,
            Some(Mutant::F) => Ok(Some(self.made_up_token())),
            Some(Mutant::C) => Ok(self
                .inner
                .lock_try_acquire(req)
                .await?
                .map(|_| FencingToken(self.next_count()))),
            _ => self.inner.lock_try_acquire(req).await,
        }
    }
    async fn lock_acquire(
        &self,
        req: &LockRequest,
        deadline: Option<Instant>,
    ) -> Result<Option<FencingToken>> {
        match self.mutant {
            Some(Mutant::F) => Ok(Some(self.made_up_token())),
            Some(Mutant::C) => Ok(self
                .inner
                .lock_acquire(req, deadline)
                .await?
                .map(|_| FencingToken(self.next_count()))),
            Some(Mutant::B) => {
                let changed = self.inner.lock_changed(&req.name).await?;
                if let Some(token) = self.inner.lock_try_acquire(req).await? {
                    return Ok(Some(token));
                }
                let changed_in_time = match deadline {
                    Some(d) => tokio::time::timeout_at(d, changed).await.is_ok(),
                    None => {
                        changed.await;
                        true
                    }
                };
                Ok(changed_in_time.then(|| self.made_up_token()))
            }
            Some(Mutant::E) => self.acquire_losing_reply(req, deadline).await,
            Some(Mutant::A) => self.inner.lock_acquire(&deaf(req), deadline).await,
            Some(Mutant::D) | None => self.inner.lock_acquire(req, deadline).await,
        }
    }
    async fn lock_changed(&self, name: &Id) -> Result<ChangeWait> {
        self.inner.lock_changed(name).await
    }
    async fn lock_release(&self, req: &LockRequest) -> Result<bool> {
        match self.mutant {
            Some(Mutant::F) => Ok(true),
            Some(Mutant::A) => self.inner.lock_break(&req.name).await,
            _ => self.inner.lock_release(req).await,
        }
    }
    async fn lock_refresh(&self, req: &LockRequest) -> Result<bool> {
        self.fed().await;
        match self.mutant {
            Some(Mutant::A | Mutant::F) => Ok(true),
            _ => self.inner.lock_refresh(req).await,
        }
    }
    async fn lock_break(&self, name: &Id) -> Result<bool> {
        self.inner.lock_break(name).await
    }
    async fn lock_holder(&self, name: &Id) -> Result<Option<Id>> {
        self.inner.lock_holder(name).await
    }
    fn leader_lock_name(&self, group: &Id) -> Id {
        self.inner.leader_lock_name(group)
    }
}
