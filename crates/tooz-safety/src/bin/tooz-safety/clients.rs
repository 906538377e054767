//! The client processes of a run, their fault proxies, and what the nemesis does to them.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tooz_safety::FencedRegister;
use tooz_testkit::FaultProxy;

use crate::nemesis::Target;
use crate::rng::Rng;
use crate::wrap::Mutant;

/// One fault proxy per client in front of the URL's single `host:port`.
pub async fn start_proxies(url: &str, clients: u32) -> Result<Vec<FaultProxy>, String> {
    let authority = authority(url).ok_or("network faults need a URL with one host:port")?;
    let upstream: SocketAddr = authority
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority} resolves to nothing"))?;
    let mut proxies = Vec::new();
    for _ in 0..clients {
        proxies.push(
            FaultProxy::start(upstream)
                .await
                .map_err(|e| format!("fault proxy: {e}"))?,
        );
    }
    Ok(proxies)
}

/// The `host:port` of a single-host URL (without user info).
pub fn authority(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    (!authority.is_empty() && !authority.contains(',') && authority.contains(':'))
        .then_some(authority)
}

/// The client processes of a run.
pub struct Clients {
    /// This program, which `client` runs as.
    pub exe: PathBuf,
    /// The driver URL (each client's goes through its proxy, if any).
    pub url: String,
    /// The run's directory (history files, logs).
    pub out: PathBuf,
    /// Where the fenced register listens.
    pub register_addr: SocketAddr,
    /// The register, whose log tells who holds what.
    pub register: Arc<FencedRegister>,
    /// The lock, the long-held lock and the election group.
    pub resources: [String; 3],
    /// The lock / session time-to-live.
    pub ttl: Duration,
    /// The seeded bug, if any.
    pub mutant: Option<Mutant>,
    /// The run's seed.
    pub seed: u64,
    /// Client `p` is `children[p - 1]`.
    pub children: Vec<Option<Child>>,
    /// How many times each client was started before.
    pub incarnations: Vec<u32>,
    /// Client `p`'s fault proxy is `proxies[p - 1]` (none without network faults).
    pub proxies: Vec<FaultProxy>,
}

impl Clients {
    fn url_of(&self, process: u32) -> String {
        match (self.proxies.get(process as usize - 1), authority(&self.url)) {
            (Some(proxy), Some(authority)) => {
                self.url.replacen(authority, &proxy.addr().to_string(), 1)
            }
            _ => self.url.clone(),
        }
    }

    /// Starts client `process` (again, after a kill: a new incarnation).
    pub fn spawn(&mut self, process: u32) -> Result<(), String> {
        let index = process as usize - 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.out.join(format!("p{process}.log")))
            .map_err(|e| e.to_string())?;
        let mut command = Command::new(&self.exe);
        command
            .arg("client")
            .args(["--url", &self.url_of(process)])
            .args(["--process", &process.to_string()])
            .args(["--incarnation", &self.incarnations[index].to_string()])
            .args(["--register", &self.register_addr.to_string()])
            .arg("--history")
            .arg(self.out.join(format!("p{process}.jsonl")))
            .args(["--ttl", &self.ttl.as_secs_f64().to_string()])
            .args(["--seed", &self.seed.to_string()])
            .args(["--lock", &self.resources[0]])
            .args(["--group", &self.resources[2]])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        if let Some(mutant) = self.mutant {
            command.args(["--mutant", &format!("{mutant:?}").to_lowercase()]);
        }
        let child = command
            .spawn()
            .map_err(|e| format!("client {process}: {e}"))?;
        if self.children.len() < process as usize {
            self.children.resize_with(process as usize, || None);
        }
        self.children[index] = Some(child);
        Ok(())
    }

    /// Ends every client: SIGCONT (a paused one), SIGTERM, then SIGKILL after 10 s.
    pub fn stop_all(&mut self) {
        for proxy in &self.proxies {
            proxy.heal();
        }
        for process in 1..=self.children.len() as u32 {
            self.signal(process, libc::SIGCONT);
            self.signal(process, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for child in self.children.iter_mut().flatten() {
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Target for Clients {
    fn victim(&self, rng: &mut Rng) -> u32 {
        let any = 1 + rng.below(self.incarnations.len() as u64) as u32;
        // Mostly the holder of the long-held lock, whose holds faults are meant to cut
        // through; sometimes the lock's or the election's holder, sometimes anyone.
        let resource = match rng.below(8) {
            0..=3 => &self.resources[1],
            4 => &self.resources[0],
            5 => &self.resources[2],
            _ => return any,
        };
        self.register.last_writer(resource).unwrap_or(any)
    }

    fn signal(&mut self, process: u32, signal: libc::c_int) {
        if let Some(Some(child)) = self.children.get(process as usize - 1) {
            // SAFETY: plain kill(2) on a child of ours that has not been reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
    }

    fn kill(&mut self, process: u32) {
        if let Some(Some(child)) = self.children.get_mut(process as usize - 1) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self, process: u32) {
        self.incarnations[process as usize - 1] += 1;
        if let Err(error) = self.spawn(process) {
            eprintln!("restarting client {process}: {error}");
        }
    }

    fn proxy(&self, process: u32) -> Option<&FaultProxy> {
        self.proxies.get(process as usize - 1)
    }

    fn services(&mut self, action: &str, member: &str) -> Result<(), String> {
        let out = tokio::task::block_in_place(|| tooz_testkit::services::run(&[action, member]));
        out.map(|_| ())
            .map_err(|e| format!("scripts/services {action} {member}: {e}"))
    }

    fn kill_session(&mut self, server: &str, lock: &str) -> Result<(), String> {
        let args = ["kill-session", server, lock];
        let out = tokio::task::block_in_place(|| tooz_testkit::services::run(&args));
        out.map(|_| ())
            .map_err(|e| format!("scripts/services kill-session {server} {lock}: {e}"))
    }

    fn primary(&mut self) -> Result<String, String> {
        let out = tokio::task::block_in_place(|| {
            Command::new("redis-cli")
                .args([
                    "-p",
                    "26379",
                    "sentinel",
                    "get-master-addr-by-name",
                    "mymaster",
                ])
                .output()
        })
        .map_err(|e| format!("redis-cli: {e}"))?;
        match String::from_utf8_lossy(&out.stdout).lines().nth(1) {
            Some("6379") => Ok("redis-1".into()),
            Some("6380") => Ok("redis-2".into()),
            other => Err(format!("Sentinel names no known primary ({other:?})")),
        }
    }
}
