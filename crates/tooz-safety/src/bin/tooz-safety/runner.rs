//! `tooz-safety run`: client processes, the fenced register, fault proxies and the nemesis for
//! one bounded run; then the merged history is checked and everything is saved.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tooz_safety::{check, write_jsonl, write_register_jsonl, CheckId, FaultClass};
use tooz_safety::{Expectations, FencedRegister, Kind, Op};

use crate::clients::{start_proxies, Clients};
use crate::nemesis::{self, ServerMembers};
use crate::record::Recorder;
use crate::rng::Rng;
use crate::saved::{merge_histories, summary, timeline};
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
    /// Fault-free time at the end, seconds (default: the recovery bound + 1 s, so that the
    /// recovery after the last fault is judged).
    #[arg(long, value_parser = crate::parse_secs)]
    pub quiet: Option<Duration>,
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
    let quiet = args.quiet.unwrap_or(recovery + Duration::from_secs(1));
    let expect = expectations(&scheme, args.ttl, recovery);
    save(
        &out.join("expectations.json"),
        &serde_json::to_string_pretty(&expect).unwrap(),
    )?;
    save(
        &out.join("command.txt"),
        &command_line(&args, seed, quiet, &out),
    )?;

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
        locks: vec![
            format!("safety-{seed}-lock"),
            format!("safety-{seed}-lock-long"),
            format!("leader_of_safety-{seed}-group"),
        ],
    };
    let nemesis = Recorder::open(&out.join("nemesis.jsonl"), 0, 0).map_err(|e| e.to_string())?;
    let mut rng = Rng::new(seed);
    let began = Instant::now();
    let outcome = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let ttl_ms = args.ttl.as_millis() as u64;
        while !classes.is_empty() && began.elapsed() + quiet < args.duration {
            tokio::time::sleep(rng.millis(300, 1200)).await;
            let class = classes[rng.below(classes.len() as u64) as usize];
            let length = rng.millis(ttl_ms / 2, ttl_ms * 5 / 2);
            nemesis::inject(class, &mut clients, &servers, &nemesis, &mut rng, length).await?;
        }
        let rest = args.duration.saturating_sub(began.elapsed());
        tokio::time::sleep(rest.max(quiet)).await;
        Ok::<(), String>(())
    }
    .await;
    let locks = &clients.resources[..2];
    save(
        &out.join("holders.txt"),
        &crate::survey::holders(&args.url, locks).await,
    )?;
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
        let elapsed = began.elapsed();
        println!(
            "{}",
            summary(&args, &scheme, seed, &history, &report, elapsed)
        );
    }
    Ok(passed)
}

/// What each driver guarantees (see docs/safety.md): the checks a run may see fail.
pub fn expectations(scheme: &str, ttl: Duration, recovery: Duration) -> Expectations {
    let expect = Expectations::new(recovery, ttl, ttl + Duration::from_secs(2));
    match scheme {
        "redis" | "rediss" | "memcached" | "etcd" | "etcd3" | "etcd3+http" | "etcd3+https"
        | "consul" => expect.tolerate(
            CheckId::C1,
            "lease-based: a holder cut off or slowed past its lease still believes it holds \
             while another client is granted the lock; fencing (C2, C3) protects the resource",
        ),
        "postgresql" | "postgres" | "mysql" | "mariadb" => expect.tolerate(
            CheckId::C1,
            "session-bound: the server frees a client's locks when its session ends (the \
             client silent for `timeout`: paused, cut off; or the session killed from \
             another connection) before that client can learn it (at its next statement or \
             heartbeat); fencing (C2, C3) protects the resource",
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

fn command_line(args: &RunArgs, seed: u64, quiet: Duration, out: &Path) -> String {
    let mut line = format!(
        "tooz-safety run '{}' --duration {} --clients {} --faults {} --seed {seed} --ttl {} --quiet {} --out {}",
        redacted(&args.url),
        args.duration.as_secs_f64(),
        args.clients,
        args.faults.join(","),
        args.ttl.as_secs_f64(),
        quiet.as_secs_f64(),
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
pub fn redacted(url: &str) -> String {
    tooz::DriverUrl::parse(url).map_or_else(|_| "(unparsable URL)".into(), |u| u.to_string())
}
