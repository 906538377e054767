//! The short safety runs CI makes: one 25 s mixed-fault run of `tooz-safety` per driver that
//! exists (file, ipc, and with the `full` feature redis and zookeeper on the servers of
//! `scripts/services`), which must pass every check its driver claims; and two seeded mutants
//! that the checker must catch. The full gate is `scripts/safety gate` (docs/safety.md).
//!
//! Without a server a network run is skipped, except under `CI=true`, where it fails.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use serde_json::Value;

/// One run at a time: each starts five client processes.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `tooz-safety run URL ARGS... --json` and returns its summary line.
fn run(name: &str, url: &str, args: &[&str]) -> Value {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = std::env::temp_dir().join(format!("tooz-safety-{name}-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_tooz-safety"))
        .arg("run")
        .arg(url)
        .args(args)
        .arg("--out")
        .arg(&out)
        .arg("--json")
        .output()
        .expect("tooz-safety runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "{name}: no summary (status {:?})\n{stdout}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let passed = summary["passed"].as_bool().unwrap();
    assert_eq!(
        output.status.code(),
        Some(if passed { 0 } else { 1 }),
        "{name}: exit status must say whether the run passed\n{stdout}"
    );
    if passed {
        let _ = std::fs::remove_dir_all(&out);
    } else {
        eprintln!("{name}: run kept in {}\n{stdout}", out.display());
    }
    summary
}

/// A fault-injected run that must pass, and must have done enough to mean something.
fn assert_safe(name: &str, url: &str, faults: &str) {
    let summary = run(name, url, &["--duration", "25", "--faults", faults]);
    let faults_injected: u64 = summary["faults"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert!(
        faults_injected >= 3,
        "{name}: only {faults_injected} faults: {summary}"
    );
    assert!(
        summary["lock_ops"].as_u64().unwrap() >= 200,
        "{name}: too few lock operations: {summary}"
    );
    assert!(summary["passed"].as_bool().unwrap(), "{name}: {summary}");
}

/// The URL `scripts/services` gives for `server`; `None` (skip) when it is not running,
/// except under CI.
fn server_url(server: &str, scheme: &str) -> Option<String> {
    let found = tooz_testkit::services::urls().ok().and_then(|urls| {
        urls.into_iter()
            .find(|(name, url)| name == server && url.starts_with(&format!("{scheme}://")))
            .map(|(_, url)| url)
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{server} is required under CI (scripts/services up {server})"
        );
        eprintln!("skipping: {server} is not running");
    }
    found
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tooz-safety-{name}-data-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn file_under_pauses_and_kills() {
    let dir = scratch_dir("file");
    assert_safe("file", &format!("file://{}", dir.display()), "pause,kill");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn ipc_under_pauses_and_kills() {
    assert_safe("ipc", "ipc://", "pause,kill");
}

#[cfg(feature = "full")]
#[test]
fn redis_under_mixed_faults() {
    if server_url("redis", "redis").is_some() {
        assert_safe(
            "redis",
            "redis://127.0.0.1:6379?timeout=2",
            "pause,kill,lost-reply,black-hole,delay,drop",
        );
    }
}

#[cfg(feature = "full")]
#[test]
fn zookeeper_under_mixed_faults() {
    if server_url("zookeeper", "zookeeper").is_some() {
        assert_safe(
            "zookeeper",
            "zookeeper://127.0.0.1:2181?timeout=2",
            "pause,kill,lost-reply,black-hole,delay,drop",
        );
    }
}

#[cfg(feature = "full")]
#[test]
fn etcd3_under_mixed_faults() {
    if server_url("etcd", "etcd3").is_some() {
        assert_safe(
            "etcd3",
            "etcd3://127.0.0.1:2379?timeout=2",
            "pause,kill,lost-reply,black-hole,delay,drop",
        );
    }
}

#[cfg(feature = "full")]
#[test]
fn etcd_v2_under_mixed_faults() {
    if server_url("etcd", "etcd").is_some() {
        assert_safe(
            "etcd",
            "etcd://127.0.0.1:2379?timeout=2",
            "pause,kill,lost-reply,black-hole,delay,drop",
        );
    }
}

/// A mutant run must fail, and the checks in `expected` must be among those that caught it.
fn assert_caught(mutant: &str, expected: &[&str]) {
    let dir = scratch_dir(&format!("mutant-{mutant}"));
    let url = format!("file://{}", dir.display());
    let summary = run(
        &format!("mutant-{mutant}"),
        &url,
        &["--duration", "8", "--faults", "", "--mutant", mutant],
    );
    assert!(!summary["passed"].as_bool().unwrap(), "{mutant}: {summary}");
    for check in expected {
        assert!(
            summary["violations"][check].as_u64().unwrap() > 0,
            "mutant {mutant} must be caught by {check}: {summary}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_disabled_lock_is_caught() {
    assert_caught("f", &["C1"]);
}

#[test]
fn reused_fencing_tokens_are_caught() {
    assert_caught("c", &["C3"]);
}
