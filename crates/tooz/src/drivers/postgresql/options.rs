//! From a `postgresql://` URL to a connection configuration, with Python tooz's option names
//! (`host`, `port`, `dbname` override the URL's parts) and ours.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::drivers::common::options::{
    bad_option, count_with_common, valid_namespace, with_common,
};
use crate::error::Result;
use crate::url::{DriverUrl, OptionKind, OptionSpec};

const fn spec(name: &'static str, kind: OptionKind, help: &'static str) -> OptionSpec {
    OptionSpec { name, kind, help }
}

const OWN_OPTIONS: [OptionSpec; 9] = [
    spec(
        "host",
        OptionKind::Text,
        "server host, or the directory of its unix socket (overrides the URL's host, as in tooz)",
    ),
    spec(
        "port",
        OptionKind::Integer,
        "server port (overrides the URL's port, as in tooz)",
    ),
    spec(
        "dbname",
        OptionKind::Text,
        "database (overrides the URL's path, as in tooz)",
    ),
    spec(
        "user",
        OptionKind::Text,
        "user name, where the URL has none",
    ),
    spec(
        "password",
        OptionKind::Secret,
        "password, where the URL has none",
    ),
    spec(
        "lock_keys",
        OptionKind::Text,
        "`native` (default: 64-bit advisory keys) or `python` (Python tooz's 2-byte md5 keys, \
         to share locks with Python tooz)",
    ),
    spec(
        "resync_interval",
        OptionKind::Duration,
        "how often a watch re-reads membership, for members whose session died (default 1)",
    ),
    spec(
        "break_grace",
        OptionKind::Duration,
        "how long break_lock lets the holder give the lock up before ending its database \
         session (default 1)",
    ),
    spec(
        "connect_timeout",
        OptionKind::Duration,
        "how long connecting may take (default: timeout)",
    ),
];

/// Every option of the postgresql driver.
pub(super) const OPTIONS: [OptionSpec; count_with_common(&OWN_OPTIONS)] = with_common(&OWN_OPTIONS);

/// Default of `timeout`: the session timeout and the bound of one call.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default interval of the lock-wait fallback (releases nobody announces: Python tooz's, a
/// holder's session ending).
pub(super) const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);
const DEFAULT_RESYNC: Duration = Duration::from_secs(1);
const DEFAULT_BREAK_GRACE: Duration = Duration::from_secs(1);
const DEFAULT_PORT: u16 = 5432;

/// How lock names become advisory-lock keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyMode {
    /// One 64-bit key from SHA-256 of the namespace and the name.
    Native,
    /// Python tooz's pair of keys, the first two bytes of the name's md5.
    Python,
}

/// Where the server is.
#[derive(Clone, PartialEq, Eq)]
pub(super) enum Target {
    /// Over TCP.
    Tcp(String),
    /// Over the unix socket in this directory.
    Socket(PathBuf),
}

/// Everything the driver needs from its URL. `Debug` never shows the password.
#[derive(Clone)]
pub(super) struct Config {
    pub target: Target,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    pub namespace: String,
    pub keys: KeyMode,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub poll_interval: Duration,
    pub resync_interval: Duration,
    pub break_grace: Duration,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &self.target {
            Target::Tcp(host) => format!("{host}:{}", self.port),
            Target::Socket(dir) => format!("unix:{}/.s.PGSQL.{}", dir.display(), self.port),
        };
        f.debug_struct("Config")
            .field("target", &target)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("dbname", &self.dbname)
            .field("namespace", &self.namespace)
            .field("keys", &self.keys)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Reads and checks `url`.
    pub fn parse(url: &DriverUrl) -> Result<Config> {
        let options = url.options("postgresql", &OPTIONS)?;
        let host = options
            .text("host")
            .map(String::from)
            .or_else(|| url.host().map(String::from))
            .unwrap_or_else(|| "localhost".to_string());
        let target = if host.starts_with('/') {
            Target::Socket(PathBuf::from(host))
        } else {
            Target::Tcp(host.trim_start_matches('[').trim_end_matches(']').into())
        };
        let port = match options.integer("port") {
            Some(port) => u16::try_from(port)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad_option("port", &port.to_string(), "a TCP port"))?,
            None => url.port().unwrap_or(DEFAULT_PORT),
        };
        let user = url
            .username()
            .or_else(|| options.text("user").map(String::from))
            .unwrap_or_else(|| "postgres".to_string());
        let password = url
            .password()
            .filter(|p| !p.is_empty())
            .or_else(|| options.text("password").map(String::from));
        let path = url.path();
        let dbname = options
            .text("dbname")
            .map(String::from)
            .or_else(|| Some(path.trim_start_matches('/').to_string()).filter(|p| !p.is_empty()))
            .unwrap_or_else(|| user.clone());
        let namespace = options.text("namespace").unwrap_or("tooz").to_string();
        if !valid_namespace(&namespace) {
            return Err(bad_option(
                "namespace",
                &namespace,
                "lower-case letters, digits and `_`, at most 40, not starting with a digit \
                 (it prefixes table names)",
            ));
        }
        let keys = match options.text("lock_keys").unwrap_or("native") {
            "native" => KeyMode::Native,
            "python" => KeyMode::Python,
            other => return Err(bad_option("lock_keys", other, "`native` or `python`")),
        };
        let timeout = options.duration("timeout").unwrap_or(DEFAULT_TIMEOUT);
        Ok(Config {
            target,
            port,
            user,
            password,
            dbname,
            namespace,
            keys,
            timeout,
            connect_timeout: options.duration("connect_timeout").unwrap_or(timeout),
            poll_interval: options
                .duration("poll_interval")
                .unwrap_or(DEFAULT_POLL_INTERVAL),
            resync_interval: options
                .duration("resync_interval")
                .unwrap_or(DEFAULT_RESYNC),
            break_grace: options
                .duration("break_grace")
                .unwrap_or(DEFAULT_BREAK_GRACE),
        })
    }

    /// The client library's configuration.
    pub fn client_config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        match &self.target {
            Target::Tcp(host) => config.host(host),
            Target::Socket(dir) => config.host_path(dir),
        };
        config
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name("tooz-rs")
            .connect_timeout(self.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10));
        if let Some(password) = &self.password {
            config.password(password);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn parse(raw: &str) -> Result<Config> {
        Config::parse(&DriverUrl::parse(raw).unwrap())
    }

    #[test]
    fn url_parts_and_tooz_overrides() {
        let cfg = parse("postgresql://tooz:s3cret@127.0.0.1:5433/db").unwrap();
        assert!(cfg.target == Target::Tcp("127.0.0.1".into()));
        assert_eq!(
            (cfg.port, cfg.user.as_str(), cfg.dbname.as_str()),
            (5433, "tooz", "db")
        );
        assert_eq!(cfg.keys, KeyMode::Native);
        assert_eq!(cfg.namespace, "tooz");
        assert!(!format!("{cfg:?}").contains("s3cret"));
        let cfg = parse("postgresql://localhost/postgres?host=/tmp/pg&port=9824&dbname=x").unwrap();
        assert!(cfg.target == Target::Socket(PathBuf::from("/tmp/pg")));
        assert_eq!((cfg.port, cfg.dbname.as_str()), (9824, "x"));
        let cfg = parse("postgresql://h?lock_keys=python&namespace=ns_1").unwrap();
        assert_eq!(cfg.keys, KeyMode::Python);
        assert_eq!(cfg.dbname, "postgres");
    }

    #[test]
    fn bad_options_are_typed_errors() {
        assert!(matches!(
            parse("postgresql://h?lock_keys=md5"),
            Err(Error::InvalidOption { .. })
        ));
        assert!(matches!(
            parse("postgresql://h?namespace=Bad-Name"),
            Err(Error::InvalidOption { .. })
        ));
        assert!(matches!(
            parse("postgresql://h?port=70000"),
            Err(Error::InvalidOption { .. })
        ));
        assert!(matches!(
            parse("postgresql://h?nope=1"),
            Err(Error::UnknownOption { .. })
        ));
        let err = parse("postgresql://u:pw@h?password=hunter2&lock_keys=x").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }
}
