//! The measures, written once over the `tooz::Coordinator` API so that every driver runs the
//! same code. Each returns a JSON object of figures, or an error that the report shows as
//! "n/a" with its reason. Every loop stops at a count or a time, whichever comes first.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tooz::Coordinator;

/// A measure's outcome: figures, or why there are none.
pub type Figures = Result<Value, String>;

/// What every measure needs: the URL, the size of the run and unique names.
pub struct Ctx {
    /// The backend URL.
    pub url: String,
    /// Tiny counts and short times.
    pub short: bool,
    /// Prefix of every name this run creates, unique to the process and URL.
    pub prefix: String,
    /// True for `zake`, whose server lives in this process.
    pub in_process: bool,
}

impl Ctx {
    /// `full` in a normal run, `short` with `--short`.
    pub fn pick<T>(&self, full: T, short: T) -> T {
        if self.short {
            short
        } else {
            full
        }
    }

    /// The time budget of one throughput loop.
    pub fn window(&self) -> Duration {
        self.pick(Duration::from_secs(3), Duration::from_millis(200))
    }

    fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.prefix)
    }

    async fn start(&self, who: &str) -> Result<Coordinator, String> {
        let coord = Coordinator::connect(&self.url, self.name(who))
            .await
            .map_err(text)?;
        coord.start().await.map_err(text)?;
        Ok(coord)
    }
}

fn text(error: impl std::fmt::Display) -> String {
    error.to_string()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// p50, p99 and max of `samples`, in milliseconds.
pub fn percentiles(samples: &mut [Duration]) -> Value {
    if samples.is_empty() {
        return json!({"samples": 0});
    }
    samples.sort_unstable();
    let at = |p: f64| ms(samples[((samples.len() as f64 - 1.0) * p).round() as usize]);
    json!({
        "samples": samples.len(),
        "p50_ms": at(0.5),
        "p99_ms": at(0.99),
        "max_ms": ms(samples[samples.len() - 1]),
    })
}

async fn stop_all(coords: Vec<Coordinator>) {
    for chunk in coords.chunks(500) {
        let stops = chunk.iter().map(|c| async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), c.stop()).await;
        });
        join_all(stops).await;
    }
}

/// Measure 1: Uncontended acquire + release by `clients` clients, each on its own lock and its own
/// connection, concurrently.
pub async fn lock_throughput(ctx: &Ctx, clients: usize) -> Figures {
    let mut coords = Vec::new();
    for i in 0..clients {
        coords.push(ctx.start(&format!("lock{clients}-{i}")).await?);
    }
    let limit = ctx.pick(200_000, 200) / clients;
    let window = ctx.window();
    let start = Instant::now();
    let loops = coords.iter().enumerate().map(|(i, coord)| async move {
        let lock = coord.lock(ctx.name(&format!("lock{clients}-{i}")));
        let mut done = 0usize;
        while done < limit && start.elapsed() < window {
            let guard = lock.acquire().await.map_err(text)?;
            guard.release().await.map_err(text)?;
            done += 1;
        }
        Ok::<usize, String>(done)
    });
    let counts = join_all(loops).await;
    let elapsed = start.elapsed().as_secs_f64();
    stop_all(coords).await;
    let total: usize = counts
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .iter()
        .sum();
    Ok(json!({"clients": clients, "count": total, "per_s": total as f64 / elapsed}))
}

/// Measure 2: `clients` clients loop on one lock; a hand-off is an acquisition by another client than
/// the last holder, timed from that holder's release call to the acquire's return.
pub async fn handoff(ctx: &Ctx) -> Figures {
    let clients = ctx.pick(4, 2);
    let mut coords = Vec::new();
    for i in 0..clients {
        coords.push(ctx.start(&format!("handoff-{i}")).await?);
    }
    let limit = ctx.pick(20_000, 100);
    let window = ctx.window();
    // (last holder, its release call time), acquisitions, hand-off samples.
    let state = Mutex::new((None::<(usize, Instant)>, 0usize, Vec::new()));
    let name = ctx.name("handoff");
    let start = Instant::now();
    let loops = coords.iter().enumerate().map(|(me, coord)| {
        let (state, name) = (&state, name.clone());
        async move {
            let lock = coord.lock(name);
            loop {
                if state.lock().unwrap().1 >= limit || start.elapsed() >= window {
                    return Ok::<(), String>(());
                }
                let guard = lock.acquire().await.map_err(text)?;
                let acquired = Instant::now();
                {
                    let mut s = state.lock().unwrap();
                    if let Some((last, released)) = s.0 {
                        if last != me {
                            s.2.push(acquired.saturating_duration_since(released));
                        }
                    }
                    s.1 += 1;
                }
                // Let the others reach their acquire before this release.
                tokio::task::yield_now().await;
                state.lock().unwrap().0 = Some((me, Instant::now()));
                guard.release().await.map_err(text)?;
            }
        }
    });
    let outcome: Result<Vec<()>, String> = join_all(loops).await.into_iter().collect();
    let elapsed = start.elapsed().as_secs_f64();
    stop_all(coords).await;
    outcome?;
    let (_, acquisitions, mut samples) = state.into_inner().unwrap();
    let mut figures = percentiles(&mut samples);
    figures["clients"] = json!(clients);
    figures["acquisitions"] = json!(acquisitions);
    figures["acquisitions_per_s"] = json!(acquisitions as f64 / elapsed);
    figures["handoffs"] = json!(samples.len());
    Ok(figures)
}

/// Measure 3a: join_group + leave_group by one client.
pub async fn join_leave(ctx: &Ctx) -> Figures {
    let coord = ctx.start("joinleave").await?;
    let group = ctx.name("joinleave");
    let outcome = async {
        coord.create_group(group.as_str()).await.map_err(text)?;
        let (limit, window, start) = (ctx.pick(100_000, 100), ctx.window(), Instant::now());
        let mut done = 0usize;
        while done < limit && start.elapsed() < window {
            coord.join_group(group.as_str(), ()).await.map_err(text)?;
            coord.leave_group(group.as_str()).await.map_err(text)?;
            done += 1;
        }
        let per_s = done as f64 / start.elapsed().as_secs_f64();
        let _ = coord.delete_group(group.as_str()).await;
        Ok(json!({"count": done, "per_s": per_s}))
    }
    .await;
    stop_all(vec![coord]).await;
    outcome
}

/// The member counts of the get_members measure.
pub fn member_tiers(short: bool) -> [(&'static str, usize); 3] {
    if short {
        [("10", 3), ("1000", 6), ("10000", 10)]
    } else {
        [("10", 10), ("1000", 1_000), ("10000", 10_000)]
    }
}

/// Measure 3b: get_members latency, by a client that is not a member, with each member its own
/// coordinator (connection, session, heartbeat). Returns one entry per tier.
pub async fn get_members(ctx: &Ctx) -> Vec<(String, Figures)> {
    let mut out = Vec::new();
    let reader = match ctx.start("reader").await {
        Ok(c) => c,
        Err(e) => {
            return member_tiers(ctx.short)
                .iter()
                .map(|(t, _)| (t.to_string(), Err(e.clone())))
                .collect()
        }
    };
    let group = ctx.name("members");
    let _ = reader.create_group(group.as_str()).await;
    let setup_cap = ctx.pick(Duration::from_secs(60), Duration::from_secs(10));
    let setup_start = Instant::now();
    let mut members: Vec<Coordinator> = Vec::new();
    let mut failed: Option<String> = None;
    for (tier, count) in member_tiers(ctx.short) {
        if let Some(reason) = &failed {
            out.push((tier.to_string(), Err(reason.clone())));
            continue;
        }
        let tier_start = Instant::now();
        while members.len() < count {
            if setup_start.elapsed() > setup_cap {
                failed = Some(format!(
                    "setting up members took over {}s (stopped at {})",
                    setup_cap.as_secs(),
                    members.len()
                ));
                break;
            }
            let batch = (count - members.len()).min(50);
            let base = members.len();
            let joins = (0..batch).map(|i| {
                let group = group.clone();
                async move {
                    let c = ctx.start(&format!("member-{}", base + i)).await?;
                    c.join_group(group.as_str(), ()).await.map_err(text)?;
                    Ok::<_, String>(c)
                }
            });
            for joined in join_all(joins).await {
                match joined {
                    Ok(c) => members.push(c),
                    Err(e) => {
                        failed.get_or_insert(format!("member {} failed: {e}", members.len()));
                    }
                }
            }
            if failed.is_some() {
                break;
            }
        }
        if let Some(reason) = &failed {
            out.push((tier.to_string(), Err(reason.clone())));
            continue;
        }
        let setup_s = tier_start.elapsed().as_secs_f64();
        let mut samples = Vec::new();
        let (limit, window, start) = (ctx.pick(50, 3), ctx.window(), Instant::now());
        let mut seen = 0;
        while samples.len() < limit && start.elapsed() < window {
            let t = Instant::now();
            match reader.get_members(group.as_str()).await {
                Ok(m) => seen = m.len(),
                Err(e) => {
                    failed = Some(text(e));
                    break;
                }
            }
            samples.push(t.elapsed());
        }
        if let Some(reason) = &failed {
            out.push((tier.to_string(), Err(reason.clone())));
            continue;
        }
        let mut figures = percentiles(&mut samples);
        figures["members"] = json!(count);
        figures["seen"] = json!(seen);
        figures["setup_s"] = json!(setup_s);
        out.push((tier.to_string(), Ok(figures)));
    }
    stop_all(members).await;
    let _ = reader.delete_group(group.as_str()).await;
    stop_all(vec![reader]).await;
    out
}

/// Monotonic clock in nanoseconds, the same in every process of the host.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Measure 4: A join seen by a watcher: `join_group` called → the event out of the watcher's stream.
/// The watcher is another process (`tooz bench-watcher`), except for the in-process `zake`.
pub async fn watch(ctx: &Ctx) -> Figures {
    let member = ctx.start("watched").await?;
    let group = ctx.name("watch");
    let outcome = if ctx.in_process {
        watch_same_process(ctx, &member, &group).await
    } else {
        watch_child(ctx, &member, &group).await
    };
    let _ = member.leave_group(group.as_str()).await;
    stop_all(vec![member]).await;
    outcome
}

async fn watch_same_process(ctx: &Ctx, member: &Coordinator, group: &str) -> Figures {
    let watcher = ctx.start("watcher").await?;
    let outcome = async {
        let _ = watcher.create_group(group).await;
        let mut events = watcher.watch_group(group).await.map_err(text)?;
        let mut samples = Vec::new();
        let (limit, window, start) = (ctx.pick(2_000, 10), ctx.window(), Instant::now());
        while samples.len() < limit && start.elapsed() < window {
            let t = Instant::now();
            member.join_group(group, ()).await.map_err(text)?;
            events.next().await.ok_or("watch ended")?;
            samples.push(t.elapsed());
            member.leave_group(group).await.map_err(text)?;
            events.next().await.ok_or("watch ended")?;
        }
        let mut figures = percentiles(&mut samples);
        figures["watcher"] = json!("same process (in-process driver)");
        Ok(figures)
    }
    .await;
    stop_all(vec![watcher]).await;
    outcome
}

async fn next_line(rx: &mut mpsc::UnboundedReceiver<String>) -> Result<String, String> {
    match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        Ok(Some(line)) => Ok(line),
        Ok(None) => Err("the watcher process ended".into()),
        Err(_) => Err("no event from the watcher process in 10 s".into()),
    }
}

async fn watch_child(ctx: &Ctx, member: &Coordinator, group: &str) -> Figures {
    let exe = std::env::current_exe().map_err(text)?;
    let mut child = Command::new(exe)
        // In the environment, not in argv where `ps` would show its secrets.
        .env("TOOZ_URL", &ctx.url)
        .args(["--member", &ctx.name("watcher")])
        .args(["bench-watcher", group])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the watcher process: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let outcome = async {
        let ready = next_line(&mut rx).await?;
        if ready != "ready" {
            return Err(format!("watcher: {ready}"));
        }
        let mut samples = Vec::new();
        let (limit, window, start) = (ctx.pick(300, 5), ctx.window(), Instant::now());
        while samples.len() < limit && start.elapsed() < window {
            let called = monotonic_ns();
            member.join_group(group, ()).await.map_err(text)?;
            let seen = loop {
                let line = next_line(&mut rx).await?;
                if let Some(ns) = line.strip_prefix("joined ") {
                    break ns.parse::<u64>().map_err(text)?;
                }
            };
            samples.push(Duration::from_nanos(seen.saturating_sub(called)));
            member.leave_group(group).await.map_err(text)?;
            while !next_line(&mut rx).await?.starts_with("left") {}
        }
        let mut figures = percentiles(&mut samples);
        figures["watcher"] = json!("another process");
        Ok(figures)
    }
    .await;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"\n");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

/// Measure 5: Leader fail-over: A leads, B campaigns; A's coordinator stops; time from the stop call
/// to B's campaign returning.
pub async fn failover(ctx: &Ctx) -> Figures {
    let group = ctx.name("election");
    let mut samples = Vec::new();
    let (limit, window, start) = (ctx.pick(30, 3), ctx.window() * 2, Instant::now());
    while samples.len() < limit && start.elapsed() < window {
        let n = samples.len();
        let a = ctx.start(&format!("leader-a{n}")).await?;
        let b = ctx.start(&format!("leader-b{n}")).await?;
        let outcome = async {
            let lead_a = a.campaign(group.as_str()).await.map_err(text)?;
            let mut campaign_b = std::pin::pin!(b.campaign(group.as_str()));
            tokio::select! {
                _ = &mut campaign_b => return Err("two leaders at once".to_string()),
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            let stopped = Instant::now();
            a.stop().await.map_err(text)?;
            let lead_b = tokio::time::timeout(Duration::from_secs(30), campaign_b)
                .await
                .map_err(|_| "no new leader within 30 s".to_string())?
                .map_err(text)?;
            let took = stopped.elapsed();
            drop(lead_a);
            let _ = lead_b.resign().await;
            Ok(took)
        }
        .await;
        stop_all(vec![a, b]).await;
        samples.push(outcome?);
    }
    Ok(percentiles(&mut samples))
}

/// Resident set size of this process, in bytes.
pub fn resident_bytes() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    // SAFETY: sysconf only reads a constant.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64
}

/// Runs the memory measure in a fresh `tooz bench --memory-only` process, so that neither
/// memory freed by earlier measures nor their leftovers skew it.
pub async fn memory_in_child(ctx: &Ctx) -> Figures {
    let exe = std::env::current_exe().map_err(text)?;
    let mut command = Command::new(exe);
    command.args(["--json", "bench", "--memory-only"]);
    if ctx.short {
        command.arg("--short");
    }
    command
        .arg(&ctx.url)
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .map_err(text)?
        .map_err(|e| format!("cannot run the memory process: {e}"))?;
    let doc: Value = serde_json::from_slice(&out.stdout)
        .map_err(|_| format!("the memory process failed ({})", out.status))?;
    let figures = doc["backends"][0]["tooz_rs"]["memory"].clone();
    match figures.get("na").and_then(Value::as_str) {
        Some(na) => Err(na.to_string()),
        None => Ok(figures),
    }
}

/// Measure 6: Resident memory: per idle started coordinator, per held lock, per joined group
/// (growth of this process's RSS divided by the count; approximate: the allocator may reuse
/// memory freed by earlier measures).
pub async fn memory(ctx: &Ctx) -> Figures {
    let idle = ctx.pick(200, 5);
    let before = resident_bytes();
    let mut coords = Vec::new();
    for i in 0..idle {
        coords.push(ctx.start(&format!("idle-{i}")).await?);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let per_coordinator = (resident_bytes() - before) / idle as f64;
    stop_all(coords).await;

    let many = ctx.pick(500, 10);
    let coord = ctx.start("memory").await?;
    let outcome = async {
        let before = resident_bytes();
        let mut guards = Vec::new();
        for i in 0..many {
            let lock = coord.lock(ctx.name(&format!("mem-lock-{i}")));
            guards.push(lock.acquire().await.map_err(text)?);
        }
        let per_lock = (resident_bytes() - before) / many as f64;
        for guard in guards {
            guard.release().await.map_err(text)?;
        }
        let before = resident_bytes();
        let mut groups = Vec::new();
        let mut per_group = Value::Null;
        for i in 0..many {
            let group = ctx.name(&format!("mem-group-{i}"));
            match coord.join_group_create(group.as_str(), ()).await {
                Ok(_) => groups.push(group),
                Err(e) => {
                    per_group = json!(format!("n/a: {e}"));
                    break;
                }
            }
        }
        if per_group.is_null() {
            per_group = json!((resident_bytes() - before) / many as f64 / 1024.0);
        }
        for group in groups {
            let _ = coord.leave_group(group.as_str()).await;
            let _ = coord.delete_group(group.as_str()).await;
        }
        Ok(json!({
            "idle_coordinator_kib": per_coordinator / 1024.0,
            "per_lock_kib": per_lock / 1024.0,
            "per_group_kib": per_group,
            "coordinators": idle,
            "locks_and_groups": many,
        }))
    }
    .await;
    stop_all(vec![coord]).await;
    outcome
}
