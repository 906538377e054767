//! From a `memcached://` URL to the driver's configuration, with Python tooz's option names
//! and defaults.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::drivers::common::options::{count_with_common, with_common};
use crate::error::{Error, Result};
use crate::url::{DriverUrl, OptionKind, OptionSpec};

const fn spec(name: &'static str, kind: OptionKind, help: &'static str) -> OptionSpec {
    OptionSpec { name, kind, help }
}

/// The options of the memcached driver beyond the common ones.
const OWN_OPTIONS: [OptionSpec; 11] = [
    spec(
        "lock_poll_interval",
        OptionKind::Duration,
        "how often a lock waiter tries again (default: min(poll_interval, 10 ms))",
    ),
    spec(
        "socket_timeout",
        OptionKind::Duration,
        "how long one call may wait for its replies (default: min(timeout, window / 8, 10 s))",
    ),
    spec(
        "max_pool_size",
        OptionKind::Integer,
        "accepted for tooz URLs; calls are pipelined on one connection",
    ),
    spec(
        "executor",
        OptionKind::Text,
        "accepted for tooz URLs (`threaded`, `synchronous`, ...); the driver is async",
    ),
    spec(
        "use_ssl",
        OptionKind::Bool,
        "TLS to the server (cargo feature `memcached-tls`)",
    ),
    spec(
        "ca_cert",
        OptionKind::Text,
        "CA certificates (PEM) that sign the server's certificate (default: the system's)",
    ),
    spec(
        "ssl_cert",
        OptionKind::Text,
        "client certificate (PEM; its key too when ssl_key is not given)",
    ),
    spec("ssl_key", OptionKind::Text, "client key (PEM, unencrypted)"),
    spec(
        "ssl_key_password",
        OptionKind::Secret,
        "refused: give an unencrypted key (rustls reads no encrypted keys)",
    ),
    spec(
        "ssl_ciphers",
        OptionKind::Text,
        "accepted for tooz URLs; not applied (rustls offers only its safe suites)",
    ),
    spec(
        "ssl_check_hostname",
        OptionKind::Bool,
        "check the server's name against its certificate (default false, as in tooz; the \
         chain is always checked)",
    ),
];

/// Every option the memcached driver accepts.
pub(super) const MEMCACHED_OPTIONS: [OptionSpec; count_with_common(&OWN_OPTIONS)] =
    with_common(&OWN_OPTIONS);

/// Python tooz's default for `timeout` (and the lock, membership and leader timeouts).
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default interval of membership watches: memcached pushes nothing.
pub(super) const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Longest default interval of lock waits: a try is one cheap round trip, and a release is
/// seen within it.
const DEFAULT_LOCK_POLL_INTERVAL: Duration = Duration::from_millis(10);
const DEFAULT_PORT: u16 = 11211;
const MAX_DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);
const MIN_DEFAULT_CALL_TIMEOUT: Duration = Duration::from_millis(50);

/// TLS settings (`use_ssl=true`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Tls {
    /// CA bundle; the system's roots when absent.
    pub ca_cert: Option<PathBuf>,
    /// Client certificate chain.
    pub cert: Option<PathBuf>,
    /// Client key (else read from `cert`).
    pub key: Option<PathBuf>,
    /// Whether the server's name must match its certificate.
    pub check_hostname: bool,
}

/// Everything the driver needs from its URL. `Debug` shows no secret.
#[derive(Clone)]
pub(super) struct Config {
    pub host: String,
    pub port: u16,
    /// TLS, when `use_ssl` is on.
    pub tls: Option<Tls>,
    /// Key prefix (empty by default, as Python tooz has none).
    pub namespace: Vec<u8>,
    pub lock_timeout: Duration,
    pub membership_timeout: Duration,
    pub leader_timeout: Duration,
    /// Longest one call waits for its replies.
    pub call_timeout: Duration,
    pub poll_interval: Duration,
    /// How often a lock waiter tries again.
    pub lock_poll_interval: Duration,
}

impl Config {
    /// The shortest of the lock, leader and membership timeouts: what one heartbeat protects.
    pub fn window(&self) -> Duration {
        self.lock_timeout
            .min(self.membership_timeout)
            .min(self.leader_timeout)
    }

    /// Reads and checks `url`.
    pub fn parse(url: &DriverUrl) -> Result<Config> {
        let options = url.options("memcached", &MEMCACHED_OPTIONS)?;
        let tls = (options.bool("use_ssl") == Some(true)).then(|| Tls {
            ca_cert: options.text("ca_cert").map(PathBuf::from),
            cert: options.text("ssl_cert").map(PathBuf::from),
            key: options.text("ssl_key").map(PathBuf::from),
            check_hostname: options.bool("ssl_check_hostname").unwrap_or(false),
        });
        if tls.is_some() && !cfg!(feature = "memcached-tls") {
            return Err(Error::DriverUnavailable {
                scheme: url.scheme().to_string(),
                why: "built without TLS (enable the cargo feature `memcached-tls` of the tooz \
                      crate)"
                    .into(),
            });
        }
        if tls.is_some() && options.text("ssl_key_password").is_some() {
            return Err(Error::InvalidOption {
                option: "ssl_key_password".into(),
                value: "***".into(),
                expected: "no password: encrypted keys are not supported, give an unencrypted \
                           key in ssl_key"
                    .into(),
            });
        }
        if tls
            .as_ref()
            .is_some_and(|t| t.key.is_some() && t.cert.is_none())
        {
            return Err(Error::InvalidUrl {
                url: url.to_string(),
                reason: "ssl_key needs ssl_cert".into(),
            });
        }
        // The path is ignored, as Python tooz ignores it.
        if url.hosts().len() > 1 {
            return Err(Error::InvalidUrl {
                url: url.to_string(),
                reason: "one server per URL: locks cannot be shared out over several memcached \
                         servers safely"
                    .into(),
            });
        }
        let timeout = options.duration("timeout").unwrap_or(DEFAULT_TIMEOUT);
        let lock_timeout = options.duration("lock_timeout").unwrap_or(timeout);
        let membership_timeout = options.duration("membership_timeout").unwrap_or(timeout);
        let leader_timeout = options.duration("leader_timeout").unwrap_or(timeout);
        let window = lock_timeout.min(membership_timeout).min(leader_timeout);
        let call_timeout = options.duration("socket_timeout").unwrap_or_else(|| {
            timeout
                .min(window / 8)
                .min(MAX_DEFAULT_CALL_TIMEOUT)
                .max(MIN_DEFAULT_CALL_TIMEOUT)
        });
        let poll_interval = options
            .duration("poll_interval")
            .unwrap_or(DEFAULT_POLL_INTERVAL);
        let host = url
            .host()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
            .unwrap_or_else(|| "localhost".to_string());
        Ok(Config {
            host,
            port: url.port().unwrap_or(DEFAULT_PORT),
            tls,
            namespace: options
                .text("namespace")
                .map(|ns| ns.as_bytes().to_vec())
                .unwrap_or_default(),
            lock_timeout,
            membership_timeout,
            leader_timeout,
            call_timeout,
            poll_interval,
            lock_poll_interval: options
                .duration("lock_poll_interval")
                .unwrap_or(poll_interval.min(DEFAULT_LOCK_POLL_INTERVAL)),
        })
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("server", &format!("{}:{}", self.host, self.port))
            .field("tls", &self.tls)
            .field("namespace", &String::from_utf8_lossy(&self.namespace))
            .field("lock_timeout", &self.lock_timeout)
            .field("membership_timeout", &self.membership_timeout)
            .field("leader_timeout", &self.leader_timeout)
            .field("call_timeout", &self.call_timeout)
            .field("poll_interval", &self.poll_interval)
            .field("lock_poll_interval", &self.lock_poll_interval)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Config> {
        Config::parse(&DriverUrl::parse(raw).unwrap())
    }

    #[test]
    fn defaults_follow_tooz() {
        let cfg = parse("memcached://").unwrap();
        assert_eq!((cfg.host.as_str(), cfg.port), ("localhost", 11211));
        assert_eq!(cfg.lock_timeout, DEFAULT_TIMEOUT);
        assert_eq!(cfg.leader_timeout, DEFAULT_TIMEOUT);
        assert_eq!(cfg.poll_interval, DEFAULT_POLL_INTERVAL);
        assert_eq!(cfg.lock_poll_interval, DEFAULT_LOCK_POLL_INTERVAL);
        let cfg = parse("memcached://h?poll_interval=0.005").unwrap();
        assert_eq!(cfg.lock_poll_interval, Duration::from_millis(5));
        let cfg = parse("memcached://h?lock_poll_interval=0.2").unwrap();
        assert_eq!(cfg.lock_poll_interval, Duration::from_millis(200));
        assert!(cfg.namespace.is_empty());
        let cfg = parse("memcached://127.0.0.1:11212?timeout=4&leader_timeout=2&max_pool_size=3")
            .unwrap();
        assert_eq!((cfg.host.as_str(), cfg.port), ("127.0.0.1", 11212));
        assert_eq!(cfg.lock_timeout, Duration::from_secs(4));
        assert_eq!(cfg.window(), Duration::from_secs(2));
        assert_eq!(cfg.call_timeout, Duration::from_millis(250));
    }

    #[test]
    fn tls_options_follow_tooz() {
        let result = parse("memcached://h?use_ssl=yes&ca_cert=/ca.pem&ssl_cert=/c.pem");
        if cfg!(feature = "memcached-tls") {
            let tls = result.unwrap().tls.unwrap();
            assert_eq!(tls.ca_cert, Some(PathBuf::from("/ca.pem")));
            assert_eq!(tls.cert, Some(PathBuf::from("/c.pem")));
            assert!(!tls.check_hostname && tls.key.is_none());
            assert!(matches!(
                parse("memcached://h?use_ssl=1&ssl_key=/k.pem"),
                Err(Error::InvalidUrl { .. })
            ));
        } else {
            assert!(matches!(result, Err(Error::DriverUnavailable { .. })));
        }
        let plain = parse("memcached://h?use_ssl=false&ssl_ciphers=HIGH").unwrap();
        assert!(plain.tls.is_none());
    }

    #[test]
    fn bad_urls_and_options() {
        assert!(matches!(
            parse("memcached://h?tiemout=1"),
            Err(Error::UnknownOption { .. })
        ));
        assert!(matches!(
            parse("memcached://h1:1,h2:2"),
            Err(Error::InvalidUrl { .. })
        ));
        assert_eq!(parse("memcached://h/x").unwrap().host, "h");
        let err = parse("memcached://h?use_ssl=true&ssl_key_password=hunter2").unwrap_err();
        assert!(matches!(
            err,
            Error::DriverUnavailable { .. } | Error::InvalidOption { .. }
        ));
        assert!(!err.to_string().contains("hunter2"));
        assert!(!format!("{err:?}").contains("hunter2"));
    }
}
