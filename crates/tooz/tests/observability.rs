//! Metrics go through the `metrics` facade: nothing without a recorder, counts with one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use tooz::{Coordinator, LostReason};

#[derive(Default)]
struct Counts(Mutex<HashMap<String, Arc<Count>>>);

#[derive(Default)]
struct Count(AtomicU64);

impl CounterFn for Count {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

impl HistogramFn for Count {
    fn record(&self, _value: f64) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl Counts {
    fn get(&self, name: &str) -> u64 {
        let map = self.0.lock().unwrap();
        map.get(name).map_or(0, |c| c.0.load(Ordering::Relaxed))
    }
    fn entry(&self, key: &Key) -> Arc<Count> {
        let mut map = self.0.lock().unwrap();
        map.entry(key.name().to_string()).or_default().clone()
    }
}

impl Recorder for Counts {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.entry(key))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.entry(key))
    }
}

#[test]
fn lock_metrics_are_recorded() {
    let counts = Counts::default();
    metrics::with_local_recorder(&counts, || {
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
    assert_eq!(counts.get("tooz_lock_wait_seconds"), 4);
    assert_eq!(counts.get("tooz_lock_hold_seconds"), 4);
    assert_eq!(counts.get("tooz_locks_lost_total"), 1);
}
