//! The `redis` driver: `cargo bench -p tooz --features redis --bench redis`.
//!
//! Needs a Redis server: `TOOZ_REDIS_URL` (default `redis://127.0.0.1:6379`, as started by
//! `scripts/services up redis`). With `TOOZ_PYTHON` pointing at a Python that has tooz and
//! redis-py (default: the repository's `.venv-tooz`), Python tooz is measured in the same run
//! on the same server.
//!
//! Besides one client's throughput, hand-off latency and membership reads, it measures:
//!
//! * fairness: two child processes (this binary again) free-running on one lock, each
//!   acquiring, holding 1 ms and releasing for 2 s: acquisitions/s, each one's share, and
//!   the longest wait of either in hold times;
//! * watch latency across processes: a child process watches a group (its stream only, no
//!   `run_watchers` loop) and prints when each event arrives; latency is from just before
//!   `join_group`/`leave_group` is called here to the child receiving the event (one host,
//!   one clock);
//! * `get_members` of a group of 10,000 members written directly in Python tooz's layout.
//!
//! Prints `name value` lines; nothing here asserts a timing. Every loop is bounded in count
//! and time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tooz::{Coordinator, GroupEvent};

mod support;

use support::{fairness, percentile, started, unix_ns};

/// Longest each throughput measurement runs (in total over its rounds).
const SECONDS: Duration = Duration::from_secs(4);
/// Rounds of the interleaved floor / driver measurement.
const ROUNDS: usize = 8;
/// Most iterations of one throughput measurement.
const MAX_ITERATIONS: usize = 200_000;
const HANDOFFS: usize = 500;
const MEMBERS: usize = 1_000;
/// Members of the large group (written directly, not joined by sessions).
const BIG: usize = 10_000;
/// Events of the cross-process watch measurement (joins and leaves alternating).
const WATCH_EVENTS: usize = 1_000;

/// Child modes: the value is the server URL.
const WATCHER_ENV: &str = "TOOZ_BENCH_REDIS_WATCHER";
/// The lock or group a child works on.
const NAME_ENV: &str = "TOOZ_BENCH_REDIS_NAME";

/// The child watcher: prints `ready`, then `<J|L> <unix ns>` per event received, until
/// `WATCH_EVENTS` events or 60 s.
async fn watch_child(url: &str) {
    let group = std::env::var(NAME_ENV).unwrap();
    let coord = started(url, &format!("watcher-{}", std::process::id())).await;
    let mut stream = coord.watch_group(group).await.unwrap();
    println!("ready");
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while seen < WATCH_EVENTS {
        let Ok(Some(event)) = tokio::time::timeout_at(end, stream.next()).await else {
            break;
        };
        let at = unix_ns();
        let kind = match event {
            GroupEvent::Joined { .. } => 'J',
            GroupEvent::Left { .. } => 'L',
            _ => continue,
        };
        println!("{kind} {at}");
        seen += 1;
    }
    coord.stop().await.unwrap();
}

/// `get_members` of a group of `BIG` members written directly in Python tooz's layout (group
/// hash field with msgpack nil capabilities, beat key), in the default namespace.
async fn big_group(conn: &redis::aio::MultiplexedConnection, coord: &Coordinator) {
    let mut conn = conn.clone();
    let group = format!("bench-big-{}", std::process::id());
    let (group_key, beat) = (format!("_tooz_group:{group}"), |i| {
        format!("_tooz_beats:bench-big-{}-{i}", std::process::id())
    });
    let mut pipe = redis::pipe();
    pipe.cmd("SADD").arg("_tooz_groups").arg(&group).ignore();
    pipe.cmd("HSET")
        .arg(&group_key)
        .arg("__created__")
        .arg("1")
        .ignore();
    for i in 0..BIG {
        let member = format!("bench-big-{}-{i}", std::process::id());
        pipe.cmd("HSET")
            .arg(&group_key)
            .arg(&member)
            .arg(&[0xc0u8][..])
            .ignore();
        pipe.cmd("PSETEX")
            .arg(beat(i))
            .arg(60_000)
            .arg("Not dead!")
            .ignore();
    }
    let () = pipe.query_async(&mut conn).await.unwrap();
    let mut samples = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        let listed = coord.get_members(group.clone()).await.unwrap();
        samples.push(start.elapsed());
        assert_eq!(listed.len(), BIG);
    }
    for (label, p) in [("p50", 0.5), ("p99", 0.99)] {
        let ms = percentile(&mut samples, p).as_secs_f64() * 1e3;
        println!("get_members_10000_{label}_ms {ms:.2}");
    }
    let mut pipe = redis::pipe();
    pipe.cmd("DEL").arg(&group_key).ignore();
    pipe.cmd("SREM").arg("_tooz_groups").arg(&group).ignore();
    for i in 0..BIG {
        pipe.cmd("DEL").arg(beat(i)).ignore();
    }
    let () = pipe.query_async(&mut conn).await.unwrap();
}

/// The child's next line, waiting at most 5 s.
async fn next(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(5), lines.next_line())
        .await
        .ok()
        .and_then(|line| line.ok().flatten())
}

/// A join or leave here, seen by a watcher in another process.
async fn watch_across_processes(url: &str, coord: &Coordinator) {
    let group = format!("bench-watch-{}", std::process::id());
    coord.create_group(group.clone()).await.unwrap();
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .env(WATCHER_ENV, url)
        .env(NAME_ENV, &group)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(next(&mut lines).await.as_deref(), Some("ready"));
    let joiner = started(url, "bench-watch-joiner").await;
    let mut samples = Vec::with_capacity(WATCH_EVENTS);
    for i in 0..WATCH_EVENTS {
        let sent = unix_ns();
        if i % 2 == 0 {
            joiner.join_group(group.clone(), ()).await.unwrap();
        } else {
            joiner.leave_group(group.clone()).await.unwrap();
        }
        let Some(line) = next(&mut lines).await else {
            println!("watch_cross_process: no event within 5 s");
            break;
        };
        let mut fields = line.split_whitespace();
        let kind = fields.next().unwrap_or("");
        assert_eq!(kind, if i % 2 == 0 { "J" } else { "L" });
        let at: u128 = fields.next().and_then(|t| t.parse().ok()).unwrap_or(sent);
        samples.push(Duration::from_nanos(at.saturating_sub(sent) as u64));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    if !samples.is_empty() {
        for (label, p) in [("p50", 0.5), ("p99", 0.99)] {
            let ms = percentile(&mut samples, p).as_secs_f64() * 1e3;
            println!("watch_join_other_process_{label}_ms {ms:.3}");
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    joiner.stop().await.unwrap();
    let _ = coord.delete_group(group).await;
}

/// Runs `op` for `span` (at most `MAX_ITERATIONS` times); operations per second.
async fn rate<F, Fut>(span: Duration, mut op: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let start = Instant::now();
    let mut count = 0usize;
    while start.elapsed() < span && count < MAX_ITERATIONS {
        op().await;
        count += 1;
    }
    count as f64 / start.elapsed().as_secs_f64()
}

/// The floor: what one client can do with the same round trips and no driver around them
/// (`SET NX PX` + `DEL` per acquire+release), for `span`.
async fn floor(conn: &redis::aio::MultiplexedConnection, key: &str, span: Duration) -> f64 {
    rate(span, || {
        let mut conn = conn.clone();
        async move {
            let set: Option<String> = redis::cmd("SET")
                .arg(key)
                .arg("0123456789abcdef0123456789abcdef")
                .arg("NX")
                .arg("PX")
                .arg(30_000)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(set.is_some());
            let _: i64 = redis::cmd("DEL")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    })
    .await
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn run(url: &str) {
    let client = redis::Client::open(url).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("tooz-bench-floor-{}", std::process::id());
    let coord = started(url, "bench").await;
    let lock = coord.lock(format!("bench-lock-{}", std::process::id()));
    // Interleaved rounds, so that noise from other work on the machine hits both alike.
    let (mut floors, mut ours, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let f = floor(&conn, &key, SECONDS / ROUNDS as u32).await;
        let o = rate(SECONDS / ROUNDS as u32, || async {
            lock.acquire().await.unwrap().release().await.unwrap();
        })
        .await;
        floors.push(f);
        ours.push(o);
        ratios.push(o / f);
    }
    println!("floor_set_nx_px_plus_del_per_s {:.0}", median(floors));
    println!("lock_acquire_release_per_s {:.0}", median(ours));
    println!("lock_acquire_release_over_floor {:.2}", median(ratios));

    // Hand-off: the holder releases once the waiter is blocked; latency = release() call to
    // the waiter's acquire() returning.
    let other = started(url, "bench-waiter").await;
    let name = format!("bench-handoff-{}", std::process::id());
    let mut samples = Vec::with_capacity(HANDOFFS);
    for _ in 0..HANDOFFS {
        let held = coord.lock(name.clone()).acquire().await.unwrap();
        let lock_b = other.lock(name.clone());
        let waiter = tokio::spawn(async move {
            let guard = lock_b.acquire().await.unwrap();
            let at = Instant::now();
            guard.release().await.unwrap();
            at
        });
        tokio::time::sleep(Duration::from_millis(3)).await; // let it subscribe and wait
        let released = Instant::now();
        held.release().await.unwrap();
        samples.push(waiter.await.unwrap().saturating_duration_since(released));
    }
    for (label, p) in [("p50", 0.5), ("p99", 0.99)] {
        let ms = percentile(&mut samples, p).as_secs_f64() * 1e3;
        println!("lock_handoff_{label}_ms {ms:.3}");
    }

    let group = format!("bench-join-{}", std::process::id());
    coord.create_group(group.clone()).await.unwrap();
    let per_s = rate(SECONDS, || async {
        coord.join_group(group.clone(), ()).await.unwrap();
        coord.leave_group(group.clone()).await.unwrap();
    })
    .await;
    println!("join_leave_per_s {per_s:.0}");

    watch_across_processes(url, &coord).await;

    let group = format!("bench-members-{}", std::process::id());
    coord.create_group(group.clone()).await.unwrap();
    let setup = Instant::now();
    let mut members = Vec::with_capacity(MEMBERS);
    for i in 0..MEMBERS {
        let m = started(url, &format!("bench-member-{}-{i}", std::process::id())).await;
        m.join_group(group.clone(), ()).await.unwrap();
        members.push(m);
    }
    println!("setup_1000_members_s {:.2}", setup.elapsed().as_secs_f64());
    let mut samples = Vec::new();
    for _ in 0..50 {
        let start = Instant::now();
        let listed = coord.get_members(group.clone()).await.unwrap();
        samples.push(start.elapsed());
        assert_eq!(listed.len(), MEMBERS);
    }
    let ms = percentile(&mut samples, 0.5).as_secs_f64() * 1e3;
    println!("get_members_1000_p50_ms {ms:.2}");
    let ms = percentile(&mut samples, 0.99).as_secs_f64() * 1e3;
    println!("get_members_1000_p99_ms {ms:.2}");
    for m in members {
        m.stop().await.unwrap();
    }

    big_group(&conn, &coord).await;
    coord.delete_group(group).await.unwrap();
    other.stop().await.unwrap();
    coord.stop().await.unwrap();
}

fn python() -> Option<PathBuf> {
    let path = std::env::var_os("TOOZ_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv-tooz/bin/python")
        });
    path.exists().then_some(path)
}

fn main() {
    if support::run_contender_child() {
        return;
    }
    if let Ok(url) = std::env::var(WATCHER_ENV) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(watch_child(&url));
        return;
    }
    let url = std::env::var("TOOZ_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run(&url));
    drop(runtime);
    fairness(&url);
    match python() {
        Some(python) => {
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench-redis-python.py");
            let out = Command::new(python)
                .arg(script)
                .arg(&url)
                .output()
                .expect("run python");
            print!("{}", String::from_utf8_lossy(&out.stdout));
            if !out.status.success() {
                eprintln!("python: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        None => println!("python: not measured (no interpreter with tooz; set TOOZ_PYTHON)"),
    }
}
