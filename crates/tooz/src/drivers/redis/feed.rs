//! Push: one pub/sub connection per session, shared by every lock waiter, group watch and
//! held lock of that session.
//!
//! Lock waiters subscribe to `N_rs:lock:<name>` before their last try, so a release published
//! by our release script after that try wakes them at once. Group watches subscribe to
//! `N_rs:group:<G>`. The session's own channel `N_rs:session:<sid>` tells it that one of its
//! acquisitions was broken, or taken over after it expired, so `lost()` fires without waiting
//! for the next refresh.
//!
//! Pub/sub is at-most-once: while the connection is down messages are lost. So after every
//! reconnect every lock waiter is woken (it tries again) and every group watch resyncs, and
//! the connection is checked with a PING every `health_check_interval`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::Msg;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use super::keys::{ChannelKind, Keys};
use super::link::Link;
use super::options::Config;
use crate::drivers::common::HeldLocks;
use crate::id::Id;
use crate::types::GroupChange;
use crate::types::{LockRequest, LostReason};

const GROUP_CAPACITY: usize = 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(1);

enum Kind {
    Lock(watch::Sender<u64>),
    Group(broadcast::Sender<GroupChange>),
}

struct Chan {
    id: u64,
    refs: usize,
    ready: watch::Sender<bool>,
    kind: Kind,
}

enum Command {
    Subscribe(Vec<u8>, u64),
    Unsubscribe(Vec<u8>),
}

struct Shared {
    keys: Keys,
    session: Vec<u8>,
    chans: Mutex<HashMap<Vec<u8>, Chan>>,
    next_id: Mutex<u64>,
    held: HeldLocks<()>,
    commands: mpsc::UnboundedSender<Command>,
    confirm_timeout: Duration,
}

/// The pub/sub side of a session. Dropping it stops its task.
pub(super) struct Feed {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps a channel subscribed while alive.
pub(super) struct Subscription {
    shared: Arc<Shared>,
    channel: Vec<u8>,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut chans = self.shared.chans.lock().unwrap();
        let last = match chans.get_mut(&self.channel) {
            Some(chan) if chan.id == self.id => {
                chan.refs -= 1;
                chan.refs == 0
            }
            _ => false,
        };
        if last {
            chans.remove(&self.channel);
            let _ = self
                .shared
                .commands
                .send(Command::Unsubscribe(self.channel.clone()));
        }
    }
}

/// A subscription to one lock's release announcements.
pub(super) struct LockWatch {
    rx: watch::Receiver<u64>,
    _subscription: Subscription,
}

impl LockWatch {
    /// Resolves when the lock may have been released (or the feed reconnected).
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A subscription to one group's membership announcements.
pub(super) struct GroupWatch {
    pub rx: broadcast::Receiver<GroupChange>,
    pub _subscription: Subscription,
}

impl Feed {
    /// Starts the pub/sub task of a session.
    pub fn start(link: Arc<Link>, cfg: Arc<Config>, keys: Keys, sid: &str) -> Feed {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            session: keys.session_channel(sid),
            keys,
            chans: Mutex::new(HashMap::new()),
            next_id: Mutex::new(0),
            held: HeldLocks::default(),
            commands: tx,
            confirm_timeout: cfg.response_timeout,
        });
        let task = tokio::spawn(run(shared.clone(), link, cfg, rx));
        Feed { shared, task }
    }

    /// Subscribes `channel`, waiting (bounded) until the server confirmed it.
    async fn subscribe(
        &self,
        channel: Vec<u8>,
        make: impl FnOnce() -> Kind,
    ) -> (Subscription, Kind) {
        let (id, mut ready, kind) = {
            let mut chans = self.shared.chans.lock().unwrap();
            let chan = match chans.get_mut(&channel) {
                Some(chan) => {
                    chan.refs += 1;
                    chan
                }
                None => {
                    let id = {
                        let mut next = self.shared.next_id.lock().unwrap();
                        *next += 1;
                        *next
                    };
                    let _ = self
                        .shared
                        .commands
                        .send(Command::Subscribe(channel.clone(), id));
                    chans.entry(channel.clone()).or_insert(Chan {
                        id,
                        refs: 1,
                        ready: watch::channel(false).0,
                        kind: make(),
                    })
                }
            };
            let kind = match &chan.kind {
                Kind::Lock(tx) => Kind::Lock(tx.clone()),
                Kind::Group(tx) => Kind::Group(tx.clone()),
            };
            (chan.id, chan.ready.subscribe(), kind)
        };
        let confirmed = tokio::time::timeout(self.shared.confirm_timeout, ready.wait_for(|r| *r));
        if !matches!(confirmed.await, Ok(Ok(_))) {
            tracing::debug!("redis subscription not confirmed in time; polling covers it");
        }
        let subscription = Subscription {
            shared: self.shared.clone(),
            channel,
            id,
        };
        (subscription, kind)
    }

    /// Subscribes to the release announcements of lock `name`.
    pub async fn watch_lock(&self, name: &Id) -> LockWatch {
        let channel = self.shared.keys.lock_channel(name);
        let (subscription, kind) = self
            .subscribe(channel, || Kind::Lock(watch::channel(0).0))
            .await;
        let Kind::Lock(tx) = kind else {
            unreachable!("lock channels carry lock watches")
        };
        LockWatch {
            rx: tx.subscribe(),
            _subscription: subscription,
        }
    }

    /// Subscribes to the membership announcements of `group`.
    pub async fn watch_group(&self, group: &Id) -> GroupWatch {
        let channel = self.shared.keys.group_channel(group);
        let (subscription, kind) = self
            .subscribe(channel, || {
                Kind::Group(broadcast::channel(GROUP_CAPACITY).0)
            })
            .await;
        let Kind::Group(tx) = kind else {
            unreachable!("group channels carry group watches")
        };
        GroupWatch {
            rx: tx.subscribe(),
            _subscription: subscription,
        }
    }

    /// Remembers a held acquisition, so that a push about its token fires its `lost()`.
    pub fn hold(&self, req: &LockRequest) {
        self.shared.held.insert(req, ());
    }

    /// Forgets a held acquisition.
    pub fn forget(&self, token: &str) {
        self.shared.held.remove(token);
    }
}

impl Shared {
    fn dispatch(&self, msg: &Msg) {
        let (Ok(channel), Ok(payload)) =
            (msg.get_channel::<Vec<u8>>(), msg.get_payload::<Vec<u8>>())
        else {
            return;
        };
        match self.keys.channel_kind(&channel) {
            Some((ChannelKind::Session, _)) => {
                let (reason, token) = match payload.split_first() {
                    Some((b'B', token)) => (LostReason::Broken, token),
                    Some((b'E', token)) => (LostReason::Expired, token),
                    _ => return,
                };
                let token = String::from_utf8_lossy(token);
                self.held.lose(token.as_ref(), reason);
            }
            Some((ChannelKind::Lock, _)) | Some((ChannelKind::Group, _)) => {
                let chans = self.chans.lock().unwrap();
                match chans.get(&channel).map(|c| &c.kind) {
                    Some(Kind::Lock(tx)) => {
                        tx.send_modify(|n| *n += 1);
                    }
                    Some(Kind::Group(tx)) => {
                        let change = match payload.split_first() {
                            Some((b'J', member)) => GroupChange::Joined(Id::from(member)),
                            Some((b'L', member)) => GroupChange::Left(Id::from(member)),
                            _ => GroupChange::Resync,
                        };
                        let _ = tx.send(change);
                    }
                    None => {}
                }
            }
            None => {}
        }
    }

    /// After a (re)connect: every channel is subscribed again; what may have been missed is
    /// made up for by waking lock waiters and resyncing group watches.
    fn reconnected(&self, subscribed: &[Vec<u8>]) {
        let chans = self.chans.lock().unwrap();
        for (channel, chan) in chans.iter() {
            if subscribed.contains(channel) {
                chan.ready.send_replace(true);
            }
            match &chan.kind {
                Kind::Lock(tx) => tx.send_modify(|n| *n += 1),
                Kind::Group(tx) => {
                    let _ = tx.send(GroupChange::Resync);
                }
            }
        }
    }

    fn disconnected(&self) {
        for chan in self.chans.lock().unwrap().values() {
            chan.ready.send_replace(false);
        }
    }

    fn channels(&self) -> Vec<Vec<u8>> {
        let mut all: Vec<Vec<u8>> = self.chans.lock().unwrap().keys().cloned().collect();
        all.push(self.session.clone());
        all
    }
}

async fn connect(
    shared: &Shared,
    link: &Link,
    cfg: &Config,
) -> Result<(PubSubSink, PubSubStream, Vec<Vec<u8>>), String> {
    let client = link.client().await.map_err(|e| e.to_string())?;
    let pubsub = tokio::time::timeout(cfg.connect_timeout * 2, client.get_async_pubsub())
        .await
        .map_err(|_| "connecting timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let (mut sink, stream) = pubsub.split();
    let channels = shared.channels();
    tokio::time::timeout(cfg.response_timeout, sink.subscribe(&channels))
        .await
        .map_err(|_| "subscribing timed out".to_string())?
        .map_err(|e| e.to_string())?;
    Ok((sink, stream, channels))
}

/// The task: connect, subscribe, deliver, and start over when the connection breaks.
async fn run(
    shared: Arc<Shared>,
    link: Arc<Link>,
    cfg: Arc<Config>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut backoff = Duration::from_millis(20);
    loop {
        let (mut sink, mut stream, subscribed) = match connect(&shared, &link, &cfg).await {
            Ok(connected) => connected,
            Err(error) => {
                tracing::debug!(%error, "redis pub/sub connection failed; retrying");
                // Commands queued meanwhile are covered by the resubscription that follows.
                while commands.try_recv().is_ok() {}
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(20);
        shared.reconnected(&subscribed);
        let mut ping = tokio::time::interval(cfg.health_check);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => shared.dispatch(&msg),
                    None => break,
                },
                command = commands.recv() => {
                    let Some(command) = command else { return };
                    if !apply(&shared, &mut sink, command, cfg.response_timeout).await {
                        break;
                    }
                }
                _ = ping.tick() => {
                    let pong = tokio::time::timeout(cfg.response_timeout, sink.ping::<redis::Value>());
                    if !matches!(pong.await, Ok(Ok(_))) {
                        break;
                    }
                }
            }
        }
        tracing::debug!("redis pub/sub connection lost; reconnecting");
        shared.disconnected();
    }
}

/// Applies one (un)subscription; false if the connection failed.
async fn apply(shared: &Shared, sink: &mut PubSubSink, command: Command, limit: Duration) -> bool {
    match command {
        Command::Subscribe(channel, id) => {
            let done = tokio::time::timeout(limit, sink.subscribe(&channel)).await;
            if !matches!(done, Ok(Ok(()))) {
                return false;
            }
            if let Some(chan) = shared.chans.lock().unwrap().get(&channel) {
                if chan.id == id {
                    chan.ready.send_replace(true);
                }
            }
            true
        }
        Command::Unsubscribe(channel) => {
            if shared.chans.lock().unwrap().contains_key(&channel) {
                return true; // subscribed again meanwhile
            }
            let done = tokio::time::timeout(limit, sink.unsubscribe(&channel)).await;
            matches!(done, Ok(Ok(())))
        }
    }
}
