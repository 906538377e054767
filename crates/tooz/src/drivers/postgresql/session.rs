//! The session connection: connecting, the statements prepared on it, and the session key
//! whose advisory lock keeps this coordinator's members alive.
//!
//! Every lock of the coordinator is taken on this one connection (a session can hold any
//! number of advisory locks), so a coordinator uses two connections whatever it holds: this
//! one and the listening one (module `feed`).

use std::time::Duration;

use tokio::sync::oneshot;
use tokio_postgres::{Client, NoTls, Statement};

use super::layout::Layout;
use super::options::Config;
use super::{connect_error, pg_error};
use crate::error::{Error, Result};

/// The statements of the driver, prepared once per connection.
pub(super) struct Stmts {
    pub acquire: Statement,
    pub release: Statement,
    pub unlock: Statement,
    pub acquire_shared: Statement,
    pub release_shared: Statement,
    pub unlock_shared: Statement,
    pub holder: Statement,
    pub terminate: Statement,
    pub notify: Statement,
    pub create_group: Statement,
    pub delete_group: Statement,
    pub get_groups: Statement,
    pub join: Statement,
    pub leave: Statement,
    pub members: Statement,
    pub member: Statement,
    pub update_caps: Statement,
}

/// One live database session.
pub(super) struct Live {
    pub client: Client,
    pub stmts: Stmts,
    /// The key of the advisory lock this session holds while it lives: member rows carry it.
    pub key: i64,
    /// The server process of the session.
    pub pid: i32,
    /// The task driving the connection: aborting it closes the connection.
    task: tokio::task::AbortHandle,
}

impl Stmts {
    /// The try-and-count statement of `shared` or exclusive locks.
    pub fn acquire(&self, shared: bool) -> &Statement {
        if shared {
            &self.acquire_shared
        } else {
            &self.acquire
        }
    }

    /// The unlock-and-announce statement.
    pub fn release(&self, shared: bool) -> &Statement {
        if shared {
            &self.release_shared
        } else {
            &self.release
        }
    }

    /// The unlock statement.
    pub fn unlock(&self, shared: bool) -> &Statement {
        if shared {
            &self.unlock_shared
        } else {
            &self.unlock
        }
    }
}

impl Live {
    /// Closes the connection at once (a session in doubt: replies lost, or given up as lost
    /// by the core): the supervisor then reports it lost and connects again.
    pub fn close(&self) {
        self.task.abort();
    }
}

/// A random session key, positive so that it reads back from `pg_locks` unchanged.
fn session_key() -> i64 {
    let (high, _) = uuid::Uuid::new_v4().as_u64_pair();
    (high >> 1) as i64
}

/// Connects, makes the tables if they are missing, prepares the statements and takes the
/// session key. The receiver resolves when the connection ends.
pub(super) async fn connect(
    config: &Config,
    layout: &Layout,
) -> Result<(Live, oneshot::Receiver<()>)> {
    let client_config = config.client_config();
    let connect = client_config.connect(NoTls);
    let (client, connection) = tokio::time::timeout(config.connect_timeout, connect)
        .await
        .map_err(|_| Error::Connection("timed out connecting to PostgreSQL".into()))?
        .map_err(|e| connect_error(&e))?;
    let (ended_tx, ended) = oneshot::channel();
    let task = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "PostgreSQL session connection ended");
        }
        let _ = ended_tx.send(());
    });
    let setup = async {
        // A session whose client stops talking (cut off, paused) is ended by the server
        // after `timeout`: the heartbeat talks every timeout / 4.
        let idle = config.timeout.as_millis().max(1000);
        // Commits need not wait for the disk: a crash that loses the last counter bumps
        // starts a new token epoch (see `Layout::acquire`).
        client
            .batch_execute(&format!(
                "SET idle_session_timeout = {idle}; SET synchronous_commit = off"
            ))
            .await
            .map_err(|e| pg_error("setting up the session", &e))?;
        let exists: bool = client
            .query_one(&layout.tables_exist(), &[])
            .await
            .map_err(|e| pg_error("checking the tables", &e))?
            .get(0);
        if !exists {
            client
                .batch_execute(&layout.create_tables())
                .await
                .map_err(|e| pg_error("creating the tables", &e))?;
        }
        let stmts = prepare(&client, layout).await?;
        let key = session_key();
        let row = client
            .query_one("SELECT pg_try_advisory_lock($1), pg_backend_pid()", &[&key])
            .await
            .map_err(|e| pg_error("taking the session key", &e))?;
        if !row.get::<_, bool>(0) {
            return Err(Error::Connection(
                "the random session key is taken by another session".into(),
            ));
        }
        Ok::<_, Error>((stmts, key, row.get::<_, i32>(1)))
    };
    let set_up = tokio::time::timeout(config.timeout, setup)
        .await
        .map_err(|_| Error::Connection("timed out setting up the PostgreSQL session".into()))
        .and_then(|r| r);
    let (stmts, key, pid) = match set_up {
        Ok(done) => done,
        Err(error) => {
            task.abort();
            return Err(error);
        }
    };
    Ok((
        Live {
            client,
            stmts,
            key,
            pid,
            task: task.abort_handle(),
        },
        ended,
    ))
}

async fn prepare(client: &Client, layout: &Layout) -> Result<Stmts> {
    let texts = [
        layout.acquire(false),
        layout.release(false),
        layout.unlock(false),
        layout.acquire(true),
        layout.release(true),
        layout.unlock(true),
        layout.holder(),
        layout.terminate().to_string(),
        layout.notify().to_string(),
        layout.create_group(),
        layout.delete_group(),
        layout.get_groups(),
        layout.join(),
        layout.leave(),
        layout.members(),
        layout.member(),
        layout.update_caps(),
    ];
    let prepared = futures::future::try_join_all(texts.iter().map(|t| client.prepare(t)))
        .await
        .map_err(|e| pg_error("preparing statements", &e))?;
    let mut it = prepared.into_iter();
    let mut next = || it.next().expect("one statement per text");
    Ok(Stmts {
        acquire: next(),
        release: next(),
        unlock: next(),
        acquire_shared: next(),
        release_shared: next(),
        unlock_shared: next(),
        holder: next(),
        terminate: next(),
        notify: next(),
        create_group: next(),
        delete_group: next(),
        get_groups: next(),
        join: next(),
        leave: next(),
        members: next(),
        member: next(),
        update_caps: next(),
    })
}

/// Longest pause between two attempts to connect again.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(2);
