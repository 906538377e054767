//! `tooz bench --short`: the harness runs and reports every measure. No timing is checked.

mod common;

use common::Env;

const MEASURES: &[&str] = &[
    "memory",
    "lock_1",
    "lock_16",
    "handoff",
    "join_leave",
    "get_members_10",
    "get_members_1000",
    "get_members_10000",
    "watch",
    "failover",
];

fn bench_json(env: &Env, url: &str) -> serde_json::Value {
    let out = env
        .tooz()
        .env_remove("TOOZ_BENCH_PYTHON")
        .args(["bench", "--short", "--json", url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn short_bench_reports_every_measure_for_zake() {
    let env = Env::new();
    let doc = bench_json(&env, "zake://");
    assert_eq!(doc["short"], true);
    assert!(doc["machine"]["cores"].is_u64());
    let backend = &doc["backends"][0];
    assert_eq!(backend["driver"], "zake");
    for measure in MEASURES {
        let figures = &backend["tooz_rs"][measure];
        assert!(figures.is_object(), "{measure} missing: {backend}");
        assert!(
            figures.get("na").is_none(),
            "{measure} not measured: {figures}"
        );
    }
    for field in ["p50_ms", "p99_ms", "max_ms", "acquisitions_per_s"] {
        assert!(backend["tooz_rs"]["handoff"][field].is_number(), "{field}");
    }
    // zake has no server: the floor says why there is none.
    assert!(backend["floor"]["na"].is_string());
    assert!(backend["python"]["na"].is_string());
}

#[test]
fn short_bench_runs_the_file_driver_with_a_watcher_process() {
    let env = Env::new();
    let doc = bench_json(&env, &env.url);
    let backend = &doc["backends"][0];
    for measure in MEASURES {
        assert!(backend["tooz_rs"][measure].is_object(), "{measure} missing");
    }
    assert_eq!(backend["tooz_rs"]["watch"]["watcher"], "another process");
    assert!(backend["floor"]["per_s"].is_number());
}

#[test]
fn a_scheme_can_have_a_python_interpreter_of_its_own() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    // A stand-in for Python: prints the one JSON line the harness reads.
    let fake = env.path("fake-python");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho '{\"tooz_version\": \"0.0-fake\", \"lock_1\": {\"per_s\": 1.0}}'\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = env.path("script.py");
    std::fs::write(&script, "").unwrap();
    let out = env
        .tooz()
        .env_remove("TOOZ_BENCH_PYTHON")
        .env("TOOZ_BENCH_PYTHON_ZAKE", &fake)
        .arg("bench")
        .arg("--short")
        .arg("--json")
        .arg("--python-script")
        .arg(&script)
        .arg("zake://")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let backend = &doc["backends"][0];
    assert_eq!(backend["python"]["tooz_version"], "0.0-fake", "{backend}");
    assert_eq!(backend["python_from"]["variable"], "TOOZ_BENCH_PYTHON_ZAKE");
}
