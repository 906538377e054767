//! The listening connection: `LISTEN` on the channels someone waits on, and the delivery of
//! their notifications (lock releases, group joins and leaves, break requests).
//!
//! It is a connection of its own, so that a long wait never delays the session's
//! statements. When it breaks, it is made again and every channel is listened to anew; its
//! subscribers get a `resync` payload (something may have been missed), so lock waiters try
//! again and watches re-read their group.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{broadcast, mpsc, OnceCell};
use tokio_postgres::{AsyncMessage, Client, NoTls};

use super::options::Config;
use super::{connect_error, pg_error};
use crate::error::{Error, Result};

/// What a subscriber gets when the listening connection was made anew.
pub(super) const RESYNC: &str = "\0resync";
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The messages of one listening connection; the receiver ends with it.
type Messages = mpsc::UnboundedReceiver<std::result::Result<AsyncMessage, tokio_postgres::Error>>;

/// One channel: its subscribers, and whether `LISTEN` has been done on the current
/// connection.
struct Channel {
    tx: broadcast::Sender<String>,
    listening: OnceCell<()>,
}

/// The listening connection and its channels.
pub(super) struct Feed {
    config: Config,
    client: tokio::sync::RwLock<Option<Arc<Client>>>,
    channels: Mutex<HashMap<String, Arc<Channel>>>,
    stopped: std::sync::atomic::AtomicBool,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn quote(channel: &str) -> String {
    format!("\"{}\"", channel.replace('"', "\"\""))
}

impl Feed {
    /// Connects the listening connection and starts delivering.
    pub async fn start(config: Config) -> Result<Arc<Feed>> {
        let feed = Arc::new(Feed {
            config,
            client: tokio::sync::RwLock::new(None),
            channels: Mutex::new(HashMap::new()),
            stopped: std::sync::atomic::AtomicBool::new(false),
            task: Mutex::new(None),
        });
        let (client, messages) = feed.connect().await?;
        *feed.client.write().await = Some(Arc::new(client));
        let task = tokio::spawn(run(Arc::downgrade(&feed), messages));
        *feed.task.lock().unwrap() = Some(task);
        Ok(feed)
    }

    /// Connects, and drives the connection in a task of its own whose messages come out of
    /// the receiver (which ends when the connection does).
    async fn connect(&self) -> Result<(Client, Messages)> {
        let client_config = self.config.client_config();
        let connect = client_config.connect(NoTls);
        let (client, mut connection) = tokio::time::timeout(self.config.connect_timeout, connect)
            .await
            .map_err(|_| Error::Connection("timed out connecting to PostgreSQL".into()))?
            .map_err(|e| connect_error(&e))?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                let end = message.is_err();
                if tx.send(message).is_err() || end {
                    return;
                }
            }
        });
        Ok((client, rx))
    }

    /// Subscribes to `channel`; once this returns, every notification sent on it after is
    /// delivered to the receiver.
    pub async fn subscribe(&self, channel: &str) -> Result<broadcast::Receiver<String>> {
        let chan = {
            let mut channels = self.channels.lock().unwrap();
            channels
                .entry(channel.to_string())
                .or_insert_with(|| {
                    Arc::new(Channel {
                        tx: broadcast::channel(256).0,
                        listening: OnceCell::new(),
                    })
                })
                .clone()
        };
        let rx = chan.tx.subscribe();
        chan.listening
            .get_or_try_init(|| async {
                let client = self.client.read().await.clone().ok_or_else(|| {
                    Error::Connection("the PostgreSQL listening connection is down".into())
                })?;
                let statement = format!("LISTEN {}", quote(channel));
                let listen = client.batch_execute(&statement);
                tokio::time::timeout(self.config.timeout / 2, listen)
                    .await
                    .map_err(|_| Error::OperationTimedOut("LISTEN got no answer".into()))?
                    .map_err(|e| pg_error("LISTEN", &e))
            })
            .await?;
        Ok(rx)
    }

    fn deliver(&self, channel: &str, payload: &str) {
        let chan = self.channels.lock().unwrap().get(channel).cloned();
        if let Some(chan) = chan {
            let _ = chan.tx.send(payload.to_string());
        }
    }

    /// Stops listening and closes the connection.
    pub async fn stop(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::Release);
        self.client.write().await.take();
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
        self.channels.lock().unwrap().clear();
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Delivers the notifications of the listening connection, and makes it again when it
/// breaks.
async fn run(feed: Weak<Feed>, mut messages: Messages) {
    loop {
        while let Some(message) = messages.recv().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => match feed.upgrade() {
                    Some(feed) => feed.deliver(n.channel(), n.payload()),
                    None => return,
                },
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "PostgreSQL listening connection failed");
                    break;
                }
            }
        }
        // Broken: make it again, listen again, tell every subscriber.
        let mut backoff = Duration::from_millis(50);
        messages = loop {
            let Some(f) = feed.upgrade() else { return };
            if f.is_stopped() {
                return;
            }
            f.client.write().await.take();
            match f.connect().await {
                Ok((client, messages)) => {
                    let names: Vec<String> = f.channels.lock().unwrap().keys().cloned().collect();
                    let mut listened = Vec::new();
                    for name in names {
                        match client
                            .batch_execute(&format!("LISTEN {}", quote(&name)))
                            .await
                        {
                            Ok(()) => listened.push(name),
                            Err(error) => tracing::warn!(%error, "LISTEN again failed"),
                        }
                    }
                    {
                        let mut channels = f.channels.lock().unwrap();
                        for chan in channels.values_mut() {
                            *chan = Arc::new(Channel {
                                tx: chan.tx.clone(),
                                listening: OnceCell::new(),
                            });
                        }
                        for name in &listened {
                            if let Some(chan) = channels.get(name) {
                                let _ = chan.listening.set(());
                            }
                        }
                    }
                    *f.client.write().await = Some(Arc::new(client));
                    for name in listened {
                        f.deliver(&name, RESYNC);
                    }
                    break messages;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot make the listening connection again yet")
                }
            }
            drop(f);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        };
    }
}
