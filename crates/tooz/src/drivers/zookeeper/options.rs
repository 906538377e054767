//! URL and query options of the ZooKeeper driver (Python tooz's, plus a chroot).

use std::time::Duration;

use crate::drivers::common::options::{count_with_common, with_common};
use crate::error::{Error, Result};
use crate::url::{DriverUrl, OptionKind, OptionSpec, Options};

/// Session timeout when the URL gives none (Python tooz's `timeout` default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Namespace when the URL gives none (Python tooz's).
pub const DEFAULT_NAMESPACE: &str = "tooz";
/// Host when the URL names none (Python tooz's).
pub const DEFAULT_HOST: &str = "localhost:2181";

const EXTRA: [OptionSpec; 10] = [
    OptionSpec {
        name: "hosts",
        kind: OptionKind::Text,
        help: "another `host:port` of the ensemble (repeatable), as in Python tooz",
    },
    OptionSpec {
        name: "randomize_hosts",
        kind: OptionKind::Bool,
        help: "try the hosts in random order (default true)",
    },
    OptionSpec {
        name: "connection_timeout",
        kind: OptionKind::Duration,
        help: "idle time after which a connection counts as broken (default 2/5 of `timeout`)",
    },
    OptionSpec {
        name: "use_ssl",
        kind: OptionKind::Bool,
        help: "TLS to every server (cargo feature `zookeeper-tls`)",
    },
    OptionSpec {
        name: "verify_certs",
        kind: OptionKind::Bool,
        help: "check that the server's certificate names its host (default true); \
               the certificate must chain to `ca` either way",
    },
    OptionSpec {
        name: "ca",
        kind: OptionKind::Text,
        help: "PEM file of the CA certificates to trust (default: the system's bundle)",
    },
    OptionSpec {
        name: "certfile",
        kind: OptionKind::Text,
        help: "PEM file of the client certificate (with `keyfile`)",
    },
    OptionSpec {
        name: "keyfile",
        kind: OptionKind::Text,
        help: "PEM file of the client's unencrypted private key (with `certfile`)",
    },
    OptionSpec {
        name: "keyfile_password",
        kind: OptionKind::Secret,
        help: "password of an encrypted key: not supported (give an unencrypted key)",
    },
    OptionSpec {
        name: "handler",
        kind: OptionKind::Text,
        help: "kazoo's handler in Python tooz; only `threading` is accepted (and ignored)",
    },
];

/// Every option the driver accepts: the common ones and [`EXTRA`].
pub const OPTIONS: [OptionSpec; count_with_common(&EXTRA)] = with_common(&EXTRA);

/// Everything the driver needs from its URL.
#[derive(Clone)]
pub struct Config {
    /// `host:port` of every server, in the URL's order.
    pub hosts: Vec<String>,
    /// The chroot (URL path), `""` for none.
    pub chroot: String,
    /// The namespace node under the chroot.
    pub namespace: String,
    /// Requested session timeout.
    pub timeout: Duration,
    /// Connection idle timeout, if set.
    pub connection_timeout: Option<Duration>,
    /// Shuffle the hosts before connecting.
    pub randomize_hosts: bool,
    /// Digest credentials `(user, password)` from the URL.
    pub digest: Option<(String, String)>,
    /// TLS settings when `use_ssl=true`.
    pub tls: Option<Tls>,
}

/// TLS settings, read from their files when the URL is parsed.
#[cfg(feature = "zookeeper-tls")]
pub type Tls = zookeeper_client::TlsOptions;
/// TLS settings: never present in a build without the `zookeeper-tls` feature.
#[cfg(not(feature = "zookeeper-tls"))]
pub type Tls = std::convert::Infallible;

/// The CA bundle used when `ca` is not given (Debian's).
#[cfg(feature = "zookeeper-tls")]
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[cfg(feature = "zookeeper-tls")]
fn tls_settings(options: &Options) -> Result<Option<Tls>> {
    if options.bool("use_ssl") != Some(true) {
        return Ok(None);
    }
    let invalid = |option: &str, value: &str, expected: String| Error::InvalidOption {
        option: option.into(),
        value: value.chars().take(256).collect(),
        expected,
    };
    if options.text("keyfile_password").is_some() {
        return Err(invalid(
            "keyfile_password",
            "(hidden)",
            "no password: encrypted keys are not supported, give an unencrypted PEM key".into(),
        ));
    }
    let read = |option: &str, path: &str| {
        std::fs::read_to_string(path)
            .map_err(|e| invalid(option, path, format!("a readable PEM file ({e})")))
    };
    let ca_path = options.text("ca").unwrap_or(SYSTEM_CA_BUNDLE);
    let ca = read("ca", ca_path)?;
    let mut tls = zookeeper_client::TlsOptions::new()
        .with_pem_ca(&ca)
        .map_err(|e| invalid("ca", ca_path, format!("PEM CA certificates ({e})")))?;
    match (options.text("certfile"), options.text("keyfile")) {
        (Some(cert_path), Some(key_path)) => {
            let (cert, key) = (read("certfile", cert_path)?, read("keyfile", key_path)?);
            tls = tls.with_pem_identity(&cert, &key).map_err(|e| {
                invalid(
                    "keyfile",
                    key_path,
                    format!("a PEM certificate and its unencrypted key ({e})"),
                )
            })?;
        }
        (None, None) => {}
        (cert, _) => {
            let (option, value) = match cert {
                Some(cert) => ("certfile", cert),
                None => ("keyfile", options.text("keyfile").unwrap_or_default()),
            };
            return Err(invalid(
                option,
                value,
                "`certfile` and `keyfile` together".into(),
            ));
        }
    }
    if options.bool("verify_certs") == Some(false) {
        // SAFETY (of the library's contract): only the host name check is skipped; the
        // certificate must still chain to the trusted CAs.
        tls = unsafe { tls.with_no_hostname_verification() };
    }
    Ok(Some(tls))
}

#[cfg(not(feature = "zookeeper-tls"))]
fn tls_settings(options: &Options) -> Result<Option<Tls>> {
    if options.bool("use_ssl") == Some(true) {
        return Err(Error::InvalidOption {
            option: "use_ssl".into(),
            value: "true".into(),
            expected:
                "`false`: this build has no TLS for ZooKeeper (cargo feature `zookeeper-tls`)"
                    .into(),
        });
    }
    Ok(None)
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("hosts", &self.hosts)
            .field("chroot", &self.chroot)
            .field("namespace", &self.namespace)
            .field("timeout", &self.timeout)
            .field("digest_user", &self.digest.as_ref().map(|(u, _)| u))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Config {
    /// Reads `url`; unknown options and bad values are errors.
    pub fn from_url(url: &DriverUrl) -> Result<Config> {
        let options = url.options("zookeeper", &OPTIONS)?;
        let invalid = |reason: String| Error::InvalidUrl {
            url: url.to_string(),
            reason,
        };
        let tls = tls_settings(&options)?;
        if let Some(handler) = options.text("handler") {
            if handler != "threading" {
                return Err(Error::InvalidOption {
                    option: "handler".into(),
                    value: handler.chars().take(64).collect(),
                    expected: "`threading`".into(),
                });
            }
        }
        let mut hosts = url.hosts();
        hosts.extend(options.all("hosts").iter().cloned());
        hosts.retain(|h| !h.is_empty());
        for host in &hosts {
            if host.contains(['/', '?', '#', '@']) {
                return Err(invalid(format!("`{host}` is not a host[:port]")));
            }
        }
        if hosts.is_empty() {
            hosts.push(DEFAULT_HOST.to_string());
        }
        let path = url.path();
        let chroot = path.trim_end_matches('/').to_string();
        if !chroot.is_empty()
            && chroot
                .split('/')
                .skip(1)
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(invalid(format!("`{path}` is not a valid chroot path")));
        }
        let namespace = options
            .text("namespace")
            .unwrap_or(DEFAULT_NAMESPACE)
            .trim_matches('/')
            .to_string();
        if namespace.is_empty()
            || namespace
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(Error::InvalidOption {
                option: "namespace".into(),
                value: namespace.chars().take(64).collect(),
                expected: "a node name (or a relative path of node names)".into(),
            });
        }
        let digest = match (url.username(), url.password()) {
            (Some(user), Some(password)) => Some((user, password)),
            (Some(_), None) => {
                return Err(invalid("digest auth needs `user:password@`".into()));
            }
            _ => None,
        };
        Ok(Config {
            hosts,
            chroot,
            namespace,
            timeout: options.duration("timeout").unwrap_or(DEFAULT_TIMEOUT),
            connection_timeout: options.duration("connection_timeout"),
            randomize_hosts: options.bool("randomize_hosts").unwrap_or(true),
            digest,
            tls,
        })
    }

    /// The connect string for the client (hosts only; the chroot is applied after connecting).
    pub fn connect_string(&self) -> String {
        let mut hosts = self.hosts.clone();
        if self.randomize_hosts && hosts.len() > 1 {
            // Fisher-Yates with a uuid as the entropy source.
            let mut seed = uuid::Uuid::new_v4().as_u128();
            for i in (1..hosts.len()).rev() {
                let j = (seed % (i as u128 + 1)) as usize;
                seed /= i as u128 + 1;
                hosts.swap(i, j);
            }
        }
        hosts.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(raw: &str) -> Result<Config> {
        Config::from_url(&DriverUrl::parse(raw).unwrap())
    }

    #[test]
    fn python_urls() {
        let c = config("zookeeper://127.0.0.1:2181?timeout=5&namespace=ns").unwrap();
        assert_eq!(c.hosts, ["127.0.0.1:2181"]);
        assert_eq!(
            (c.namespace.as_str(), c.timeout),
            ("ns", Duration::from_secs(5))
        );
        assert_eq!(c.chroot, "");
        let c = config("kazoo://a:1?hosts=b:2&hosts=c:3&randomize_hosts=false").unwrap();
        assert_eq!(c.connect_string(), "a:1,b:2,c:3");
        let c = config("zookeeper://u:p@a:1,b:2/chroot/x").unwrap();
        assert_eq!(c.hosts, ["a:1", "b:2"]);
        assert_eq!(c.chroot, "/chroot/x");
        assert_eq!(c.digest, Some(("u".into(), "p".into())));
        let c = config("zookeeper://").unwrap();
        assert_eq!(c.hosts, [DEFAULT_HOST]);
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn bad_urls() {
        assert!(matches!(
            config("zookeeper://h:1?tiemout=2"),
            Err(Error::UnknownOption { .. })
        ));
        assert!(matches!(
            config("zookeeper://h:1?use_ssl=true&ca=/nonexistent/ca.pem"),
            Err(Error::InvalidOption { .. })
        ));
        let refused = config("zookeeper://h:1?use_ssl=true&keyfile_password=s3cret").unwrap_err();
        assert!(!refused.to_string().contains("s3cret"), "{refused}");
        assert!(matches!(
            config("zookeeper://h:1?handler=eventlet"),
            Err(Error::InvalidOption { .. })
        ));
        assert!(config("zookeeper://h:1//x").is_err());
        assert!(config("zookeeper://h:1?namespace=a/../b").is_err());
    }
}
