//! The `file` driver: `cargo bench -p tooz --bench file`. With `TOOZ_PYTHON` pointing at a
//! Python that has tooz installed (default: the repository's `.venv-tooz`), Python tooz's file
//! driver is measured in the same run on the same directory.
//!
//! Prints `name value` lines; nothing here asserts a timing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod support;

use support::{fairness, percentile, started};

const ITERATIONS: usize = 50_000;
const HANDOFFS: usize = 2_000;
const MEMBERS: usize = 1_000;

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
