//! The URL under test: its shape (where its clients connect), the URL with the suite's
//! options, and the same URL with every server behind a [`FaultProxy`].

use std::net::{SocketAddr, ToSocketAddrs};

use tooz_testkit::FaultProxy;

/// Where a driver's clients connect, as far as a TCP proxy is concerned.
#[derive(Debug, Clone)]
pub enum Shape {
    /// To the servers named in the URL (one, or an ensemble's members), each as written
    /// there and its address: a proxy in front of each of them cuts a client off.
    Hosts(Vec<(String, SocketAddr)>),
    /// To Sentinels, then to whichever address they name as the master of `master`.
    Sentinel {
        /// The Sentinels named in the URL (host and `sentinel_fallback`s).
        sentinels: Vec<SocketAddr>,
        /// The master name.
        master: String,
    },
    /// Nowhere a proxy can stand; why.
    Unproxiable(String),
}

/// One URL, taken apart.
#[derive(Debug, Clone)]
pub struct Parsed {
    scheme: String,
    /// `user:password@`, or empty.
    userinfo: String,
    hosts: Vec<String>,
    /// The path, with its leading `/` (or empty).
    path: String,
    query: Vec<(String, String)>,
}

impl Parsed {
    /// Takes `url` apart; `None` if it has no `scheme://`.
    pub fn new(url: &str) -> Option<Parsed> {
        let (scheme, rest) = url.split_once("://")?;
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, query),
            None => (rest, ""),
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((user, hosts)) => (format!("{user}@"), hosts),
            None => (String::new(), authority),
        };
        let query = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (pair.to_string(), String::new()),
            })
            .collect();
        Some(Parsed {
            scheme: scheme.to_string(),
            userinfo,
            hosts: hosts
                .split(',')
                .filter(|h| !h.is_empty())
                .map(str::to_string)
                .collect(),
            path: path.to_string(),
            query,
        })
    }

    fn option(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn options<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.query
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Where clients of this URL connect.
    pub fn shape(&self, driver: &str) -> Shape {
        let default_port = match driver {
            "redis" => 6379,
            "memcached" => 11211,
            "zookeeper" => 2181,
            "etcd" | "etcd3" | "etcd3+http" => 2379,
            "postgresql" => 5432,
            "mysql" => 3306,
            "consul" => 8500,
            _ => return Shape::Unproxiable(format!("{driver} is not a network driver")),
        };
        if self.hosts.is_empty() {
            return Shape::Unproxiable("the URL names no TCP server (a unix socket?)".into());
        }
        // zookeeper's `hosts=` option names more servers, as the URL's host list does.
        let named = self.hosts.iter().map(String::as_str);
        let named: Vec<&str> = if driver == "zookeeper" {
            named.chain(self.options("hosts")).collect()
        } else {
            named.collect()
        };
        let mut servers = Vec::new();
        for host in named {
            match loopback(host, default_port) {
                Ok(addr) => servers.push((host.to_string(), addr)),
                Err(why) => return Shape::Unproxiable(why),
            }
        }
        match self.option("sentinel") {
            Some(master) if driver == "redis" => {
                let mut sentinels: Vec<SocketAddr> = servers.iter().map(|(_, a)| *a).collect();
                for fallback in self.options("sentinel_fallback") {
                    match loopback(fallback, 26379) {
                        Ok(addr) => sentinels.push(addr),
                        Err(why) => return Shape::Unproxiable(why),
                    }
                }
                Shape::Sentinel {
                    sentinels,
                    master: master.to_string(),
                }
            }
            _ => Shape::Hosts(servers),
        }
    }

    /// The URL again, with `options` (`k=v&k=v`) replacing any option of the same name.
    pub fn with_options(&self, options: &str) -> String {
        self.render(&|_| None, options)
    }

    /// The URL with each host `h` (and `hosts=` value) for which `swap(h)` gives an address
    /// replaced by that address, and with `options`.
    fn render(&self, swap: &dyn Fn(&str) -> Option<String>, options: &str) -> String {
        let hosts: Vec<String> = self
            .hosts
            .iter()
            .map(|h| swap(h).unwrap_or_else(|| h.clone()))
            .collect();
        let added: Vec<(&str, &str)> = options
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .collect();
        let mut query: Vec<String> = self
            .query
            .iter()
            .filter(|(k, _)| !added.iter().any(|(a, _)| a == k))
            .map(|(k, v)| {
                let v = if k == "hosts" {
                    swap(v).unwrap_or_else(|| v.clone())
                } else {
                    v.clone()
                };
                format!("{k}={v}")
            })
            .collect();
        query.extend(added.iter().map(|(k, v)| format!("{k}={v}")));
        let mut url = format!(
            "{}://{}{}{}",
            self.scheme,
            self.userinfo,
            hosts.join(","),
            self.path
        );
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        url
    }
}

/// The loopback address of `host` (`h:port`, `[v6]:port`, or `h` with `default_port`), or why
/// not: the suite only ever sends traffic to loopback.
fn loopback(host: &str, default_port: u16) -> Result<SocketAddr, String> {
    let with_port = if host.starts_with('[') && host.ends_with(']') || !host.contains(':') {
        format!("{host}:{default_port}")
    } else {
        host.to_string()
    };
    let addrs: Vec<SocketAddr> = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4() && a.ip().is_loopback())
        .or_else(|| addrs.iter().find(|a| a.ip().is_loopback()))
        .copied()
        .ok_or_else(|| format!("{host} is not a loopback address"))
}

/// Every server of a URL behind a proxy of its own, and the URL that goes through them.
pub struct Proxied {
    proxies: Vec<FaultProxy>,
    /// Under Sentinel: the suite's own Sentinel, naming the proxy as the master.
    _sentinel: Option<crate::servers::PrivateSentinel>,
    /// The URL under test, through the proxies, with the suite's options.
    pub url: String,
}

impl Proxied {
    /// Puts a proxy in front of each of `servers` (from [`Shape::Hosts`]).
    pub async fn start(
        parsed: &Parsed,
        servers: &[(String, SocketAddr)],
        options: &str,
    ) -> Proxied {
        let mut proxies = Vec::new();
        for (_, server) in servers {
            proxies.push(
                FaultProxy::start(*server)
                    .await
                    .expect("start a fault proxy"),
            );
        }
        let swap = |host: &str| {
            let at = servers.iter().position(|(h, _)| h == host)?;
            Some(proxies[at].addr().to_string())
        };
        let url = parsed.render(&swap, options);
        Proxied {
            proxies,
            _sentinel: None,
            url,
        }
    }

    /// Under Sentinel: a proxy in front of the current master (at `master`), and a Sentinel
    /// of the suite's own naming that proxy as the master, so that the client, following
    /// Sentinel as the URL tells it to, goes through the proxy. The URL is `parsed`'s, with
    /// that Sentinel as its only one.
    pub async fn start_sentinel(
        parsed: &Parsed,
        master: SocketAddr,
        options: &str,
    ) -> Result<Proxied, String> {
        let proxy = FaultProxy::start(master)
            .await
            .map_err(|e| format!("start a fault proxy: {e}"))?;
        let name = "tooz-faults";
        let sentinel = crate::servers::PrivateSentinel::start(name, proxy.addr()).await?;
        let mut private = parsed.clone();
        private.hosts = vec![sentinel.addr.to_string()];
        private
            .query
            .retain(|(k, _)| k != "sentinel" && k != "sentinel_fallback");
        private.query.push(("sentinel".into(), name.into()));
        let url = private.render(&|_| None, options);
        Ok(Proxied {
            proxies: vec![proxy],
            _sentinel: Some(sentinel),
            url,
        })
    }

    /// Every connection stops relaying, in both directions, without a reset.
    pub fn black_hole(&self) {
        self.proxies.iter().for_each(FaultProxy::black_hole);
    }

    /// Requests reach the servers; their replies are thrown away.
    pub fn drop_replies(&self) {
        self.proxies.iter().for_each(FaultProxy::drop_replies);
    }

    /// Back to normal (connections that lost bytes are reset, as TCP would end them).
    pub fn heal(&self) {
        self.proxies.iter().for_each(FaultProxy::heal);
    }
}

/// Checks the URL surgery above on the shapes the suite meets (run as the trial
/// `harness::url_rewriting`, which needs no server).
pub fn self_check() -> Result<(), String> {
    let check = |got: String, want: &str| {
        if got == want {
            Ok(())
        } else {
            Err(format!("got {got}, want {want}"))
        }
    };
    let zk = Parsed::new(
        "zookeeper://u:p@127.0.0.1:2281,127.0.0.1:2282/app?timeout=9&hosts=127.0.0.1:2283",
    )
    .ok_or("no URL")?;
    check(
        zk.with_options("timeout=2"),
        "zookeeper://u:p@127.0.0.1:2281,127.0.0.1:2282/app?hosts=127.0.0.1:2283&timeout=2",
    )?;
    let Shape::Hosts(servers) = zk.shape("zookeeper") else {
        return Err("an ensemble is a list of hosts".into());
    };
    let hosts: Vec<&str> = servers.iter().map(|(h, _)| h.as_str()).collect();
    if hosts != ["127.0.0.1:2281", "127.0.0.1:2282", "127.0.0.1:2283"] {
        return Err(format!("hosts {hosts:?}"));
    }
    let swap = |h: &str| Some(h.replace("228", "999"));
    check(
        zk.render(&swap, "timeout=2"),
        "zookeeper://u:p@127.0.0.1:9991,127.0.0.1:9992/app?hosts=127.0.0.1:9993&timeout=2",
    )?;
    let sentinel =
        Parsed::new("redis://127.0.0.1:26379?sentinel=mymaster&sentinel_fallback=127.0.0.1:26380")
            .ok_or("no URL")?;
    match sentinel.shape("redis") {
        Shape::Sentinel { sentinels, master } if sentinels.len() == 2 && master == "mymaster" => {}
        other => return Err(format!("sentinel shape {other:?}")),
    }
    let socket = Parsed::new("redis:///run/redis.sock").ok_or("no URL")?;
    if !matches!(socket.shape("redis"), Shape::Unproxiable(_)) {
        return Err("a unix socket cannot be proxied".into());
    }
    Ok(())
}
