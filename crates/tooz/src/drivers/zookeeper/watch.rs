//! Group feeds: a persistent recursive watch (ZooKeeper 3.6+) on the group node.
//!
//! The server sends one event per created or deleted child, in order, for as long as the
//! watch lives: joins and leaves are pushed without re-reading the group. Events of the
//! election queue (`<G>/leader/...`) are skipped. After a reconnection the feed asks the core
//! to re-read the group (`Resync`), since events that happened while disconnected are not
//! replayed (ZOOKEEPER-4698); after a session expiry the watch is set again on the new
//! session, followed by a `Resync`.

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use zookeeper_client::{AddWatchMode, EventType, PersistentWatcher, SessionState};

use super::paths::{decode_name, LEADER};
use super::session::track;
use super::{zk_error, Shared};
use crate::error::Result;
use crate::id::Id;
use crate::types::{GroupChange, GroupFeed};

/// Starts a feed of `group`: returns the members at the start and the changes after it.
pub async fn subscribe(shared: &Arc<Shared>, group: &Id) -> Result<(BTreeSet<Id>, GroupFeed)> {
    let path = shared.layout.group(group);
    let live = shared.conn.live()?;
    // Watch first, then read: no change can fall between the two.
    let watcher = live
        .client
        .watch(&path, AddWatchMode::PersistentRecursive)
        .await
        .map_err(zk_error)?;
    drop(live);
    let snapshot = shared.members(group).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let generation = shared.conn.generation();
    let task = tokio::spawn(pump(Arc::downgrade(shared), path, watcher, generation, tx));
    track(&shared.tasks, task);
    Ok((snapshot, UnboundedReceiverStream::new(rx).boxed()))
}

/// The member a watch event on `path`'s subtree is about, if it is about one.
fn member_of(group_path: &str, event_path: &str) -> Option<Id> {
    let child = event_path.strip_prefix(group_path)?.strip_prefix('/')?;
    (!child.is_empty() && !child.contains('/') && child != LEADER).then(|| decode_name(child))
}

async fn pump(
    shared: Weak<Shared>,
    path: String,
    mut watcher: PersistentWatcher,
    mut generation: u64,
    tx: mpsc::UnboundedSender<GroupChange>,
) {
    let mut disconnected = false;
    loop {
        let event = tokio::select! {
            event = watcher.changed() => event,
            _ = tx.closed() => return,
        };
        let change = match event.event_type {
            EventType::NodeCreated => member_of(&path, &event.path).map(GroupChange::Joined),
            EventType::NodeDeleted => member_of(&path, &event.path).map(GroupChange::Left),
            EventType::NodeDataChanged | EventType::NodeChildrenChanged => None,
            EventType::Session => match event.session_state {
                SessionState::Disconnected => {
                    disconnected = true;
                    None
                }
                SessionState::SyncConnected | SessionState::ConnectedReadOnly => {
                    std::mem::take(&mut disconnected).then_some(GroupChange::Resync)
                }
                _ => {
                    // Terminal: this watcher is done; set a new one on the next session.
                    match rewatch(&shared, &path, generation, &tx).await {
                        Some((next, g)) => {
                            watcher = next;
                            generation = g;
                            Some(GroupChange::Resync)
                        }
                        None => return,
                    }
                }
            },
        };
        if let Some(change) = change {
            if tx.send(change).is_err() {
                return;
            }
        }
    }
}

/// Waits for a session newer than `generation` and watches `path` on it.
async fn rewatch(
    shared: &Weak<Shared>,
    path: &str,
    generation: u64,
    tx: &mpsc::UnboundedSender<GroupChange>,
) -> Option<(PersistentWatcher, u64)> {
    let mut generations = shared.upgrade()?.conn.generations();
    loop {
        {
            let s = shared.upgrade()?;
            if s.conn.is_stopped() {
                return None;
            }
            if let Ok(live) = s.conn.live() {
                if live.generation > generation {
                    match live
                        .client
                        .watch(path, AddWatchMode::PersistentRecursive)
                        .await
                    {
                        Ok(watcher) => return Some((watcher, live.generation)),
                        Err(error) => tracing::warn!(%error, "cannot watch the group again yet"),
                    }
                }
            }
        }
        tokio::select! {
            changed = generations.changed() => changed.ok()?,
            _ = tx.closed() => return None,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}
