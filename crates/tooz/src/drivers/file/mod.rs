//! `file://DIRECTORY`: coordination through a directory, for the processes of one host.
//!
//! The layout is Python tooz's file driver's, so Python and Rust processes sharing a directory
//! exclude each other and see each other's groups and members:
//!
//! | path | content |
//! |---|---|
//! | `D/.driver_lock` | record lock serialising membership changes and reads |
//! | `D/groups/<sha1(G)>/.metadata` | msgpack `{'group_id': G, 'encoded': False}` |
//! | `D/groups/<sha1(G)>/<sha1(M)>.raw` | msgpack member record; its mtime is the heartbeat |
//! | `D/<lock name>` | lock file, locked with a whole-file POSIX record lock |
//! | `D/tmp/` | scratch files, renamed into place so no half-written record is ever seen |
//!
//! Beyond tooz: fencing tokens kept in `D/.tooz-fencing/<sha1(lock path)>`, leader election on
//! the locks `D/.tooz-leaders/<sha1(G)>`, `update_capabilities`, `get_member_info`, and
//! shared locks that are shared across processes.
//!
//! Locks are open-file-description record locks: they conflict with the `lockf` locks of
//! Python tooz, exclude the threads of one process from each other, and the kernel frees them
//! the moment their process dies. A blocked acquire waits in the kernel (`F_OFD_SETLKW`) on a
//! blocking thread; if its caller gives up first, the thread releases the lock as soon as the
//! kernel grants it. Waiters queue (see `locks`), so a process releasing and re-acquiring in a
//! loop does not starve the others. Lock names must be UTF-8 relative paths inside D (as in tooz). A lock
//! cannot be broken by another process: `break_lock` is not implemented.
//!
//! Membership is timeout-based, as in tooz: a member whose file was not touched for
//! `timeout` seconds (default 10; `membership_timeout` overrides it) is not listed. Watchers
//! are woken by inotify, with a periodic re-read (every `poll_interval`) for expiries; a join
//! and leave faster than the watcher can be coalesced.
//! `joined_on` is written in UTC.

mod locks;
mod oslock;
mod records;
mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use sha1::Digest;
use tokio::time::Instant;

use super::common::errors::{
    group_already_exist, group_not_created, group_not_empty, is_not_found as not_found,
    member_already_exist, member_not_joined,
};
use super::common::{HeldLocks, JoinedGroups};
use crate::characteristics::{Characteristic as C, Characteristics};
use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::types::{
    Capabilities, DriverFacts, FencingToken, GroupFeed, LockMode, LockRequest, MemberInfo,
    SessionEvents, Support, Value, WatchKind, DEFAULT_POLL_INTERVAL,
};
use crate::url::{DriverUrl, COMMON_OPTIONS};
use oslock::Kind;

pub(crate) const FACTS: DriverFacts = DriverFacts {
    characteristics: Characteristics::of(&[
        C::DistributedAcrossThreads,
        C::DistributedAcrossProcesses,
    ]),
    support: Support {
        watch: WatchKind::Notified,
        break_lock: false,
        ..Support::ALL
    },
    poll_interval: DEFAULT_POLL_INTERVAL,
    options: COMMON_OPTIONS,
};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// First and longest pause between two tries of a busy `.driver_lock` (held by another
/// process for the length of one group operation).
const DRIVER_LOCK_FIRST_NAP: Duration = Duration::from_micros(200);
const DRIVER_LOCK_LONGEST_NAP: Duration = Duration::from_millis(20);
const FENCING_DIR: &str = ".tooz-fencing";
const LEADERS_DIR: &str = ".tooz-leaders";
/// Longest file name most file systems accept.
const NAME_MAX: usize = 255;

pub(crate) fn build(url: &DriverUrl, member: &Id) -> Result<Arc<dyn Driver>> {
    let options = url.options("file", FACTS.options)?;
    let invalid = |reason: &str| Error::InvalidUrl {
        url: url.to_string(),
        reason: reason.into(),
    };
    if url.host().is_some() || !url.has_authority() {
        return Err(invalid(
            "the directory must be an absolute path: file:///path/to/dir",
        ));
    }
    let root = PathBuf::from(url.path());
    if !root.is_absolute() || root == Path::new("/") {
        return Err(invalid("give a directory: file:///path/to/dir"));
    }
    let timeout = options
        .duration("membership_timeout")
        .or(options.duration("timeout"))
        .unwrap_or(DEFAULT_TIMEOUT);
    Ok(Arc::new(FileDriver {
        member: member.clone(),
        timeout,
        facts: FACTS.with_options(&options),
        driver_lock: tokio::sync::Mutex::new(None),
        joined: JoinedGroups::default(),
        held: HeldLocks::default(),
        lock_files: locks::LockFiles::new(root.join(FENCING_DIR)),
        root,
    }))
}

fn sha1_hex(bytes: &[u8]) -> String {
    let digest = sha1::Sha1::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn io_error(what: &str, path: &Path, error: io::Error) -> Error {
    Error::Backend {
        driver: "file",
        message: format!("{what} {}: {error}", path.display()),
    }
}

/// The file driver. See the module docs.
pub struct FileDriver {
    root: PathBuf,
    member: Id,
    timeout: Duration,
    facts: DriverFacts,
    /// `.driver_lock`, opened by `start`; the mutex gives this driver's callers their turn.
    driver_lock: tokio::sync::Mutex<Option<File>>,
    joined: JoinedGroups,
    held: HeldLocks<(PathBuf, File)>,
    lock_files: locks::LockFiles,
}

/// A member file as read from a group directory.
struct Member {
    file_name: String,
    record: records::MemberRecord,
    modified: SystemTime,
}

impl FileDriver {
    fn groups_dir(&self) -> PathBuf {
        self.root.join("groups")
    }

    fn group_dir(&self, group: &Id) -> PathBuf {
        self.groups_dir().join(sha1_hex(group.as_bytes()))
    }

    fn member_file_name(member: &Id) -> String {
        format!("{}.raw", sha1_hex(member.as_bytes()))
    }

    fn member_path(&self, group: &Id, member: &Id) -> PathBuf {
        self.group_dir(group).join(Self::member_file_name(member))
    }

    fn fresh(&self, modified: SystemTime) -> bool {
        match SystemTime::now().duration_since(modified) {
            Ok(age) => age <= self.timeout,
            Err(_) => false, // in the future: tooz skips it too
        }
    }

    /// Runs `f` holding the directory's driver lock (shared with Python tooz processes).
    ///
    /// The lock is waited for by retrying, never in the kernel: a peer that holds it and is
    /// stopped (SIGSTOP, a debugger) blocks no runtime thread, and the wait ends with
    /// [`Error::OperationTimedOut`] after the driver's timeout. `f` runs with no await, so a
    /// dropped call never leaves the lock held.
    async fn locked<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let guard = self.driver_lock.lock().await;
        let file = guard
            .as_ref()
            .ok_or_else(|| Error::Connection("the file driver is not started".into()))?;
        let path = self.root.join(".driver_lock");
        let deadline = Instant::now() + self.timeout;
        let mut nap = DRIVER_LOCK_FIRST_NAP;
        while !oslock::try_lock(file, Kind::Exclusive).map_err(|e| io_error("locking", &path, e))? {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::OperationTimedOut(format!(
                    "{} stayed locked by another process for {:?}",
                    path.display(),
                    self.timeout
                )));
            }
            tokio::time::sleep(nap.min(left)).await;
            nap = (nap * 2).min(DRIVER_LOCK_LONGEST_NAP);
        }
        let result = f();
        oslock::unlock(file).map_err(|e| io_error("unlocking", &path, e))?;
        result
    }

    /// Writes `bytes` to a scratch file and renames it onto `path`, or links it there when
    /// `replace` is false (failing with `AlreadyExists` if `path` exists).
    fn write_atomic(&self, path: &Path, bytes: &[u8], replace: bool) -> io::Result<()> {
        let scratch = self
            .root
            .join("tmp")
            .join(format!("tmp{}tooz", uuid::Uuid::new_v4().simple()));
        let result = (|| {
            let mut file = File::create(&scratch)?;
            file.write_all(bytes)?;
            drop(file);
            if replace {
                fs::rename(&scratch, path)
            } else {
                fs::hard_link(&scratch, path)
            }
        })();
        if !replace || result.is_err() {
            let _ = fs::remove_file(&scratch);
        }
        result
    }

    fn require_group(&self, group: &Id) -> Result<()> {
        match fs::metadata(self.group_dir(group).join(".metadata")) {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Err(group_not_created(group)),
            Err(e) => Err(io_error("reading", &self.group_dir(group), e)),
        }
    }

    /// Every member file of `group`, fresh or not, skipping unreadable ones.
    fn read_members(&self, group: &Id) -> Result<Vec<Member>> {
        let dir = self.group_dir(group);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if not_found(&e) => return Err(group_not_created(group)),
            Err(e) => return Err(io_error("listing", &dir, e)),
        };
        self.require_group(group)?;
        let mut members = Vec::new();
        for entry in entries.flatten() {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if !file_name.ends_with(".raw") {
                continue;
            }
            match read_member_file(&entry.path()) {
                Ok(Some((record, modified))) => members.push(Member {
                    file_name,
                    record,
                    modified,
                }),
                Ok(None) => {}
                Err(error) => tracing::warn!(path = %entry.path().display(), %error,
                    "skipping an unreadable member file"),
            }
        }
        Ok(members)
    }

    async fn live_members(&self, group: &Id) -> Result<Vec<Member>> {
        let members = self.locked(|| self.read_members(group)).await?;
        Ok(members
            .into_iter()
            .filter(|m| self.fresh(m.modified))
            .collect())
    }

    /// One live member's record.
    fn read_member(&self, group: &Id, member: &Id) -> Result<(records::MemberRecord, SystemTime)> {
        self.require_group(group)?;
        match read_member_file(&self.member_path(group, member))? {
            Some((record, modified)) if self.fresh(modified) => Ok((record, modified)),
            _ => Err(member_not_joined(group, member)),
        }
    }

    fn lock_path(&self, name: &Id) -> Result<PathBuf> {
        let invalid = |reason: &str| Error::InvalidName {
            kind: "lock",
            name: name.to_string(),
            reason: reason.into(),
        };
        let text = name
            .as_str()
            .ok_or_else(|| invalid("file lock names must be UTF-8 (they are paths)"))?;
        if text.contains('\0') {
            return Err(invalid("a path cannot contain NUL"));
        }
        let mut path = self.root.clone();
        for component in Path::new(text).components() {
            match component {
                Component::Normal(part) if part.len() > NAME_MAX => {
                    return Err(invalid("a path component is longer than 255 bytes"))
                }
                Component::Normal(part) => path.push(part),
                Component::CurDir => {}
                Component::ParentDir if path.pop() && path.starts_with(&self.root) => {}
                _ => return Err(invalid("it leaves the driver's directory")),
            }
        }
        let reserved = ["groups", "tmp", ".driver_lock", FENCING_DIR];
        let inside = path.strip_prefix(&self.root).unwrap_or(Path::new(""));
        let first = inside.components().next();
        if path == self.root
            || reserved
                .iter()
                .any(|r| first == Some(Component::Normal(r.as_ref())))
        {
            return Err(invalid("it names a path the driver reserves"));
        }
        Ok(path)
    }

    /// Completes an acquisition whose record lock is held through `file`.
    fn finish_acquire(&self, req: &LockRequest, path: PathBuf, file: File) -> Result<FencingToken> {
        let token = match self.lock_files.stamp(&path, kind_of(req.mode), &req.owner) {
            Ok(token) => token,
            Err(error) => {
                let _ = oslock::unlock(&file);
                return Err(error);
            }
        };
        self.held.insert(req, (path, file));
        Ok(token)
    }
}

/// Reads one member file: `None` if it does not exist.
fn read_member_file(path: &Path) -> Result<Option<(records::MemberRecord, SystemTime)>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if not_found(&e) => return Ok(None),
        Err(e) => return Err(io_error("opening", path, e)),
    };
    let meta = file.metadata().map_err(|e| io_error("reading", path, e))?;
    let modified = meta.modified().map_err(|e| io_error("reading", path, e))?;
    let mut bytes = vec![0; meta.len() as usize];
    file.read_exact(&mut bytes)
        .map_err(|e| io_error("reading", path, e))?;
    Ok(Some((records::read_member_record(&bytes)?, modified)))
}

fn kind_of(mode: LockMode) -> Kind {
    match mode {
        LockMode::Exclusive => Kind::Exclusive,
        LockMode::Shared => Kind::Shared,
    }
}

#[async_trait]
impl Driver for FileDriver {
    fn scheme(&self) -> &'static str {
        "file"
    }

    fn facts(&self) -> &DriverFacts {
        &self.facts
    }

    fn session_timeout(&self) -> Duration {
        self.timeout
    }

    fn validate_name(&self, kind: &'static str, name: &Id) -> Result<()> {
        if kind == "lock" {
            self.lock_path(name)?;
        }
        Ok(())
    }

    fn leader_lock_name(&self, group: &Id) -> Id {
        Id::from(format!("{LEADERS_DIR}/{}", sha1_hex(group.as_bytes())))
    }

    async fn start(&self, _events: SessionEvents) -> Result<()> {
        for dir in [
            self.root.clone(),
            self.groups_dir(),
            self.root.join("tmp"),
            self.root.join(FENCING_DIR),
        ] {
            fs::create_dir_all(&dir).map_err(|e| {
                Error::Connection(format!("cannot use directory {}: {e}", dir.display()))
            })?;
        }
        let file = locks::open(&self.root.join(".driver_lock"))?;
        *self.driver_lock.lock().await = Some(file);
        Ok(())
    }

    async fn stop(&self) -> Result<()> {
        self.held.clear(); // closing the files frees their locks
        self.lock_files.clear();
        self.joined.clear();
        *self.driver_lock.lock().await = None;
        Ok(())
    }

    async fn heartbeat(&self) -> Result<Option<Duration>> {
        for group in self.joined.names() {
            let path = self.member_path(&group, &self.member);
            let touched = OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(SystemTime::now()));
            match touched {
                Ok(()) => {}
                Err(e) if not_found(&e) => {} // left or booted out: nothing to keep alive
                Err(e) => return Err(io_error("touching", &path, e)),
            }
        }
        // Two beats per timeout: a member file stays fresh through one missed beat.
        Ok(Some(self.timeout / 2))
    }

    async fn create_group(&self, group: &Id) -> Result<()> {
        let dir = self.group_dir(group);
        fs::create_dir_all(&dir).map_err(|e| io_error("creating", &dir, e))?;
        let metadata = dir.join(".metadata");
        match self.write_atomic(&metadata, &records::group_metadata(group), false) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(group_already_exist(group)),
            Err(e) => Err(io_error("writing", &metadata, e)),
        }
    }

    async fn delete_group(&self, group: &Id) -> Result<()> {
        self.locked(|| {
            let members = self.read_members(group)?;
            if members.iter().any(|m| self.fresh(m.modified)) {
                return Err(group_not_empty(group));
            }
            let dir = self.group_dir(group);
            fs::remove_dir_all(&dir).map_err(|e| io_error("removing", &dir, e))
        })
        .await
    }

    async fn get_groups(&self) -> Result<BTreeSet<Id>> {
        let dir = self.groups_dir();
        let entries = fs::read_dir(&dir).map_err(|e| io_error("listing", &dir, e))?;
        let mut groups = BTreeSet::new();
        for entry in entries.flatten() {
            let path = entry.path().join(".metadata");
            match fs::read(&path) {
                Ok(bytes) => match records::read_group_metadata(&bytes) {
                    Ok(group) => {
                        groups.insert(group);
                    }
                    Err(error) => tracing::warn!(path = %path.display(), %error,
                        "skipping unreadable group metadata"),
                },
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(io_error("reading", &path, e)),
            }
        }
        Ok(groups)
    }

    async fn join_group(&self, group: &Id, member: &Id, caps: &Capabilities) -> Result<()> {
        let path = self.member_path(group, member);
        self.locked(|| {
            self.require_group(group)?;
            let existing = read_member_file(&path).ok().flatten();
            if existing.is_some_and(|(_, modified)| self.fresh(modified)) {
                return Err(member_already_exist(group, member));
            }
            let record = records::member_record(member, caps, SystemTime::now());
            self.write_atomic(&path, &record, true)
                .map_err(|e| io_error("writing", &path, e))
        })
        .await?;
        if member == &self.member {
            self.joined.insert(group, caps);
        }
        Ok(())
    }

    async fn leave_group(&self, group: &Id, member: &Id) -> Result<()> {
        let path = self.member_path(group, member);
        self.locked(|| {
            self.require_group(group)?;
            match fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if not_found(&e) => Err(member_not_joined(group, member)),
                Err(e) => Err(io_error("removing", &path, e)),
            }
        })
        .await?;
        self.joined.remove(group);
        Ok(())
    }

    async fn get_members(&self, group: &Id) -> Result<BTreeSet<Id>> {
        let members = self.live_members(group).await?;
        Ok(members.into_iter().map(|m| m.record.member).collect())
    }

    async fn get_members_with_capabilities(
        &self,
        group: &Id,
    ) -> Result<BTreeMap<Id, Capabilities>> {
        let members = self.live_members(group).await?;
        Ok(members
            .into_iter()
            .map(|m| (m.record.member, m.record.capabilities))
            .collect())
    }

    async fn get_member_info(&self, group: &Id, member: &Id) -> Result<MemberInfo> {
        let (record, modified) = self.locked(|| self.read_member(group, member)).await?;
        let beat = modified
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        Ok(MemberInfo {
            capabilities: record.capabilities,
            joined_at: Some(record.joined_on),
            extra: BTreeMap::from([("last_heartbeat".to_string(), Value::F64(beat))]),
        })
    }

    async fn update_capabilities(
        &self,
        group: &Id,
        member: &Id,
        caps: &Capabilities,
    ) -> Result<()> {
        self.locked(|| {
            let (record, _) = self.read_member(group, member)?;
            let path = self.member_path(group, member);
            let bytes = records::member_record(member, caps, record.joined_on);
            self.write_atomic(&path, &bytes, true)
                .map_err(|e| io_error("writing", &path, e))
        })
        .await
    }

    async fn subscribe_group(&self, group: &Id) -> Result<Option<(BTreeSet<Id>, GroupFeed)>> {
        let dir = self.group_dir(group);
        let watcher = watch::Watcher::new(&dir).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => group_not_created(group),
            _ => io_error("watching", &dir, e),
        })?;
        let members = self.live_members(group).await?;
        let snapshot = members.iter().map(|m| m.record.member.clone()).collect();
        let known = members
            .into_iter()
            .map(|m| (m.file_name, m.record.member))
            .collect();
        let resync_every = self.facts.poll_interval.min(self.timeout / 2);
        let feed = watcher
            .feed(known, resync_every)
            .map_err(|e| io_error("watching", &dir, e))?;
        Ok(Some((snapshot, feed)))
    }

    async fn lock_try_acquire(&self, req: &LockRequest) -> Result<Option<FencingToken>> {
        let path = self.lock_path(&req.name)?;
        if self.lock_files.has_waiters(&path)? {
            return Ok(None); // never ahead of those already waiting
        }
        let file = self.lock_files.take(&path)?;
        let locked = oslock::try_lock(&file, kind_of(req.mode))
            .map_err(|e| io_error("locking", &path, e))?;
        if !locked {
            self.lock_files.recycle(path, file);
            return Ok(None);
        }
        self.finish_acquire(req, path, file).map(Some)
    }

    async fn lock_acquire(
        &self,
        req: &LockRequest,
        deadline: Option<Instant>,
    ) -> Result<Option<FencingToken>> {
        if let Some(token) = self.lock_try_acquire(req).await? {
            return Ok(Some(token));
        }
        let path = self.lock_path(&req.name)?;
        let kind = kind_of(req.mode);
        let (queue, waiting_on) = (self.lock_files.queue_path(&path), path.clone());
        // If this future is dropped or times out, the thread's File is dropped when it gets
        // the lock, which closes it and so releases the lock at once.
        let mut wait =
            tokio::task::spawn_blocking(move || locks::wait_in_turn(&queue, &waiting_on, kind));
        let joined = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, &mut wait).await {
                Ok(joined) => joined,
                Err(_) => return Ok(None),
            },
            None => wait.await,
        };
        let file = joined.map_err(|e| Error::Backend {
            driver: "file",
            message: format!("lock wait thread failed: {e}"),
        })??;
        self.finish_acquire(req, path, file).map(Some)
    }

    async fn lock_release(&self, req: &LockRequest) -> Result<bool> {
        let Some((path, file)) = self.held.remove(&req.nonce).map(|h| h.record) else {
            return Ok(false);
        };
        if req.mode == LockMode::Exclusive {
            if let Err(error) = self.lock_files.unstamp(&path) {
                tracing::debug!(%error, "forgetting the recorded holder");
            }
        }
        oslock::unlock(&file).map_err(|e| io_error("unlocking", &path, e))?;
        self.lock_files.recycle(path, file);
        Ok(true)
    }

    async fn lock_holder(&self, name: &Id) -> Result<Option<Id>> {
        self.lock_files.holder(&self.lock_path(name)?)
    }
}
