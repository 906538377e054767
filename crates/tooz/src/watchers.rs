//! tooz-style callbacks: `watch_join_group` & co, delivered by `run_watchers`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::coordinator::Coordinator;
use crate::error::{Error, Result};
use crate::group::GroupEvent;
use crate::id::Id;
use crate::lock::LostReason;

/// A registered callback, returned by the `watch_*` methods and given back to `unwatch_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WatchId(pub(crate) u64);

impl WatchId {
    /// A watch id from its number (for tests and bindings); unknown ids are simply not found.
    pub fn from_raw(id: u64) -> Self {
        WatchId(id)
    }
}

type Callback = Box<dyn FnMut(&GroupEvent) + Send>;

struct MembershipHooks {
    join: Vec<(u64, Callback)>,
    leave: Vec<(u64, Callback)>,
    pump: JoinHandle<()>,
}

struct ElectionHooks {
    callbacks: Vec<(u64, Callback)>,
    campaign: JoinHandle<()>,
}

#[derive(Default)]
struct Hooks {
    next_id: u64,
    membership: HashMap<Id, MembershipHooks>,
    elections: HashMap<Id, ElectionHooks>,
}

/// Every callback of one coordinator, and the channel their events arrive on.
pub(crate) struct Hub {
    hooks: Mutex<Hooks>,
    tx: mpsc::UnboundedSender<GroupEvent>,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<GroupEvent>>,
}

fn remove_hook(list: &mut Vec<(u64, Callback)>, id: u64) -> bool {
    let before = list.len();
    list.retain(|(i, _)| *i != id);
    list.len() != before
}

impl Hub {
    pub(crate) fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Hub {
            hooks: Mutex::new(Hooks::default()),
            tx,
            rx: tokio::sync::Mutex::new(rx),
        }
    }

    pub(crate) async fn watch_membership(
        &self,
        coord: &Coordinator,
        group: Id,
        join: bool,
        callback: Callback,
    ) -> Result<WatchId> {
        let watching = self.hooks.lock().unwrap().membership.contains_key(&group);
        let pump = if watching {
            None
        } else {
            let mut events = coord.watch_group(group.clone()).await?;
            let tx = self.tx.clone();
            Some(tokio::spawn(async move {
                while let Some(event) = events.next().await {
                    if tx.send(event).is_err() {
                        return;
                    }
                }
            }))
        };
        let mut hooks = self.hooks.lock().unwrap();
        hooks.next_id += 1;
        let id = hooks.next_id;
        let entry = match hooks.membership.entry(group) {
            std::collections::hash_map::Entry::Occupied(e) => {
                if let Some(pump) = pump {
                    pump.abort();
                }
                e.into_mut()
            }
            std::collections::hash_map::Entry::Vacant(e) => e.insert(MembershipHooks {
                join: Vec::new(),
                leave: Vec::new(),
                pump: pump.expect("a new group always gets a pump"),
            }),
        };
        if join {
            entry.join.push((id, callback));
        } else {
            entry.leave.push((id, callback));
        }
        Ok(WatchId(id))
    }

    pub(crate) fn unwatch_membership(&self, group: &Id, watch: WatchId, join: bool) -> Result<()> {
        let mut hooks = self.hooks.lock().unwrap();
        let not_found = || Error::WatchCallbackNotFound {
            group: group.clone(),
            watch: watch.0,
        };
        let entry = hooks.membership.get_mut(group).ok_or_else(not_found)?;
        let list = if join {
            &mut entry.join
        } else {
            &mut entry.leave
        };
        if !remove_hook(list, watch.0) {
            return Err(not_found());
        }
        if entry.join.is_empty() && entry.leave.is_empty() {
            if let Some(entry) = hooks.membership.remove(group) {
                entry.pump.abort();
            }
        }
        Ok(())
    }

    pub(crate) fn watch_election(
        &self,
        coord: &Coordinator,
        group: Id,
        callback: Callback,
    ) -> WatchId {
        let mut hooks = self.hooks.lock().unwrap();
        hooks.next_id += 1;
        let id = hooks.next_id;
        let tx = self.tx.clone();
        hooks
            .elections
            .entry(group.clone())
            .or_insert_with(|| ElectionHooks {
                callbacks: Vec::new(),
                campaign: spawn_campaign(coord.clone(), group, tx),
            })
            .callbacks
            .push((id, callback));
        WatchId(id)
    }

    pub(crate) fn unwatch_election(&self, group: &Id, watch: WatchId) -> Result<()> {
        let mut hooks = self.hooks.lock().unwrap();
        let found = hooks
            .elections
            .get_mut(group)
            .is_some_and(|e| remove_hook(&mut e.callbacks, watch.0));
        if !found {
            return Err(Error::WatchCallbackNotFound {
                group: group.clone(),
                watch: watch.0,
            });
        }
        if hooks.elections[group].callbacks.is_empty() {
            if let Some(entry) = hooks.elections.remove(group) {
                entry.campaign.abort();
            }
        }
        Ok(())
    }

    pub(crate) fn count(&self, group: &Id) -> (usize, usize, usize) {
        let hooks = self.hooks.lock().unwrap();
        let (join, leave) = hooks
            .membership
            .get(group)
            .map_or((0, 0), |m| (m.join.len(), m.leave.len()));
        let elected = hooks.elections.get(group).map_or(0, |e| e.callbacks.len());
        (join, leave, elected)
    }

    /// Drops every hook and stops their background tasks.
    pub(crate) fn clear(&self) {
        let mut hooks = self.hooks.lock().unwrap();
        for (_, m) in hooks.membership.drain() {
            m.pump.abort();
        }
        for (_, e) in hooks.elections.drain() {
            e.campaign.abort();
        }
    }

    pub(crate) async fn run(
        &self,
        coord: &Coordinator,
        timeout: Option<Duration>,
    ) -> Result<Vec<GroupEvent>> {
        self.rejoin_elections(coord);
        let mut pending = Vec::new();
        {
            let mut rx = self.rx.lock().await;
            while let Ok(event) = rx.try_recv() {
                pending.push(event);
            }
            if pending.is_empty() {
                if let Some(timeout) = timeout {
                    if let Ok(Some(event)) = tokio::time::timeout(timeout, rx.recv()).await {
                        pending.push(event);
                        while let Ok(event) = rx.try_recv() {
                            pending.push(event);
                        }
                    }
                }
            }
        }
        let mut delivered = Vec::new();
        let mut hooks = self.hooks.lock().unwrap();
        for event in pending {
            if let GroupEvent::Left { group, member } = &event {
                if member == coord.member_id() {
                    coord.forget_joined(group);
                }
            }
            let callbacks = match &event {
                GroupEvent::Joined { group, .. } => {
                    hooks.membership.get_mut(group).map(|m| &mut m.join)
                }
                GroupEvent::Left { group, .. } => {
                    hooks.membership.get_mut(group).map(|m| &mut m.leave)
                }
                GroupEvent::LeaderElected { group, .. } => {
                    hooks.elections.get_mut(group).map(|e| &mut e.callbacks)
                }
            };
            if let Some(callbacks) = callbacks.filter(|c| !c.is_empty()) {
                for (_, callback) in callbacks.iter_mut() {
                    callback(&event);
                }
                delivered.push(event);
            }
        }
        Ok(delivered)
    }

    /// Campaigns that ended because the leader stood down re-enter the election.
    fn rejoin_elections(&self, coord: &Coordinator) {
        let mut hooks = self.hooks.lock().unwrap();
        for (group, entry) in hooks.elections.iter_mut() {
            if entry.campaign.is_finished() {
                entry.campaign = spawn_campaign(coord.clone(), group.clone(), self.tx.clone());
            }
        }
    }
}

/// Campaigns for `group` until elected, reports it, and campaigns again if the leadership is
/// lost other than by standing down or stopping.
fn spawn_campaign(
    coord: Coordinator,
    group: Id,
    tx: mpsc::UnboundedSender<GroupEvent>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let leadership = match coord.campaign(group.clone()).await {
                Ok(leadership) => leadership,
                Err(Error::NotStarted) => return,
                Err(error) => {
                    tracing::warn!(%group, %error, "campaign failed; retrying");
                    tokio::time::sleep(coord.support_poll_interval()).await;
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
