//! `tooz-safety run`: client processes, the fenced register, fault proxies and the nemesis for
//! one bounded run; then the merged history is checked and everything is saved.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tooz_safety::{check, write_jsonl, write_register_jsonl, CheckId, Event, FaultClass};
use tooz_safety::{Expectations, FencedRegister, Kind, Op, Report};
use tooz_testkit::FaultProxy;

use crate::nemesis::{self, ServerMembers, Target};
use crate::record::Recorder;
use crate::rng::Rng;
use crate::wrap::Mutant;

/// Options of one run.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Driver URL (its options set the lock / session time-to-live: give `--ttl` to match).
    pub url: String,
    /// Length of the run, seconds (faults stop `--quiet` before the end).
    #[arg(long, default_value = "30", value_parser = crate::parse_secs)]
    pub duration: Duration,
    /// Client processes.
    #[arg(long, default_value_t = 5)]
    pub clients: u32,
    /// Fault classes, comma-separated: pause, pause-keepalive, kill, lost-reply, black-hole,
    /// delay, drop,
    /// server-restart, node-kill, failover.
    #[arg(long, value_delimiter = ',', default_value = "pause,kill")]
    pub faults: Vec<String>,
    /// Seed of the nemesis and the clients (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The lock / session time-to-live the URL configures, seconds.
    #[arg(long, default_value = "2", value_parser = crate::parse_secs)]
    pub ttl: Duration,
    /// Longest allowed recovery after a fault heals (default: 2 × ttl + 3 s).
    #[arg(long, value_parser = crate::parse_secs)]
    pub recovery: Option<Duration>,
    /// Fault-free time at the end, in which recovery is observed, seconds.
    #[arg(long, default_value = "4", value_parser = crate::parse_secs)]
    pub quiet: Duration,
    /// Seeded bug, to prove the checker catches it.
    #[arg(long)]
    pub mutant: Option<Mutant>,
    /// Where the run is saved (default: target/safety/<scheme>-<seed>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// `scripts/services` member restarted by `server-restart` (e.g. redis-1, zookeeper).
    #[arg(long)]
    pub server_member: Option<String>,
    /// Cluster members for `node-kill`, comma-separated (e.g. zk3-1,zk3-2,zk3-3).
    #[arg(long, value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// Print one JSON summary line at the end (for `scripts/safety`).
    #[arg(long)]
    pub json: bool,
}

/// Runs, checks and saves; `Ok(true)` if no untolerated check failed.
pub async fn run(args: RunArgs) -> Result<bool, String> {
    let seed = args
        .seed
        .unwrap_or_else(|| crate::record::now_ns() % 1_000_000_007);
    let scheme = args.url.split("://").next().unwrap_or_default().to_string();
    let classes: Vec<FaultClass> = args
        .faults
        .iter()
        .filter(|f| !f.is_empty())
        .map(|f| nemesis::parse_class(f))
        .collect::<Result<_, _>>()?;
    if args.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("target/safety/{}-{seed}", safe_name(&scheme))));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let recovery = args
        .recovery
        .unwrap_or(args.ttl * 2 + Duration::from_secs(3));
    let expect = expectations(&scheme, args.ttl, recovery);
    save(
        &out.join("expectations.json"),
        &serde_json::to_string_pretty(&expect).unwrap(),
    )?;
    save(&out.join("command.txt"), &command_line(&args, seed, &out))?;

    let register = Arc::new(FencedRegister::new());
    let register_addr = crate::fenced::serve(register.clone())
        .await
        .map_err(|e| format!("fenced register: {e}"))?;
    let proxies = if classes.iter().any(|c| nemesis::needs_proxy(*c)) {
        start_proxies(&args.url, args.clients).await?
    } else {
        Vec::new()
    };
    let mut clients = Clients {
        exe: std::env::current_exe().map_err(|e| e.to_string())?,
        url: args.url.clone(),
        out: out.clone(),
        register_addr,
        register: register.clone(),
        // Fresh names per run: nothing left on the server by an earlier run interferes.
        resources: [
            format!("safety-{seed}-lock"),
            format!("safety-{seed}-lock-long"),
            format!("safety-{seed}-group"),
        ],
        ttl: args.ttl,
        mutant: args.mutant,
        seed,
        children: Vec::new(),
        incarnations: vec![0; args.clients as usize],
        proxies,
    };
    for process in 1..=args.clients {
        clients.spawn(process)?;
    }
    let servers = ServerMembers {
        restart: args.server_member.clone(),
        nodes: args.nodes.clone(),
        sentinel: args.url.contains("sentinel="),
    };
    let nemesis = Recorder::open(&out.join("nemesis.jsonl"), 0, 0).map_err(|e| e.to_string())?;
    let mut rng = Rng::new(seed);
    let began = Instant::now();
    let outcome = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let ttl_ms = args.ttl.as_millis() as u64;
        while !classes.is_empty() && began.elapsed() + args.quiet < args.duration {
            tokio::time::sleep(rng.millis(300, 1200)).await;
            let class = classes[rng.below(classes.len() as u64) as usize];
            let length = rng.millis(ttl_ms / 2, ttl_ms * 5 / 2);
            nemesis::inject(class, &mut clients, &servers, &nemesis, &mut rng, length).await?;
        }
        let rest = args.duration.saturating_sub(began.elapsed());
        tokio::time::sleep(rest.max(args.quiet)).await;
        Ok::<(), String>(())
    }
    .await;
    clients.stop_all();
    outcome?;

    let history = merge_histories(&out, args.clients)?;
    let acquired = history
        .iter()
        .any(|e| e.kind == Kind::Ok && matches!(e.op, Op::Acquire { .. }));
    if !acquired {
        return Err(format!(
            "no client ever acquired a lock: nothing to check (see {}/p*.log)",
            out.display()
        ));
    }
    let log = register.log();
    save(&out.join("history.jsonl"), &write_jsonl(&history))?;
    save(&out.join("register.jsonl"), &write_register_jsonl(&log))?;
    let report = check(&history, &log, &expect);
    save(
        &out.join("report.json"),
        &serde_json::to_string_pretty(&report).unwrap(),
    )?;
    save(&out.join("timeline.txt"), &timeline(&history))?;
    println!("{report}");
    let passed = report.passed();
    if !passed {
        println!(
            "violations saved in {}; check them again with: tooz-safety check {}",
            out.display(),
            out.display()
        );
    }
    if args.json {
        println!(
            "{}",
            summary(&args, &scheme, seed, &history, &report, began.elapsed())
        );
    }
    Ok(passed)
}

/// What each driver guarantees (see docs/safety.md): the checks a run may see fail.
pub fn expectations(scheme: &str, ttl: Duration, recovery: Duration) -> Expectations {
    let expect = Expectations::new(recovery, ttl, ttl + Duration::from_secs(2));
    match scheme {
        "redis" | "rediss" => expect.tolerate(
            CheckId::C1,
            "lease-based: a holder cut off or slowed past its lease still believes it holds \
             while another client is granted the lock; fencing (C2, C3) protects the resource",
        ),
        _ => expect,
    }
}

fn safe_name(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn save(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn command_line(args: &RunArgs, seed: u64, out: &Path) -> String {
    let mut line = format!(
        "tooz-safety run '{}' --duration {} --clients {} --faults {} --seed {seed} --ttl {} --quiet {} --out {}",
        redacted(&args.url),
        args.duration.as_secs_f64(),
        args.clients,
        args.faults.join(","),
        args.ttl.as_secs_f64(),
        args.quiet.as_secs_f64(),
        out.display()
    );
    if let Some(recovery) = args.recovery {
        line += &format!(" --recovery {}", recovery.as_secs_f64());
    }
    if let Some(mutant) = args.mutant {
        line += &format!(" --mutant {mutant:?}").to_lowercase();
    }
    if let Some(member) = &args.server_member {
        line += &format!(" --server-member {member}");
    }
    if !args.nodes.is_empty() {
        line += &format!(" --nodes {}", args.nodes.join(","));
    }
    line + "\n"
}

/// The URL as printed: passwords hidden.
fn redacted(url: &str) -> String {
    tooz::DriverUrl::parse(url).map_or_else(|_| "(unparsable URL)".into(), |u| u.to_string())
}

/// One fault proxy per client in front of the URL's single `host:port`.
async fn start_proxies(url: &str, clients: u32) -> Result<Vec<FaultProxy>, String> {
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
fn authority(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    (!authority.is_empty() && !authority.contains(',') && authority.contains(':'))
        .then_some(authority)
}

/// The client processes of a run.
struct Clients {
    exe: PathBuf,
    url: String,
    out: PathBuf,
    register_addr: SocketAddr,
    /// The register, whose log tells who holds what.
    register: Arc<FencedRegister>,
    /// The lock, the long-held lock and the election group.
    resources: [String; 3],
    ttl: Duration,
    mutant: Option<Mutant>,
    seed: u64,
    children: Vec<Option<Child>>,
    incarnations: Vec<u32>,
    proxies: Vec<FaultProxy>,
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

    fn spawn(&mut self, process: u32) -> Result<(), String> {
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
    fn stop_all(&mut self) {
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
        let resource = match rng.below(4) {
            0 => &self.resources[0],
            1 => &self.resources[1],
            2 => &self.resources[2],
            _ => return any,
        };
        let log = self.register.log();
        let last_writer = log
            .iter()
            .rev()
            .find(|e| e.accepted && &e.resource == resource)
            .map(|e| e.process);
        last_writer.unwrap_or(any)
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

/// Every process's events in time order (ties keep file order).
fn merge_histories(out: &Path, clients: u32) -> Result<Vec<Event>, String> {
    let mut all = Vec::new();
    let files = std::iter::once("nemesis.jsonl".to_string())
        .chain((1..=clients).map(|p| format!("p{p}.jsonl")));
    for name in files {
        let path = out.join(&name);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        // A client killed mid-write may leave a torn last line: keep what parses.
        let complete = match text.rfind('\n') {
            Some(end) => &text[..=end],
            None => "",
        };
        all.extend(tooz_safety::read_jsonl(complete).map_err(|e| format!("{name}: {e}"))?);
    }
    all.sort_by_key(|e| e.time_ns);
    Ok(all)
}

/// A readable timeline: milliseconds since the first event, process, kind, operation.
fn timeline(history: &[Event]) -> String {
    let start = history.first().map_or(0, |e| e.time_ns);
    let mut text = String::new();
    for (index, e) in history.iter().enumerate() {
        let ms = (e.time_ns - start) as f64 / 1e6;
        let op = serde_json::to_string(&e.op).unwrap_or_default();
        text += &format!(
            "{index:>7} {ms:>11.3} ms  p{:<3} {:<8} {op}\n",
            e.process,
            format!("{:?}", e.kind).to_lowercase()
        );
    }
    text
}

/// One JSON line: what `scripts/safety` tabulates in docs/safety.md.
fn summary(
    args: &RunArgs,
    scheme: &str,
    seed: u64,
    history: &[Event],
    report: &Report,
    elapsed: Duration,
) -> String {
    let mut faults: BTreeMap<String, usize> = BTreeMap::new();
    let mut lock_ops = 0;
    for e in history {
        match (&e.kind, &e.op) {
            (Kind::Info, Op::Fault { class, .. }) => {
                *faults.entry(format!("{class:?}")).or_default() += 1;
            }
            (Kind::Invoke, Op::Acquire { .. } | Op::Release { .. }) => lock_ops += 1,
            _ => {}
        }
    }
    let violations: BTreeMap<String, usize> = report
        .checks
        .iter()
        .map(|c| (format!("{:?}", c.check), c.count))
        .collect();
    let tolerated: Vec<String> = report
        .checks
        .iter()
        .filter(|c| c.tolerated.is_some())
        .map(|c| format!("{:?}", c.check))
        .collect();
    serde_json::json!({
        "url": redacted(&args.url),
        "scheme": scheme,
        "seed": seed,
        "mutant": args.mutant.map(|m| format!("{m:?}").to_lowercase()),
        "faults_selected": args.faults,
        "seconds": elapsed.as_secs_f64(),
        "clients": args.clients,
        "faults": faults,
        "lock_ops": lock_ops,
        "events": history.len(),
        "violations": violations,
        "tolerated": tolerated,
        "max_recovery_ms": report.stats.max_recovery_ns.map(|n| n as f64 / 1e6),
        "passed": report.passed(),
    })
    .to_string()
}
