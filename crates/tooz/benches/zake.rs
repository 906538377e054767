//! Throughput and latency of the in-process `zake` driver: `cargo bench -p tooz --bench zake`.
//!
//! Prints one `name value unit` line per figure (and `--json` prints a JSON object), so the
//! benchmark harness can collect them. Nothing here asserts a timing.

use std::time::{Duration, Instant};

use futures::StreamExt;
use tooz::Coordinator;

mod support;

use support::{percentile, print_figures};

const ITERATIONS: usize = 100_000;
const LATENCY_SAMPLES: usize = 20_000;

async fn started(server: &str, member: &str) -> Coordinator {
    support::started(&format!("zake://{server}"), member).await
}

async fn acquire_release(out: &mut Vec<(String, f64, &'static str)>) {
    let coord = started("bench-lock", "a").await;
    let lock = coord.lock("l");
    let start = Instant::now();
    for _ in 0..ITERATIONS {
        let guard = lock.acquire().await.unwrap();
        guard.release().await.unwrap();
    }
    let rate = ITERATIONS as f64 / start.elapsed().as_secs_f64();
    out.push(("lock_acquire_release_per_s".into(), rate, "ops/s"));
    coord.stop().await.unwrap();
}

async fn handoff(out: &mut Vec<(String, f64, &'static str)>) {
    let a = started("bench-handoff", "a").await;
    let b = started("bench-handoff", "b").await;
    let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
    for _ in 0..LATENCY_SAMPLES {
        let held = a.lock("h").acquire().await.unwrap();
        let lock_b = b.lock("h");
        let waiter = tokio::spawn(async move {
            let guard = lock_b.acquire().await.unwrap();
            let at = Instant::now();
            guard.release().await.unwrap();
            at
        });
        tokio::task::yield_now().await; // let the waiter queue up
        let released = Instant::now();
        held.release().await.unwrap();
        let acquired = waiter.await.unwrap();
        samples.push(acquired.saturating_duration_since(released));
    }
    for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
        let us = percentile(&mut samples, p).as_secs_f64() * 1e6;
        out.push((format!("lock_handoff_{name}_us"), us, "us"));
    }
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

async fn join_leave(out: &mut Vec<(String, f64, &'static str)>) {
    let coord = started("bench-join", "a").await;
    coord.create_group("g").await.unwrap();
    let start = Instant::now();
    for _ in 0..ITERATIONS {
        coord.join_group("g", ()).await.unwrap();
        coord.leave_group("g").await.unwrap();
    }
    let rate = ITERATIONS as f64 / start.elapsed().as_secs_f64();
    out.push(("join_leave_per_s".into(), rate, "ops/s"));
    coord.stop().await.unwrap();
}

async fn watch_latency(out: &mut Vec<(String, f64, &'static str)>) {
    let watcher = started("bench-watch", "watcher").await;
    let member = started("bench-watch", "member").await;
    watcher.create_group("g").await.unwrap();
    let mut events = watcher.watch_group("g").await.unwrap();
    let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
    for _ in 0..LATENCY_SAMPLES {
        let joined = Instant::now();
        member.join_group("g", ()).await.unwrap();
        events.next().await.unwrap();
        samples.push(joined.elapsed());
        member.leave_group("g").await.unwrap();
        events.next().await.unwrap();
    }
    for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
        let us = percentile(&mut samples, p).as_secs_f64() * 1e6;
        out.push((format!("watch_event_{name}_us"), us, "us"));
    }
    watcher.stop().await.unwrap();
    member.stop().await.unwrap();
}

fn resident_bytes() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0
}

async fn idle_memory(out: &mut Vec<(String, f64, &'static str)>) {
    const COORDINATORS: usize = 2_000;
    let before = resident_bytes();
    let mut coords = Vec::with_capacity(COORDINATORS);
    for i in 0..COORDINATORS {
        coords.push(started("bench-memory", &format!("m{i}")).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let per = (resident_bytes() - before) / COORDINATORS as f64;
    out.push(("idle_coordinator_resident_bytes".into(), per, "bytes"));
    for c in coords {
        c.stop().await.unwrap();
    }
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut out = Vec::new();
    runtime.block_on(async {
        acquire_release(&mut out).await;
        handoff(&mut out).await;
        join_leave(&mut out).await;
        watch_latency(&mut out).await;
        idle_memory(&mut out).await;
    });
    print_figures(&out, json);
}
