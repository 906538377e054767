//! tooz-style callbacks: `watch_join_group` & co, delivered by `run_watchers`. A layer over
//! [`Coordinator`], keeping its table in the coordinator's [`Hub`](crate::callbacks::Hub).

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::callbacks::{EventSender, WatchId};
use crate::coordinator::Coordinator;
use crate::error::{Error, Result};
use crate::group::GroupEvent;
use crate::id::Id;
use crate::types::LostReason;

impl Coordinator {
    /// Calls `callback` (from [`run_watchers`](Coordinator::run_watchers)) for each member
    /// that joins `group` (tooz's `watch_join_group`). Callbacks run while the coordinator's
    /// table of watches is locked: a callback must not add or remove watches itself.
    pub async fn watch_join_group(
        &self,
        group: impl Into<Id>,
        callback: impl FnMut(&GroupEvent) + Send + 'static,
    ) -> Result<WatchId> {
        self.watch_membership(group.into(), true, Box::new(callback))
            .await
    }

    /// Calls `callback` for each member that leaves `group` (tooz's `watch_leave_group`).
    pub async fn watch_leave_group(
        &self,
        group: impl Into<Id>,
        callback: impl FnMut(&GroupEvent) + Send + 'static,
    ) -> Result<WatchId> {
        self.watch_membership(group.into(), false, Box::new(callback))
            .await
    }

    async fn watch_membership(
        &self,
        group: Id,
        join: bool,
        callback: crate::callbacks::Callback,
    ) -> Result<WatchId> {
        let core = self.core();
        core.check_started()?;
        core.check_name("group", &group)?;
        let events = if core.hub.watches_membership(&group) {
            None
        } else {
            Some(self.watch_group(group.clone()).await?)
        };
        Ok(core.hub.watch_membership(group, join, callback, events))
    }

    /// Removes a join watch; [`Error::WatchCallbackNotFound`] if it is not registered.
    pub fn unwatch_join_group(&self, group: impl Into<Id>, watch: WatchId) -> Result<()> {
        self.core()
            .hub
            .unwatch_membership(&group.into(), watch, true)
    }

    /// Removes a leave watch; [`Error::WatchCallbackNotFound`] if it is not registered.
    pub fn unwatch_leave_group(&self, group: impl Into<Id>, watch: WatchId) -> Result<()> {
        self.core()
            .hub
            .unwatch_membership(&group.into(), watch, false)
    }

    /// Runs for leader of `group` in the background and calls `callback` (from
    /// [`run_watchers`](Coordinator::run_watchers)) each time this member is elected.
    pub async fn watch_elected_as_leader(
        &self,
        group: impl Into<Id>,
        callback: impl FnMut(&GroupEvent) + Send + 'static,
    ) -> Result<WatchId> {
        let core = self.core();
        core.check_started()?;
        core.check_election()?;
        let group = group.into();
        core.check_name("group", &group)?;
        let campaign = |group, tx| spawn_campaign(self.clone(), group, tx);
        Ok(core.hub.watch_election(group, Box::new(callback), campaign))
    }

    /// Removes an election watch; the last one removed withdraws from the election.
    pub fn unwatch_elected_as_leader(&self, group: impl Into<Id>, watch: WatchId) -> Result<()> {
        self.core().hub.unwatch_election(&group.into(), watch)
    }

    /// Number of callbacks registered on `group` (join, leave, elected).
    pub fn watch_count(&self, group: impl Into<Id>) -> (usize, usize, usize) {
        self.core().hub.count(&group.into())
    }

    /// Delivers the events that arrived since the last call to their callbacks, waiting up
    /// to `timeout` for the first one if none is pending. Returns the events delivered.
    ///
    /// With no `timeout`, an election whose seat is free is settled first, as tooz's drivers
    /// do by trying the leader lock: if no one leads a group this coordinator campaigns in,
    /// the call waits (up to the operation timeout) for the campaign to win it.
    pub async fn run_watchers(&self, timeout: Option<Duration>) -> Result<Vec<GroupEvent>> {
        let core = self.core();
        core.check_started()?;
        let mut delivered = self.deliver(timeout).await?;
        if timeout.is_none() {
            let deadline = tokio::time::Instant::now() + core.operation_timeout;
            while self.election_seat_free().await && tokio::time::Instant::now() < deadline {
                delivered.extend(self.deliver(Some(SETTLE_SLICE)).await?);
            }
        }
        Ok(delivered)
    }

    async fn deliver(&self, timeout: Option<Duration>) -> Result<Vec<GroupEvent>> {
        let core = self.core();
        let forget = |group: &Id| core.forget_joined(group);
        let campaign = |group, tx| spawn_campaign(self.clone(), group, tx);
        core.hub.run(timeout, &core.member, forget, campaign).await
    }

    /// True if a group this coordinator campaigns in (and was not told it won) has no
    /// leader, or already has this member as leader with the news still on its way.
    async fn election_seat_free(&self) -> bool {
        for group in self.core().hub.campaigning() {
            match self.get_leader(group).await {
                Ok(None) => return true,
                Ok(Some(leader)) if &leader == self.member_id() => return true,
                Ok(Some(_)) => {}
                Err(error) => {
                    tracing::debug!(%error, "reading the leader to settle an election");
                    return false;
                }
            }
        }
        false
    }
}

/// How long `run_watchers` waits for a campaign's news between two looks at the leader.
const SETTLE_SLICE: Duration = Duration::from_millis(5);

/// Campaigns for `group` until elected, reports it, and campaigns again if the leadership is
/// lost other than by standing down or stopping.
fn spawn_campaign(coord: Coordinator, group: Id, tx: EventSender) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let leadership = match coord.campaign(group.clone()).await {
                Ok(leadership) => leadership,
                Err(Error::NotStarted) => return,
                Err(error) => {
                    tracing::warn!(%group, %error, "campaign failed; retrying");
                    tokio::time::sleep(coord.core().driver.poll_interval()).await;
                    continue;
                }
            };
            let elected = GroupEvent::LeaderElected {
                group: group.clone(),
                member: coord.member_id().clone(),
            };
            if tx.send(elected).is_err() {
                return;
            }
            match leadership.lost().await {
                LostReason::SteppedDown | LostReason::CoordinatorStopped => return,
                _ => {}
            }
        }
    })
}
