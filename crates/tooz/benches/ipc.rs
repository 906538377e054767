//! Throughput and latency of the `ipc` driver: `cargo bench -p tooz --bench ipc`.
//!
//! Prints one `name value unit` line per figure (`--json` prints a JSON object). Figures:
//! uncontended acquire + release per second (one coordinator, one lock name; the median and
//! the best of 20 batches), and the
//! hand-off latency from a holder's release to the moment a waiter blocked in the kernel
//! holds the lock (p50 and p99). Nothing here asserts a timing.

use std::time::{Duration, Instant};

use tooz::Coordinator;

mod support;

use support::{percentile, print_figures};

const BATCHES: usize = 20;
const BATCH: usize = 20_000;
const HANDOFFS: usize = 5_000;

async fn started(member: &str) -> Coordinator {
    support::started("ipc://", member).await
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), uuid_like())
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Runs `BATCHES` batches of `BATCH` cycles; returns the median and best batch rates (the
/// best is the figure least disturbed by other work on the host).
async fn rates<F, Fut>(mut cycle: F) -> (f64, f64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut rates = Vec::with_capacity(BATCHES);
    for _ in 0..BATCHES {
        let start = Instant::now();
        for _ in 0..BATCH {
            cycle().await;
        }
        rates.push(BATCH as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    (rates[rates.len() / 2], rates[rates.len() - 1])
}

async fn acquire_release(out: &mut Vec<(String, f64, &'static str)>) {
    let coord = started("bench-a").await;
    let lock = coord.lock(unique("bench-lock"));
    for _ in 0..1_000 {
        lock.try_acquire()
            .await
            .unwrap()
            .unwrap()
            .release()
            .await
            .unwrap();
    }
    let (median, best) = rates(|| async {
        let guard = lock.try_acquire().await.unwrap().expect("uncontended");
        guard.release().await.unwrap();
    })
    .await;
    out.push(("lock_try_acquire_release_per_s".into(), median, "ops/s"));
    out.push(("lock_try_acquire_release_best_per_s".into(), best, "ops/s"));
    let (median, best) = rates(|| async {
        let guard = lock.acquire().await.unwrap();
        guard.release().await.unwrap();
    })
    .await;
    out.push(("lock_acquire_release_per_s".into(), median, "ops/s"));
    out.push(("lock_acquire_release_best_per_s".into(), best, "ops/s"));
    coord.stop().await.unwrap();
}

async fn handoff(out: &mut Vec<(String, f64, &'static str)>) {
    let a = started("bench-holder").await;
    let b = started("bench-waiter").await;
    let name = unique("bench-handoff");
    let mut samples = Vec::with_capacity(HANDOFFS);
    for _ in 0..HANDOFFS {
        let held = a.lock(name.clone()).acquire().await.unwrap();
        let lock_b = b.lock(name.clone());
        let waiter = tokio::spawn(async move {
            let guard = lock_b.acquire().await.unwrap();
            let at = Instant::now();
            guard.release().await.unwrap();
            at
        });
        // Let the waiter fail its first try and block in the kernel.
        tokio::time::sleep(Duration::from_micros(300)).await;
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
    });
    print_figures(&out, json);
}
