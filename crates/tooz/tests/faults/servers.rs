//! The servers of `scripts/services` behind a URL: which member listens on a port, restarting
//! members, and waiting until their server is healthy again.

use std::process::Command;
use std::time::{Duration, Instant};

use tooz_testkit::services;

/// Longest to wait for a restarted server to be healthy again (`scripts/services` waits up to
/// 60 s for a member; Sentinels take a few seconds more to agree).
const HEALTHY: Duration = Duration::from_secs(90);

/// A running member of a `scripts/services` server.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its server (`redis`, `zk3`, ...).
    pub server: String,
    /// Its name (`redis-1`, `zk3-2`, ...).
    pub name: String,
    /// The TCP ports it listens on.
    pub ports: Vec<u16>,
}

/// The output of `scripts/services status`, whatever its exit status (it fails when any
/// server at all is unhealthy).
fn status() -> String {
    Command::new("bash")
        .arg(services::script())
        .arg("status")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}

/// Every member `scripts/services status` lists as running.
pub fn members() -> Vec<Member> {
    status()
        .lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let [server, name, _pid, "ok", listening @ ..] = cols.as_slice() else {
                return None;
            };
            let ports = listening
                .iter()
                .filter(|a| a.starts_with("tcp:"))
                .filter_map(|a| a.rsplit(':').next()?.parse().ok())
                .collect();
            Some(Member {
                server: server.to_string(),
                name: name.to_string(),
                ports,
            })
        })
        .collect()
}

/// The member listening on TCP `port`.
pub fn on_port(members: &[Member], port: u16) -> Option<&Member> {
    members.iter().find(|m| m.ports.contains(&port))
}

/// Whether `scripts/services status` says `server` is healthy (every member up and, for
/// Redis, replication and Sentinels converged).
fn healthy(server: &str) -> bool {
    status().lines().any(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        cols.as_slice() == [server, "(server)", "-", "healthy"]
    })
}

/// Restarts `names` (members of `server`; the whole server when they are all of it, so that
/// they start together) and waits until the server is healthy again.
pub async fn restart(server: &str, names: &[String], all: &[Member]) -> Result<(), String> {
    let whole = all
        .iter()
        .filter(|m| m.server == server)
        .all(|m| names.contains(&m.name));
    let targets: Vec<String> = if whole {
        vec![server.to_string()]
    } else {
        names.to_vec()
    };
    for target in targets {
        services::restart_async(&target)
            .await
            .map_err(|e| format!("restart {target}: {e}"))?;
    }
    wait_healthy(server).await
}

/// Waits (bounded) until `server` is healthy.
pub async fn wait_healthy(server: &str) -> Result<(), String> {
    let server = server.to_string();
    tokio::task::spawn_blocking(move || {
        let end = Instant::now() + HEALTHY;
        while !healthy(&server) {
            if Instant::now() > end {
                return Err(format!(
                    "{server} not healthy {HEALTHY:?} after its restart"
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The port of the master that the first answering Sentinel names for `master`.
#[cfg(feature = "redis")]
pub fn sentinel_master(sentinels: &[std::net::SocketAddr], master: &str) -> Result<u16, String> {
    let mut errors = Vec::new();
    for sentinel in sentinels {
        let ask = || -> redis::RedisResult<Vec<String>> {
            let client = redis::Client::open(format!("redis://{sentinel}"))?;
            let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
            conn.set_read_timeout(Some(Duration::from_secs(2)))?;
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(master)
                .query(&mut conn)
        };
        match ask() {
            Ok(addr) => match addr.get(1).and_then(|p| p.parse().ok()) {
                Some(port) => return Ok(port),
                None => errors.push(format!("{sentinel}: answered {addr:?}")),
            },
            Err(e) => errors.push(format!("{sentinel}: {e}")),
        }
    }
    Err(format!(
        "no Sentinel names the master: {}",
        errors.join("; ")
    ))
}

/// Without the redis driver there is no Redis URL to test.
#[cfg(not(feature = "redis"))]
pub fn sentinel_master(_: &[std::net::SocketAddr], _: &str) -> Result<u16, String> {
    Err("built without the redis feature".into())
}

/// A Sentinel of the suite's own, on a free loopback port, that names as master `name` the
/// address it is given (a fault proxy in front of the real master), so that a client that
/// follows Sentinel connects through that proxy. It never fails over during a case (its
/// down-after is ten minutes) and is killed when dropped.
pub struct PrivateSentinel {
    child: std::process::Child,
    dir: std::path::PathBuf,
    /// Its address.
    pub addr: std::net::SocketAddr,
}

impl PrivateSentinel {
    /// Starts one monitoring `master` under `name`; waits (bounded) until it names it.
    pub async fn start(name: &str, master: std::net::SocketAddr) -> Result<Self, String> {
        let port = crate::support::free_port();
        let dir = std::env::temp_dir().join(format!("tooz-faults-sentinel-{port}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let conf = dir.join("sentinel.conf");
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {name} {} {} 1\n\
             sentinel down-after-milliseconds {name} 600000\n",
            dir.display(),
            master.ip(),
            master.port()
        );
        std::fs::write(&conf, text).map_err(|e| e.to_string())?;
        let child = std::process::Command::new("redis-sentinel")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-sentinel: {e}"))?;
        let sentinel = PrivateSentinel {
            child,
            dir,
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (addr, name) = (sentinel.addr, name.to_string());
            let named = tokio::task::spawn_blocking(move || sentinel_master(&[addr], &name))
                .await
                .map_err(|e| e.to_string())?;
            match named {
                Ok(port) if port == master.port() => return Ok(sentinel),
                Ok(port) => return Err(format!("the private Sentinel names port {port}")),
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(why) => return Err(why),
            }
        }
    }
}

impl Drop for PrivateSentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
