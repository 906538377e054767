//! Lock files, their fencing records, and the queue that makes waiting fair.
//!
//! Each acquisition needs its own open file (record locks belong to an open file), but opening
//! is most of the cost of an acquisition, so released files are kept for reuse. The fencing
//! record of a lock, `D/.tooz-fencing/<sha1(lock path)>`, holds a 20-digit counter, then the
//! hex id of the last exclusive holder: `00000000000000000042 6e6f6465\n`. Only a holder writes
//! it: an exclusive holder alone, shared holders one at a time under the record's own lock.
//!
//! The kernel wakes every waiter when a record lock is released, and the releasing process
//! usually takes it back before they run. So waiters queue: a waiter holds a shared lock on
//! `D/.tooz-fencing/<sha1(lock path)>.queue` while it waits; an acquirer that sees the queue
//! non-empty does not take the lock ahead of it but first passes a turnstile (an exclusive lock
//! on the queue file, granted once the current waiters have got the lock), then queues. A
//! holder releasing and acquiring again therefore lets the waiter go first. Python tooz
//! processes do not queue; they compete as before.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::oslock::{self, Kind, Owner};
use super::{io_error, sha1_hex};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::types::FencingToken;

const COUNTER_WIDTH: usize = 20;
/// Most released lock files kept open for reuse.
const POOL_LIMIT: usize = 256;

pub(super) struct LockFiles {
    fencing_dir: PathBuf,
    pool: Mutex<HashMap<PathBuf, Vec<File>>>,
    fences: Mutex<HashMap<PathBuf, (File, u64)>>,
    probes: Mutex<HashMap<PathBuf, File>>,
}

/// Opens (creating it and its directories if needed) a file for record locking.
pub(super) fn open(path: &Path) -> Result<File> {
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
    };
    match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(|e| io_error("creating", parent, e))?;
            }
            open()
        }
        other => other,
    }
    .map_err(|e| io_error("opening", path, e))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl LockFiles {
    pub(super) fn new(fencing_dir: PathBuf) -> Self {
        LockFiles {
            fencing_dir,
            pool: Mutex::new(HashMap::new()),
            fences: Mutex::new(HashMap::new()),
            probes: Mutex::new(HashMap::new()),
        }
    }

    /// A file for locking `path`: a released one if there is one, else a new one.
    pub(super) fn take(&self, path: &Path) -> Result<File> {
        let pooled = self.pool.lock().unwrap().get_mut(path).and_then(Vec::pop);
        match pooled {
            Some(file) => Ok(file),
            None => open(path),
        }
    }

    /// Gives back a file whose lock was released.
    pub(super) fn recycle(&self, path: PathBuf, file: File) {
        let mut pool = self.pool.lock().unwrap();
        if pool.values().map(Vec::len).sum::<usize>() >= POOL_LIMIT {
            pool.clear();
        }
        pool.entry(path).or_default().push(file);
    }

    /// Drops every pooled file.
    pub(super) fn clear(&self) {
        self.pool.lock().unwrap().clear();
        self.fences.lock().unwrap().clear();
        self.probes.lock().unwrap().clear();
    }

    /// The queue file of the lock at `lock`.
    pub(super) fn queue_path(&self, lock: &Path) -> PathBuf {
        let mut path = self.fence_path(lock).into_os_string();
        path.push(".queue");
        PathBuf::from(path)
    }

    /// True if acquisitions are queued (or passing the turnstile) for the lock at `lock`.
    pub(super) fn has_waiters(&self, lock: &Path) -> Result<bool> {
        let path = self.queue_path(lock);
        let mut probes = self.probes.lock().unwrap();
        if !probes.contains_key(&path) {
            probes.insert(path.clone(), open(&path)?);
        }
        let owner = oslock::conflicting_owner(&probes[&path]);
        Ok(owner.map_err(|e| io_error("testing", &path, e))?.is_some())
    }

    fn fence_path(&self, lock: &Path) -> PathBuf {
        self.fencing_dir
            .join(sha1_hex(lock.as_os_str().as_encoded_bytes()))
    }

    /// Bumps the fencing counter of the lock at `lock` (held by the caller in `kind`) and,
    /// for an exclusive holder, records `owner`. Returns the new token.
    pub(super) fn stamp(&self, lock: &Path, kind: Kind, owner: &Id) -> Result<FencingToken> {
        let path = self.fence_path(lock);
        let mut fences = self.fences.lock().unwrap();
        if !fences.contains_key(&path) {
            let file = open(&path)?;
            let len = file
                .metadata()
                .map_err(|e| io_error("reading", &path, e))?
                .len();
            fences.insert(path.clone(), (file, len));
        }
        let (file, len) = fences.get_mut(&path).expect("inserted above");
        if kind == Kind::Shared {
            oslock::lock_wait(file, Kind::Exclusive).map_err(|e| io_error("locking", &path, e))?;
        }
        let result = bump(file, len, kind, owner, &path);
        if kind == Kind::Shared {
            oslock::unlock(file).map_err(|e| io_error("unlocking", &path, e))?;
        }
        result
    }

    /// Forgets the holder recorded for the lock at `lock`, keeping the counter. An exclusive
    /// holder calls it just before it unlocks, so that `holder` never names a member that
    /// has released (between a release and the next holder's stamp, it reads no one).
    pub(super) fn unstamp(&self, lock: &Path) -> Result<()> {
        let path = self.fence_path(lock);
        let mut fences = self.fences.lock().unwrap();
        let Some((file, len)) = fences.get_mut(&path) else {
            return Ok(());
        };
        if *len > COUNTER_WIDTH as u64 {
            let cut = file.set_len(COUNTER_WIDTH as u64);
            cut.map_err(|e| io_error("writing", &path, e))?;
            *len = COUNTER_WIDTH as u64;
        }
        Ok(())
    }

    /// The last exclusive holder recorded for the lock at `lock`, if the lock is held now by
    /// a holder that records itself; an error naming the process when it is held by one that
    /// does not (Python tooz).
    pub(super) fn holder(&self, lock: &Path) -> Result<Option<Id>> {
        let file = match File::open(lock) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("opening", lock, e)),
        };
        match oslock::conflicting_owner(&file).map_err(|e| io_error("testing", lock, e))? {
            None => return Ok(None),
            Some(Owner::OpenFile) => {}
            Some(Owner::Process(pid)) => {
                return Err(Error::Backend {
                    driver: "file",
                    message: format!(
                        "{} is locked by process {pid}, which records no member id (Python \
                         tooz does not)",
                        lock.display()
                    ),
                })
            }
        }
        let text = fs::read_to_string(self.fence_path(lock)).unwrap_or_default();
        Ok(text
            .get(COUNTER_WIDTH + 1..)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(unhex)
            .map(Id::from))
    }
}

/// Waits for the lock at `lock` in turn: behind the acquisitions already queued, then queued
/// itself until the kernel grants the lock. Blocks the calling thread; returns the locked file.
pub(super) fn wait_in_turn(queue: &Path, lock: &Path, kind: Kind) -> Result<File> {
    let turn = open(queue)?;
    let waited = oslock::lock_wait(&turn, Kind::Exclusive)
        .and_then(|_| oslock::unlock(&turn))
        .and_then(|_| oslock::lock_wait(&turn, Kind::Shared));
    waited.map_err(|e| io_error("queueing on", queue, e))?;
    let file = open(lock)?;
    oslock::lock_wait(&file, kind).map_err(|e| io_error("locking", lock, e))?;
    Ok(file) // dropping `turn` leaves the queue
}

fn bump(file: &File, len: &mut u64, kind: Kind, owner: &Id, path: &Path) -> Result<FencingToken> {
    let mut counter = [0u8; COUNTER_WIDTH];
    let read = file
        .read_at(&mut counter, 0)
        .map_err(|e| io_error("reading", path, e))?;
    let last: u64 = match std::str::from_utf8(&counter[..read]).map(str::trim) {
        Ok("") => 0,
        Ok(text) => text.parse().map_err(|_| corrupt(path))?,
        Err(_) => return Err(corrupt(path)),
    };
    let next = last + 1;
    let record = match kind {
        Kind::Exclusive => format!("{next:0COUNTER_WIDTH$} {}\n", hex(owner.as_bytes())),
        Kind::Shared => format!("{next:0COUNTER_WIDTH$}"),
    };
    file.write_all_at(record.as_bytes(), 0)
        .map_err(|e| io_error("writing", path, e))?;
    let end = record.len() as u64;
    if kind == Kind::Exclusive && end < *len {
        file.set_len(end)
            .map_err(|e| io_error("writing", path, e))?;
    }
    *len = (*len).max(end);
    if kind == Kind::Exclusive {
        *len = end;
    }
    Ok(FencingToken(next))
}

fn corrupt(path: &Path) -> Error {
    Error::Serialization(format!("corrupt fencing record {}", path.display()))
}
