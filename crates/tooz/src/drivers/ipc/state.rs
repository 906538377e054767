//! This crate's own shared-memory segment: the fencing counter and the lock-holder table.
//!
//! One segment per host (key `ftok("STATE-v1", "_TOOZ_RS_INTERNAL")`, mode 0600), created
//! zero-filled by the first process and never removed, so tokens keep increasing across
//! processes and coordinator restarts. Every field is read and written with atomic
//! operations; no lock is taken.
//!
//! ```text
//! offset 0       magic "toozipc1" (u64)
//! offset 64      fencing counter (u64): +1 per acquisition, from the time in µs at creation
//! offset 128     breaks in progress (u64)
//! offset 192     breaks completed (u64)
//! offset 256     4096 slots of 256 bytes, one per held lock:
//!   +0  tag      0 = free, else (semid + 1) << 32 | key as u32
//!   +8  seq      seqlock: odd while the owner writes the fields below
//!   +16 pid      (low 32 bits) | flags << 32 (FLAG_DIGEST: `member` is sha1 of the id)
//!   +24 token
//!   +32 length of the member id
//!   +40 member id (216 bytes; longer ids store their sha1, the id is in a file)
//! ```
//!
//! A slot belongs to whoever holds the semaphore named by its tag: only that holder writes
//! it, and it clears it before releasing. A slot whose semaphore no longer exists is free for
//! the taking (compare-and-swap, so two reclaimers cannot both win; a removed semaphore id is
//! not reused for a long time, so there is no ABA). A slot left by a holder that crashed is
//! taken over by the next holder of the same semaphore.
//!
//! Seeding the counter from the wall clock (in microseconds) when the segment is created keeps
//! tokens increasing even if the segment is lost (reboot, `ipcrm`) and recreated, as long as
//! fewer than a million tokens per second were handed out on average since it was created.

use std::io;
use std::sync::atomic::{fence, AtomicU64, Ordering};

use super::keys;
use super::sysv::{self, Segment};

const MAGIC: u64 = u64::from_le_bytes(*b"toozipc1");
const COUNTER: usize = 64;
const BREAKING: usize = 128;
const BREAK_EPOCH: usize = 192;
const HEADER: usize = 256;
const SLOT: usize = 256;
const SLOT_BITS: u32 = 12;
const SLOTS: usize = 1 << SLOT_BITS;
/// Size of the segment.
pub(super) const SIZE: usize = HEADER + SLOTS * SLOT;
/// Slots examined from a key's home slot.
const PROBE: usize = 64;
/// Longest member id stored in a slot.
pub(super) const INLINE: usize = SLOT - 40;
const FLAG_DIGEST: u64 = 1;

/// How a slot names the holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HolderId {
    /// The member id itself.
    Inline(Vec<u8>),
    /// The sha1 of a member id longer than [`INLINE`].
    Digest([u8; 20]),
}

/// How a holder is written into a slot.
#[derive(Debug, Clone, Copy)]
pub(super) enum HolderRef<'a> {
    /// The member id itself, at most [`INLINE`] bytes.
    Inline(&'a [u8]),
    /// The sha1 of a longer member id.
    Digest([u8; 20]),
}

/// What a slot says about a held lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Recorded {
    /// The holding process.
    pub(super) pid: u32,
    /// Its fencing token.
    pub(super) token: u64,
    /// The member holding it.
    pub(super) holder: HolderId,
}

/// The attached state segment.
pub(super) struct State {
    seg: Segment,
}

fn tag(key: libc::key_t, semid: libc::c_int) -> u64 {
    ((semid as u32 as u64 + 1) << 32) | key as u32 as u64
}

fn tag_semid(tag: u64) -> libc::c_int {
    ((tag >> 32) - 1) as libc::c_int
}

fn tag_key(tag: u64) -> u32 {
    tag as u32
}

fn home(key: libc::key_t) -> usize {
    ((key as u32 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOT_BITS)) as usize
}

impl State {
    /// Attaches the host's state segment, creating it if needed.
    pub(super) fn open() -> io::Result<State> {
        let key = keys::key(keys::STATE_NAME, keys::RS_PROJECT);
        let id = sysv::shm_get(key, SIZE, true).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("state segment (key {key:#x}): {e} (a segment of another layout?)"),
            )
        })?;
        let seg = Segment::attach(id)?;
        if seg.size() < SIZE {
            return Err(io::Error::other(format!(
                "state segment {id} is {} bytes, {SIZE} expected",
                seg.size()
            )));
        }
        let magic = seg.word(0);
        match magic.compare_exchange(0, MAGIC, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {}
            Err(found) if found == MAGIC => {}
            Err(found) => {
                return Err(io::Error::other(format!(
                    "state segment {id} has an unknown layout (magic {found:#x})"
                )))
            }
        }
        Ok(State { seg })
    }

    /// The next fencing token: larger than every token handed out before on this host.
    pub(super) fn next_token(&self) -> u64 {
        let counter = self.seg.word(COUNTER);
        let mut old = counter.load(Ordering::Acquire);
        loop {
            // A fresh segment starts from the wall clock (see the module docs).
            let new = if old == 0 {
                sysv::now_micros().max(1)
            } else {
                old + 1
            };
            match counter.compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return new,
                Err(found) => old = found,
            }
        }
    }

    /// Call before [`State::breaks_since`]'s reference point, i.e. before trying to acquire.
    pub(super) fn break_epoch(&self) -> u64 {
        self.seg.word(BREAK_EPOCH).load(Ordering::Acquire)
    }

    /// True if a break (by a coordinator of this crate, on any lock) may have happened since
    /// `break_epoch()` returned `epoch`. Call after taking the fencing token.
    ///
    /// Why this suffices: the danger is a break between our `semop` and our token, with the
    /// next holder taking its token before ours. Its token operation then precedes ours on
    /// the counter, and it happened after the break, so the breaker's "in progress" mark is
    /// visible to us, or, if it already cleared it, the epoch it bumped before clearing.
    pub(super) fn breaks_since(&self, epoch: u64) -> bool {
        self.seg.word(BREAKING).load(Ordering::Acquire) != 0
            || self.seg.word(BREAK_EPOCH).load(Ordering::Acquire) != epoch
    }

    /// Runs a break (`f` removes a semaphore), marked for concurrent acquirers.
    pub(super) fn breaking<T>(&self, f: impl FnOnce() -> T) -> T {
        self.seg.word(BREAKING).fetch_add(1, Ordering::SeqCst);
        let out = f();
        self.seg.word(BREAK_EPOCH).fetch_add(1, Ordering::SeqCst);
        self.seg.word(BREAKING).fetch_sub(1, Ordering::SeqCst);
        out
    }

    fn slot_word(&self, slot: usize, field: usize) -> &AtomicU64 {
        self.seg.word(HEADER + slot * SLOT + field)
    }

    /// Records the holder of the lock `key` held through semaphore `semid`; returns the slot,
    /// or `None` if every slot near the key's home is taken by live holders.
    pub(super) fn record(
        &self,
        key: libc::key_t,
        semid: libc::c_int,
        pid: u32,
        token: u64,
        holder: HolderRef<'_>,
    ) -> Option<usize> {
        let slot = self.claim(key, semid)?;
        self.write(slot, pid, token, holder);
        Some(slot)
    }

    fn claim(&self, key: libc::key_t, semid: libc::c_int) -> Option<usize> {
        let mine = tag(key, semid);
        let start = home(key);
        let slots = || (0..PROBE).map(move |i| (start + i) % SLOTS);
        // A slot with our tag was left by a holder of this very semaphore that died: ours now.
        if let Some(slot) = slots().find(|&s| self.slot_word(s, 0).load(Ordering::Acquire) == mine)
        {
            return Some(slot);
        }
        for slot in slots() {
            let word = self.slot_word(slot, 0);
            if word
                .compare_exchange(0, mine, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Some(slot);
            }
        }
        // Full near home: take over slots whose semaphore is gone. Only one semaphore exists
        // per key, and we hold it, so a slot for our key naming another semaphore is stale.
        for slot in slots() {
            let word = self.slot_word(slot, 0);
            let seen = word.load(Ordering::Acquire);
            if seen == 0 {
                if word
                    .compare_exchange(0, mine, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return Some(slot);
                }
                continue;
            }
            let stale = tag_key(seen) == key as u32
                || matches!(sysv::sem_getval(tag_semid(seen)), Err(e) if sysv::gone(&e));
            if stale
                && word
                    .compare_exchange(seen, mine, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                return Some(slot);
            }
        }
        None
    }

    fn write(&self, slot: usize, pid: u32, token: u64, holder: HolderRef<'_>) {
        let seq = self.slot_word(slot, 8);
        // Odd while writing; a crashed writer may have left it odd already.
        let start = seq.load(Ordering::Relaxed) | 1;
        seq.store(start, Ordering::Relaxed);
        fence(Ordering::Release);
        let (flags, bytes): (u64, &[u8]) = match &holder {
            HolderRef::Inline(id) => (0, id),
            HolderRef::Digest(digest) => (FLAG_DIGEST, digest),
        };
        self.slot_word(slot, 16)
            .store(u64::from(pid) | flags << 32, Ordering::Relaxed);
        self.slot_word(slot, 24).store(token, Ordering::Relaxed);
        self.slot_word(slot, 32)
            .store(bytes.len() as u64, Ordering::Relaxed);
        for (i, chunk) in bytes.chunks(8).enumerate() {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.slot_word(slot, 40 + i * 8)
                .store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
        seq.store(start + 1, Ordering::Release);
    }

    /// Frees the slot if it still records the lock `key` held through `semid`.
    pub(super) fn clear(&self, slot: usize, key: libc::key_t, semid: libc::c_int) {
        let _ = self.slot_word(slot, 0).compare_exchange(
            tag(key, semid),
            0,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Frees every slot recording the lock `key` held through `semid` (after a break).
    pub(super) fn forget(&self, key: libc::key_t, semid: libc::c_int) {
        let start = home(key);
        for slot in (0..PROBE).map(|i| (start + i) % SLOTS) {
            self.clear(slot, key, semid);
        }
    }

    /// What the table says about the lock `key` held through `semid`, if anything.
    pub(super) fn lookup(&self, key: libc::key_t, semid: libc::c_int) -> Option<Recorded> {
        let wanted = tag(key, semid);
        let start = home(key);
        (0..PROBE)
            .map(|i| (start + i) % SLOTS)
            .filter(|&s| self.slot_word(s, 0).load(Ordering::Acquire) == wanted)
            .find_map(|s| self.read(s, wanted))
    }

    fn read(&self, slot: usize, wanted: u64) -> Option<Recorded> {
        let seq = self.slot_word(slot, 8);
        for _ in 0..1000 {
            let before = seq.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let pid_flags = self.slot_word(slot, 16).load(Ordering::Relaxed);
            let token = self.slot_word(slot, 24).load(Ordering::Relaxed);
            let len = (self.slot_word(slot, 32).load(Ordering::Relaxed) as usize).min(INLINE);
            let mut bytes = Vec::with_capacity(len + 8);
            for i in 0..len.div_ceil(8) {
                let word = self.slot_word(slot, 40 + i * 8).load(Ordering::Relaxed);
                bytes.extend_from_slice(&word.to_le_bytes());
            }
            bytes.truncate(len);
            fence(Ordering::Acquire);
            if seq.load(Ordering::Relaxed) != before {
                continue;
            }
            if self.slot_word(slot, 0).load(Ordering::Acquire) != wanted {
                return None;
            }
            let holder = if (pid_flags >> 32) & FLAG_DIGEST != 0 {
                HolderId::Digest(bytes.try_into().ok()?)
            } else {
                HolderId::Inline(bytes)
            };
            return Some(Recorded {
                pid: pid_flags as u32,
                token,
                holder,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        for (key, semid) in [(0, 0), (-1, 0), (i32::MIN, i32::MAX), (1234, 98_304)] {
            let t = tag(key, semid);
            assert_ne!(t, 0);
            assert_eq!(tag_semid(t), semid);
            assert_eq!(tag_key(t), key as u32);
        }
        assert!(home(i32::MIN) < SLOTS && home(-1) < SLOTS);
    }
}
