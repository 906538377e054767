//! What a run leaves behind: the merged history, a readable timeline and the summary line.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tooz_safety::{Event, Kind, Op, Report};

use crate::runner::{redacted, RunArgs};

/// Every process's events in time order (ties keep file order).
pub fn merge_histories(out: &Path, clients: u32) -> Result<Vec<Event>, String> {
    let mut all = Vec::new();
    let files = std::iter::once("nemesis.jsonl".to_string())
        .chain((1..=clients).map(|p| format!("p{p}.jsonl")));
    for name in files {
        let path = out.join(&name);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        // A client killed mid-write may leave a torn last line: keep what parses.
        let complete = match text.rfind('\n') {
            Some(end) => &text[..=end],
            None => "",
        };
        all.extend(tooz_safety::read_jsonl(complete).map_err(|e| format!("{name}: {e}"))?);
    }
    all.sort_by_key(|e| e.time_ns);
    Ok(all)
}

/// A readable timeline: milliseconds since the first event, process, kind, operation.
pub fn timeline(history: &[Event]) -> String {
    let start = history.first().map_or(0, |e| e.time_ns);
    let mut text = String::new();
    for (index, e) in history.iter().enumerate() {
        let ms = (e.time_ns - start) as f64 / 1e6;
        let op = serde_json::to_string(&e.op).unwrap_or_default();
        text += &format!(
            "{index:>7} {ms:>11.3} ms  p{:<3} {:<8} {op}\n",
            e.process,
            format!("{:?}", e.kind).to_lowercase()
        );
    }
    text
}

/// One JSON line: what `scripts/safety` tabulates in docs/safety.md.
pub fn summary(
    args: &RunArgs,
    scheme: &str,
    seed: u64,
    history: &[Event],
    report: &Report,
    elapsed: Duration,
) -> String {
    let mut faults: BTreeMap<String, usize> = BTreeMap::new();
    let mut lock_ops = 0;
    for e in history {
        match (&e.kind, &e.op) {
            (Kind::Info, Op::Fault { class, .. }) => {
                *faults.entry(format!("{class:?}")).or_default() += 1;
            }
            (Kind::Invoke, Op::Acquire { .. } | Op::Release { .. }) => lock_ops += 1,
            _ => {}
        }
    }
    let violations: BTreeMap<String, usize> = report
        .checks
        .iter()
        .map(|c| (format!("{:?}", c.check), c.count))
        .collect();
    let tolerated: Vec<String> = report
        .checks
        .iter()
        .filter(|c| c.tolerated.is_some())
        .map(|c| format!("{:?}", c.check))
        .collect();
    serde_json::json!({
        "url": redacted(&args.url),
        "scheme": scheme,
        "seed": seed,
        "mutant": args.mutant.map(|m| format!("{m:?}").to_lowercase()),
        "faults_selected": args.faults,
        "seconds": elapsed.as_secs_f64(),
        "clients": args.clients,
        "faults": faults,
        "lock_ops": lock_ops,
        "events": history.len(),
        "violations": violations,
        "tolerated": tolerated,
        "max_recovery_ms": report.stats.max_recovery_ns.map(|n| n as f64 / 1e6),
        "passed": report.passed(),
    })
    .to_string()
}
