//! From a `mysql://` URL to a connection configuration, with Python tooz's option names.

use std::fmt;
use std::time::Duration;

use crate::drivers::common::options::{
    bad_option, count_with_common, valid_namespace, with_common,
};
use crate::error::{Error, Result};
use crate::url::{DriverUrl, OptionKind, OptionSpec};

const fn spec(name: &'static str, kind: OptionKind, help: &'static str) -> OptionSpec {
    OptionSpec { name, kind, help }
}

const OWN_OPTIONS: [OptionSpec; 13] = [
    spec(
        "unix_socket",
        OptionKind::Text,
        "path of the server's unix socket, used instead of the host (as in tooz)",
    ),
    spec(
        "ssl_ca",
        OptionKind::Text,
        "TLS: not supported yet (refused)",
    ),
    spec(
        "ssl_capath",
        OptionKind::Text,
        "TLS: not supported yet (refused)",
    ),
    spec(
        "ssl_cert",
        OptionKind::Text,
        "TLS: not supported yet (refused)",
    ),
    spec(
        "ssl_key",
        OptionKind::Text,
        "TLS: not supported yet (refused)",
    ),
    spec(
        "ssl_cipher",
        OptionKind::Text,
        "TLS: not supported yet (refused)",
    ),
    spec(
        "ssl_verify_mode",
        OptionKind::Text,
        "TLS: not supported yet (refused)",
    ),
    spec(
        "ssl_check_hostname",
        OptionKind::Text,
        "TLS: not supported yet (refused)",
    ),
    spec(
        "resync_interval",
        OptionKind::Duration,
        "how often a watch re-reads membership, for members whose session died (default 1)",
    ),
    spec(
        "wait_slice",
        OptionKind::Duration,
        "longest single server-side GET_LOCK wait of a lock waiter (default 5)",
    ),
    spec(
        "connect_timeout",
        OptionKind::Duration,
        "how long connecting may take (default: timeout)",
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
];

/// Every option of the mysql driver.
pub(super) const OPTIONS: [OptionSpec; count_with_common(&OWN_OPTIONS)] = with_common(&OWN_OPTIONS);

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default interval at which watches read a group's change counter.
pub(super) const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(10);
const DEFAULT_RESYNC: Duration = Duration::from_secs(1);
const DEFAULT_WAIT_SLICE: Duration = Duration::from_secs(5);
const DEFAULT_PORT: u16 = 3306;

/// Everything the driver needs from its URL. `Debug` never shows the password.
#[derive(Clone)]
pub(super) struct Config {
    pub host: String,
    pub port: u16,
    pub socket: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub dbname: Option<String>,
    pub namespace: String,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub poll_interval: Duration,
    pub resync_interval: Duration,
    pub wait_slice: Duration,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("socket", &self.socket)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("dbname", &self.dbname)
            .field("namespace", &self.namespace)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Reads and checks `url`.
    pub fn parse(url: &DriverUrl) -> Result<Config> {
        let options = url.options("mysql", &OPTIONS)?;
        let tls = [
            "ssl_ca",
            "ssl_capath",
            "ssl_cert",
            "ssl_key",
            "ssl_cipher",
            "ssl_verify_mode",
            "ssl_check_hostname",
        ];
        if let Some(name) = tls.iter().find(|n| options.text(n).is_some()) {
            return Err(Error::DriverUnavailable {
                scheme: url.scheme().to_string(),
                why: format!("`{name}`: TLS is not supported by this driver yet"),
            });
        }
        let namespace = options.text("namespace").unwrap_or("tooz").to_string();
        if !valid_namespace(&namespace) {
            return Err(bad_option(
                "namespace",
                &namespace,
                "lower-case letters, digits and `_`, at most 40, not starting with a digit \
                 (it prefixes table and lock names)",
            ));
        }
        let path = url.path();
        let timeout = options.duration("timeout").unwrap_or(DEFAULT_TIMEOUT);
        Ok(Config {
            host: url
                .host()
                .unwrap_or("localhost")
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: url.port().unwrap_or(DEFAULT_PORT),
            socket: options.text("unix_socket").map(String::from),
            user: url
                .username()
                .or_else(|| options.text("user").map(String::from)),
            password: url
                .password()
                .filter(|p| !p.is_empty())
                .or_else(|| options.text("password").map(String::from)),
            dbname: Some(path.trim_start_matches('/').to_string()).filter(|p| !p.is_empty()),
            namespace,
            timeout,
            connect_timeout: options.duration("connect_timeout").unwrap_or(timeout),
            poll_interval: options
                .duration("poll_interval")
                .unwrap_or(DEFAULT_POLL_INTERVAL),
            resync_interval: options
                .duration("resync_interval")
                .unwrap_or(DEFAULT_RESYNC),
            wait_slice: options.duration("wait_slice").unwrap_or(DEFAULT_WAIT_SLICE),
        })
    }

    /// The client library's options.
    pub fn client_opts(&self) -> mysql_async::Opts {
        let builder = mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .socket(self.socket.clone())
            .prefer_socket(self.socket.is_some())
            .user(self.user.clone())
            .pass(self.password.clone())
            .db_name(self.dbname.clone())
            .tcp_keepalive(Some(Duration::from_secs(10)))
            // The server ends a connection silent for `timeout`: a client cut off for good
            // lets its locks go (the heartbeat talks every timeout / 4).
            .setup(vec![format!(
                "SET SESSION wait_timeout = {}",
                self.timeout.as_secs_f64().ceil().max(1.0) as u64
            )])
            .stmt_cache_size(64);
        builder.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Config> {
        Config::parse(&DriverUrl::parse(raw).unwrap())
    }

    #[test]
    fn url_parts_and_tooz_options() {
        let cfg = parse("mysql://tooz:s3cret@127.0.0.1:3307/db").unwrap();
        assert_eq!((cfg.host.as_str(), cfg.port), ("127.0.0.1", 3307));
        assert_eq!(cfg.dbname.as_deref(), Some("db"));
        assert!(!format!("{cfg:?}").contains("s3cret"));
        let cfg = parse("mysql://root@localhost/pifpaf?unix_socket=/tmp/mysql.socket").unwrap();
        assert_eq!(cfg.socket.as_deref(), Some("/tmp/mysql.socket"));
        assert!(matches!(
            parse("mysql://h/db?ssl_ca=/ca.pem"),
            Err(Error::DriverUnavailable { .. })
        ));
        assert!(matches!(
            parse("mysql://h/db?namespace=No-Way"),
            Err(Error::InvalidOption { .. })
        ));
        assert!(matches!(
            parse("mysql://h/db?whatever=1"),
            Err(Error::UnknownOption { .. })
        ));
    }
}
