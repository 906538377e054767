//! `etcd3://` (gRPC) and `etcd3+http://` / `etcd3+https://` (the JSON gateway): etcd's v3 API
//! under the lease-KV recipes (`drivers/lease_kv`), which the two share; they differ only in
//! transport.
//!
//! Wire-compatible with Python tooz on the same cluster: groups, members and capabilities
//! are read and written both ways (tooz 4.x `etcd3://` and 5+ `etcd3+http://` share one group
//! layout), and locks exclude each other both ways with both generations of Python lock keys
//! (see `lease_kv::layout`). Beyond tooz: leader election, `get_leader`,
//! `stand_down_group_leader`, fencing tokens, `lost()`, one lease per coordinator (Python
//! granted one per lock attempt), waiters woken by a watch of their predecessor (Python polled
//! every second) and watches pushed by etcd.
//!
//! # URL and options
//!
//! `etcd3://host[:port][,host[:port]...][?option=value...]` (port 2379; several endpoints:
//! calls fail over among them), `etcd3+http://host[:port]` and `etcd3+https://...` (one
//! endpoint). `user:password@` authenticates (etcd's auth; the password is never shown).
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `timeout` | 30 s | TTL of the session's lease (Python tooz: `timeout`); the session is reported lost after half of it without a renewal |
//! | `operation_timeout` | TTL / 8, 0.1 s to 5 s | longest one call to etcd may take |
//! | `lock_timeout`, `membership_timeout`, `leader_timeout` | `timeout` | the lease's TTL is the shortest of these (Python tooz had one lease for members and one per lock) |
//! | `api_version` | from `/version` | gateway only: `v3alpha`, `v3beta` or `v3` |
//! | `ca_cert`, `cert_key`, `cert_cert` | — | TLS: CA bundle and client certificate (PEM), as in Python tooz |
//! | `executor` | — | accepted for tooz URLs; no effect |
//!
//! # Guarantees
//!
//! Writes and reads are linearizable (no serializable reads). A lock or a membership lives
//! as long as its holder's lease: a holder cut off from the cluster keeps its lease until its
//! TTL passes without a renewal, then loses everything (`lost()` fires at the latest once
//! half the TTL passes without a renewal, before the server can expire the lease); another
//! holder can take the lock only once the lease expired, with a larger fencing token.

#[cfg(feature = "etcd3-http")]
pub(crate) mod gateway;
#[cfg(feature = "etcd3")]
pub(crate) mod grpc;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::characteristics::{Characteristic as C, Characteristics};
use crate::drivers::common::options::{count_with_common, with_common};
use crate::error::{Error, Result};
use crate::types::{DriverFacts, Support, DEFAULT_POLL_INTERVAL};
use crate::url::{DriverUrl, OptionKind, OptionSpec};

const fn spec(name: &'static str, kind: OptionKind, help: &'static str) -> OptionSpec {
    OptionSpec { name, kind, help }
}

const OWN_OPTIONS: [OptionSpec; 5] = [
    spec(
        "api_version",
        OptionKind::Text,
        "gateway API prefix: v3alpha, v3beta or v3 (default: from the server's /version)",
    ),
    spec("ca_cert", OptionKind::Text, "CA certificates (PEM) for TLS"),
    spec("cert_key", OptionKind::Text, "client key (PEM) for TLS"),
    spec(
        "cert_cert",
        OptionKind::Text,
        "client certificate (PEM) for TLS",
    ),
    spec(
        "executor",
        OptionKind::Text,
        "accepted for tooz URLs; the driver is async",
    ),
];

/// Every option the etcd v3 drivers accept.
const OPTIONS: [OptionSpec; count_with_common(&OWN_OPTIONS)] = with_common(&OWN_OPTIONS);

/// Python tooz's default timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_PORT: u16 = 2379;
/// etcd's shortest lease (shorter TTLs are raised to it by the server).
const MIN_TTL: Duration = Duration::from_secs(2);

/// Bounds of the default call timeout, TTL / 8: a failing heartbeat fails in time for the
/// session to be reported lost before the lease can expire (see `lease_kv`).
const MIN_CALL_TIMEOUT: Duration = Duration::from_millis(100);
const MAX_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What both v3 drivers declare.
const fn facts() -> DriverFacts {
    DriverFacts {
        characteristics: Characteristics::of(&[
            C::DistributedAcrossThreads,
            C::DistributedAcrossProcesses,
            C::DistributedAcrossHosts,
            C::Linearizable,
            C::Serializable,
            C::SameViewAcrossClients,
        ]),
        support: Support {
            shared_locks: false,
            ..Support::ALL
        },
        poll_interval: DEFAULT_POLL_INTERVAL,
        options: &OPTIONS,
    }
}

/// TLS files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tls {
    pub ca_cert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Everything the etcd drivers need from their URL. `Debug` shows no secret.
#[derive(Clone)]
pub(crate) struct Config {
    /// `host:port` of every endpoint.
    pub endpoints: Vec<String>,
    pub tls: Option<Tls>,
    pub user: Option<(String, String)>,
    /// The lease TTL: the shortest of `timeout`, `lock_timeout`, `membership_timeout`.
    pub ttl: Duration,
    /// Longest one call may take.
    pub call_timeout: Duration,
    pub api_version: Option<String>,
    pub namespace: Vec<u8>,
}

impl Config {
    pub fn parse(
        url: &DriverUrl,
        driver: &'static str,
        tls_scheme: bool,
    ) -> Result<(Config, DriverFacts)> {
        let options = url.options(driver, &OPTIONS)?;
        let timeout = options.duration("timeout").unwrap_or(DEFAULT_TIMEOUT);
        let ttl = timeout
            .min(options.duration("lock_timeout").unwrap_or(timeout))
            .min(options.duration("membership_timeout").unwrap_or(timeout))
            .min(options.duration("leader_timeout").unwrap_or(timeout));
        if ttl < MIN_TTL {
            return Err(Error::InvalidOption {
                option: "timeout".into(),
                value: format!("{ttl:?}"),
                expected: format!("at least {MIN_TTL:?} (etcd's shortest lease)"),
            });
        }
        let api_version = options.text("api_version").map(str::to_string);
        if let Some(version) = &api_version {
            if !["v3alpha", "v3beta", "v3"].contains(&version.as_str()) {
                return Err(Error::InvalidOption {
                    option: "api_version".into(),
                    value: version.clone(),
                    expected: "v3alpha, v3beta or v3".into(),
                });
            }
        }
        let tls_files = Tls {
            ca_cert: options.text("ca_cert").map(PathBuf::from),
            cert: options.text("cert_cert").map(PathBuf::from),
            key: options.text("cert_key").map(PathBuf::from),
        };
        let tls = (tls_scheme || tls_files != Tls::default()).then_some(tls_files);
        if tls
            .as_ref()
            .is_some_and(|t| t.cert.is_some() != t.key.is_some())
        {
            return Err(Error::InvalidUrl {
                url: url.to_string(),
                reason: "cert_cert and cert_key go together".into(),
            });
        }
        let mut endpoints: Vec<String> = url
            .hosts()
            .into_iter()
            .map(|h| {
                if has_port(&h) {
                    h
                } else {
                    format!("{h}:{DEFAULT_PORT}")
                }
            })
            .collect();
        if endpoints.is_empty() {
            endpoints.push(format!("localhost:{DEFAULT_PORT}"));
        }
        let user = match (url.username(), url.password()) {
            (Some(user), Some(password)) => Some((user, password)),
            (None, None) => None,
            _ => {
                return Err(Error::InvalidUrl {
                    url: url.to_string(),
                    reason: "etcd authentication needs both a user and a password".into(),
                })
            }
        };
        let cfg = Config {
            endpoints,
            tls,
            user,
            ttl,
            call_timeout: options
                .duration("operation_timeout")
                .unwrap_or((ttl / 8).clamp(MIN_CALL_TIMEOUT, MAX_CALL_TIMEOUT)),
            api_version,
            namespace: options
                .text("namespace")
                .map(|ns| ns.as_bytes().to_vec())
                .unwrap_or_default(),
        };
        Ok((cfg, facts().with_options(&options)))
    }
}

/// Whether `host` (`h`, `h:port`, `[v6]` or `[v6]:port`) names its port.
fn has_port(host: &str) -> bool {
    host.rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("endpoints", &self.endpoints)
            .field("tls", &self.tls)
            .field("user", &self.user.as_ref().map(|(user, _)| user))
            .field("ttl", &self.ttl)
            .field("call_timeout", &self.call_timeout)
            .field("api_version", &self.api_version)
            .finish()
    }
}

/// The static facts of `tooz drivers`.
pub(crate) const FACTS: DriverFacts = facts();

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Config> {
        Config::parse(&DriverUrl::parse(raw).unwrap(), "etcd3", false).map(|(c, _)| c)
    }

    #[test]
    fn defaults_follow_tooz() {
        let cfg = parse("etcd3://").unwrap();
        assert_eq!(cfg.endpoints, vec!["localhost:2379"]);
        assert_eq!(cfg.ttl, DEFAULT_TIMEOUT);
        let cfg = parse("etcd3://[::1],[::1]:7?timeout=10").unwrap();
        assert_eq!(cfg.endpoints, vec!["[::1]:2379", "[::1]:7"]);
        let cfg = parse("etcd3://a:1,b,c:3?timeout=10&lock_timeout=5").unwrap();
        assert_eq!(cfg.endpoints, vec!["a:1", "b:2379", "c:3"]);
        assert_eq!(cfg.ttl, Duration::from_secs(5));
        assert!(cfg.tls.is_none());
    }

    #[test]
    fn bad_options_and_secrets() {
        assert!(matches!(
            parse("etcd3://h?tiemout=1"),
            Err(Error::UnknownOption { .. })
        ));
        assert!(matches!(
            parse("etcd3://h?timeout=1"),
            Err(Error::InvalidOption { .. })
        ));
        assert!(matches!(
            parse("etcd3://h?api_version=v4"),
            Err(Error::InvalidOption { .. })
        ));
        assert!(matches!(
            parse("etcd3://h?cert_key=/k"),
            Err(Error::InvalidUrl { .. })
        ));
        let cfg = parse("etcd3://root:s3cr%2Ft@h").unwrap();
        assert_eq!(cfg.user, Some(("root".into(), "s3cr/t".into())));
        assert!(!format!("{cfg:?}").contains("s3cr"));
        let err = parse("etcd3://root:hunter2@h?cert_key=/k").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }
}
