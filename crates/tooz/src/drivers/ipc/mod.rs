//! `ipc://`: System V semaphores and shared memory, for the processes of one host.
//!
//! Interoperates with Python tooz's `ipc` driver: locks use the same semaphores with the same
//! protocol, and groups live in the same shared-memory list, so Rust and Python processes
//! exclude each other and see each other's groups. Beyond tooz: fencing tokens, lock holders
//! (hence leader election), membership with capabilities and member info, watchers, and a
//! `break_lock` that fires the holder's `lost()`.
//!
//! # Layout
//!
//! | object | key | content |
//! |---|---|---|
//! | lock `N` | semaphore `ftok(N, "__TOOZ_LOCK_")` | 1 = free, 0 = held; removed on release |
//! | group list | segment `ftok("GROUP_LIST", "_TOOZ_INTERNAL")` | u16 length + msgpack array of ids |
//! | group-list lock | semaphore `ftok("TOOZ_INTERNAL_LOCK", "__TOOZ_LOCK_")` | as any lock |
//! | state | segment `ftok("STATE-v1", "_TOOZ_RS_INTERNAL")` | fencing counter, lock-holder table |
//! | session | private semaphore per coordinator that joined a group | 1 while its process lives |
//! | members | files under `/dev/shm/tooz-ipc-<uid>/groups/` | one msgpack record per member |
//!
//! `ftok` is Python tooz's (md5 based, see `keys.rs`), not libc's. The group list and locks
//! are described in `groups.rs` and `semlock.rs`, the state segment in `state.rs`. The
//! member directory is `/dev/shm/tooz-ipc-<uid>` (`/tmp/tooz-ipc-<uid>` where `/dev/shm` is
//! missing), mode 0700, and must belong to the user.
//!
//! # Locks
//!
//! tooz's protocol: create the semaphore (`IPC_CREAT | IPC_EXCL`, mode 0600, value one) or
//! open the existing one, `semop(-1)` with `SEM_UNDO`, release by removing it (`IPC_RMID`).
//! (tooz sets the value of a set it creates with `SETVAL` before its `semop`; this driver
//! does both in one atomic `semop`, see `semlock.rs`.) The kernel gives the lock back the
//! instant its holder's process dies. A try is made inline; a blocking acquire waits in the
//! kernel (`semtimedop`, with the time left when there is a deadline) on a blocking thread,
//! waking every 0.5 s only to see whether its caller gave up. If it is granted after its
//! caller gave up (dropped, timed out, coordinator stopped), it releases the lock at once.
//! Shared locks are not supported.
//!
//! Fencing tokens come from one counter per host in the state segment, taken while the
//! semaphore is held, so they strictly increase per lock name (indeed across all names)
//! across processes. The holder's member id is recorded next to it for `holder()` and
//! `get_leader`. A semaphore taken by Python tooz has no recorded holder: `holder()`
//! answers an error naming the holding pid.
//!
//! `break_lock` removes the semaphore, as tooz's `break_`. A holder in this process sees its
//! `lost()` fire at once; a holder in another process is not told: its `release()` then
//! returns `false`. Locks cannot expire, so otherwise `lost()` only fires on `stop()`.
//! A break that lands between an acquirer's `semop` and its token would leave that acquirer
//! a token larger than the next holder's; acquirers check for it (a syscall only when a break
//! ran meanwhile, see `State::breaks_since`). Breaks by Python tooz's `break_` are not
//! announced, so this one narrow race remains with them.
//!
//! # Membership
//!
//! Groups are tooz's list; members are records in files, tied to their coordinator's
//! session semaphore: a member whose process died, or whose coordinator stopped or was
//! dropped, is gone from the next read. Nothing is timeout based (`NON_TIMEOUT_BASED`), no
//! heartbeat is needed. Watchers poll membership every `poll_interval` (default 0.5 s) and
//! diff it. Every membership operation takes tooz's internal lock: one at a time per host.
//! Python tooz's `ipc` driver has no members: it lists the groups Rust creates (and Rust
//! lists its groups) but sees no members, and its `delete_group` does not check for any.
//!
//! # Limits
//!
//! * Keys are 32 bits of md5, as in tooz: two names may collide (then they share a lock).
//! * The group list holds 65,533 bytes of msgpack (about 1,600 groups with 38-byte names),
//!   or 1,021 bytes if Python tooz created the segment; a group name must fit in it.
//!   Groups outlive every process: they go when deleted, or with the segment (`ipcrm`,
//!   reboot, or a Python tooz `stop()` while no Rust coordinator is started).
//! * Each held lock and each coordinator that joined a group uses a semaphore set: `ipcs -l`
//!   shows the host's limit on sets (`SEMMNI`, often 32,000). The semaphore of a crashed
//!   coordinator is removed when a reader of one of its groups finds it dead; if its groups
//!   are never read again, it stays (`ipcs -s` lists it with key 0). A lock whose holder died
//!   keeps its (free) semaphore until it is next taken and released, as in tooz.
//! * The holder table has 4,096 slots; a lock whose neighbourhood of 64 slots is full of
//!   live holders is still held and fenced, but `holder()` cannot name its holder.
//! * Every waiting acquire occupies a thread of tokio's blocking pool.
//! * Processes must share the SysV IPC namespace and `/dev/shm` (containers: `--ipc=host`).
//!
//! Options: `timeout` (longest wait for the internal lock, default 10 s) and
//! `poll_interval`.

mod groups;
mod keys;
mod semlock;
mod state;
mod sysv;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use sha1::{Digest, Sha1};
use tokio::time::Instant;

use super::common::{HeldLocks, OnAbandon, SessionSlot};
use crate::characteristics::{Characteristic as C, Characteristics};
use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::types::{
    Capabilities, DriverFacts, FencingToken, LockRequest, LostReason, MemberInfo, SessionEvents,
    Support, WatchKind, DEFAULT_POLL_INTERVAL,
};
use crate::url::{DriverUrl, OptionKind, OptionSpec};
use groups::{Groups, Tx};
use semlock::{Attempt, Wait};
use state::{HolderId, HolderRef, State};

pub(crate) const FACTS: DriverFacts = DriverFacts {
    characteristics: Characteristics::of(&[
        C::DistributedAcrossThreads,
        C::DistributedAcrossProcesses,
        C::NonTimeoutBased,
    ]),
    support: Support {
        watch: WatchKind::Poll,
        shared_locks: false,
        ..Support::ALL
    },
    poll_interval: DEFAULT_POLL_INTERVAL,
    options: IPC_OPTIONS,
};

const IPC_OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "timeout",
        kind: OptionKind::Duration,
        help: "longest wait for tooz's internal IPC lock, which every group operation takes",
    },
    OptionSpec {
        name: "poll_interval",
        kind: OptionKind::Duration,
        help: "interval at which watchers re-read membership",
    },
    OptionSpec {
        name: "operation_timeout",
        kind: OptionKind::Duration,
        help: "longest one call may take before it fails with a timeout (default: `timeout`)",
    },
];

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn build(url: &DriverUrl, _member: &Id) -> Result<Arc<dyn Driver>> {
    let options = url.options("ipc", FACTS.options)?;
    if url.host().is_some() || !matches!(url.path().as_str(), "" | "/") {
        return Err(Error::InvalidUrl {
            url: url.to_string(),
            reason: "an ipc URL names no host and no path: use ipc://".into(),
        });
    }
    Ok(Arc::new(IpcDriver {
        timeout: options.duration("timeout").unwrap_or(DEFAULT_TIMEOUT),
        facts: FACTS.with_options(&options),
        session: SessionSlot::new("ipc"),
    }))
}

fn backend(what: &str, e: io::Error) -> Error {
    let hint = match e.raw_os_error() {
        Some(libc::ENOSPC) => " (the host's System V IPC limit is reached: see `ipcs -l`)",
        Some(libc::EACCES) | Some(libc::EPERM) => " (the object belongs to another user)",
        _ => "",
    };
    Error::Backend {
        driver: "ipc",
        message: format!("{what}: {e}{hint}"),
    }
}

/// What every coordinator of this process shares: the state segment and the runtime
/// directory.
struct Process {
    state: State,
    dir: PathBuf,
    pid: u32,
    /// Digests of long member ids whose id file this process wrote.
    long_ids: Mutex<HashSet<[u8; 20]>>,
}

/// One held acquisition of this process.
struct Held {
    key: libc::key_t,
    semid: libc::c_int,
    slot: Option<usize>,
}

/// Every lock held by this process, by acquisition nonce: a `break_lock` from any
/// coordinator of the process finds the holders it must tell.
static HELD: LazyLock<HeldLocks<Held>> = LazyLock::new(HeldLocks::default);

static PROCESS: Mutex<Option<Arc<Process>>> = Mutex::new(None);

/// The per-user directory of member records: private, owned by the user, not a symlink.
fn runtime_dir() -> io::Result<PathBuf> {
    let uid = sysv::uid();
    let root = if Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    let dir = Path::new(root).join(format!("tooz-ipc-{uid}"));
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::symlink_metadata(&dir)?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(io::Error::other(format!(
            "{} must be a directory private to user {uid}",
            dir.display()
        )));
    }
    fs::create_dir_all(dir.join("ids"))?;
    Ok(dir)
}

fn process() -> Result<Arc<Process>> {
    let mut slot = PROCESS.lock().unwrap();
    if let Some(process) = slot.as_ref() {
        return Ok(process.clone());
    }
    let state = State::open().map_err(|e| backend("state segment", e))?;
    let dir = runtime_dir().map_err(|e| backend("runtime directory", e))?;
    let process = Arc::new(Process {
        state,
        dir,
        pid: std::process::id(),
        long_ids: Mutex::new(HashSet::new()),
    });
    *slot = Some(process.clone());
    Ok(process)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Process {
    /// How the holder table names `member`; for an id too long for a slot, makes sure the
    /// file mapping its digest to it exists.
    fn holder_id<'a>(&self, member: &'a Id) -> Result<HolderRef<'a>> {
        if member.len() <= state::INLINE {
            return Ok(HolderRef::Inline(member.as_bytes()));
        }
        let digest: [u8; 20] = Sha1::digest(member.as_bytes()).into();
        if self.long_ids.lock().unwrap().contains(&digest) {
            return Ok(HolderRef::Digest(digest));
        }
        let path = self.dir.join("ids").join(hex(&digest));
        let tmp = self
            .dir
            .join("ids")
            .join(format!(".{}", uuid::Uuid::new_v4().simple()));
        let write = || -> io::Result<()> {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(member.as_bytes())?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            backend("member id file", e)
        })?;
        self.long_ids.lock().unwrap().insert(digest);
        Ok(HolderRef::Digest(digest))
    }

    fn resolve(&self, holder: HolderId) -> Result<Id> {
        match holder {
            HolderId::Inline(id) => Ok(Id::from(id)),
            HolderId::Digest(digest) => fs::read(self.dir.join("ids").join(hex(&digest)))
                .map(Id::from)
                .map_err(|e| backend("member id file", e)),
        }
    }

    /// Tries to take `req`'s lock, waiting as `wait` says. Blocks unless `wait` is
    /// [`Wait::No`]. `Ok(None)`: not acquired (busy, deadline passed, or cancelled).
    fn acquire(
        &self,
        req: &LockRequest,
        wait: Wait,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Option<FencingToken>> {
        let key = keys::lock_key(req.name.as_bytes());
        let holder = self.holder_id(&req.owner)?;
        loop {
            let epoch = self.state.break_epoch();
            let semid = match semlock::acquire(key, wait, cancelled)
                .map_err(|e| backend("lock semaphore", e))?
            {
                Attempt::Acquired(semid) => semid,
                Attempt::NotAcquired | Attempt::Cancelled => return Ok(None),
            };
            if let Some(token) = self.take(key, semid, epoch, req, holder)? {
                return Ok(Some(token));
            }
            // Broken between our semop and now: the acquisition never counted. Try again.
        }
    }

    /// Makes a granted semaphore an acquisition: token, holder record, registration. `None`
    /// if the semaphore was removed (broken) before it was registered. `epoch`: the break
    /// epoch read before the semaphore was taken.
    fn take(
        &self,
        key: libc::key_t,
        semid: libc::c_int,
        epoch: u64,
        req: &LockRequest,
        holder: HolderRef<'_>,
    ) -> Result<Option<FencingToken>> {
        let token = self.state.next_token();
        let slot = self.state.record(key, semid, self.pid, token, holder);
        if slot.is_none() {
            tracing::warn!(lock = %req.name, "ipc holder table full here: holder not recorded");
        }
        let forget = || {
            if let Some(slot) = slot {
                self.state.clear(slot, key, semid);
            }
        };
        // A break between our semop and our token would leave us a token larger than the
        // next holder's: check the semaphore is still there if any break may have happened.
        // Registration and this check are atomic with respect to `break_lock` in this
        // process, which removes the semaphore first and then looks for holders to tell.
        let record = Held { key, semid, slot };
        let registered = HELD.insert_if(req, record, || {
            if self.state.breaks_since(epoch) {
                semlock::exists(semid)
            } else {
                Ok(true)
            }
        });
        match registered {
            Ok(true) => Ok(Some(FencingToken(token))),
            Ok(false) => {
                forget();
                Ok(None)
            }
            Err(e) => {
                forget();
                let _ = semlock::release(semid);
                Err(backend("lock semaphore", e))
            }
        }
    }

    /// Releases the acquisition `nonce`; `false` if it is not held (any more).
    fn release(&self, nonce: &str) -> Result<bool> {
        let Some(held) = HELD.remove(nonce).map(|h| h.record) else {
            return Ok(false);
        };
        if let Some(slot) = held.slot {
            self.state.clear(slot, held.key, held.semid);
        }
        semlock::release(held.semid).map_err(|e| backend("lock semaphore", e))
    }
}

const WAITING: u8 = 0;
const GRANTED: u8 = 1;
const ABANDONED: u8 = 2;

/// The hand-shake between a waiting acquire and its blocking thread: whichever of "granted"
/// and "abandoned" comes first wins, and the loser cleans up.
#[derive(Default)]
struct Pending(AtomicU8);

impl Pending {
    fn abandon(&self) -> bool {
        self.0
            .compare_exchange(WAITING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn grant(&self) -> bool {
        self.0
            .compare_exchange(WAITING, GRANTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn is_abandoned(&self) -> bool {
        self.0.load(Ordering::Acquire) == ABANDONED
    }
}

/// Sets the flag when dropped: tells a blocking group operation its caller is gone.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// One started coordinator.
struct Session {
    process: Arc<Process>,
    groups: Arc<Groups>,
    waits: Mutex<Vec<Weak<Pending>>>,
}

impl Session {
    fn track(&self, pending: &Arc<Pending>) {
        let mut waits = self.waits.lock().unwrap();
        waits.retain(|w| w.strong_count() > 0);
        waits.push(Arc::downgrade(pending));
    }

    fn end(&self) {
        for pending in self.waits.lock().unwrap().drain(..) {
            if let Some(pending) = pending.upgrade() {
                pending.abandon();
            }
        }
        self.groups.end();
    }
}

/// The `ipc` driver: one coordinator's view of the host's System V IPC objects.
pub struct IpcDriver {
    timeout: Duration,
    facts: DriverFacts,
    session: SessionSlot<Session>,
}

impl IpcDriver {
    fn session(&self) -> Result<Arc<Session>> {
        self.session.get()
    }

    /// Runs `f` on a blocking thread under tooz's internal lock.
    async fn locked<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let session = self.session()?;
        let deadline = std::time::Instant::now() + self.timeout;
        let cancelled = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(cancelled.clone());
        tokio::task::spawn_blocking(move || {
            let cancelled = || cancelled.load(Ordering::Acquire);
            session.groups.locked(deadline, &cancelled, f)
        })
        .await
        .map_err(|e| Error::Backend {
            driver: "ipc",
            message: format!("group operation failed: {e}"),
        })?
    }
}

impl Drop for IpcDriver {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            session.end();
        }
    }
}

#[async_trait]
impl Driver for IpcDriver {
    fn scheme(&self) -> &'static str {
        "ipc"
    }

    fn facts(&self) -> &DriverFacts {
        &self.facts
    }

    fn session_timeout(&self) -> Duration {
        self.timeout
    }

    fn validate_name(&self, kind: &'static str, name: &Id) -> Result<()> {
        if kind != "group" {
            return Ok(());
        }
        let size = match self.session.get().ok() {
            Some(session) => session.groups.list_size(),
            None => groups::LIST_SIZE,
        };
        // u16 length, array header, bin header (up to 5 bytes each).
        if name.len() + 12 > size {
            return Err(Error::InvalidName {
                kind,
                name: name.to_string(),
                reason: format!("the shared group list holds {} bytes", size - 3),
            });
        }
        Ok(())
    }

    async fn start(&self, _events: SessionEvents) -> Result<()> {
        let process = process()?;
        let dir = process.dir.clone();
        let groups = tokio::task::spawn_blocking(move || Groups::open(&dir))
            .await
            .map_err(|e| Error::Backend {
                driver: "ipc",
                message: e.to_string(),
            })?
            .map_err(|e| backend("group list", e))?;
        let session = Session {
            process,
            groups: Arc::new(groups),
            waits: Mutex::new(Vec::new()),
        };
        if let Some(old) = self.session.set(Arc::new(session)) {
            old.end();
        }
        Ok(())
    }

    async fn stop(&self) -> Result<()> {
        let session = self.session.take();
        if let Some(session) = session {
            session.end();
        }
        Ok(())
    }

    async fn create_group(&self, group: &Id) -> Result<()> {
        let group = group.clone();
        self.locked(move |tx| tx.create_group(&group)).await
    }

    async fn delete_group(&self, group: &Id) -> Result<()> {
        let group = group.clone();
        self.locked(move |tx| tx.delete_group(&group)).await
    }

    async fn get_groups(&self) -> Result<BTreeSet<Id>> {
        let groups = self.locked(|tx| tx.get_groups()).await?;
        Ok(groups.into_iter().collect())
    }

    async fn join_group(&self, group: &Id, member: &Id, caps: &Capabilities) -> Result<()> {
        let (group, member, caps) = (group.clone(), member.clone(), caps.clone());
        self.locked(move |tx| tx.join(&group, &member, &caps)).await
    }

    async fn leave_group(&self, group: &Id, member: &Id) -> Result<()> {
        let (group, member) = (group.clone(), member.clone());
        self.locked(move |tx| tx.leave(&group, &member)).await
    }

    async fn get_members_with_capabilities(
        &self,
        group: &Id,
    ) -> Result<BTreeMap<Id, Capabilities>> {
        let group = group.clone();
        self.locked(move |tx| tx.members(&group)).await
    }

    async fn get_member_info(&self, group: &Id, member: &Id) -> Result<MemberInfo> {
        let (group, member) = (group.clone(), member.clone());
        self.locked(move |tx| tx.member_info(&group, &member)).await
    }

    async fn update_capabilities(
        &self,
        group: &Id,
        member: &Id,
        caps: &Capabilities,
    ) -> Result<()> {
        let (group, member, caps) = (group.clone(), member.clone(), caps.clone());
        self.locked(move |tx| tx.update(&group, &member, &caps))
            .await
    }

    async fn lock_try_acquire(&self, req: &LockRequest) -> Result<Option<FencingToken>> {
        let session = self.session()?;
        session.process.acquire(req, Wait::No, &|| false)
    }

    async fn lock_acquire(
        &self,
        req: &LockRequest,
        deadline: Option<Instant>,
    ) -> Result<Option<FencingToken>> {
        let session = self.session()?;
        if let Some(token) = session.process.acquire(req, Wait::No, &|| false)? {
            return Ok(Some(token));
        }
        let wait = match deadline {
            Some(deadline) if deadline <= Instant::now() => return Ok(None),
            Some(deadline) => Wait::Until(deadline.into_std()),
            None => Wait::Forever,
        };
        let pending = Arc::new(Pending::default());
        session.track(&pending);
        // Dropped: the thread stops waiting, or, if it was granted the lock meanwhile, the lock
        // is released here.
        let (abandoned, process, nonce) =
            (pending.clone(), session.process.clone(), req.nonce.clone());
        let abandon = OnAbandon::run(move || {
            if !abandoned.abandon() {
                if let Err(error) = process.release(&nonce) {
                    tracing::warn!(%error, "releasing an abandoned ipc lock failed");
                }
            }
        });
        let (process, req, waiting) = (session.process.clone(), req.clone(), pending.clone());
        let granted = tokio::task::spawn_blocking(move || {
            let got = process.acquire(&req, wait, &|| waiting.is_abandoned())?;
            if got.is_some() && !waiting.grant() {
                // Granted after the caller gave up: give it back.
                process.release(&req.nonce)?;
                return Ok(None);
            }
            Ok(got)
        })
        .await
        .map_err(|e| Error::Backend {
            driver: "ipc",
            message: format!("lock wait failed: {e}"),
        })?;
        abandon.disarm();
        match granted {
            Ok(None) if pending.is_abandoned() => Err(Error::Connection(
                "the coordinator was stopped while waiting for the lock".into(),
            )),
            other => other,
        }
    }

    async fn lock_release(&self, req: &LockRequest) -> Result<bool> {
        let session = self.session()?;
        session.process.release(&req.nonce)
    }

    async fn lock_refresh(&self, req: &LockRequest) -> Result<bool> {
        let Some(semid) = HELD.read(&req.nonce, |h| h.semid) else {
            return Ok(false);
        };
        semlock::exists(semid).map_err(|e| backend("lock semaphore", e))
    }

    async fn lock_break(&self, name: &Id) -> Result<bool> {
        let session = self.session()?;
        let key = keys::lock_key(name.as_bytes());
        let state = &session.process.state;
        let Some((semid, held)) = state
            .breaking(|| semlock::break_(key))
            .map_err(|e| backend("lock semaphore", e))?
        else {
            return Ok(false);
        };
        HELD.lose_where(|h| h.key == key && h.semid == semid, LostReason::Broken);
        state.forget(key, semid);
        Ok(held)
    }

    async fn lock_holder(&self, name: &Id) -> Result<Option<Id>> {
        let session = self.session()?;
        let process = &session.process;
        let key = keys::lock_key(name.as_bytes());
        let mut last_pid = 0;
        // A holder records itself right after its semop: give it a moment.
        for _ in 0..20 {
            let Some((semid, pid)) =
                semlock::holder(key).map_err(|e| backend("lock semaphore", e))?
            else {
                return Ok(None);
            };
            if let Some(rec) = process.state.lookup(key, semid) {
                if rec.pid == pid as u32 {
                    return process.resolve(rec.holder).map(Some);
                }
            }
            last_pid = pid;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Err(Error::Backend {
            driver: "ipc",
            message: format!(
                "lock {name} is held by process {last_pid}, which recorded no member id \
                 (Python tooz does not)"
            ),
        })
    }
}
