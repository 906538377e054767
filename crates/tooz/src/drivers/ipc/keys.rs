//! SysV IPC keys, derived exactly as Python tooz derives them (`tooz/drivers/ipc.py`, `ftok`).
//!
//! Python computes `md5(project + name)` as an integer, reduces it modulo
//! `KEY_MAX - KEY_MIN` (sysv_ipc's `LONG_MIN`/`LONG_MAX`, so `2^64 - 1` on 64-bit Linux) and
//! adds `KEY_MIN`; sysv_ipc then casts that `long` to the 32-bit `key_t`. Since `-2^63` is a
//! multiple of `2^32`, the key the kernel sees is the low 32 bits of
//! `md5 mod (2^64 - 1)`, reinterpreted as a signed 32-bit integer.

use md5::{Digest, Md5};

/// Project of every lock semaphore.
pub(super) const LOCK_PROJECT: &[u8] = b"__TOOZ_LOCK_";
/// Name (in [`LOCK_PROJECT`]) of the semaphore guarding the group list.
pub(super) const INTERNAL_LOCK_NAME: &[u8] = b"TOOZ_INTERNAL_LOCK";
/// Name and project of the shared-memory group list.
pub(super) const GROUP_LIST_NAME: &[u8] = b"GROUP_LIST";
/// Project of the group list segment.
pub(super) const GROUP_PROJECT: &[u8] = b"_TOOZ_INTERNAL";
/// Name and project of this crate's own state segment (fencing counter and lock holders).
/// Python tooz never uses this project, so the key cannot clash with its objects.
pub(super) const STATE_NAME: &[u8] = b"STATE-v1";
/// Project of this crate's own objects.
pub(super) const RS_PROJECT: &[u8] = b"_TOOZ_RS_INTERNAL";

/// Python tooz's `ftok(name, project)`: the value Python computes, before sysv_ipc narrows
/// it to `key_t`.
pub(super) fn python_ftok(name: &[u8], project: &[u8]) -> i64 {
    let mut hasher = Md5::new();
    hasher.update(project);
    hasher.update(name);
    let digest = u128::from_be_bytes(hasher.finalize().into());
    let reduced = (digest % u128::from(u64::MAX)) as u64;
    // reduced + KEY_MIN, with KEY_MIN = -2^63: always within i64.
    (i128::from(reduced) + i128::from(i64::MIN)) as i64
}

/// The SysV key (`key_t`) sysv_ipc hands to the kernel for `ftok(name, project)`.
pub(super) fn key(name: &[u8], project: &[u8]) -> libc::key_t {
    python_ftok(name, project) as u64 as u32 as i32
}

/// The key of the semaphore of lock `name`.
pub(super) fn lock_key(name: &[u8]) -> libc::key_t {
    key(name, LOCK_PROJECT)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appendix A of the reference: values computed with CPython and sysv_ipc.
    #[test]
    fn python_vectors() {
        let vectors: [(&[u8], &[u8], i64, i32); 3] = [
            (
                b"GROUP_LIST",
                b"_TOOZ_INTERNAL",
                5139689563633823633,
                1210920849,
            ),
            (
                b"TOOZ_INTERNAL_LOCK",
                b"__TOOZ_LOCK_",
                -466281960937111831,
                -383009047,
            ),
            (
                b"mylock",
                b"__TOOZ_LOCK_",
                -6407984013560025251,
                -1721798819,
            ),
        ];
        for (name, project, ftok, key_t) in vectors {
            assert_eq!(python_ftok(name, project), ftok);
            assert_eq!(key(name, project), key_t);
        }
        assert_eq!(key(b"GROUP_LIST", b"_TOOZ_INTERNAL") as u32, 0x482d2f91);
        assert_eq!(
            key(b"TOOZ_INTERNAL_LOCK", b"__TOOZ_LOCK_") as u32,
            0xe92bbee9
        );
        assert_eq!(lock_key(b"mylock") as u32, 0x995f6f5d);
    }

    #[test]
    fn our_keys_differ_from_pythons() {
        assert_ne!(
            key(STATE_NAME, RS_PROJECT),
            key(GROUP_LIST_NAME, GROUP_PROJECT)
        );
    }
}
