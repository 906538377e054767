//! Hash ring throughput, without a bench framework: `cargo bench --bench hashring`.
//!
//! Prints `get_nodes` lookups per second on a 100-node ring (1 replica, md5, 32 partitions,
//! keys `key-0..key-99999`) and the time to build a 1000-node weighted ring. When
//! `HASHRING_BENCH_PYTHON` names a Python interpreter with tooz installed, also runs
//! `scripts/bench-hashring-python.py` (or `HASHRING_BENCH_PYTHON_SCRIPT`) on the same ring and
//! keys and prints the ratio.

use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use tooz::hashring::HashRing;

const NODES: usize = 100;
const KEYS: usize = 100_000;
const ROUNDS: usize = 5;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs the binary without it and only
    // needs a smoke run.
    let quick = !std::env::args().any(|a| a == "--bench");
    let keys: Vec<Vec<u8>> = (0..if quick { 1_000 } else { KEYS })
        .map(|i| format!("key-{i}").into_bytes())
        .collect();
    let ring = HashRing::new((0..NODES).map(|i| format!("node-{i}")));

    let get_nodes = best_rate(&keys, quick, |k| {
        black_box(ring.get_nodes(black_box(k), None::<&str>, 1).unwrap().len())
    });
    let get_node = best_rate(&keys, quick, |k| {
        black_box(ring.get_node(black_box(k)).map_or(0, <[u8]>::len))
    });
    let get_nodes_3 = best_rate(&keys, quick, |k| {
        black_box(ring.get_nodes(black_box(k), None::<&str>, 3).unwrap().len())
    });
    println!("rust_get_nodes_lookups_per_s {get_nodes:.0}");
    println!("rust_get_node_lookups_per_s {get_node:.0}");
    println!("rust_get_nodes_3_replicas_lookups_per_s {get_nodes_3:.0}");

    let build = (0..if quick { 1 } else { 7 })
        .map(|_| {
            let start = Instant::now();
            let mut ring = HashRing::default();
            for i in 0..1000u32 {
                ring.add_node(format!("node-{i}"), 1 + i % 4);
            }
            // The first lookup sorts the points: count it as part of building.
            black_box(ring.get_node(b"key-0"));
            let elapsed = start.elapsed();
            assert_eq!(ring.len(), 32 * 2500);
            elapsed
        })
        .min()
        .unwrap_or(Duration::ZERO);
    println!(
        "rust_build_1000_weighted_ms {:.1}",
        build.as_secs_f64() * 1000.0
    );

    if quick {
        return;
    }
    if let Some(python) = std::env::var_os("HASHRING_BENCH_PYTHON") {
        let script = std::env::var_os("HASHRING_BENCH_PYTHON_SCRIPT")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../../scripts/bench-hashring-python.py")
            });
        let out = Command::new(python)
            .arg(&script)
            .output()
            .expect("run the Python bench");
        let text = String::from_utf8_lossy(&out.stdout);
        print!("{text}");
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            std::process::exit(1);
        }
        let python_rate = text
            .lines()
            .find_map(|l| l.strip_prefix("python_get_nodes_lookups_per_s "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if let Some(rate) = python_rate {
            println!("get_nodes_speedup_vs_python {:.1}x", get_nodes / rate);
        }
    }
}

/// Best lookups per second over a few passes through `keys`.
fn best_rate(keys: &[Vec<u8>], quick: bool, mut f: impl FnMut(&[u8]) -> usize) -> f64 {
    let mut sink = 0usize;
    for k in keys.iter().take(10_000) {
        sink += f(k);
    }
    let mut best = 0.0f64;
    for _ in 0..if quick { 1 } else { ROUNDS } {
        let start = Instant::now();
        for k in keys {
            sink += f(k);
        }
        best = best.max(keys.len() as f64 / start.elapsed().as_secs_f64());
    }
    black_box(sink);
    best
}
