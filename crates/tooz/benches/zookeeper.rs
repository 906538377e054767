//! The `zookeeper` driver: `cargo bench -p tooz --features zookeeper --bench zookeeper`.
//!
//! Server: `TOOZ_BENCH_ZK_URL` (default `zookeeper://127.0.0.1:2181`). Prints `name value`
//! lines, in one run:
//!
//! * the floor: the round trips of one lock acquire+release done raw with the same client
//!   library on one session (create an ephemeral sequential node, list the parent, delete the
//!   node), sequentially and with create+list pipelined as the driver does;
//! * uncontended acquire+release per second through tooz, and its ratio to the floor;
//! * blocked-waiter hand-off p50/p99 (release → next waiter's acquire returns) over queues of
//!   three waiters, checking they are served in arrival order (FIFO);
//! * get_members with 1,000 members (each its own coordinator and session);
//! * watch latency p50/p99 (`join_group` called → the event reaches a watcher's stream);
//! * a group of `TOOZ_BENCH_ZK_BIG` members (default 10,000): join time and get_members;
//! * Python tooz's acquire+release per second on the same server
//!   (`scripts/bench-zookeeper-python.py`, with `TOOZ_PYTHON` or the repository's `.venv-tooz`).
//!
//! Every loop is bounded in count and time; nothing here asserts a timing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tooz::{Coordinator, GroupEvent};
use zookeeper_client::{Acls, Client, CreateMode};

mod support;

use support::{percentile, started};

/// How long each throughput measurement runs.
const RUN: Duration = Duration::from_secs(3);
const HANDOFF_ROUNDS: usize = 300;
const WAITERS: usize = 3;
const MEMBERS: usize = 1_000;
const WATCH_SAMPLES: usize = 300;
/// Longest the big-group setup may take before it gives up.
const BIG_SETUP_LIMIT: Duration = Duration::from_secs(240);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs `op` repeatedly for `RUN`; returns operations per second.
async fn rate<F, Fut>(mut op: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (start, mut count) = (Instant::now(), 0u64);
    while start.elapsed() < RUN {
        op().await;
        count += 1;
    }
    count as f64 / start.elapsed().as_secs_f64()
}

/// Alternates `a` and `b` in short windows for `RUN` each, so that both see the same load;
/// returns their operations per second.
async fn interleaved<A, FA, B, FB>(mut a: A, mut b: B) -> (f64, f64)
where
    A: FnMut() -> FA,
    FA: std::future::Future<Output = ()>,
    B: FnMut() -> FB,
    FB: std::future::Future<Output = ()>,
{
    const WINDOW: Duration = Duration::from_millis(250);
    let (mut time_a, mut time_b, mut count_a, mut count_b) =
        (Duration::ZERO, Duration::ZERO, 0u64, 0u64);
    while time_a < RUN || time_b < RUN {
        let start = Instant::now();
        while start.elapsed() < WINDOW {
            a().await;
            count_a += 1;
        }
        time_a += start.elapsed();
        let start = Instant::now();
        while start.elapsed() < WINDOW {
            b().await;
            count_b += 1;
        }
        time_b += start.elapsed();
    }
    (
        count_a as f64 / time_a.as_secs_f64(),
        count_b as f64 / time_b.as_secs_f64(),
    )
}

/// Uncontended acquire+release through tooz, interleaved with the floor: the same round
/// trips (create an ephemeral sequential node, list the parent, delete the node) done raw,
/// sequentially, on one session of the same client library. Then the raw round trips with
/// create and list pipelined, as the driver sends them.
async fn locks_vs_floor(hosts: &str, coord: &Coordinator) -> f64 {
    let client = Client::connect(hosts).await.expect("connect");
    let dir = format!("/tooz-bench-floor-{}", uuid::Uuid::new_v4().simple());
    let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
    let ephemeral = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
    client.create(&dir, b"", &persistent).await.unwrap();
    let prefix = format!("{dir}/{}__lock__", uuid::Uuid::new_v4().simple());
    let lock = coord.lock(format!("bench-lock-{}", uuid::Uuid::new_v4().simple()));
    let (floor, rust) = interleaved(
        || async {
            let (_, seq) = client.create(&prefix, b"bench", &ephemeral).await.unwrap();
            client.list_children(&dir).await.unwrap();
            client
                .delete(&format!("{prefix}{seq}"), None)
                .await
                .unwrap();
        },
        || async {
            lock.acquire().await.unwrap().release().await.unwrap();
        },
    )
    .await;
    let pipelined = rate(|| async {
        let create = client.create(&prefix, b"bench", &ephemeral);
        let list = client.list_children(&dir);
        let (created, listed) = futures::join!(create, list);
        let (_, seq) = created.unwrap();
        listed.unwrap();
        client
            .delete(&format!("{prefix}{seq}"), None)
            .await
            .unwrap();
    })
    .await;
    // The server's write latency bounds every hand-off and watch: measure its spread.
    let mut writes = Vec::new();
    let start = Instant::now();
    while start.elapsed() < RUN {
        let t = Instant::now();
        let (_, seq) = client.create(&prefix, b"bench", &ephemeral).await.unwrap();
        writes.push(t.elapsed());
        let t = Instant::now();
        client
            .delete(&format!("{prefix}{seq}"), None)
            .await
            .unwrap();
        writes.push(t.elapsed());
    }
    println!(
        "raw_write_p50_ms {:.3} p99_ms {:.3}",
        ms(percentile(&mut writes, 0.5)),
        ms(percentile(&mut writes, 0.99))
    );
    client.delete(&dir, None).await.unwrap();
    println!("floor_create_list_delete_per_s {floor:.0}");
    println!("floor_pipelined_per_s {pipelined:.0}");
    println!("lock_acquire_release_per_s {rust:.0}");
    println!(
        "lock_acquire_release_vs_floor {:.2} (target >= 0.8)",
        rust / floor
    );
    rust
}

async fn handoff(url: &str) {
    let holder = started(url, "bench-holder").await;
    let waiters: Vec<Coordinator> = futures::future::join_all(
        (0..WAITERS).map(|i| async move { started(url, &format!("bench-waiter-{i}")).await }),
    )
    .await;
    let mut samples = Vec::with_capacity(HANDOFF_ROUNDS * WAITERS);
    let mut fifo_violations = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    for round in 0..HANDOFF_ROUNDS {
        if Instant::now() > deadline {
            println!("handoff_rounds_done {round}");
            break;
        }
        let name = format!("handoff-{round}");
        let held = holder.lock(name.as_str()).acquire().await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, w) in waiters.iter().enumerate() {
            let lock = w.lock(name.as_str());
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                let guard = lock.acquire().await.unwrap();
                let acquired = Instant::now();
                order.lock().unwrap().push(i);
                let releasing = Instant::now();
                guard.release().await.unwrap();
                (acquired, releasing)
            }));
            // Let its contender node reach the server before the next one queues.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let released = Instant::now();
        held.release().await.unwrap();
        // Hand-off: release() called → the next waiter's acquire() returned.
        let mut previous_release = released;
        for task in tasks {
            let (acquired, releasing) = task.await.unwrap();
            samples.push(acquired.saturating_duration_since(previous_release));
            previous_release = releasing;
        }
        if *order.lock().unwrap() != (0..WAITERS).collect::<Vec<_>>() {
            fifo_violations += 1;
        }
    }
    println!(
        "lock_handoff_p50_ms {:.3}",
        ms(percentile(&mut samples, 0.5))
    );
    println!(
        "lock_handoff_p99_ms {:.3}",
        ms(percentile(&mut samples, 0.99))
    );
    println!("lock_handoff_samples {}", samples.len());
    println!("lock_handoff_fifo_violations {fifo_violations}");
    holder.stop().await.unwrap();
    for w in waiters {
        w.stop().await.unwrap();
    }
}

/// Starts `count` coordinators joined to `group`, `batch` at a time.
async fn join_many(url: &str, group: &str, count: usize, batch: usize) -> Vec<Coordinator> {
    let mut members = Vec::with_capacity(count);
    let start = Instant::now();
    for chunk in (0..count).collect::<Vec<_>>().chunks(batch) {
        if start.elapsed() > BIG_SETUP_LIMIT {
            println!("join_many_gave_up_at {}", members.len());
            break;
        }
        let joined = futures::future::join_all(chunk.iter().map(|i| {
            let url = url.to_string();
            let group = group.to_string();
            let i = *i;
            tokio::spawn(async move {
                let m = started(&url, &format!("member-{i}")).await;
                m.join_group(group.as_str(), ()).await.unwrap();
                m
            })
        }))
        .await;
        members.extend(joined.into_iter().map(Result::unwrap));
    }
    members
}

async fn stop_all(members: Vec<Coordinator>) {
    for chunk in members.chunks(200) {
        futures::future::join_all(chunk.iter().map(|m| m.stop())).await;
    }
}

async fn get_members_timing(coord: &Coordinator, group: &str, expect: usize) -> Duration {
    let mut samples = Vec::new();
    for _ in 0..50 {
        let start = Instant::now();
        let listed = coord.get_members(group).await.unwrap();
        samples.push(start.elapsed());
        assert_eq!(listed.len(), expect);
    }
    percentile(&mut samples, 0.5)
}

async fn watch_latency(url: &str) {
    let watcher = started(url, "bench-watcher").await;
    let joiner = started(url, "bench-joiner").await;
    let group = format!("bench-watch-{}", uuid::Uuid::new_v4().simple());
    watcher.create_group(group.as_str()).await.unwrap();
    let mut stream = watcher.watch_group(group.as_str()).await.unwrap();
    let mut samples = Vec::with_capacity(WATCH_SAMPLES * 2);
    for i in 0..WATCH_SAMPLES {
        let start = Instant::now();
        if i % 2 == 0 {
            joiner.join_group(group.as_str(), ()).await.unwrap();
        } else {
            joiner.leave_group(group.as_str()).await.unwrap();
        }
        let event = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("watch event")
            .unwrap();
        samples.push(start.elapsed());
        let joined = matches!(event, GroupEvent::Joined { .. });
        assert_eq!(joined, i % 2 == 0);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    println!("watch_p50_ms {:.3}", ms(percentile(&mut samples, 0.5)));
    println!("watch_p99_ms {:.3}", ms(percentile(&mut samples, 0.99)));
    watcher.stop().await.unwrap();
    joiner.stop().await.unwrap();
}

fn python() -> Option<PathBuf> {
    let path = std::env::var_os("TOOZ_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv-tooz/bin/python")
        });
    path.exists().then_some(path)
}

/// Python tooz's acquire+release per second on the same server, if measured.
fn python_rate(url: &str) -> Option<f64> {
    let python = python()?;
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench-zookeeper-python.py");
    let out = Command::new(python).arg(script).arg(url).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    print!("{text}");
    if !out.status.success() {
        eprintln!("python: {}", String::from_utf8_lossy(&out.stderr));
    }
    text.lines()
        .find_map(|l| l.strip_prefix("python_lock_acquire_release_per_s "))
        .and_then(|v| v.trim().parse().ok())
}

async fn run(url: &str) {
    let hosts = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?'])
        .next()
        .unwrap()
        .to_string();
    let coord = started(url, "bench").await;
    let rust = locks_vs_floor(&hosts, &coord).await;

    handoff(url).await;
    watch_latency(url).await;

    let group = format!("bench-members-{}", uuid::Uuid::new_v4().simple());
    coord.create_group(group.as_str()).await.unwrap();
    let members = join_many(url, &group, MEMBERS, 100).await;
    let p50 = get_members_timing(&coord, &group, members.len()).await;
    println!("get_members_{}_p50_ms {:.3}", members.len(), ms(p50));
    let start = Instant::now();
    let with_caps = coord
        .get_members_with_capabilities(group.as_str())
        .await
        .unwrap();
    println!(
        "get_members_with_capabilities_{}_ms {:.3}",
        with_caps.len(),
        ms(start.elapsed())
    );
    stop_all(members).await;

    let big: usize = std::env::var("TOOZ_BENCH_ZK_BIG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    if big > 0 {
        let group = format!("bench-big-{}", uuid::Uuid::new_v4().simple());
        coord.create_group(group.as_str()).await.unwrap();
        let start = Instant::now();
        let members = join_many(url, &group, big, 250).await;
        println!(
            "big_group_{}_members_setup_s {:.1}",
            members.len(),
            start.elapsed().as_secs_f64()
        );
        let p50 = get_members_timing(&coord, &group, members.len()).await;
        println!("get_members_{}_p50_ms {:.3}", members.len(), ms(p50));
        stop_all(members).await;
        coord.delete_group(group.as_str()).await.unwrap();
    }
    coord.stop().await.unwrap();

    match python_rate(url) {
        Some(python) => println!(
            "rust_vs_python_acquire_release {:.2} (target >= 2)",
            rust / python
        ),
        None => println!("python: not measured (no interpreter with tooz; set TOOZ_PYTHON)"),
    }
}

fn main() {
    let url =
        std::env::var("TOOZ_BENCH_ZK_URL").unwrap_or_else(|_| "zookeeper://127.0.0.1:2181".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&url));
}
