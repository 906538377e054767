//! Coordination over a lease-based key-value store (etcd v3 and its JSON gateway), written
//! once over the store's primitives ([`store::KvStore`]).
//!
//! - **Session:** one lease per coordinator, granted at start, renewed by the core's
//!   heartbeat every quarter of its TTL; after half the TTL without a renewal the session is
//!   reported lost, before the server can expire the lease. Every key this coordinator
//!   writes (members, locks, queue places) lives on it, however many locks it takes. When a
//!   renewal finds the lease gone, or the session was reported lost meanwhile (suspended too
//!   long), every `lost()` has fired; the old lease is revoked (so nothing reported lost stays
//!   held), a new one is granted and the memberships are joined again.
//! - **Locks** (`locks`): etcd's own mutex recipe, plus Python tooz's keys. A free lock with
//!   no waiter is taken in one transaction; otherwise the contender queues a key on its
//!   lease and waits, watching only the key just before its own (first come, first served,
//!   no herd), and when first it takes the lock in a transaction that also checks that its
//!   own queue key still exists on its lease (so a waiter whose lease expired meanwhile is
//!   never granted the lock). The fencing token is the lock key's create revision: strictly
//!   increasing across holders, leaders and restarts of the cluster.
//! - **Groups** (`groups`): Python tooz's keys; a member key lives on the member's lease, so
//!   a member whose process dies vanishes with its lease (no ghosts). Watches read the group
//!   and then watch it from that read's revision: pushed, nothing missed between the two.
//!
//! Election is the core's: a lock per group (`leader_of_<group>`), whose holder is the leader.

mod groups;
pub(crate) mod layout;
mod locks;
pub(crate) mod store;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::common::{join_again, JoinedGroups, SessionSlot};
use crate::driver::Driver;
use crate::error::Result;
use crate::id::Id;
use crate::types::{
    Capabilities, ConnectionState, DriverFacts, FencingToken, GroupFeed, LockRequest, MemberInfo,
    SessionEvents,
};
use layout::Layout;
use store::KvStore;

/// What a driver built on this module says about itself.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub scheme: &'static str,
    pub facts: DriverFacts,
    /// The session lease's TTL.
    pub ttl: Duration,
    pub namespace: Vec<u8>,
}

/// A driver over the store `S`. See the module docs.
pub(crate) struct LeaseKvDriver<S: KvStore> {
    settings: Settings,
    store: Arc<S>,
    layout: Layout,
    member: Id,
    session: SessionSlot<Session>,
    joined: JoinedGroups,
}

/// The started session: its lease (replaced when lost) and where state changes go.
struct Session {
    lease: AtomicI64,
    events: SessionEvents,
}

impl Session {
    fn lease(&self) -> i64 {
        self.lease.load(Ordering::Acquire)
    }
}

impl<S: KvStore> LeaseKvDriver<S> {
    pub fn new(settings: Settings, store: S, member: &Id) -> Self {
        LeaseKvDriver {
            layout: Layout::new(&settings.namespace),
            settings,
            store: Arc::new(store),
            member: member.clone(),
            session: SessionSlot::new("etcd"),
            joined: JoinedGroups::default(),
        }
    }

    fn lease(&self) -> Result<i64> {
        Ok(self.session.get()?.lease())
    }

    /// Replaces the session's lease with a new one and joins the groups again.
    async fn replace_lease(&self, session: &Session) -> Result<()> {
        let lease = self.store.grant(self.settings.ttl).await?;
        session.lease.store(lease, Ordering::Release);
        for (group, caps) in self.joined.list() {
            match join_again(self, &group, &self.member, &caps).await {
                Ok(_) => tracing::info!(%group, "joined the group again with a new lease"),
                Err(error) => tracing::warn!(%group, %error, "cannot join the group again"),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl<S: KvStore> Driver for LeaseKvDriver<S> {
    fn scheme(&self) -> &'static str {
        self.settings.scheme
    }

    fn facts(&self) -> &DriverFacts {
        &self.settings.facts
    }

    /// Half the lease's TTL: heartbeats come every quarter, and one that fails does so
    /// within the transport's call timeout, so the session is reported lost before the
    /// server can expire its lease and let another client take what it held.
    fn session_timeout(&self) -> Duration {
        self.settings.ttl / 2
    }

    /// A lock lives on the coordinator's lease.
    fn lock_lease(&self, _name: &Id) -> Option<Duration> {
        Some(self.settings.ttl)
    }

    async fn start(&self, events: SessionEvents) -> Result<()> {
        self.store.connect().await?;
        let lease = match self.store.grant(self.settings.ttl).await {
            Ok(lease) => lease,
            Err(error) => {
                self.store.close().await;
                return Err(error);
            }
        };
        self.session.set(Arc::new(Session {
            lease: AtomicI64::new(lease),
            events,
        }));
        Ok(())
    }

    async fn stop(&self) -> Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        self.joined.clear();
        // Revoking the lease deletes every key of this session at once.
        let result = self.store.revoke(session.lease()).await;
        self.store.close().await;
        result
    }

    async fn heartbeat(&self) -> Result<Option<Duration>> {
        let session = self.session.get()?;
        if session.events.current() == ConnectionState::Lost {
            // The core gave the session up (suspended too long) and reported everything on
            // it lost, but the lease may have lived on: end it, so that nothing reported lost
            // stays held, and start again on a new one.
            self.store.revoke(session.lease()).await?;
            self.replace_lease(&session).await?;
        } else if !self.store.keep_alive(session.lease()).await? {
            tracing::warn!("the session's lease is gone: every lock and membership is lost");
            session.events.report(ConnectionState::Lost);
            self.replace_lease(&session).await?;
        }
        Ok(Some(self.settings.ttl / 4))
    }

    async fn create_group(&self, group: &Id) -> Result<()> {
        groups::create(self, group).await
    }

    async fn delete_group(&self, group: &Id) -> Result<()> {
        groups::delete(self, group).await
    }

    async fn get_groups(&self) -> Result<std::collections::BTreeSet<Id>> {
        groups::list(self).await
    }

    async fn join_group(&self, group: &Id, member: &Id, caps: &Capabilities) -> Result<()> {
        groups::join(self, group, member, caps).await?;
        if *member == self.member {
            self.joined.insert(group, caps);
        }
        Ok(())
    }

    async fn leave_group(&self, group: &Id, member: &Id) -> Result<()> {
        groups::leave(self, group, member).await?;
        if *member == self.member {
            self.joined.remove(group);
        }
        Ok(())
    }

    async fn get_members(&self, group: &Id) -> Result<std::collections::BTreeSet<Id>> {
        groups::member_ids(self, group).await
    }

    async fn get_members_with_capabilities(
        &self,
        group: &Id,
    ) -> Result<std::collections::BTreeMap<Id, Capabilities>> {
        groups::members(self, group).await
    }

    async fn get_member_info(&self, group: &Id, member: &Id) -> Result<MemberInfo> {
        groups::member_info(self, group, member).await
    }

    async fn update_capabilities(
        &self,
        group: &Id,
        member: &Id,
        caps: &Capabilities,
    ) -> Result<()> {
        groups::update(self, group, member, caps).await?;
        if *member == self.member {
            self.joined.update(group, caps);
        }
        Ok(())
    }

    async fn subscribe_group(
        &self,
        group: &Id,
    ) -> Result<Option<(std::collections::BTreeSet<Id>, GroupFeed)>> {
        groups::subscribe(self, group).await.map(Some)
    }

    async fn lock_try_acquire(&self, req: &LockRequest) -> Result<Option<FencingToken>> {
        locks::try_acquire(self, req).await
    }

    async fn lock_acquire(
        &self,
        req: &LockRequest,
        deadline: Option<Instant>,
    ) -> Result<Option<FencingToken>> {
        locks::acquire(self, req, deadline).await
    }

    async fn lock_release(&self, req: &LockRequest) -> Result<bool> {
        locks::release(self, req).await
    }

    async fn lock_refresh(&self, req: &LockRequest) -> Result<bool> {
        locks::still_held(self, req).await
    }

    async fn lock_break(&self, name: &Id) -> Result<bool> {
        locks::break_lock(self, name).await
    }

    async fn lock_holder(&self, name: &Id) -> Result<Option<Id>> {
        locks::holder(self, name).await
    }
}

impl<S: KvStore> std::fmt::Debug for LeaseKvDriver<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseKvDriver")
            .field("scheme", &self.settings.scheme)
            .field("ttl", &self.settings.ttl)
            .field("member", &self.member)
            .finish()
    }
}
