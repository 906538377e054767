//! From a `redis://` URL to a connection configuration, with Python tooz's option names and
//! defaults.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::drivers::common::options::{count_with_common, with_common};
use crate::error::{Error, Result};
use crate::url::{DriverUrl, OptionKind, OptionSpec, Options};

const fn spec(name: &'static str, kind: OptionKind, help: &'static str) -> OptionSpec {
    OptionSpec { name, kind, help }
}

/// The options of the redis driver beyond the common ones.
const OWN_OPTIONS: [OptionSpec; 23] = [
    spec(
        "db",
        OptionKind::Integer,
        "database number (the URL path is not used, as in tooz)",
    ),
    spec(
        "encoding",
        OptionKind::Text,
        "`utf8` (default) or `ascii`: ids are bytes, this only checks tooz URLs parse alike",
    ),
    spec(
        "executor",
        OptionKind::Text,
        "accepted for tooz URLs (`threaded`, `synchronous`, ...); the driver is async",
    ),
    spec(
        "retry_on_timeout",
        OptionKind::Bool,
        "accepted for tooz URLs; reads and lock attempts are retried once after a reconnect",
    ),
    spec(
        "socket_keepalive",
        OptionKind::Bool,
        "TCP keepalive on the connections",
    ),
    spec(
        "socket_timeout",
        OptionKind::Duration,
        "how long one command may take (default: min(timeout, heartbeat window / 4))",
    ),
    spec(
        "socket_connect_timeout",
        OptionKind::Duration,
        "how long connecting may take (default: socket_timeout)",
    ),
    spec(
        "health_check_interval",
        OptionKind::Duration,
        "interval of the PING that checks the pub/sub connection (default: socket_timeout)",
    ),
    spec(
        "username",
        OptionKind::Text,
        "user name, where the URL cannot carry it (unix sockets)",
    ),
    spec(
        "password",
        OptionKind::Secret,
        "password, where the URL cannot carry it (unix sockets: `redis://:pw@/path` does not parse)",
    ),
    spec("ssl", OptionKind::Bool, "TLS to the server (as `rediss://`)"),
    spec(
        "ssl_certfile",
        OptionKind::Text,
        "client certificate (PEM) for TLS",
    ),
    spec("ssl_keyfile", OptionKind::Text, "client key (PEM) for TLS"),
    spec(
        "ssl_ca_certs",
        OptionKind::Text,
        "CA certificates (PEM) that sign the server's certificate",
    ),
    spec(
        "sentinel",
        OptionKind::Text,
        "master name: the URL's host:port is then a Sentinel",
    ),
    spec(
        "sentinel_fallback",
        OptionKind::Text,
        "another Sentinel, host:port (repeatable)",
    ),
    spec(
        "sentinel_username",
        OptionKind::Text,
        "user name for the Sentinels",
    ),
    spec(
        "sentinel_password",
        OptionKind::Secret,
        "password for the Sentinels",
    ),
    spec("sentinel_ssl", OptionKind::Bool, "TLS to the Sentinels"),
    spec(
        "wait_replicas",
        OptionKind::Integer,
        "replicas that must acknowledge an acquisition (WAIT) before it counts (default 0)",
    ),
    spec(
        "wait_timeout",
        OptionKind::Duration,
        "how long an acquisition waits for those acknowledgements (default 0.5)",
    ),
    spec(
        "resync_interval",
        OptionKind::Duration,
        "how often watchers re-read membership, for changes no push announces (default 1)",
    ),
    spec(
        "poll_cap",
        OptionKind::Duration,
        "longest sleep of a lock waiter between tries when no release is announced (default: poll_interval)",
    ),
];

/// Every option the redis driver accepts.
pub(super) const REDIS_OPTIONS: [OptionSpec; count_with_common(&OWN_OPTIONS)] =
    with_common(&OWN_OPTIONS);

/// tooz's default for `timeout` (and so for the lock and membership timeouts).
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default interval of the lock-wait fallback (redis-py's lock sleeps 0.1 s between tries).
pub(super) const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);
const DEFAULT_RESYNC: Duration = Duration::from_secs(1);
const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_millis(500);
const DEFAULT_PORT: u16 = 6379;
/// Longest default command timeout.
const MAX_DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS settings of one kind of connection.
#[derive(Clone, Default, PartialEq, Eq)]
pub(super) struct Tls {
    /// CA bundle file.
    pub ca_certs: Option<PathBuf>,
    /// Client certificate file.
    pub certfile: Option<PathBuf>,
    /// Client key file.
    pub keyfile: Option<PathBuf>,
}

/// Where the data lives.
#[derive(Clone)]
pub(super) enum Target {
    /// One server over TCP.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// One server over a unix socket.
    Unix(PathBuf),
    /// The master Sentinel names.
    Sentinel {
        /// The master's name.
        master: String,
        /// Sentinels, asked in this order.
        sentinels: Vec<(String, u16)>,
        /// User for the Sentinels.
        username: Option<String>,
        /// Password for the Sentinels (never shown).
        password: Option<String>,
        /// TLS to the Sentinels.
        tls: Option<Tls>,
    },
}

/// Everything the driver needs from its URL. `Debug` never shows a password.
#[derive(Clone)]
pub(super) struct Config {
    pub target: Target,
    /// TLS to the data server(s), if on.
    pub tls: Option<Tls>,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
    pub namespace: Vec<u8>,
    pub lock_timeout: Duration,
    pub membership_timeout: Duration,
    pub response_timeout: Duration,
    pub connect_timeout: Duration,
    pub health_check: Duration,
    pub keepalive: bool,
    pub poll_interval: Duration,
    pub poll_cap: Duration,
    pub resync_interval: Duration,
    pub wait_replicas: u64,
    pub wait_timeout: Duration,
}

impl Config {
    /// The shorter of the lock and membership timeouts: what one heartbeat protects.
    pub fn window(&self) -> Duration {
        self.lock_timeout.min(self.membership_timeout)
    }
}

impl Config {
    /// Where the driver connects, for messages: `host:port`, `unix:/path`, or
    /// `sentinel NAME via host:port,...`.
    pub fn target_text(&self) -> String {
        match &self.target {
            Target::Tcp { host, port } => format!("{host}:{port}"),
            Target::Unix(path) => format!("unix:{}", path.display()),
            Target::Sentinel {
                master, sentinels, ..
            } => {
                let list: Vec<String> = sentinels.iter().map(|(h, p)| format!("{h}:{p}")).collect();
                format!("sentinel {master} via {}", list.join(","))
            }
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = self.target_text();
        f.debug_struct("Config")
            .field("target", &target)
            .field("tls", &self.tls.is_some())
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("namespace", &String::from_utf8_lossy(&self.namespace))
            .field("lock_timeout", &self.lock_timeout)
            .field("membership_timeout", &self.membership_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish_non_exhaustive()
    }
}

fn invalid(url: &DriverUrl, reason: impl Into<String>) -> Error {
    Error::InvalidUrl {
        url: url.to_string(),
        reason: reason.into(),
    }
}

fn bad_option(option: &str, value: &str, expected: &str) -> Error {
    Error::InvalidOption {
        option: option.into(),
        value: value.chars().take(64).collect(),
        expected: expected.into(),
    }
}

/// Parses `host:port` (port mandatory, as tooz's `_parse_sentinel`); `[v6]:port` works too.
fn host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.trim().rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port != 0).then(|| (host.to_string(), port))
}

fn tls_files(options: &Options) -> Tls {
    let path = |name: &str| options.text(name).map(PathBuf::from);
    Tls {
        ca_certs: path("ssl_ca_certs"),
        certfile: path("ssl_certfile"),
        keyfile: path("ssl_keyfile"),
    }
}

impl Config {
    /// Reads and checks `url`.
    pub fn parse(url: &DriverUrl) -> Result<Config> {
        let options = url.options("redis", &REDIS_OPTIONS)?;
        if let Some(encoding) = options.text("encoding") {
            let normal = encoding.to_ascii_lowercase().replace(['-', '_'], "");
            if !matches!(normal.as_str(), "utf8" | "ascii" | "usascii") {
                return Err(bad_option("encoding", encoding, "`utf8` or `ascii`"));
            }
        }
        if let Some(executor) = options.text("executor") {
            let known = ["threaded", "thread", "threading", "synchronous", "sync"];
            if !known.contains(&executor) {
                return Err(bad_option(
                    "executor",
                    executor,
                    "one of threaded, thread, threading, synchronous, sync",
                ));
            }
        }
        let timeout = options.duration("timeout").unwrap_or(DEFAULT_TIMEOUT);
        let lock_timeout = options.duration("lock_timeout").unwrap_or(timeout);
        let membership_timeout = options.duration("membership_timeout").unwrap_or(timeout);
        if lock_timeout < Duration::from_millis(1) {
            return Err(bad_option(
                "lock_timeout",
                &format!("{lock_timeout:?}"),
                "at least 1 ms",
            ));
        }
        let window = lock_timeout.min(membership_timeout);
        let response_timeout = options.duration("socket_timeout").unwrap_or_else(|| {
            timeout
                .min(window / 8)
                .min(MAX_DEFAULT_RESPONSE_TIMEOUT)
                .max(Duration::from_millis(50))
        });
        let wait_timeout = options
            .duration("wait_timeout")
            .unwrap_or(DEFAULT_WAIT_TIMEOUT);
        let wait_replicas = options.integer("wait_replicas").unwrap_or(0);
        // A WAIT must not outlast the command timeout.
        let response_timeout = match options.duration("socket_timeout") {
            None if wait_replicas > 0 => {
                response_timeout.max(wait_timeout + Duration::from_secs(1))
            }
            _ => response_timeout,
        };
        let connect_timeout = options
            .duration("socket_connect_timeout")
            .unwrap_or(response_timeout);
        let tls_wanted = url.scheme() == "rediss" || options.bool("ssl") == Some(true);
        let tls = tls_wanted.then(|| tls_files(&options));
        let sentinel_tls =
            (options.bool("sentinel_ssl") == Some(true)).then(|| tls_files(&options));
        let target = match options.text("sentinel") {
            Some(master) => {
                let host = url
                    .host()
                    .ok_or_else(|| invalid(url, "a Sentinel URL needs the Sentinel's host:port"))?;
                let mut sentinels = vec![(
                    host.trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_string(),
                    url.port().unwrap_or(26379),
                )];
                for fallback in options.all("sentinel_fallback") {
                    sentinels.push(host_port(fallback).ok_or_else(|| {
                        bad_option(
                            "sentinel_fallback",
                            fallback,
                            "host:port (malformed sentinel server format)",
                        )
                    })?);
                }
                Target::Sentinel {
                    master: master.to_string(),
                    sentinels,
                    username: options.text("sentinel_username").map(String::from),
                    password: options.text("sentinel_password").map(String::from),
                    tls: sentinel_tls,
                }
            }
            None => {
                if !options.all("sentinel_fallback").is_empty() {
                    return Err(invalid(url, "sentinel_fallback needs sentinel=MASTER-NAME"));
                }
                match url.host() {
                    Some(host) => Target::Tcp {
                        host: host
                            .trim_start_matches('[')
                            .trim_end_matches(']')
                            .to_string(),
                        port: url.port().unwrap_or(DEFAULT_PORT),
                    },
                    None => {
                        let path = url.path();
                        if path.is_empty() || path == "/" {
                            return Err(invalid(
                                url,
                                "expected a host, or a unix socket path: redis:///path/to/redis.sock",
                            ));
                        }
                        Target::Unix(PathBuf::from(path))
                    }
                }
            }
        };
        if matches!(target, Target::Unix(_)) && tls.is_some() {
            return Err(invalid(url, "TLS over a unix socket is not supported"));
        }
        if (tls.is_some() || sentinel_tls_of(&target)) && !cfg!(feature = "redis-tls") {
            return Err(Error::DriverUnavailable {
                scheme: url.scheme().to_string(),
                why: "built without TLS (enable the cargo feature `redis-tls` of the tooz crate)"
                    .into(),
            });
        }
        let db = options.integer("db").unwrap_or(0);
        let db = i64::try_from(db)
            .map_err(|_| bad_option("db", &db.to_string(), "a database number"))?;
        let namespace = options
            .text("namespace")
            .map(|ns| ns.as_bytes().to_vec())
            .unwrap_or_else(|| b"_tooz".to_vec());
        let poll_interval = options
            .duration("poll_interval")
            .unwrap_or(DEFAULT_POLL_INTERVAL);
        Ok(Config {
            target,
            tls,
            db,
            username: url
                .username()
                .or_else(|| options.text("username").map(String::from)),
            password: url
                .password()
                .filter(|p| !p.is_empty())
                .or_else(|| options.text("password").map(String::from)),
            namespace,
            lock_timeout,
            membership_timeout,
            response_timeout,
            connect_timeout,
            health_check: options
                .duration("health_check_interval")
                .unwrap_or(response_timeout.max(Duration::from_millis(500))),
            keepalive: options.bool("socket_keepalive").unwrap_or(false),
            poll_interval,
            poll_cap: options.duration("poll_cap").unwrap_or(poll_interval),
            resync_interval: options
                .duration("resync_interval")
                .unwrap_or(DEFAULT_RESYNC),
            wait_replicas,
            wait_timeout,
        })
    }
}

fn sentinel_tls_of(target: &Target) -> bool {
    matches!(target, Target::Sentinel { tls: Some(_), .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Config> {
        Config::parse(&DriverUrl::parse(raw).unwrap())
    }

    #[test]
    fn defaults_follow_tooz() {
        let cfg = parse("redis://127.0.0.1").unwrap();
        assert!(matches!(cfg.target, Target::Tcp { ref host, port: 6379 } if host == "127.0.0.1"));
        assert_eq!(cfg.lock_timeout, DEFAULT_TIMEOUT);
        assert_eq!(cfg.membership_timeout, DEFAULT_TIMEOUT);
        assert_eq!(cfg.namespace, b"_tooz");
        assert_eq!(cfg.db, 0);
        let cfg = parse("redis://h:7000?timeout=5&lock_timeout=2&db=3&namespace=ns").unwrap();
        assert_eq!(cfg.lock_timeout, Duration::from_secs(2));
        assert_eq!(cfg.membership_timeout, Duration::from_secs(5));
        assert_eq!(cfg.db, 3);
        assert_eq!(cfg.namespace, b"ns");
        assert_eq!(cfg.window(), Duration::from_secs(2));
    }

    #[test]
    fn sentinel_and_fallbacks() {
        let cfg = parse(
            "redis://s1:26379?sentinel=mymaster&sentinel_fallback=s2:26380\
             &sentinel_fallback=[::1]:26381&sentinel_password=hunter2",
        )
        .unwrap();
        match &cfg.target {
            Target::Sentinel {
                master,
                sentinels,
                password,
                ..
            } => {
                assert_eq!(master, "mymaster");
                assert_eq!(
                    sentinels,
                    &[
                        ("s1".to_string(), 26379),
                        ("s2".to_string(), 26380),
                        ("::1".to_string(), 26381)
                    ]
                );
                assert_eq!(password.as_deref(), Some("hunter2"));
            }
            _ => panic!("not a sentinel target"),
        }
        assert!(!format!("{cfg:?}").contains("hunter2"));
        let err = parse("redis://s1:26379?sentinel=m&sentinel_fallback=nohost").unwrap_err();
        assert!(matches!(err, Error::InvalidOption { .. }), "{err}");
    }

    #[test]
    fn unix_sockets_and_bad_urls() {
        let cfg = parse("redis:///run/redis.sock?db=2").unwrap();
        assert!(
            matches!(cfg.target, Target::Unix(ref p) if p == &PathBuf::from("/run/redis.sock"))
        );
        assert!(matches!(parse("redis://"), Err(Error::InvalidUrl { .. })));
        assert!(matches!(
            parse("redis://h?tiemout=1"),
            Err(Error::UnknownOption { .. })
        ));
        assert!(matches!(
            parse("redis://h?encoding=latin1"),
            Err(Error::InvalidOption { .. })
        ));
        assert!(matches!(
            parse("redis://h?executor=eventlet"),
            Err(Error::InvalidOption { .. })
        ));
    }

    #[test]
    fn passwords_stay_hidden() {
        let cfg = parse("redis://user:s3cret@h:1").unwrap();
        assert_eq!(cfg.password.as_deref(), Some("s3cret"));
        assert_eq!(cfg.username.as_deref(), Some("user"));
        assert!(!format!("{cfg:?}").contains("s3cret"));
    }

    #[test]
    fn tls_needs_its_feature() {
        let result = parse("rediss://h:6380");
        if cfg!(feature = "redis-tls") {
            assert!(result.unwrap().tls.is_some());
        } else {
            assert!(matches!(result, Err(Error::DriverUnavailable { .. })));
        }
    }
}
