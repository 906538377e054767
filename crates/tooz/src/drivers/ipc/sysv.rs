//! Thin wrappers over the System V IPC calls the driver uses: semaphores and shared memory.
//!
//! Every `unsafe` block of the driver lives here. The wrappers return `io::Error`s carrying
//! the errno; callers match on [`gone`] (the object was removed) and [`busy`] (a
//! non-blocking or timed `semop` could not proceed).

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// Permissions of every object the driver creates (sysv_ipc's default, as Python tooz uses).
const MODE: libc::c_int = 0o600;

/// The fourth argument of `semctl`, as the C API declares it.
#[repr(C)]
#[derive(Clone, Copy)]
union Semun {
    val: libc::c_int,
    buf: *mut libc::semid_ds,
    array: *mut libc::c_ushort,
}

extern "C" {
    // glibc and musl both export it; the libc crate only binds the syscall number.
    fn semtimedop(
        semid: libc::c_int,
        sops: *mut libc::sembuf,
        nsops: libc::size_t,
        timeout: *const libc::timespec,
    ) -> libc::c_int;
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// True if the error says the semaphore or segment no longer exists (or never did).
pub(super) fn gone(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EIDRM) | Some(libc::EINVAL) | Some(libc::ENOENT)
    )
}

/// True if a non-blocking or timed `semop` could not proceed.
pub(super) fn busy(error: &io::Error) -> bool {
    error.raw_os_error() == Some(libc::EAGAIN)
}

/// True if a blocking call was interrupted by a signal.
pub(super) fn interrupted(error: &io::Error) -> bool {
    error.raw_os_error() == Some(libc::EINTR)
}

/// True if `semget(IPC_CREAT | IPC_EXCL)` found the key taken.
pub(super) fn exists(error: &io::Error) -> bool {
    error.raw_os_error() == Some(libc::EEXIST)
}

/// Creates a one-semaphore set for `key`, failing with `EEXIST` if the key is taken.
/// The new semaphore's value is 0.
pub(super) fn sem_create_excl(key: libc::key_t) -> io::Result<libc::c_int> {
    // SAFETY: semget takes no pointers; any argument values are sound.
    check(unsafe { libc::semget(key, 1, libc::IPC_CREAT | libc::IPC_EXCL | MODE) })
}

/// Creates a private one-semaphore set (value 0), reachable only through its id.
pub(super) fn sem_create_private() -> io::Result<libc::c_int> {
    // SAFETY: semget takes no pointers; any argument values are sound.
    check(unsafe { libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | MODE) })
}

/// Opens the existing semaphore set of `key` (`ENOENT` if there is none).
pub(super) fn sem_open(key: libc::key_t) -> io::Result<libc::c_int> {
    // SAFETY: semget takes no pointers; any argument values are sound.
    check(unsafe { libc::semget(key, 0, 0) })
}

fn semctl(semid: libc::c_int, cmd: libc::c_int, arg: Semun) -> io::Result<libc::c_int> {
    // SAFETY: the commands used here (GETVAL, GETPID, IPC_RMID) read at most the
    // `val` member of the union, which is always initialised; none writes through a pointer.
    check(unsafe { libc::semctl(semid, 0, cmd, arg) })
}

/// The value of semaphore 0 of `semid`.
pub(super) fn sem_getval(semid: libc::c_int) -> io::Result<libc::c_int> {
    semctl(semid, libc::GETVAL, Semun { val: 0 })
}

/// The pid of the process that last operated on semaphore 0 of `semid`.
pub(super) fn sem_getpid(semid: libc::c_int) -> io::Result<libc::pid_t> {
    semctl(semid, libc::GETPID, Semun { val: 0 })
}

/// Removes the set at once, waking every waiter with `EIDRM`.
pub(super) fn sem_remove(semid: libc::c_int) -> io::Result<()> {
    semctl(semid, libc::IPC_RMID, Semun { val: 0 }).map(drop)
}

/// Adds `delta` to semaphore 0 of `semid` with `SEM_UNDO` (the kernel reverts it when the
/// process exits). `wait`: `None` blocks until possible, `Some(d)` waits at most `d` (zero:
/// does not wait) and then fails with `EAGAIN`.
pub(super) fn sem_op_undo(
    semid: libc::c_int,
    delta: libc::c_short,
    wait: Option<Duration>,
) -> io::Result<()> {
    let mut op = libc::sembuf {
        sem_num: 0,
        sem_op: delta,
        sem_flg: libc::SEM_UNDO as libc::c_short,
    };
    let rc = match wait {
        // SAFETY: `op` is a valid sembuf and the count is 1.
        None => unsafe { libc::semop(semid, &mut op, 1) },
        Some(d) if d.is_zero() => {
            op.sem_flg |= libc::IPC_NOWAIT as libc::c_short;
            // SAFETY: as above.
            unsafe { libc::semop(semid, &mut op, 1) }
        }
        Some(d) => {
            let ts = libc::timespec {
                tv_sec: d.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
                tv_nsec: d.subsec_nanos() as _,
            };
            // SAFETY: `op` is a valid sembuf, the count is 1 and `ts` a valid timespec that
            // outlives the call.
            unsafe { semtimedop(semid, &mut op, 1, &ts) }
        }
    };
    check(rc).map(drop)
}

/// Takes a semaphore just created (value 0) in one atomic operation: `+1`, then `-1` with
/// `SEM_UNDO`. The same end state as `SETVAL 1` followed by `semop(-1, SEM_UNDO)` (value 0,
/// undo adjustment +1), in one system call and without the instant in which another process
/// could take the fresh semaphore first.
pub(super) fn sem_take_created(semid: libc::c_int) -> io::Result<()> {
    let nowait = libc::IPC_NOWAIT as libc::c_short;
    let mut ops = [
        libc::sembuf {
            sem_num: 0,
            sem_op: 1,
            sem_flg: nowait,
        },
        libc::sembuf {
            sem_num: 0,
            sem_op: -1,
            sem_flg: nowait | libc::SEM_UNDO as libc::c_short,
        },
    ];
    // SAFETY: `ops` is an array of two valid sembufs and the count says two.
    check(unsafe { libc::semop(semid, ops.as_mut_ptr(), ops.len()) }).map(drop)
}

/// An attached System V shared-memory segment. Detached on drop (never removed).
pub(super) struct Segment {
    id: libc::c_int,
    addr: NonNull<u8>,
    size: usize,
}

// SAFETY: the mapping is process-wide and stays valid until `Drop`; all access goes through
// methods whose callers synchronise (atomics, or a cross-process lock).
unsafe impl Send for Segment {}
// SAFETY: as above.
unsafe impl Sync for Segment {}

/// The id of the segment of `key`, created with `size` bytes if `create` and missing.
pub(super) fn shm_get(key: libc::key_t, size: usize, create: bool) -> io::Result<libc::c_int> {
    let flags = if create { libc::IPC_CREAT | MODE } else { 0 };
    // SAFETY: shmget takes no pointers; any argument values are sound.
    check(unsafe { libc::shmget(key, size, flags) })
}

impl Segment {
    /// Attaches the segment `id` read-write.
    pub(super) fn attach(id: libc::c_int) -> io::Result<Segment> {
        // SAFETY: all-zero bytes are a valid `shmid_ds`, which IPC_STAT fills in.
        let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
        // SAFETY: `ds` is a valid, exclusively borrowed shmid_ds the kernel writes.
        check(unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) })?;
        // SAFETY: a null address lets the kernel choose where to map; flags 0 = read-write.
        let addr = unsafe { libc::shmat(id, std::ptr::null(), 0) };
        if addr as isize == -1 {
            return Err(io::Error::last_os_error());
        }
        let addr = NonNull::new(addr.cast::<u8>()).ok_or_else(|| io::Error::other("shmat"))?;
        Ok(Segment {
            id,
            addr,
            size: ds.shm_segsz as usize,
        })
    }

    /// The segment id.
    pub(super) fn id(&self) -> libc::c_int {
        self.id
    }

    /// Its size in bytes.
    pub(super) fn size(&self) -> usize {
        self.size
    }

    /// Copies `out.len()` bytes from `offset`. Callers hold the lock that guards the bytes.
    pub(super) fn read(&self, offset: usize, out: &mut [u8]) {
        assert!(offset + out.len() <= self.size, "read past the segment");
        // SAFETY: the range is inside the mapping (checked above) and `out` does not overlap
        // it (it is process memory, not the segment).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.addr.as_ptr().add(offset),
                out.as_mut_ptr(),
                out.len(),
            )
        }
    }

    /// Copies `data` to `offset`. Callers hold the lock that guards the bytes.
    pub(super) fn write(&self, offset: usize, data: &[u8]) {
        assert!(offset + data.len() <= self.size, "write past the segment");
        // SAFETY: the range is inside the mapping (checked above) and does not overlap `data`.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.addr.as_ptr().add(offset), data.len())
        }
    }

    /// The 8-byte word at `offset` (a multiple of 8), as an atomic shared with every process
    /// that attached the segment.
    pub(super) fn word(&self, offset: usize) -> &AtomicU64 {
        assert!(
            offset % 8 == 0 && offset + 8 <= self.size,
            "bad word offset"
        );
        // SAFETY: the mapping is page-aligned, so `offset % 8 == 0` gives an aligned u64
        // inside it (checked above); it lives as long as `self`, and other processes only
        // touch it through atomic operations too.
        unsafe { &*self.addr.as_ptr().add(offset).cast::<AtomicU64>() }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: `addr` came from shmat and no reference into the mapping outlives `self`.
        unsafe {
            libc::shmdt(self.addr.as_ptr().cast());
        }
    }
}

/// The real user id (names the per-user runtime directory).
pub(super) fn uid() -> u32 {
    // SAFETY: getuid cannot fail and takes no arguments.
    unsafe { libc::getuid() }
}

/// Wall-clock microseconds since the epoch.
pub(super) fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
