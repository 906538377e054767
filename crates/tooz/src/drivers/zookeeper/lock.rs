//! kazoo's lock recipe, so that Rust and Python contenders queue together.
//!
//! A contender creates the ephemeral sequential node `<dir>/<32 hex>__lock__<seq>` holding its
//! member id; the contender with the smallest sequence holds the lock. A blocked contender
//! watches only the node just before its own (no thundering herd) and re-reads the queue when
//! that node goes: waiters are served in arrival order. If that node headed the queue, nothing
//! can be before this one and the hand-off costs no further round trip, unless the wait lasted
//! half a session timeout or more: the session may have expired meanwhile (a process paused
//! with the event unread), and re-reading the queue asks the server. `create` and the first
//! `get_children` are pipelined (ZooKeeper runs one session's requests in order, so the
//! listing includes the new node): an uncontended acquire costs one round trip, its release
//! another.
//!
//! A request that fails on the wire may still have made the node (its reply was lost): the
//! next attempt of the same acquire looks for a node with its own prefix and takes it over
//! (keeping its place in the queue) before creating one. Every node given up on (by an
//! acquire that ends without the lock, a release, a lock reported lost) is deleted by
//! [`spawn_cleanup`], which waits out connection trouble for as long as the node's session
//! lives: a node left behind by a live session would block the queue for good.
//!
//! The fencing token is the contender node's `czxid`: nodes are created in queue order and
//! zxids only grow, so each holder of a lock has a larger token than the one before, across
//! sessions, processes and leader changes of the ensemble.
//!
//! Once held (for more than a couple of milliseconds), the node is watched: if anyone else
//! deletes it (`break_lock`, an operator), the lock is reported lost as
//! [`LostReason::Broken`].

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;
use zookeeper_client::{Client, CreateMode, EventType};

use super::paths::{contenders, LOCK_MARKER};
use super::session::track;
use super::{zk_error, Shared};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::types::{FencingToken, LockRequest, LostReason};

/// A lock held by this driver.
pub struct Held {
    /// The contender node.
    pub path: String,
    /// The session that made it.
    pub generation: u64,
}

/// How long after an acquisition its node starts being watched for deletions.
const OWNER_WATCH_DELAY: Duration = Duration::from_millis(2);

/// How long an acquire may wait.
#[derive(Debug, Clone, Copy)]
pub enum Wait {
    /// Not at all.
    No,
    /// Until this instant.
    Until(Instant),
    /// For ever.
    Forever,
}

/// Where a contender stands in its queue.
enum Position {
    /// Holds the lock.
    First,
    /// Waits behind this node; `true` if that node heads the queue.
    Behind(String, bool),
    /// Its node is gone (the session ended, or it was deleted).
    Missing,
}

fn position(children: &[String], node: &str) -> Position {
    let queue = contenders(children);
    let Some(at) = queue.iter().position(|(_, c)| *c == node) else {
        return Position::Missing;
    };
    match at {
        0 => Position::First,
        n => Position::Behind(queue[n - 1].1.to_string(), n == 1),
    }
}

/// A contender node not (yet) turned into a held lock: deleted when dropped, so that an
/// abandoned or failed acquire never leaves a node that blocks the queue.
struct Contender {
    shared: Weak<Shared>,
    path: Option<String>,
    generation: u64,
}

impl Contender {
    fn disarm(&mut self) -> String {
        self.path.take().expect("armed")
    }

    /// Deletes the node now if connected (so the caller returns with the queue clean);
    /// otherwise, or if that fails on the wire, in the background.
    async fn delete_now(&mut self, shared: &Arc<Shared>) {
        let Some(path) = self.path.take() else { return };
        let done = match shared.conn.live() {
            Ok(live) if live.generation != self.generation => true, // gone with its session
            Ok(live) if live.client.state() == zookeeper_client::SessionState::SyncConnected => {
                matches!(
                    live.client.delete(&path, None).await,
                    Ok(()) | Err(zookeeper_client::Error::NoNode)
                )
            }
            Ok(_) => false,
            Err(_) => true, // stopped, or the session is over
        };
        if !done {
            spawn_cleanup(shared, self.generation, contender_place(&path));
        }
    }
}

impl Drop for Contender {
    fn drop(&mut self) {
        let (Some(path), Some(shared)) = (self.path.take(), self.shared.upgrade()) else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            spawn_cleanup(&shared, self.generation, contender_place(&path));
        }
    }
}

/// The directory of contender node `path` and the prefix naming its acquisition's nodes.
pub fn contender_place(path: &str) -> (&str, &str) {
    let (dir, node) = path.rsplit_once('/').unwrap_or(("", path));
    let prefix_len = node
        .rfind(LOCK_MARKER)
        .map_or(node.len(), |at| at + LOCK_MARKER.len());
    (dir, &node[..prefix_len])
}

/// This acquisition's node in `dir`, if an earlier attempt in this session whose reply was
/// lost made one: its name, its czxid and the children of `dir`. A node left by an expired
/// session is about to go (and its place in the queue with it), even if the server has not
/// removed it yet: it is never taken over.
async fn find_own(
    client: &Client,
    dir: &str,
    prefix: &str,
) -> Result<Option<(String, FencingToken, Vec<String>)>> {
    let children = match client.list_children(dir).await {
        Ok(children) => children,
        Err(zookeeper_client::Error::NoNode) => return Ok(None),
        Err(error) => return Err(zk_error(error)),
    };
    let session = client.session_id().0;
    for node in children.iter().filter(|c| c.starts_with(prefix)) {
        match client.check_stat(&format!("{dir}/{node}")).await {
            Ok(Some(stat)) if stat.ephemeral_owner == session => {
                let token = FencingToken(stat.czxid as u64);
                return Ok(Some((node.clone(), token, children)));
            }
            Ok(_) => {}
            Err(error) => return Err(zk_error(error)),
        }
    }
    Ok(None)
}

/// Creates the contender node and lists the queue in the same round trip (or, when `adopt`,
/// takes over the node an earlier attempt made, if any). Returns the node name, its czxid
/// and the children of `dir`.
async fn create_contender(
    shared: &Arc<Shared>,
    client: &Client,
    generation: u64,
    (dir, prefix, data): (&str, &str, &[u8]),
    adopt: bool,
) -> Result<(Contender, String, FencingToken, Vec<String>)> {
    let contender = |node: &str| Contender {
        shared: Arc::downgrade(shared),
        path: Some(format!("{dir}/{node}")),
        generation,
    };
    if adopt {
        if let Some((node, token, children)) = find_own(client, dir, prefix).await? {
            return Ok((contender(&node), node, token, children));
        }
    }
    let options = shared.conn.options(CreateMode::EphemeralSequential);
    let path = format!("{dir}/{prefix}");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let create = client.create(&path, data, &options);
        let list = client.list_children(dir);
        let (created, listed) = futures::join!(create, list);
        match created {
            Ok((stat, sequence)) => {
                let node = format!("{prefix}{sequence}");
                let children = listed.map_err(zk_error)?;
                return Ok((
                    contender(&node),
                    node,
                    FencingToken(stat.czxid as u64),
                    children,
                ));
            }
            Err(zookeeper_client::Error::NoNode) if attempt < 4 => {
                let parent = shared.conn.options(CreateMode::Persistent);
                match client.mkdir(dir, &parent).await {
                    Ok(()) | Err(zookeeper_client::Error::NodeExists) => {}
                    Err(error) => return Err(zk_error(error)),
                }
            }
            Err(error) => return Err(zk_error(error)),
        }
    }
}

/// Shortest and longest pause between two attempts of [`spawn_cleanup`].
const CLEANUP_RETRY: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));

/// Deletes, in the background, the nodes of `dir` named `prefix…` (one acquisition's nodes)
/// that session `generation` made. Connection trouble is waited out for as long as that
/// session lives; once it ends, the server deletes them itself.
pub fn spawn_cleanup(shared: &Arc<Shared>, generation: u64, (dir, prefix): (&str, &str)) {
    let weak = Arc::downgrade(shared);
    let (dir, prefix) = (dir.to_string(), prefix.to_string());
    let task = tokio::spawn(async move {
        let mut pause = CLEANUP_RETRY.0;
        loop {
            let live = match weak.upgrade().map(|shared| shared.conn.live()) {
                Some(Ok(live)) if live.generation == generation => live,
                _ => return, // stopped, or the session (and its nodes) is gone
            };
            match delete_prefixed(&live.client, &dir, &prefix).await {
                Ok(()) => return,
                Err(error) => match zk_error(error) {
                    Error::Connection(_) => {}
                    error => {
                        tracing::warn!(%dir, %prefix, %error, "cannot delete a lock's node");
                        return;
                    }
                },
            }
            drop(live);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(CLEANUP_RETRY.1);
        }
    });
    track(&shared.tasks, task);
}

/// Deletes the children of `dir` whose names start with `prefix`.
async fn delete_prefixed(
    client: &Client,
    dir: &str,
    prefix: &str,
) -> std::result::Result<(), zookeeper_client::Error> {
    let children = match client.list_children(dir).await {
        Err(zookeeper_client::Error::NoNode) => return Ok(()),
        listed => listed?,
    };
    for child in children.iter().filter(|c| c.starts_with(prefix)) {
        match client.delete(&format!("{dir}/{child}"), None).await {
            Ok(()) | Err(zookeeper_client::Error::NoNode) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Shortest and longest pause before queueing again after a connection error.
const REQUEUE_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// Takes the lock for `req`, waiting as `wait` says; `None` if it was not acquired.
///
/// A waiting acquire survives connection trouble: when its place in the queue is lost (the
/// session expired, or a request failed on the wire), it waits for the session to be usable
/// again (a new one if need be) and queues again, at the back, until its deadline.
pub async fn acquire(
    shared: &Arc<Shared>,
    req: &LockRequest,
    wait: Wait,
) -> Result<Option<FencingToken>> {
    let mut backoff = REQUEUE_BACKOFF.0;
    // Armed once a request failed on the wire (a node of ours may exist without our knowing):
    // unless the lock is taken, such a node is deleted, even if this future is dropped.
    let mut leftovers = Leftovers {
        shared: Arc::downgrade(shared),
        dir: shared.layout.lock_dir(&req.name),
        prefix: format!("{}{LOCK_MARKER}", req.nonce),
        armed: false,
    };
    loop {
        let generation = shared.conn.generation();
        let place = (leftovers.dir.as_str(), leftovers.prefix.as_str());
        match attempt(shared, req, place, wait, leftovers.armed).await {
            Err(Error::Connection(reason)) => {
                leftovers.armed = true;
                if matches!(wait, Wait::No) {
                    return Err(Error::Connection(reason));
                }
                tracing::info!(%reason, "lock wait interrupted; queueing again once connected");
                if !usable_again(shared, generation, backoff, wait).await? {
                    return Ok(None);
                }
                backoff = (backoff * 2).min(REQUEUE_BACKOFF.1);
            }
            Ok(Some(token)) => {
                leftovers.armed = false;
                return Ok(Some(token));
            }
            outcome => return outcome,
        }
    }
}

/// Deletes, when dropped armed, the nodes of an acquisition that gave up after a request
/// failed on the wire: one whose reply was lost must not block the queue.
struct Leftovers {
    shared: Weak<Shared>,
    dir: String,
    prefix: String,
    armed: bool,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        if !self.armed || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        if let Some(shared) = self.shared.upgrade() {
            let generation = shared.conn.generation();
            spawn_cleanup(&shared, generation, (&self.dir, &self.prefix));
        }
    }
}

/// Waits at least `pause`, then until the client is connected (in session `generation` or a
/// newer one). `false` if `wait`'s deadline came first; an error once the driver is stopped.
async fn usable_again(
    shared: &Shared,
    generation: u64,
    pause: Duration,
    wait: Wait,
) -> Result<bool> {
    let deadline = match wait {
        Wait::Until(deadline) => Some(deadline),
        _ => None,
    };
    let mut generations = shared.conn.generations();
    let mut nap = pause;
    loop {
        let wake = Instant::now() + nap;
        if deadline.is_some_and(|d| d <= Instant::now()) {
            return Ok(false);
        }
        let wake = deadline.map_or(wake, |d| d.min(wake));
        tokio::select! {
            _ = generations.changed() => {}
            _ = tokio::time::sleep_until(wake) => {}
        }
        if shared.conn.is_stopped() {
            return Err(Error::Connection(
                "the coordinator stopped while waiting for the lock".into(),
            ));
        }
        if let Ok(live) = shared.conn.live() {
            let state = live.client.state_watcher().state();
            if live.generation != generation
                || state == zookeeper_client::SessionState::SyncConnected
            {
                return Ok(true);
            }
        }
        nap = REQUEUE_BACKOFF.1.min(nap * 2);
    }
}

/// One pass at [`acquire`]: queue (taking over the node of an earlier attempt when `adopt`),
/// then wait in the queue as long as the session lasts. On a connection error the node is
/// kept, for the next pass to take over.
async fn attempt(
    shared: &Arc<Shared>,
    req: &LockRequest,
    (dir, prefix): (&str, &str),
    wait: Wait,
    adopt: bool,
) -> Result<Option<FencingToken>> {
    let live = shared.conn.live()?;
    let generation = live.generation;
    let (mut contender, node, token, children) = create_contender(
        shared,
        &live.client,
        generation,
        (dir, prefix, req.owner.as_bytes()),
        adopt,
    )
    .await?;
    drop(live);
    let outcome = wait_in_queue(
        shared,
        req,
        (dir, &node),
        &mut contender,
        token,
        children,
        wait,
    )
    .await;
    if matches!(outcome, Err(Error::Connection(_))) {
        let _ = contender.path.take(); // kept for the next pass
    }
    outcome
}

/// Waits until `node` heads the queue of `dir` (then holds the lock), or `wait` runs out.
async fn wait_in_queue(
    shared: &Arc<Shared>,
    req: &LockRequest,
    (dir, node): (&str, &str),
    contender: &mut Contender,
    token: FencingToken,
    mut children: Vec<String>,
    wait: Wait,
) -> Result<Option<FencingToken>> {
    let generation = contender.generation;
    loop {
        let predecessor = match position(&children, node) {
            Position::First => {
                let path = contender.disarm();
                hold(shared, req, path, generation);
                return Ok(Some(token));
            }
            Position::Missing => {
                return Err(Error::Connection(
                    "the lock's contender node vanished (session lost?)".into(),
                ))
            }
            Position::Behind(predecessor, heads) => (predecessor, heads),
        };
        let (predecessor, predecessor_heads) = predecessor;
        if let Wait::No = wait {
            contender.delete_now(shared).await;
            return Ok(None);
        }
        let live = current(shared, generation)?;
        // A data watch (as kazoo sets): it fires when the node goes, and none is left
        // behind when the node is already gone.
        let watched = match live
            .client
            .get_and_watch_data(&format!("{dir}/{predecessor}"))
            .await
        {
            Ok((_, _, watcher)) => Some(watcher),
            Err(zookeeper_client::Error::NoNode) => None,
            Err(error) => return Err(zk_error(error)),
        };
        // The server last vouched for the session here.
        let confirmed = Instant::now();
        drop(live); // wait without keeping the session's client alive
        let mut gone = watched.is_none();
        if let Some(watcher) = watched {
            let event = match wait {
                Wait::Until(deadline) => {
                    match tokio::time::timeout_at(deadline, watcher.changed()).await {
                        Ok(event) => event,
                        Err(_) => {
                            contender.delete_now(shared).await;
                            return Ok(None);
                        }
                    }
                }
                _ => watcher.changed().await,
            };
            if event.event_type == EventType::Session && event.session_state.is_terminated() {
                return Err(Error::Connection(format!(
                    "ZooKeeper session ended while waiting for the lock ({})",
                    event.session_state
                )));
            }
            gone = event.event_type == EventType::NodeDeleted;
        }
        if gone && predecessor_heads && confirmed.elapsed() < shared.conn.session_timeout() / 2 {
            // Nothing can queue before the head (sequence numbers only grow): with the head
            // gone, this node heads the queue, no need to list it again. Unless the wait was
            // long enough for the session to have expired meanwhile (the process was paused
            // with the event unread, say): then the listing below asks the server first.
            let path = contender.disarm();
            hold(shared, req, path, generation);
            return Ok(Some(token));
        }
        let live = current(shared, generation)?;
        children = live.client.list_children(dir).await.map_err(zk_error)?;
    }
}

/// The client of session `generation`, or an error if that session is over.
fn current(shared: &Shared, generation: u64) -> Result<super::session::Live> {
    let live = shared.conn.live()?;
    if live.generation != generation {
        return Err(Error::Connection(
            "the ZooKeeper session changed while waiting for the lock".into(),
        ));
    }
    Ok(live)
}

/// Records a held lock and watches its node, so that a deletion by anyone else is reported.
fn hold(shared: &Arc<Shared>, req: &LockRequest, path: String, generation: u64) {
    let record = Held {
        path: path.clone(),
        generation,
    };
    shared.held.insert(req, record);
    let weak = Arc::downgrade(shared);
    let nonce = req.nonce.clone();
    let task = tokio::spawn(async move {
        // A lock released within this delay never costs a watch; a deletion meanwhile is
        // still seen (the node is then already gone when the watch is set).
        tokio::time::sleep(OWNER_WATCH_DELAY).await;
        let live = {
            let Some(shared) = weak.upgrade() else { return };
            if !shared.held.contains(&nonce) {
                return; // released already
            }
            let Ok(live) = shared.conn.live() else { return };
            live
        };
        if live.generation != generation {
            return;
        }
        let watched = live.client.get_and_watch_data(&path).await;
        drop(live);
        let gone = match watched {
            Err(zookeeper_client::Error::NoNode) => true,
            // Session ends are the supervisor's business; only a deletion is a break.
            Ok((_, _, watcher)) => watcher.changed().await.event_type == EventType::NodeDeleted,
            Err(_) => false,
        };
        if !gone {
            return;
        }
        let Some(shared) = weak.upgrade() else { return };
        shared.held.lose(&nonce, LostReason::Broken);
    });
    track(&shared.tasks, task);
}

/// Releases `req`'s lock: deletes its node. `false` if it was not held (or already gone).
/// If the deletion fails on the wire, the error is returned and the node is deleted in the
/// background once the connection is back.
pub async fn release(shared: &Arc<Shared>, req: &LockRequest) -> Result<bool> {
    let Some(held) = shared.held.remove(&req.nonce).map(|h| h.record) else {
        return Ok(false);
    };
    let live = match shared.conn.live() {
        Ok(live) if live.generation == held.generation => live,
        _ => return Ok(false), // its session, and the node, are gone
    };
    match live.client.delete(&held.path, None).await {
        Ok(()) => Ok(true),
        Err(zookeeper_client::Error::NoNode) => Ok(false),
        Err(error) => {
            spawn_cleanup(shared, held.generation, contender_place(&held.path));
            Err(zk_error(error))
        }
    }
}

/// The member whose node heads the queue of lock `name`, if any. Creates nothing.
pub async fn holder(shared: &Shared, name: &Id) -> Result<Option<Id>> {
    let dir = shared.layout.lock_dir(name);
    let live = shared.synced().await?;
    for _ in 0..8 {
        let children = match live.client.list_children(&dir).await {
            Ok(children) => children,
            Err(zookeeper_client::Error::NoNode) => return Ok(None),
            Err(error) => return Err(zk_error(error)),
        };
        let queue = contenders(&children);
        let Some((_, first)) = queue.first() else {
            return Ok(None);
        };
        match live.client.get_data(&format!("{dir}/{first}")).await {
            Ok((data, _)) if data.is_empty() => return Ok(None),
            Ok((data, _)) => return Ok(Some(Id::from(data))),
            Err(zookeeper_client::Error::NoNode) => continue, // handed over meanwhile
            Err(error) => return Err(zk_error(error)),
        }
    }
    Err(Error::OperationTimedOut(format!(
        "the holder of lock {name} kept changing"
    )))
}

/// Deletes the node heading the queue of lock `name`; `false` if nobody held it.
pub async fn break_lock(shared: &Shared, name: &Id) -> Result<bool> {
    let dir = shared.layout.lock_dir(name);
    let live = shared.synced().await?;
    for _ in 0..8 {
        let children = match live.client.list_children(&dir).await {
            Ok(children) => children,
            Err(zookeeper_client::Error::NoNode) => return Ok(false),
            Err(error) => return Err(zk_error(error)),
        };
        let queue = contenders(&children);
        let Some((_, first)) = queue.first() else {
            return Ok(false);
        };
        match live.client.delete(&format!("{dir}/{first}"), None).await {
            Ok(()) => return Ok(true),
            Err(zookeeper_client::Error::NoNode) => continue,
            Err(error) => return Err(zk_error(error)),
        }
    }
    Err(Error::OperationTimedOut(format!(
        "the holder of lock {name} kept changing"
    )))
}

#[cfg(test)]
mod tests {
    use super::contender_place;

    #[test]
    fn a_contender_path_splits_into_its_directory_and_acquisition_prefix() {
        let path = "/tooz/locks/name/0123abcd__lock__0000000042";
        assert_eq!(
            contender_place(path),
            ("/tooz/locks/name", "0123abcd__lock__")
        );
    }
}
