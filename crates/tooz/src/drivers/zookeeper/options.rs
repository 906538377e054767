//! URL and query options of the ZooKeeper driver (Python tooz's, plus a chroot).

use std::time::Duration;

use crate::error::{Error, Result};
use crate::url::{DriverUrl, OptionKind, OptionSpec, COMMON_OPTIONS};

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
        help: "TLS to the servers; not available in this build (`true` is refused)",
    },
    OptionSpec {
        name: "verify_certs",
        kind: OptionKind::Bool,
        help: "TLS option of Python tooz; only meaningful with `use_ssl`",
    },
    OptionSpec {
        name: "ca",
        kind: OptionKind::Text,
        help: "TLS option of Python tooz; only meaningful with `use_ssl`",
    },
    OptionSpec {
        name: "certfile",
        kind: OptionKind::Text,
        help: "TLS option of Python tooz; only meaningful with `use_ssl`",
    },
    OptionSpec {
        name: "keyfile",
        kind: OptionKind::Text,
        help: "TLS option of Python tooz; only meaningful with `use_ssl`",
    },
    OptionSpec {
        name: "keyfile_password",
        kind: OptionKind::Secret,
        help: "TLS option of Python tooz; only meaningful with `use_ssl`",
    },
    OptionSpec {
        name: "handler",
        kind: OptionKind::Text,
        help: "kazoo's handler in Python tooz; only `threading` is accepted (and ignored)",
    },
];

/// Every option the driver accepts: the common ones and [`EXTRA`].
pub const OPTIONS: [OptionSpec; COMMON_OPTIONS.len() + EXTRA.len()] = {
    let mut all = [EXTRA[0]; COMMON_OPTIONS.len() + EXTRA.len()];
    let mut i = 0;
    while i < COMMON_OPTIONS.len() {
        all[i] = COMMON_OPTIONS[i];
        i += 1;
    }
    let mut j = 0;
    while j < EXTRA.len() {
        all[i + j] = EXTRA[j];
        j += 1;
    }
    all
};

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
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("hosts", &self.hosts)
            .field("chroot", &self.chroot)
            .field("namespace", &self.namespace)
            .field("timeout", &self.timeout)
            .field("digest_user", &self.digest.as_ref().map(|(u, _)| u))
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
        if options.bool("use_ssl") == Some(true) {
            return Err(Error::InvalidOption {
                option: "use_ssl".into(),
                value: "true".into(),
                expected: "`false`: this build has no TLS for ZooKeeper (see the driver docs)"
                    .into(),
            });
        }
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
            config("zookeeper://h:1?use_ssl=true"),
            Err(Error::InvalidOption { .. })
        ));
        assert!(matches!(
            config("zookeeper://h:1?handler=eventlet"),
            Err(Error::InvalidOption { .. })
        ));
        assert!(config("zookeeper://h:1//x").is_err());
        assert!(config("zookeeper://h:1?namespace=a/../b").is_err());
    }
}
