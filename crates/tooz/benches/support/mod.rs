//! Pieces shared by the driver benches: percentiles, started coordinators, and the
//! two-process fairness measure.
#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tooz::Coordinator;

/// Child mode of the fairness measure: the value is the driver URL.
pub const CONTENDER_ENV: &str = "TOOZ_BENCH_CONTENDER";
/// The lock the contenders share.
const LOCK_ENV: &str = "TOOZ_BENCH_CONTENDER_LOCK";
/// When contenders start (ms since 1970), so that both run the same window.
const START_ENV: &str = "TOOZ_BENCH_CONTENDER_START";
const CONTENTION: Duration = Duration::from_secs(2);
const HOLD: Duration = Duration::from_millis(1);

/// The `p` quantile of `samples` (sorted in place).
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

/// A started coordinator.
pub async fn started(url: &str, member: &str) -> Coordinator {
    let coord = Coordinator::connect(url, member).await.unwrap();
    coord.start().await.unwrap();
    coord
}

/// Prints `(name, value, unit)` figures as aligned lines, or as one JSON object with `json`.
pub fn print_figures(out: &[(String, f64, &'static str)], json: bool) {
    if json {
        let fields: Vec<String> = out
            .iter()
            .map(|(name, value, _)| format!("\"{name}\": {value:.3}"))
            .collect();
        println!("{{{}}}", fields.join(", "));
    } else {
        for (name, value, unit) in out {
            println!("{name:<36} {value:>14.2} {unit}");
        }
    }
}

/// Nanoseconds since 1970, comparable across processes.
pub fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// In a contender child (`CONTENDER_ENV` set): contends and returns true, so that `main`
/// returns at once.
pub fn run_contender_child() -> bool {
    let Ok(url) = std::env::var(CONTENDER_ENV) else {
        return false;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(contend(&url));
    true
}

/// One free-running contender: acquire, hold, release, again, for `CONTENTION`. Prints its
/// acquisitions and its longest wait in units of the hold time.
async fn contend(url: &str) {
    let name = std::env::var(LOCK_ENV).unwrap();
    let start_ms: u128 = std::env::var(START_ENV).unwrap().parse().unwrap();
    let coord = started(url, &format!("contender-{}", std::process::id())).await;
    let lock = coord.lock(name);
    let wait_ms = (start_ms * 1_000_000).saturating_sub(unix_ns()) / 1_000_000;
    tokio::time::sleep(Duration::from_millis(wait_ms.min(5_000) as u64)).await;
    let (mut count, mut longest) = (0u64, Duration::ZERO);
    let end = Instant::now() + CONTENTION;
    while Instant::now() < end {
        let asked = Instant::now();
        let guard = lock.acquire_timeout(Duration::from_secs(10)).await.unwrap();
        longest = longest.max(asked.elapsed());
        let held = Instant::now();
        while held.elapsed() < HOLD {
            std::hint::spin_loop();
        }
        guard.release().await.unwrap();
        count += 1;
    }
    let ratio = longest.as_secs_f64() / HOLD.as_secs_f64();
    println!("{count} {ratio:.1}");
    coord.stop().await.unwrap();
}

/// Two processes free-running on one lock (hold 1 ms, 2 s): prints the rate, each one's share
/// and the longest wait in hold times.
pub fn fairness(url: &str) {
    let exe = std::env::current_exe().unwrap();
    let name = format!("bench-fairness-{}", std::process::id());
    let start = unix_ns() / 1_000_000 + 1_000;
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(&exe)
                .env(CONTENDER_ENV, url)
                .env(LOCK_ENV, &name)
                .env(START_ENV, start.to_string())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut results = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut fields = text.split_whitespace();
        let count: u64 = fields.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        let ratio: f64 = fields
            .next()
            .and_then(|r| r.parse().ok())
            .unwrap_or(f64::NAN);
        results.push((count, ratio));
    }
    let total: u64 = results.iter().map(|r| r.0).sum();
    let worst = results.iter().map(|r| r.1).fold(0.0, f64::max);
    let share = |i: usize| results[i].0 as f64 / total.max(1) as f64;
    println!(
        "contended_two_processes_acquisitions_per_s {:.0}",
        total as f64 / CONTENTION.as_secs_f64()
    );
    println!(
        "contended_share_of_each_process {:.2} {:.2}",
        share(0),
        share(1)
    );
    println!("contended_longest_wait_in_hold_times {worst:.1}");
}
