//! Groups: Python tooz's shared-memory group list, plus member records it never had.
//!
//! The group list is tooz's: segment `ftok("GROUP_LIST", "_TOOZ_INTERNAL")`, bytes 0-1 the
//! length `L` (native-endian u16), bytes `2..2+L` a msgpack array of group ids (bin), every
//! read and write under tooz's internal semaphore lock `ftok("TOOZ_INTERNAL_LOCK",
//! "__TOOZ_LOCK_")`. This driver creates the segment with 64 KiB rather than 1 KiB (Python
//! attaches a larger segment without complaint, reads any length, and refuses to *write* a
//! list of 1022 bytes or more); if Python created it first, its 1 KiB is the limit.
//!
//! Python's `stop()` removes the segment (erasing every group for whoever attaches next).
//! This driver never removes it, and repairs Python's removal: it keeps the segment attached
//! while started, so when the key comes back empty under a new id, the groups of the segment
//! it still has are copied into the new one.
//!
//! Members live beside it in files, one per member, under the per-user runtime directory:
//! `<dir>/groups/<sha1 hex of group>/<sha1 hex of member>`, a msgpack map
//! `{"member_id": bin, "capabilities": any, "joined_at_ns": int, "pid": int, "semid": int}`
//! written to `<dir>/tmp` and renamed into place. `semid` is the member's session semaphore:
//! a private semaphore its coordinator raised to 1 with `SEM_UNDO` when it first joined a
//! group, so the kernel drops it back to 0 the moment the process dies; `stop()` (or
//! dropping the coordinator) removes it. A record whose semaphore is gone, at 0, or last
//! touched by another pid is dead: readers delete it (and remove the dead session's
//! semaphore). Membership therefore needs no heartbeat and no timeout. Membership changes
//! take the same internal lock as the group list.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha1::{Digest, Sha1};

use super::semlock::{self, Attempt, Wait};
use super::{keys, sysv};
use crate::drivers::common::errors::{
    group_already_exist, group_not_created, group_not_empty, io_backend, member_already_exist,
    member_not_joined,
};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::types::{Capabilities, MemberInfo, Value};

/// Size of the group-list segment this driver creates.
pub(super) const LIST_SIZE: usize = 64 * 1024;

/// The session semaphore of one coordinator, as member records name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SessionRef {
    pub(super) pid: u32,
    pub(super) semid: libc::c_int,
}

impl SessionRef {
    /// Creates the session semaphore: raised to 1 with `SEM_UNDO`, so it reads 0 once the
    /// process is gone.
    fn create() -> io::Result<SessionRef> {
        let semid = sysv::sem_create_private()?;
        if let Err(e) = sysv::sem_op_undo(semid, 1, Some(Duration::ZERO)) {
            let _ = sysv::sem_remove(semid);
            return Err(e);
        }
        Ok(SessionRef {
            pid: std::process::id(),
            semid,
        })
    }

    /// Removes the semaphore: the session's members read as dead from now on.
    fn remove(&self) {
        let _ = sysv::sem_remove(self.semid);
    }

    fn is_alive(&self) -> bool {
        matches!(sysv::sem_getval(self.semid), Ok(1))
            && sysv::sem_getpid(self.semid).ok() == Some(self.pid as libc::pid_t)
    }

    /// Removes the semaphore of a session whose process died (value back to 0, untouched
    /// since). A semaphore that now belongs to someone else is left alone.
    fn reap(&self) {
        if matches!(sysv::sem_getval(self.semid), Ok(0))
            && sysv::sem_getpid(self.semid).ok() == Some(self.pid as libc::pid_t)
        {
            let _ = sysv::sem_remove(self.semid);
        }
    }
}

struct Record {
    member: Id,
    caps: Capabilities,
    joined_at_ns: u64,
    session: SessionRef,
}

impl Record {
    fn encode(&self) -> Result<Vec<u8>> {
        let map = Value::Map(vec![
            (
                "member_id".into(),
                Value::Binary(self.member.as_bytes().to_vec()),
            ),
            ("capabilities".into(), self.caps.value().clone()),
            ("joined_at_ns".into(), Value::from(self.joined_at_ns)),
            ("pid".into(), Value::from(self.session.pid)),
            ("semid".into(), Value::from(self.session.semid)),
        ]);
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &map)
            .map_err(|e| Error::Serialization(e.to_string()))?;
        Ok(out)
    }

    fn decode(bytes: &[u8]) -> Result<Record> {
        let bad = |what: &str| Error::Serialization(format!("ipc member record: {what}"));
        let value = rmpv::decode::read_value(&mut &bytes[..]).map_err(|e| bad(&e.to_string()))?;
        let Value::Map(entries) = value else {
            return Err(bad("not a map"));
        };
        let field = |name: &str| {
            entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(name))
                .map(|(_, v)| v)
        };
        let member = match field("member_id") {
            Some(Value::Binary(b)) => Id::from(b.clone()),
            _ => return Err(bad("no member_id")),
        };
        let int = |name: &str| field(name).and_then(Value::as_i64).ok_or_else(|| bad(name));
        Ok(Record {
            member,
            caps: Capabilities::from(field("capabilities").cloned().unwrap_or(Value::Nil)),
            joined_at_ns: int("joined_at_ns")? as u64,
            session: SessionRef {
                pid: int("pid")? as u32,
                semid: int("semid")? as libc::c_int,
            },
        })
    }
}

fn sha1_hex(bytes: &[u8]) -> String {
    Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn io_error(what: &str, e: io::Error) -> Error {
    io_backend("ipc", what, e)
}

fn ids_of(list: &[Value]) -> impl Iterator<Item = &[u8]> {
    list.iter().filter_map(|v| match v {
        Value::Binary(b) => Some(&b[..]),
        Value::String(s) => Some(s.as_bytes()),
        _ => None,
    })
}

fn contains(list: &[Value], group: &Id) -> bool {
    ids_of(list).any(|g| g == group.as_bytes())
}

/// The session semaphore of a coordinator, created with its first membership.
enum SessionState {
    NotYet,
    Live(SessionRef),
    Ended,
}

/// The group list segment and the member records of one coordinator.
pub(super) struct Groups {
    session: Mutex<SessionState>,
    list_key: libc::key_t,
    internal_key: libc::key_t,
    segment: Mutex<sysv::Segment>,
    size: AtomicUsize,
    dir: PathBuf,
    tmp: PathBuf,
}

/// Opens (creating if needed) the segment of the group list.
fn open_list(key: libc::key_t) -> io::Result<sysv::Segment> {
    let id = match sysv::shm_get(key, LIST_SIZE, true) {
        Ok(id) => id,
        // It exists and is smaller (Python created it): open it as it is.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => sysv::shm_get(key, 0, false)?,
        Err(e) => return Err(e),
    };
    sysv::Segment::attach(id)
}

fn read_list(seg: &sysv::Segment) -> Result<Vec<Value>> {
    let mut len = [0u8; 2];
    seg.read(0, &mut len);
    let len = usize::from(u16::from_ne_bytes(len));
    if len == 0 {
        return Ok(Vec::new());
    }
    if len + 2 > seg.size() {
        return Err(Error::Serialization(format!(
            "group list claims {len} bytes in a {}-byte segment",
            seg.size()
        )));
    }
    let mut data = vec![0u8; len];
    seg.read(2, &mut data);
    match rmpv::decode::read_value(&mut &data[..]) {
        Ok(Value::Array(list)) => Ok(list),
        Ok(other) => Err(Error::Serialization(format!(
            "group list is not an array: {other}"
        ))),
        Err(e) => Err(Error::Serialization(format!("group list: {e}"))),
    }
}

fn write_list(seg: &sysv::Segment, list: Vec<Value>) -> Result<()> {
    let mut data = Vec::new();
    rmpv::encode::write_value(&mut data, &Value::Array(list))
        .map_err(|e| Error::Serialization(e.to_string()))?;
    if data.len() + 2 >= seg.size() || data.len() > usize::from(u16::MAX) {
        return Err(Error::Backend {
            driver: "ipc",
            message: format!(
                "group list is too big ({} bytes of msgpack for a {}-byte segment)",
                data.len(),
                seg.size()
            ),
        });
    }
    seg.write(0, &(data.len() as u16).to_ne_bytes());
    seg.write(2, &data);
    Ok(())
}

/// What a locked operation sees: the current group list segment and the member files.
pub(super) struct Tx<'a> {
    groups: &'a Groups,
    seg: &'a sysv::Segment,
    me: Option<SessionRef>,
}

impl Groups {
    /// Attaches the group list and prepares the member directories under `dir`.
    pub(super) fn open(dir: &Path) -> io::Result<Groups> {
        let list_key = keys::key(keys::GROUP_LIST_NAME, keys::GROUP_PROJECT);
        let segment = open_list(list_key)?;
        let groups = Groups {
            session: Mutex::new(SessionState::NotYet),
            list_key,
            internal_key: keys::lock_key(keys::INTERNAL_LOCK_NAME),
            size: AtomicUsize::new(segment.size()),
            segment: Mutex::new(segment),
            dir: dir.join("groups"),
            tmp: dir.join("tmp"),
        };
        fs::create_dir_all(&groups.dir)?;
        fs::create_dir_all(&groups.tmp)?;
        Ok(groups)
    }

    /// The size of the attached group-list segment.
    pub(super) fn list_size(&self) -> usize {
        self.size.load(Ordering::Relaxed)
    }

    /// The session semaphore, if this coordinator has one.
    fn current_session(&self) -> Option<SessionRef> {
        match *self.session.lock().unwrap() {
            SessionState::Live(me) => Some(me),
            SessionState::NotYet | SessionState::Ended => None,
        }
    }

    /// The session semaphore, created on first use. Created only for coordinators that join
    /// a group, so a crashed coordinator that joined nothing leaves no semaphore behind.
    fn session_for_join(&self) -> Result<SessionRef> {
        let mut session = self.session.lock().unwrap();
        match *session {
            SessionState::Live(me) => Ok(me),
            SessionState::Ended => Err(Error::Connection("ipc coordinator is stopped".into())),
            SessionState::NotYet => {
                let me = SessionRef::create().map_err(|e| io_error("session semaphore", e))?;
                *session = SessionState::Live(me);
                Ok(me)
            }
        }
    }

    /// Ends the session: its members read as dead from now on.
    pub(super) fn end(&self) {
        let mut session = self.session.lock().unwrap();
        if let SessionState::Live(me) = *session {
            me.remove();
        }
        *session = SessionState::Ended;
    }

    /// Runs `f` under tooz's internal lock, waiting for it until `deadline`; gives up early,
    /// without running `f`, if `cancelled()`.
    pub(super) fn locked<T>(
        &self,
        deadline: std::time::Instant,
        cancelled: &dyn Fn() -> bool,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T>,
    ) -> Result<T> {
        let semid = match semlock::acquire(self.internal_key, Wait::Until(deadline), cancelled)
            .map_err(|e| io_error("internal lock", e))?
        {
            Attempt::Acquired(semid) => semid,
            Attempt::NotAcquired => {
                return Err(Error::OperationTimedOut(
                    "tooz's internal IPC lock is held by another process".into(),
                ))
            }
            Attempt::Cancelled => return Err(Error::OperationTimedOut("cancelled".into())),
        };
        let result = if cancelled() {
            Err(Error::OperationTimedOut("cancelled".into()))
        } else {
            self.refresh_segment().and_then(|()| {
                let seg = self.segment.lock().unwrap();
                f(&mut Tx {
                    groups: self,
                    seg: &seg,
                    me: self.current_session(),
                })
            })
        };
        if let Err(e) = semlock::release(semid) {
            tracing::warn!(error = %e, "releasing tooz's internal IPC lock failed");
        }
        result
    }

    /// Follows the group list to a new segment if Python tooz removed ours, copying our
    /// groups over when the new one is empty. Called under the internal lock.
    fn refresh_segment(&self) -> Result<()> {
        let mut seg = self.segment.lock().unwrap();
        match sysv::shm_get(self.list_key, 0, false) {
            Ok(id) if id == seg.id() => return Ok(()),
            Ok(_) => {}
            Err(e) if sysv::gone(&e) => {}
            Err(e) => return Err(io_error("group list", e)),
        }
        let fresh = open_list(self.list_key).map_err(|e| io_error("group list", e))?;
        let ours = read_list(&seg).unwrap_or_default();
        if !ours.is_empty() && read_list(&fresh).map(|l| l.is_empty()).unwrap_or(false) {
            match write_list(&fresh, ours) {
                Ok(()) => tracing::info!("group list segment was removed; groups copied over"),
                Err(e) => tracing::warn!(error = %e, "group list segment was removed"),
            }
        }
        self.size.store(fresh.size(), Ordering::Relaxed);
        *seg = fresh;
        Ok(())
    }
}

impl Tx<'_> {
    fn list(&self) -> Result<Vec<Value>> {
        read_list(self.seg)
    }

    fn group_dir(&self, group: &Id) -> PathBuf {
        self.groups.dir.join(sha1_hex(group.as_bytes()))
    }

    fn member_path(&self, group: &Id, member: &Id) -> PathBuf {
        self.group_dir(group).join(sha1_hex(member.as_bytes()))
    }

    fn require(&self, group: &Id) -> Result<()> {
        if contains(&self.list()?, group) {
            Ok(())
        } else {
            Err(group_not_created(group))
        }
    }

    fn alive(&self, session: &SessionRef) -> bool {
        Some(*session) == self.me || session.is_alive()
    }

    /// The live record of `member` in `group`; deletes it if it is dead.
    fn record(&self, group: &Id, member: &Id) -> Result<Option<Record>> {
        let path = self.member_path(group, member);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("member record", e)),
        };
        let record = Record::decode(&bytes)?;
        if self.alive(&record.session) {
            return Ok(Some(record));
        }
        record.session.reap();
        let _ = fs::remove_file(&path);
        Ok(None)
    }

    /// Every live record of `group`, deleting the dead ones.
    fn records(&self, group: &Id) -> Result<Vec<Record>> {
        let entries = match fs::read_dir(self.group_dir(group)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("group directory", e)),
        };
        let mut live = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| io_error("group directory", e))?.path();
            let bytes = match fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error("member record", e)),
            };
            let Ok(record) = Record::decode(&bytes) else {
                tracing::warn!(path = %path.display(), "unreadable ipc member record removed");
                let _ = fs::remove_file(&path);
                continue;
            };
            if self.alive(&record.session) {
                live.push(record);
            } else {
                record.session.reap();
                let _ = fs::remove_file(&path);
            }
        }
        Ok(live)
    }

    fn write_record(&self, group: &Id, record: &Record) -> Result<()> {
        let bytes = record.encode()?;
        let dir = self.group_dir(group);
        fs::create_dir_all(&dir).map_err(|e| io_error("group directory", e))?;
        let tmp = self
            .groups
            .tmp
            .join(uuid::Uuid::new_v4().simple().to_string());
        let write = || -> io::Result<()> {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            fs::rename(&tmp, self.member_path(group, &record.member))
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_error("member record", e)
        })
    }

    /// Creates `group`.
    pub(super) fn create_group(&mut self, group: &Id) -> Result<()> {
        let mut list = self.list()?;
        if contains(&list, group) {
            return Err(group_already_exist(group));
        }
        // Members left behind by a deletion this driver did not see (Python's).
        match fs::remove_dir_all(self.group_dir(group)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("group directory", e)),
        }
        list.push(Value::Binary(group.as_bytes().to_vec()));
        write_list(self.seg, list)
    }

    /// Deletes `group` if it has no live member.
    pub(super) fn delete_group(&mut self, group: &Id) -> Result<()> {
        let list = self.list()?;
        if !contains(&list, group) {
            return Err(group_not_created(group));
        }
        if !self.records(group)?.is_empty() {
            return Err(group_not_empty(group));
        }
        let list = list
            .into_iter()
            .filter(|v| !contains(std::slice::from_ref(v), group))
            .collect();
        write_list(self.seg, list)?;
        match fs::remove_dir_all(self.group_dir(group)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("group directory", e)),
        }
    }

    /// Every group.
    pub(super) fn get_groups(&mut self) -> Result<Vec<Id>> {
        Ok(ids_of(&self.list()?).map(Id::from).collect())
    }

    /// Joins `member` to `group`.
    pub(super) fn join(&mut self, group: &Id, member: &Id, caps: &Capabilities) -> Result<()> {
        self.require(group)?;
        if self.record(group, member)?.is_some() {
            return Err(member_already_exist(group, member));
        }
        let me = self.groups.session_for_join()?;
        self.me = Some(me);
        let joined_at_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        self.write_record(
            group,
            &Record {
                member: member.clone(),
                caps: caps.clone(),
                joined_at_ns,
                session: me,
            },
        )
    }

    /// Removes `member` from `group`.
    pub(super) fn leave(&mut self, group: &Id, member: &Id) -> Result<()> {
        self.require(group)?;
        if self.record(group, member)?.is_none() {
            return Err(member_not_joined(group, member));
        }
        match fs::remove_file(self.member_path(group, member)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(member_not_joined(group, member)),
            Err(e) => Err(io_error("member record", e)),
        }
    }

    /// The live members of `group` with their capabilities.
    pub(super) fn members(&mut self, group: &Id) -> Result<BTreeMap<Id, Capabilities>> {
        self.require(group)?;
        Ok(self
            .records(group)?
            .into_iter()
            .map(|r| (r.member, r.caps))
            .collect())
    }

    /// Everything recorded about `member` in `group`.
    pub(super) fn member_info(&mut self, group: &Id, member: &Id) -> Result<MemberInfo> {
        self.require(group)?;
        let record = self
            .record(group, member)?
            .ok_or_else(|| member_not_joined(group, member))?;
        Ok(MemberInfo {
            capabilities: record.caps,
            joined_at: Some(UNIX_EPOCH + Duration::from_nanos(record.joined_at_ns)),
            extra: BTreeMap::from([
                ("pid".to_string(), Value::from(record.session.pid)),
                (
                    "session_semid".to_string(),
                    Value::from(record.session.semid),
                ),
            ]),
        })
    }

    /// Replaces the capabilities of `member` in `group`.
    pub(super) fn update(&mut self, group: &Id, member: &Id, caps: &Capabilities) -> Result<()> {
        self.require(group)?;
        let mut record = self
            .record(group, member)?
            .ok_or_else(|| member_not_joined(group, member))?;
        record.caps = caps.clone();
        self.write_record(group, &record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    mod fuzz {
        use proptest::prelude::*;

        use super::*;

        fn corpus() -> Vec<Vec<u8>> {
            [Capabilities::none(), Capabilities::from("zone=a")]
                .into_iter()
                .map(|caps| {
                    let session = SessionRef {
                        pid: 4242,
                        semid: 7,
                    };
                    let member = Id::from("member");
                    let record = Record {
                        member,
                        caps,
                        joined_at_ns: 1_700_000_000_000_000_000,
                        session,
                    };
                    record.encode().unwrap()
                })
                .collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

            #[test]
            fn corrupt_member_records_give_typed_errors(bytes in crate::fuzz::garbage(corpus())) {
                if let Err(error) = Record::decode(&bytes) {
                    prop_assert!(matches!(error, Error::Serialization(_)), "{error}");
                }
            }
        }
    }

    /// Appendix A: the segment bytes for the group list `{b'g1'}`.
    #[test]
    fn group_list_bytes_match_tooz() {
        let mut data = Vec::new();
        rmpv::encode::write_value(
            &mut data,
            &Value::Array(vec![Value::Binary(b"g1".to_vec())]),
        )
        .unwrap();
        let mut segment = (data.len() as u16).to_le_bytes().to_vec();
        segment.extend_from_slice(&data);
        assert_eq!(segment, [0x05, 0x00, 0x91, 0xc4, 0x02, 0x67, 0x31]);
        let two = Value::Array(vec![
            Value::Binary(b"g1".to_vec()),
            Value::Binary(b"g2".to_vec()),
        ]);
        let mut data = Vec::new();
        rmpv::encode::write_value(&mut data, &two).unwrap();
        assert_eq!(data, [0x92, 0xc4, 0x02, 0x67, 0x31, 0xc4, 0x02, 0x67, 0x32]);
    }

    #[test]
    fn str_and_bin_ids_are_one_group() {
        let list = vec![
            Value::from("g1"),
            Value::Binary(b"g2".to_vec()),
            Value::from(3),
        ];
        assert!(contains(&list, &Id::from("g1")));
        assert!(contains(&list, &Id::from(b"g2")));
        assert_eq!(ids_of(&list).count(), 2);
    }

    #[test]
    fn records_round_trip() {
        let caps = Capabilities::from(Value::Map(vec![
            ("weight".into(), Value::from(1)),
            ("f".into(), Value::F64(1.5)),
            ("b".into(), Value::Binary(vec![0, 255])),
        ]));
        let record = Record {
            member: Id::from(&[0xff, 0, b'x'][..]),
            caps: caps.clone(),
            joined_at_ns: 1_700_000_000_000_000_123,
            session: SessionRef { pid: 42, semid: 7 },
        };
        let back = Record::decode(&record.encode().unwrap()).unwrap();
        assert_eq!(back.member, record.member);
        assert_eq!(back.caps, caps);
        assert_eq!(back.joined_at_ns, record.joined_at_ns);
        assert_eq!(back.session, record.session);
    }
}
