//! A client's history file: one JSON line per event, written straight to the file so that a
//! SIGKILL loses nothing already recorded.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tooz_safety::{Event, Kind, Op};

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process of the host.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Appends one process's events to its history file.
pub struct Recorder {
    file: Mutex<File>,
    process: u32,
    next_op: AtomicU64,
}

impl Recorder {
    /// Opens (appending) `path` for `process`; operation ids start at `incarnation << 32`, so
    /// that a restarted process never reuses one.
    pub fn open(path: &Path, process: u32, incarnation: u32) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Recorder {
            file: Mutex::new(file),
            process,
            next_op: AtomicU64::new(u64::from(incarnation) << 32),
        })
    }

    /// Records the start of an operation; returns its id.
    pub fn invoke(&self, op: Op) -> u64 {
        let id = self.next_op.fetch_add(1, Ordering::Relaxed);
        self.emit(id, Kind::Invoke, op);
        id
    }

    /// Records the completion of operation `id`.
    pub fn complete(&self, id: u64, kind: Kind, op: Op) {
        self.emit(id, kind, op);
    }

    /// Records an instant observation.
    pub fn info(&self, op: Op) {
        let id = self.next_op.fetch_add(1, Ordering::Relaxed);
        self.emit(id, Kind::Info, op);
    }

    fn emit(&self, op_id: u64, kind: Kind, op: Op) {
        let event = Event {
            time_ns: now_ns(),
            process: self.process,
            op_id,
            kind,
            op,
        };
        let mut line = serde_json::to_string(&event).expect("events serialise");
        line.push('\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(error) = file.write_all(line.as_bytes()) {
            eprintln!("cannot record an event: {error}");
        }
    }
}
