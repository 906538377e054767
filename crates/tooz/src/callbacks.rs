//! The table of tooz-style callbacks of one coordinator and the channel their events arrive
//! on. The API that fills it (`watch_join_group` & co, `run_watchers`) is in `watchers`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::group::{GroupEvent, GroupWatch};
use crate::id::Id;

/// A registered callback, returned by the `watch_*` methods and given back to `unwatch_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WatchId(pub(crate) u64);

impl WatchId {
    /// A watch id from its number (for tests and bindings); unknown ids are simply not found.
    pub fn from_raw(id: u64) -> Self {
        WatchId(id)
    }

    /// The watch id's number (for bindings, which give it back to `from_raw`).
    pub fn raw(self) -> u64 {
        self.0
    }
}

/// A user callback.
pub(crate) type Callback = Box<dyn FnMut(&GroupEvent) + Send>;

/// The channel that carries events to `run_watchers`.
pub(crate) type EventSender = mpsc::UnboundedSender<GroupEvent>;

struct MembershipHooks {
    join: Vec<(u64, Callback)>,
    leave: Vec<(u64, Callback)>,
    pump: JoinHandle<()>,
}

struct ElectionHooks {
    callbacks: Vec<(u64, Callback)>,
    campaign: JoinHandle<()>,
    /// Set when this campaign's election was delivered; cleared when it campaigns anew.
    elected: bool,
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

    /// True when `group`'s membership is already watched (its events already pumped).
    pub(crate) fn watches_membership(&self, group: &Id) -> bool {
        self.hooks.lock().unwrap().membership.contains_key(group)
    }

    /// Adds a join (or leave) callback on `group`; `events` is the group's watch when the
    /// caller found it not watched yet.
    pub(crate) fn watch_membership(
        &self,
        group: Id,
        join: bool,
        callback: Callback,
        events: Option<GroupWatch>,
    ) -> WatchId {
        let pump = events.map(|mut events| {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                while let Some(event) = events.next().await {
                    if tx.send(event).is_err() {
                        return;
                    }
                }
            })
        });
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
        WatchId(id)
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

    /// Adds an elected-as-leader callback on `group`, starting its campaign with `campaign`
    /// if it is the first.
    pub(crate) fn watch_election(
        &self,
        group: Id,
        callback: Callback,
        campaign: impl FnOnce(Id, EventSender) -> JoinHandle<()>,
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
                campaign: campaign(group, tx),
                elected: false,
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

    /// The groups this coordinator campaigns in and has not been told it won.
    pub(crate) fn campaigning(&self) -> Vec<Id> {
        let hooks = self.hooks.lock().unwrap();
        let waiting = hooks.elections.iter().filter(|(_, e)| !e.elected);
        waiting.map(|(group, _)| group.clone()).collect()
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

    /// Delivers pending events (waiting up to `timeout` for one); `me` left a group when
    /// `forget` is called with it; finished campaigns restart through `campaign`.
    pub(crate) async fn run(
        &self,
        timeout: Option<Duration>,
        me: &Id,
        forget: impl Fn(&Id),
        campaign: impl Fn(Id, EventSender) -> JoinHandle<()>,
    ) -> Result<Vec<GroupEvent>> {
        self.rejoin_elections(campaign);
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
                if member == me {
                    forget(group);
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
                    hooks.elections.get_mut(group).map(|e| {
                        e.elected = true;
                        &mut e.callbacks
                    })
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
    fn rejoin_elections(&self, campaign: impl Fn(Id, EventSender) -> JoinHandle<()>) {
        let mut hooks = self.hooks.lock().unwrap();
        for (group, entry) in hooks.elections.iter_mut() {
            if entry.campaign.is_finished() {
                entry.elected = false;
                entry.campaign = campaign(group.clone(), self.tx.clone());
            }
        }
    }
}
