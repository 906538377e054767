//! Python tooz's semaphore lock (`IPCLock`), step for step, so that Rust and Python
//! processes exclude each other.
//!
//! * acquire: `semget(key, 1, IPC_CREAT | IPC_EXCL | 0600)`, value 1; if the key is taken,
//!   open the existing set; then `semop(-1, SEM_UNDO)`, waiting as asked. A set that
//!   vanishes meanwhile (`EIDRM`/`EINVAL`/`ENOENT`) means a release happened: start over.
//!   tooz gives a set it created the value 1 with `SETVAL` and then takes it with its
//!   `semop`; this driver does both in one atomic `semop` (`+1`, then `-1` with `SEM_UNDO`):
//!   the same state for every other process (value 0, the unit given back if we die), one
//!   system call less, and no instant in which a third process could take the fresh set.
//! * release: `IPC_RMID` (not `+1`): every waiter wakes with `EIDRM` and races to create the
//!   next semaphore.
//! * `SEM_UNDO` gives the unit back if the holder's process dies, so a crash never leaves the
//!   lock taken.

use std::io;
use std::time::{Duration, Instant};

use super::sysv;

/// How long a blocked wait stays in the kernel before checking whether its caller gave up.
/// A release wakes it at once; this only bounds how long an abandoned wait lingers.
pub(super) const CANCEL_CHECK: Duration = Duration::from_millis(500);

/// How long to wait.
#[derive(Debug, Clone, Copy)]
pub(super) enum Wait {
    /// Try once.
    No,
    /// Until this instant.
    Until(Instant),
    /// Until acquired (or the caller gives up).
    Forever,
}

/// The outcome of [`acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Attempt {
    /// Held: the id of the semaphore set.
    Acquired(libc::c_int),
    /// Busy (`Wait::No`) or still busy at the deadline.
    NotAcquired,
    /// `cancelled()` said the caller gave up.
    Cancelled,
}

/// Where a try stands after looking the semaphore up.
enum Found {
    /// This process created it and holds it.
    Created(libc::c_int),
    /// It existed: take it with `semop`.
    Existing(libc::c_int),
    /// It vanished between two calls: look again.
    Vanished,
}

/// Creates the semaphore of `key`, taken by us, or opens the existing one.
fn create_or_open(key: libc::key_t) -> io::Result<Found> {
    match sysv::sem_create_excl(key) {
        Ok(semid) => match sysv::sem_take_created(semid) {
            Ok(()) => Ok(Found::Created(semid)),
            Err(e) if sysv::gone(&e) => Ok(Found::Vanished),
            Err(e) => Err(e),
        },
        Err(e) if sysv::exists(&e) => match sysv::sem_open(key) {
            Ok(semid) => Ok(Found::Existing(semid)),
            Err(e) if sysv::gone(&e) => Ok(Found::Vanished),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Takes the lock of `key`. Blocks the calling thread unless `wait` is [`Wait::No`];
/// `cancelled` is polled every [`CANCEL_CHECK`] while blocked.
pub(super) fn acquire(
    key: libc::key_t,
    wait: Wait,
    cancelled: &dyn Fn() -> bool,
) -> io::Result<Attempt> {
    loop {
        let timeout = match wait {
            Wait::No => Duration::ZERO,
            Wait::Until(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(Attempt::NotAcquired);
                }
                left.min(CANCEL_CHECK)
            }
            Wait::Forever => CANCEL_CHECK,
        };
        let semid = match create_or_open(key)? {
            Found::Created(semid) => return Ok(Attempt::Acquired(semid)),
            Found::Existing(semid) => semid,
            Found::Vanished => continue,
        };
        match sysv::sem_op_undo(semid, -1, Some(timeout)) {
            Ok(()) => return Ok(Attempt::Acquired(semid)),
            Err(e) if sysv::busy(&e) && matches!(wait, Wait::No) => {
                return Ok(Attempt::NotAcquired)
            }
            Err(e) if sysv::busy(&e) || sysv::gone(&e) || sysv::interrupted(&e) => {}
            Err(e) => return Err(e),
        }
        if cancelled() {
            return Ok(Attempt::Cancelled);
        }
    }
}

/// Releases a held lock by removing its semaphore (as tooz does); `false` if it was already
/// gone (broken).
pub(super) fn release(semid: libc::c_int) -> io::Result<bool> {
    match sysv::sem_remove(semid) {
        Ok(()) => Ok(true),
        Err(e) if sysv::gone(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// True while the semaphore `semid` exists (it was neither released nor broken).
pub(super) fn exists(semid: libc::c_int) -> io::Result<bool> {
    match sysv::sem_getval(semid) {
        Ok(_) => Ok(true),
        Err(e) if sysv::gone(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes the semaphore of `key` whoever holds it (tooz's `break_`). Returns the id of the
/// removed set and whether it was held, or `None` if there was none.
pub(super) fn break_(key: libc::key_t) -> io::Result<Option<(libc::c_int, bool)>> {
    let semid = match sysv::sem_open(key) {
        Ok(semid) => semid,
        Err(e) if sysv::gone(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let held = match sysv::sem_getval(semid) {
        Ok(value) => value == 0,
        Err(e) if sysv::gone(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    match sysv::sem_remove(semid) {
        Ok(()) => Ok(Some((semid, held))),
        Err(e) if sysv::gone(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Who holds the lock `key`: `None` if free, else the semaphore id and the pid of the
/// process whose `semop` took it.
pub(super) fn holder(key: libc::key_t) -> io::Result<Option<(libc::c_int, libc::pid_t)>> {
    let semid = match sysv::sem_open(key) {
        Ok(semid) => semid,
        Err(e) if sysv::gone(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let read = || -> io::Result<Option<libc::pid_t>> {
        if sysv::sem_getval(semid)? != 0 {
            return Ok(None);
        }
        sysv::sem_getpid(semid).map(Some)
    };
    match read() {
        Ok(pid) => Ok(pid.map(|pid| (semid, pid))),
        Err(e) if sysv::gone(&e) => Ok(None),
        Err(e) => Err(e),
    }
}
