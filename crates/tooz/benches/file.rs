//! The `file` driver: `cargo bench -p tooz --bench file`. With `TOOZ_PYTHON` pointing at a
//! Python that has tooz installed (default: the repository's `.venv-tooz`), Python tooz's file
//! driver is measured in the same run on the same directory.
//!
//! Prints `name value` lines; nothing here asserts a timing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tooz::Coordinator;

const ITERATIONS: usize = 50_000;
const HANDOFFS: usize = 2_000;
const MEMBERS: usize = 1_000;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

async fn started(url: &str, member: &str) -> Coordinator {
    let coord = Coordinator::connect(url, member).await.unwrap();
    coord.start().await.unwrap();
    coord
}

async fn run(url: &str) {
    let coord = started(url, "bench").await;
    let lock = coord.lock("bench-lock");
    let start = Instant::now();
    for _ in 0..ITERATIONS {
        lock.acquire().await.unwrap().release().await.unwrap();
    }
    let rate = ITERATIONS as f64 / start.elapsed().as_secs_f64();
    println!("lock_acquire_release_per_s {rate:.0}");

    // Hand-off: the waiter blocks in the kernel (F_OFD_SETLKW) on a blocking thread.
    let other = started(url, "bench-waiter").await;
    let mut samples = Vec::with_capacity(HANDOFFS);
    for _ in 0..HANDOFFS {
        let held = coord.lock("handoff").acquire().await.unwrap();
        let lock_b = other.lock("handoff");
        let waiter = tokio::spawn(async move {
            let guard = lock_b.acquire().await.unwrap();
            let at = Instant::now();
            guard.release().await.unwrap();
            at
        });
        tokio::time::sleep(Duration::from_micros(200)).await; // let it block in the kernel
        let released = Instant::now();
        held.release().await.unwrap();
        samples.push(waiter.await.unwrap().saturating_duration_since(released));
    }
    for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
        let us = percentile(&mut samples, p).as_secs_f64() * 1e6;
        println!("lock_handoff_{name}_us {us:.1}");
    }

    coord.create_group("bench-join").await.unwrap();
    let start = Instant::now();
    for _ in 0..ITERATIONS / 10 {
        coord.join_group("bench-join", ()).await.unwrap();
        coord.leave_group("bench-join").await.unwrap();
    }
    let rate = (ITERATIONS / 10) as f64 / start.elapsed().as_secs_f64();
    println!("join_leave_per_s {rate:.0}");

    coord.create_group("bench-members").await.unwrap();
    let mut members = Vec::with_capacity(MEMBERS);
    for i in 0..MEMBERS {
        let m = started(url, &format!("member-{i}")).await;
        m.join_group("bench-members", ()).await.unwrap();
        members.push(m);
    }
    let mut samples = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        let listed = coord.get_members("bench-members").await.unwrap();
        samples.push(start.elapsed());
        assert_eq!(listed.len(), MEMBERS);
    }
    let ms = percentile(&mut samples, 0.5).as_secs_f64() * 1e3;
    println!("get_members_1000_ms {ms:.2}");
    // The members stay joined (heartbeating) while Python reads the same group.
    std::mem::forget(members);
}

const CONTENDER_ENV: &str = "TOOZ_BENCH_FILE_CONTENDER";
const CONTENTION: Duration = Duration::from_secs(2);
const HOLD: Duration = Duration::from_millis(1);

/// One free-running contender: acquire, hold, release, again, for `CONTENTION`. Prints its
/// acquisitions and its longest wait in units of the hold time.
async fn contend(url: &str) {
    let coord = started(url, &format!("contender-{}", std::process::id())).await;
    let lock = coord.lock("fairness");
    let (mut count, mut longest) = (0u64, Duration::ZERO);
    let end = Instant::now() + CONTENTION;
    while Instant::now() < end {
        let asked = Instant::now();
        let guard = lock.acquire().await.unwrap();
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
}

/// Two processes contend; reports each one's share and the longest wait in hold times.
fn fairness(url: &str) {
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(&exe)
                .env(CONTENDER_ENV, url)
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
    println!(
        "contended_two_processes_acquisitions_per_s {:.0}",
        total as f64 / CONTENTION.as_secs_f64()
    );
    println!(
        "contended_share_of_each_process {:.2} {:.2}",
        results[0].0 as f64 / total.max(1) as f64,
        results[1].0 as f64 / total.max(1) as f64
    );
    println!("contended_longest_wait_in_hold_times {worst:.1}");
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
    if let Ok(url) = std::env::var(CONTENDER_ENV) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(contend(&url));
        return;
    }
    let dir = std::env::temp_dir().join(format!("tooz-bench-file-{}", std::process::id()));
    let url = format!("file://{}", dir.display());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run(&url));
    fairness(&url);
    match python() {
        Some(python) => {
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench-file-python.py");
            let out = Command::new(python)
                .arg(script)
                .arg(&dir)
                .arg("bench-members")
                .output()
                .expect("run python");
            print!("{}", String::from_utf8_lossy(&out.stdout));
            if !out.status.success() {
                eprintln!("python: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        None => println!("python: not measured (no interpreter with tooz; set TOOZ_PYTHON)"),
    }
    drop(runtime);
    let _ = std::fs::remove_dir_all(&dir);
}
