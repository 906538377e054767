//! The data connection: one multiplexed connection to the current master, found directly or
//! through Sentinel, replaced when it breaks or the server it reaches stops being master.
//!
//! Each connection remembers the `run_id` of the server it reached; the acquire script
//! compares it with the one stored beside the fencing counters to notice a new master (a
//! failover or a restart) and start a new fencing epoch.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ErrorKind, IntoConnectionInfo,
    RedisConnectionInfo, RedisError, ServerErrorKind, Value,
};

use super::options::{Config, Target};
use super::scripts::{Lua, Scripts};
use crate::error::{Error, Result};
use crate::types::{ConnectionState, SessionEvents};

/// Oldest server the scripts run on (`redis.replicate_commands`, `SET .. PX`, `PSETEX`).
const MIN_VERSION: (u32, u32) = (3, 2);

/// An open connection to the master.
pub(super) struct Conn {
    /// Distinguishes connections, so that a failure only drops the one it happened on.
    pub gen: u64,
    /// The multiplexed connection (cheap to clone).
    pub mux: MultiplexedConnection,
    /// The server's `run_id`, which changes when it restarts.
    pub run_id: Vec<u8>,
}

/// Finds the master.
enum Finder {
    Direct(Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

/// The data connection of one session.
pub(super) struct Link {
    cfg: Arc<Config>,
    finder: Finder,
    current: Mutex<Option<Arc<Conn>>>,
    connecting: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    events: SessionEvents,
}

/// True for errors after which the connection (or the server's role) cannot be trusted.
pub(super) fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::ReadOnly
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
            ) | ErrorKind::MasterNameNotFoundBySentinel
                | ErrorKind::EmptySentinelList
        )
}

/// Our error for a Redis error (the Redis crate never puts passwords in its messages).
pub(super) fn to_error(e: &RedisError) -> Error {
    if is_connection_error(e) {
        Error::Connection(format!("redis: {e}"))
    } else {
        Error::Backend {
            driver: "redis",
            message: e.to_string(),
        }
    }
}

fn tcp_settings(cfg: &Config) -> redis::io::tcp::TcpSettings {
    let settings = redis::io::tcp::TcpSettings::default().set_nodelay(true);
    if cfg.keepalive {
        let keepalive = redis::io::tcp::socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(30))
            .with_interval(Duration::from_secs(10));
        settings.set_keepalive(keepalive)
    } else {
        settings
    }
}

fn redis_settings(cfg: &Config) -> RedisConnectionInfo {
    let mut info = RedisConnectionInfo::default()
        .set_db(cfg.db)
        .set_skip_set_lib_name();
    if let Some(user) = &cfg.username {
        info = info.set_username(user);
    }
    if let Some(password) = &cfg.password {
        info = info.set_password(password);
    }
    info
}

fn config_error(e: RedisError) -> Error {
    Error::Backend {
        driver: "redis",
        message: format!("invalid connection settings: {e}"),
    }
}

#[cfg(feature = "redis-tls")]
fn certificates(tls: &super::options::Tls) -> Result<redis::TlsCertificates> {
    crate::drivers::tls::ensure_default_provider();
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| Error::Backend {
            driver: "redis",
            message: format!("cannot read {}: {e}", path.display()),
        })
    };
    let client_tls = match (&tls.certfile, &tls.keyfile) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read(cert)?,
            client_key: read(key)?,
        }),
        (None, None) => None,
        _ => {
            return Err(Error::InvalidOption {
                option: "ssl_certfile".into(),
                value: "(set without the other)".into(),
                expected: "ssl_certfile and ssl_keyfile together".into(),
            })
        }
    };
    let root_cert = tls.ca_certs.as_deref().map(read).transpose()?;
    Ok(redis::TlsCertificates {
        client_tls,
        root_cert,
    })
}

fn direct_client(cfg: &Config) -> Result<Client> {
    let addr = match &cfg.target {
        Target::Tcp { host, port } => match &cfg.tls {
            None => ConnectionAddr::Tcp(host.clone(), *port),
            Some(_) => ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: false,
                tls_params: None,
            },
        },
        Target::Unix(path) => ConnectionAddr::Unix(path.clone()),
        Target::Sentinel { .. } => unreachable!("direct_client is only called without Sentinel"),
    };
    let info = addr
        .into_connection_info()
        .map_err(config_error)?
        .set_redis_settings(redis_settings(cfg))
        .set_tcp_settings(tcp_settings(cfg));
    #[cfg(feature = "redis-tls")]
    if let Some(tls) = &cfg.tls {
        return Client::build_with_tls(info, certificates(tls)?).map_err(config_error);
    }
    Client::open(info).map_err(config_error)
}

fn sentinel_client(cfg: &Config) -> Result<SentinelClient> {
    let Target::Sentinel {
        master,
        sentinels,
        username,
        password,
        tls,
    } = &cfg.target
    else {
        unreachable!("sentinel_client is only called with Sentinel");
    };
    let addrs = sentinels.iter().map(|(host, port)| match tls {
        None => ConnectionAddr::Tcp(host.clone(), *port),
        Some(_) => ConnectionAddr::TcpTls {
            host: host.clone(),
            port: *port,
            insecure: false,
            tls_params: None,
        },
    });
    let mut builder = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)
        .map_err(config_error)?
        .set_client_to_redis_db(cfg.db)
        .set_client_to_redis_tcp_settings(tcp_settings(cfg))
        .set_client_to_sentinel_tcp_settings(tcp_settings(cfg));
    if let Some(user) = &cfg.username {
        builder = builder.set_client_to_redis_username(user);
    }
    if let Some(password) = &cfg.password {
        builder = builder.set_client_to_redis_password(password);
    }
    if let Some(user) = username {
        builder = builder.set_client_to_sentinel_username(user);
    }
    if let Some(password) = password {
        builder = builder.set_client_to_sentinel_password(password);
    }
    #[cfg(feature = "redis-tls")]
    {
        if let Some(tls) = &cfg.tls {
            builder = builder
                .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
                .set_client_to_redis_certificates(certificates(tls)?);
        }
        if let Some(tls) = tls {
            builder = builder
                .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure)
                .set_client_to_sentinel_certificates(certificates(tls)?);
        }
    }
    builder.build().map_err(config_error)
}

/// The value of `field` in `INFO` text.
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn version_of(text: &str) -> (u32, u32) {
    let mut parts = text.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

impl Link {
    pub fn new(cfg: Arc<Config>, events: SessionEvents) -> Result<Link> {
        let finder = match cfg.target {
            Target::Sentinel { .. } => {
                Finder::Sentinel(tokio::sync::Mutex::new(sentinel_client(&cfg)?))
            }
            _ => Finder::Direct(direct_client(&cfg)?),
        };
        Ok(Link {
            cfg,
            finder,
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
            events,
        })
    }

    /// A client for the current master (asking the Sentinels, if any).
    pub async fn client(&self) -> Result<Client> {
        match &self.finder {
            Finder::Direct(client) => Ok(client.clone()),
            Finder::Sentinel(sentinel) => {
                let mut sentinel = sentinel.lock().await;
                tokio::time::timeout(self.cfg.connect_timeout * 3, sentinel.async_get_client())
                    .await
                    .map_err(|_| Error::Connection("redis: no Sentinel answered in time".into()))?
                    .map_err(|e| Error::Connection(format!("redis: finding the master: {e}")))
            }
        }
    }

    fn conn_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.cfg.connect_timeout))
            .set_response_timeout(Some(self.cfg.response_timeout))
    }

    async fn open(&self) -> Result<Conn> {
        let client = self.client().await?;
        let config = self.conn_config();
        let connect = client.get_multiplexed_async_connection_with_config(&config);
        let target = self.cfg.target_text();
        let mut mux = tokio::time::timeout(self.cfg.connect_timeout * 2, connect)
            .await
            .map_err(|_| Error::Connection(format!("redis: connecting to {target} timed out")))?
            .map_err(|e| match e.kind() {
                ErrorKind::AuthenticationFailed => {
                    Error::Connection(format!("redis: {target}: {e}"))
                }
                _ => Error::Connection(format!("redis: connecting to {target}: {e}")),
            })?;
        let mut pipe = redis::pipe();
        pipe.cmd("INFO").arg("server");
        for lua in Scripts::get().all() {
            pipe.add_command(lua.load()).ignore();
        }
        let replies: Vec<Value> = pipe.query_async(&mut mux).await.map_err(|e| {
            if is_connection_error(&e) {
                // The server took the connection but hung up on the first commands, or timed
                // out answering them: not a Redis server, or not one that answers.
                Error::Connection(format!(
                    "redis: {target} did not answer as a Redis server ({e}): is it one?"
                ))
            } else {
                to_error(&e)
            }
        })?;
        let info = replies.first().and_then(text_of).unwrap_or_default();
        let version = info_field(&info, "redis_version").unwrap_or("0.0");
        if version_of(version) < MIN_VERSION {
            return Err(Error::NotImplemented {
                driver: "redis",
                operation: "this server",
                reason: "Redis 3.2 or newer is required",
            });
        }
        let run_id = info_field(&info, "run_id")
            .unwrap_or("")
            .as_bytes()
            .to_vec();
        let gen = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(Conn { gen, mux, run_id })
    }

    /// The current connection, connecting first if there is none.
    pub async fn conn(&self) -> Result<Arc<Conn>> {
        if let Some(conn) = self.current.lock().unwrap().clone() {
            return Ok(conn);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(conn) = self.current.lock().unwrap().clone() {
            return Ok(conn);
        }
        let conn = match self.open().await {
            Ok(conn) => Arc::new(conn),
            Err(error) => {
                self.suspend();
                return Err(error);
            }
        };
        tracing::debug!(generation = conn.gen, "redis connection opened");
        *self.current.lock().unwrap() = Some(conn.clone());
        Ok(conn)
    }

    fn suspend(&self) {
        if self.events.current().is_connected() {
            self.events.report(ConnectionState::Suspended);
        }
    }

    /// Turns a Redis error met on `conn` into ours, dropping the connection if it is broken.
    pub fn fail(&self, conn: &Conn, e: &RedisError) -> Error {
        if is_connection_error(e) {
            let mut current = self.current.lock().unwrap();
            if current.as_ref().is_some_and(|c| c.gen == conn.gen) {
                *current = None;
                tracing::debug!(generation = conn.gen, error = %e, "redis connection dropped");
            }
            drop(current);
            self.suspend();
        }
        to_error(e)
    }

    /// Runs `op` on the current connection; when `retry` and the connection broke, once more
    /// on a new one (for operations that are safe to repeat).
    pub async fn run<T, F, Fut>(&self, retry: bool, op: F) -> Result<T>
    where
        F: Fn(Arc<Conn>) -> Fut,
        Fut: Future<Output = std::result::Result<T, RedisError>>,
    {
        let mut attempts = if retry { 2 } else { 1 };
        loop {
            attempts -= 1;
            let conn = self.conn().await?;
            match op(conn.clone()).await {
                Ok(value) => return Ok(value),
                Err(e) => {
                    let error = self.fail(&conn, &e);
                    if attempts == 0 || !is_connection_error(&e) {
                        return Err(error);
                    }
                }
            }
        }
    }

    /// Runs a script (loading it if the server lost it).
    pub async fn eval(
        &self,
        lua: &Lua,
        keys: &[&[u8]],
        args: &[&[u8]],
        retry: bool,
    ) -> Result<Value> {
        self.run(retry, |conn| async move {
            eval_on(&conn, lua, keys, args).await
        })
        .await
    }

    /// Runs a plain command.
    pub async fn query(&self, cmd: &redis::Cmd, retry: bool) -> Result<Value> {
        self.run(retry, |conn| async move {
            let mut mux = conn.mux.clone();
            cmd.query_async::<Value>(&mut mux).await
        })
        .await
    }

    /// Drops the connection.
    pub fn close(&self) {
        self.current.lock().unwrap().take();
    }
}

/// Runs `lua` on `conn`, loading it first if the server does not know it.
pub(super) async fn eval_on(
    conn: &Conn,
    lua: &Lua,
    keys: &[&[u8]],
    args: &[&[u8]],
) -> std::result::Result<Value, RedisError> {
    let mut mux = conn.mux.clone();
    let cmd = lua.evalsha(keys, args);
    match cmd.query_async::<Value>(&mut mux).await {
        Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            lua.load().query_async::<Value>(&mut mux).await?;
            cmd.query_async::<Value>(&mut mux).await
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_and_versions() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrun_id:abc123\r\n";
        assert_eq!(info_field(info, "redis_version"), Some("7.0.15"));
        assert_eq!(info_field(info, "run_id"), Some("abc123"));
        assert_eq!(info_field(info, "nothing"), None);
        assert!(version_of("7.0.15") >= MIN_VERSION);
        assert!(version_of("3.2.0") >= MIN_VERSION);
        assert!(version_of("2.8.24") < MIN_VERSION);
    }
}
