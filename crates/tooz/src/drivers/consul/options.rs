//! The options of a `consul://` URL: Python tooz 8.1's (`ttl`, `namespace`, `acl_token`),
//! `token` as a shorter name of the ACL token, `lock_delay`, and TLS.

use std::time::Duration;

use crate::drivers::common::options::{count_with_common, with_common};
use crate::error::{Error, Result};
use crate::url::{DriverUrl, OptionKind, OptionSpec, Options};

const OWN_OPTIONS: [OptionSpec; 8] = [
    OptionSpec {
        name: "ttl",
        kind: OptionKind::Duration,
        help: "TTL of the coordinator's Consul session (10 s to 24 h; default 15 s, or `timeout` \
               raised to 10 s)",
    },
    OptionSpec {
        name: "token",
        kind: OptionKind::Secret,
        help: "ACL token, sent as X-Consul-Token",
    },
    OptionSpec {
        name: "acl_token",
        kind: OptionKind::Secret,
        help: "ACL token (Python tooz's name for `token`)",
    },
    OptionSpec {
        name: "lock_delay",
        kind: OptionKind::Text,
        help: "Consul's lock-delay of the session, in seconds (`0` for none; default 15)",
    },
    OptionSpec {
        name: "protocol",
        kind: OptionKind::Text,
        help: "http (default) or https",
    },
    OptionSpec {
        name: "ca_cert",
        kind: OptionKind::Text,
        help: "CA certificates (PEM) for https (default: the system's)",
    },
    OptionSpec {
        name: "cert_cert",
        kind: OptionKind::Text,
        help: "client certificate (PEM) for https",
    },
    OptionSpec {
        name: "cert_key",
        kind: OptionKind::Text,
        help: "client key (PEM, unencrypted) for https",
    },
];

/// Every option a `consul://` URL accepts.
pub(crate) const OPTIONS: [OptionSpec; count_with_common(&OWN_OPTIONS)] = with_common(&OWN_OPTIONS);

/// Python tooz's default session TTL.
pub(super) const DEFAULT_TTL: Duration = Duration::from_secs(15);
/// Consul's shortest session TTL.
pub(super) const MIN_TTL: Duration = Duration::from_secs(10);
/// Consul's longest session TTL.
pub(super) const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Consul's default lock-delay.
pub(super) const DEFAULT_LOCK_DELAY: Duration = Duration::from_secs(15);
/// Consul's longest lock-delay.
const MAX_LOCK_DELAY: Duration = Duration::from_secs(60);
/// Python tooz's namespace.
pub(super) const DEFAULT_NAMESPACE: &str = "tooz";

/// What the URL says, checked.
#[derive(Clone)]
pub(super) struct Settings {
    /// `host:port`.
    pub host_port: String,
    /// The session's TTL (whole seconds).
    pub ttl: Duration,
    /// The session's lock-delay.
    pub lock_delay: Duration,
    /// Key prefix (no trailing `/`).
    pub namespace: String,
    /// The ACL token, if any.
    pub token: Option<String>,
    /// `https` rather than `http`.
    pub tls: bool,
    /// Longest one ordinary call may take.
    pub call_timeout: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("host_port", &self.host_port)
            .field("ttl", &self.ttl)
            .field("lock_delay", &self.lock_delay)
            .field("namespace", &self.namespace)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .field("call_timeout", &self.call_timeout)
            .finish()
    }
}

fn invalid(option: &str, value: impl std::fmt::Display, expected: &str) -> Error {
    Error::InvalidOption {
        option: option.into(),
        value: value.to_string(),
        expected: expected.into(),
    }
}

/// A lock-delay: seconds (`0`, `2.5`) or with a unit (`250ms`, `15s`).
fn parse_lock_delay(value: &str) -> Option<Duration> {
    let value = value.trim();
    let (number, scale) = if let Some(ms) = value.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(s) = value.strip_suffix('s') {
        (s, 1.0)
    } else {
        (value, 1.0)
    };
    let seconds: f64 = number.trim().parse().ok()?;
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(seconds * scale))
}

/// Reads and checks the options of `url`; also returns them for the driver's facts.
pub(super) fn settings(url: &DriverUrl) -> Result<(Settings, Options)> {
    let options = url.options("consul", &OPTIONS)?;
    if url.hosts().len() > 1 {
        return Err(Error::InvalidUrl {
            url: url.to_string(),
            reason: "one agent per consul:// URL".into(),
        });
    }
    // `ttl` is Consul's and must be in its range; the common `timeout` is raised to
    // Consul's shortest TTL.
    let ttl = match (options.duration("ttl"), options.duration("timeout")) {
        (Some(ttl), _) => ttl,
        (None, Some(timeout)) => timeout.max(MIN_TTL),
        (None, None) => DEFAULT_TTL,
    };
    let ttl = Duration::from_secs(ttl.as_secs_f64().ceil() as u64);
    if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
        let name = if options.text("ttl").is_some() {
            "ttl"
        } else {
            "timeout"
        };
        return Err(invalid(
            name,
            format!("{ttl:?}"),
            "10 s to 24 h (Consul's session TTLs)",
        ));
    }
    let lock_delay = match options.text("lock_delay") {
        None => DEFAULT_LOCK_DELAY,
        Some(text) => parse_lock_delay(text)
            .filter(|d| *d <= MAX_LOCK_DELAY)
            .ok_or_else(|| invalid("lock_delay", text, "0 to 60 seconds (`0`, `15`, `500ms`)"))?,
    };
    let namespace = options
        .text("namespace")
        .unwrap_or(DEFAULT_NAMESPACE)
        .trim_matches('/')
        .to_string();
    if namespace.is_empty() {
        return Err(invalid("namespace", "", "a non-empty key prefix"));
    }
    let token = options
        .text("token")
        .or_else(|| options.text("acl_token"))
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let tls = match options.text("protocol").unwrap_or("http") {
        "http" => false,
        "https" => true,
        other => return Err(invalid("protocol", other, "http or https")),
    };
    let call_timeout = options
        .duration("operation_timeout")
        .unwrap_or((ttl / 8).clamp(Duration::from_millis(100), Duration::from_secs(2)));
    let host = url.host().unwrap_or("localhost");
    let settings = Settings {
        host_port: format!("{host}:{}", url.port().unwrap_or(8500)),
        ttl,
        lock_delay,
        namespace,
        token,
        tls,
        call_timeout,
    };
    Ok((settings, options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<Settings> {
        settings(&DriverUrl::parse(url)?).map(|(s, _)| s)
    }

    #[test]
    fn defaults_are_python_toozs() {
        let s = parse("consul://").unwrap();
        assert_eq!(s.host_port, "localhost:8500");
        assert_eq!(s.ttl, DEFAULT_TTL);
        assert_eq!(s.lock_delay, DEFAULT_LOCK_DELAY);
        assert_eq!(s.namespace, "tooz");
        assert!(s.token.is_none());
        assert!(!s.tls);
    }

    #[test]
    fn options_are_read() {
        let s = parse(
            "consul://127.0.0.1:8501?ttl=12.5&lock_delay=0&namespace=/app/&acl_token=t1\
             &protocol=https",
        )
        .unwrap();
        assert_eq!(s.host_port, "127.0.0.1:8501");
        assert_eq!(s.ttl, Duration::from_secs(13));
        assert_eq!(s.lock_delay, Duration::ZERO);
        assert_eq!(s.namespace, "app");
        assert_eq!(s.token.as_deref(), Some("t1"));
        assert!(s.tls);
        let s = parse("consul://?token=a&acl_token=b&lock_delay=250ms&timeout=20").unwrap();
        assert_eq!(s.token.as_deref(), Some("a"));
        assert_eq!(s.lock_delay, Duration::from_millis(250));
        assert_eq!(s.ttl, Duration::from_secs(20));
        // The common timeout is raised to Consul's shortest TTL; `ttl` is not.
        assert_eq!(parse("consul://?timeout=2").unwrap().ttl, MIN_TTL);
    }

    #[test]
    fn out_of_range_values_are_refused() {
        for url in [
            "consul://?ttl=5",
            "consul://?ttl=100000",
            "consul://?lock_delay=-1",
            "consul://?lock_delay=61",
            "consul://?lock_delay=soon",
            "consul://?protocol=gopher",
            "consul://?namespace=/",
        ] {
            assert!(
                matches!(parse(url), Err(Error::InvalidOption { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn the_token_is_never_shown() {
        let url = DriverUrl::parse("consul://127.0.0.1?token=hunter2&acl_token=s3cret").unwrap();
        let (s, options) = settings(&url).unwrap();
        for shown in [
            format!("{s:?}"),
            format!("{options:?}"),
            url.to_string(),
            format!("{url:?}"),
        ] {
            assert!(
                !shown.contains("hunter2") && !shown.contains("s3cret"),
                "{shown}"
            );
        }
    }
}
