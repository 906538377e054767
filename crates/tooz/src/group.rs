//! Group membership types and the watcher machinery shared by every driver.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::types::GroupChange;

/// A membership or leadership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEvent {
    /// A member joined the group.
    Joined {
        /// The group.
        group: Id,
        /// The member.
        member: Id,
    },
    /// A member left the group (or its membership expired).
    Left {
        /// The group.
        group: Id,
        /// The member.
        member: Id,
    },
    /// This coordinator was elected leader of the group.
    LeaderElected {
        /// The group.
        group: Id,
        /// The member elected (this coordinator's id).
        member: Id,
    },
}

impl GroupEvent {
    /// The group the event is about.
    pub fn group(&self) -> &Id {
        match self {
            GroupEvent::Joined { group, .. }
            | GroupEvent::Left { group, .. }
            | GroupEvent::LeaderElected { group, .. } => group,
        }
    }

    /// The member the event is about.
    pub fn member(&self) -> &Id {
        match self {
            GroupEvent::Joined { member, .. }
            | GroupEvent::Left { member, .. }
            | GroupEvent::LeaderElected { member, .. } => member,
        }
    }
}

/// A stream of one group's [`GroupEvent`]s, in the order they happened.
///
/// Made by [`Coordinator::watch_group`](crate::Coordinator::watch_group); dropping it stops
/// the watch.
pub struct GroupWatch {
    rx: mpsc::UnboundedReceiver<GroupEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Stream for GroupWatch {
    type Item = GroupEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<GroupEvent>> {
        self.rx.poll_recv(cx)
    }
}

impl GroupWatch {
    /// The next event if one is already there, without waiting.
    pub fn try_next_event(&mut self) -> Option<GroupEvent> {
        self.rx.try_recv().ok()
    }
}

impl Drop for GroupWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Applies changes to a known member set and turns them into events, never reporting a join
/// of a known member or a leave of an unknown one.
struct Differ {
    group: Id,
    known: BTreeSet<Id>,
    tx: mpsc::UnboundedSender<GroupEvent>,
}

impl Differ {
    fn emit(&self, event: GroupEvent) -> bool {
        self.tx.send(event).is_ok()
    }

    fn joined(&mut self, member: Id) -> bool {
        if self.known.insert(member.clone()) {
            let group = self.group.clone();
            return self.emit(GroupEvent::Joined { group, member });
        }
        true
    }

    fn left(&mut self, member: &Id) -> bool {
        if self.known.remove(member) {
            let group = self.group.clone();
            return self.emit(GroupEvent::Left {
                group,
                member: member.clone(),
            });
        }
        true
    }

    /// Emits the joins, then the leaves, that turn the known set into `now`.
    fn diff_to(&mut self, now: BTreeSet<Id>) -> bool {
        let gone: Vec<Id> = self.known.difference(&now).cloned().collect();
        for member in now {
            if !self.joined(member) {
                return false;
            }
        }
        gone.iter().all(|m| self.left(m))
    }
}

/// Reads the members, treating a vanished group as empty.
async fn read_members(driver: &dyn Driver, group: &Id) -> Result<BTreeSet<Id>> {
    match driver.get_members(group).await {
        Err(Error::GroupNotCreated { .. }) => Ok(BTreeSet::new()),
        other => other,
    }
}

/// Starts watching `group`: push when the driver has a feed, polling and diffing otherwise.
/// Fails with `GroupNotCreated` if the group does not exist.
pub(crate) async fn watch(driver: Arc<dyn Driver>, group: Id) -> Result<GroupWatch> {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = match driver.subscribe_group(&group).await? {
        Some((snapshot, feed)) => {
            let differ = Differ {
                group: group.clone(),
                known: snapshot,
                tx,
            };
            tokio::spawn(follow_feed(driver, differ, feed))
        }
        None => {
            let snapshot = driver.get_members(&group).await?;
            let differ = Differ {
                group: group.clone(),
                known: snapshot,
                tx,
            };
            tokio::spawn(poll_members(driver, differ))
        }
    };
    Ok(GroupWatch { rx, task })
}

async fn follow_feed(
    driver: Arc<dyn Driver>,
    mut differ: Differ,
    mut feed: crate::driver::GroupFeed,
) {
    while let Some(change) = feed.next().await {
        let alive = match change {
            GroupChange::Joined(member) => differ.joined(member),
            GroupChange::Left(member) => differ.left(&member),
            GroupChange::Resync => match read_members(driver.as_ref(), &differ.group).await {
                Ok(now) => differ.diff_to(now),
                Err(error) => {
                    tracing::warn!(group = %differ.group, %error, "watch resync failed");
                    true
                }
            },
        };
        if !alive {
            return;
        }
    }
}

async fn poll_members(driver: Arc<dyn Driver>, mut differ: Differ) {
    let mut ticker = tokio::time::interval(driver.poll_interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = differ.tx.closed() => return,
        }
        match read_members(driver.as_ref(), &differ.group).await {
            Ok(now) => {
                if !differ.diff_to(now) {
                    return;
                }
            }
            Err(error) => tracing::warn!(group = %differ.group, %error, "watch poll failed"),
        }
    }
}
