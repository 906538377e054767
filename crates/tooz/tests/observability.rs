//! Metrics go through the `metrics` facade: nothing without a recorder, counts with one.

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;
use tooz::{Coordinator, LostReason};

/// One snapshot of the debugging recorder (taking it resets counters and gauges).
type Snapshot = Vec<(
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

fn snapshot(snapshotter: &Snapshotter) -> Snapshot {
    snapshotter.snapshot().into_vec()
}

/// What `snapshot` holds for `name` with `labels`: a counter's count, a histogram's number of
/// samples, a gauge's value (truncated); 0 if never recorded.
fn value(snapshot: &Snapshot, kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> u64 {
    snapshot
        .iter()
        .filter(|(key, ..)| key.kind() == kind && key.key().name() == name)
        .filter(|(key, ..)| {
            labels.iter().all(|(k, v)| {
                key.key()
                    .labels()
                    .any(|label| label.key() == *k && label.value() == *v)
            })
        })
        .map(|(.., value)| match value {
            DebugValue::Counter(count) => *count,
            DebugValue::Gauge(level) => level.into_inner() as u64,
            DebugValue::Histogram(samples) => samples.len() as u64,
        })
        .sum()
}

#[test]
fn lock_metrics_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let a = Coordinator::connect("zake://metrics", "a").await.unwrap();
            let b = Coordinator::connect("zake://metrics", "b").await.unwrap();
            a.start().await.unwrap();
            b.start().await.unwrap();
            for _ in 0..3 {
                a.lock("l")
                    .acquire()
                    .await
                    .unwrap()
                    .release()
                    .await
                    .unwrap();
            }
            let held = a.lock("l").acquire().await.unwrap();
            assert!(b.lock("l").break_lock().await.unwrap());
            assert_eq!(held.lost().await, LostReason::Broken);
            assert!(
                !held.release().await.unwrap(),
                "a broken lock is not released"
            );
            a.stop().await.unwrap();
            b.stop().await.unwrap();
        });
    });
    let snapshot = snapshot(&snapshotter);
    let histogram = |name| value(&snapshot, MetricKind::Histogram, name, &[]);
    assert_eq!(histogram("tooz_lock_wait_seconds"), 4);
    assert_eq!(histogram("tooz_lock_hold_seconds"), 4);
    assert_eq!(
        value(&snapshot, MetricKind::Counter, "tooz_locks_lost_total", &[]),
        1
    );
}

#[test]
fn group_election_and_connection_metrics_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // b is still connected when the snapshot is taken; a has stopped.
    let b = metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let a = Coordinator::connect("zake://metrics-groups", "a")
                .await
                .unwrap();
            let b = Coordinator::connect("zake://metrics-groups", "b")
                .await
                .unwrap();
            a.start().await.unwrap();
            b.start().await.unwrap();
            a.create_group("g").await.unwrap();
            a.join_group("g", b"").await.unwrap();
            b.join_group("g", b"").await.unwrap();
            a.leave_group("g").await.unwrap();
            a.campaign("g").await.unwrap().resign().await.unwrap();
            b.campaign("g").await.unwrap().resign().await.unwrap();
            b.leave_group("g").await.unwrap();
            a.stop().await.unwrap();
            b
        })
    });
    let snapshot = snapshot(&snapshotter);
    rt.block_on(b.stop()).unwrap();
    let ops = |op| {
        value(
            &snapshot,
            MetricKind::Counter,
            "tooz_group_operations_total",
            &[("op", op)],
        )
    };
    assert_eq!(ops("create_group"), 1);
    assert_eq!(ops("join_group"), 2);
    assert_eq!(ops("leave_group"), 2);
    assert_eq!(
        value(
            &snapshot,
            MetricKind::Counter,
            "tooz_elections_won_total",
            &[]
        ),
        2
    );
    let coordinators = |state| {
        value(
            &snapshot,
            MetricKind::Gauge,
            "tooz_coordinators",
            &[("state", state)],
        )
    };
    assert_eq!(coordinators("connected"), 1);
}
