//! The locks a driver holds, by acquisition nonce, each with its lost signal.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::types::{LockRequest, LostReason, LostSignal};

/// One held lock: its lost signal and what the driver keeps to release it.
pub(crate) struct HeldLock<T> {
    /// Fired when the lock is lost.
    pub(crate) lost: LostSignal,
    /// The driver's record (a node path, a file, a key).
    pub(crate) record: T,
}

/// The locks one driver (or process) holds, by acquisition nonce.
pub(crate) struct HeldLocks<T> {
    locks: Mutex<HashMap<String, HeldLock<T>>>,
}

impl<T> Default for HeldLocks<T> {
    fn default() -> Self {
        HeldLocks {
            locks: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> HeldLocks<T> {
    /// Records `req` as held, with the driver's `record`.
    pub(crate) fn insert(&self, req: &LockRequest, record: T) {
        self.insert_signal(req.nonce.clone(), req.lost.clone(), record);
    }

    /// Records the acquisition `nonce` as held.
    pub(crate) fn insert_signal(&self, nonce: String, lost: LostSignal, record: T) {
        self.locks
            .lock()
            .unwrap()
            .insert(nonce, HeldLock { lost, record });
    }

    /// Records `req` as held if `check`, run while the table is locked, says so: a check
    /// that must be atomic with [`lose_where`](HeldLocks::lose_where) (a break that removes
    /// the backend's lock first and then looks here for the holders to tell).
    pub(crate) fn insert_if<E>(
        &self,
        req: &LockRequest,
        record: T,
        check: impl FnOnce() -> std::result::Result<bool, E>,
    ) -> std::result::Result<bool, E> {
        let mut locks = self.locks.lock().unwrap();
        let ok = check()?;
        if ok {
            let lost = req.lost.clone();
            locks.insert(req.nonce.clone(), HeldLock { lost, record });
        }
        Ok(ok)
    }

    /// What `read` finds in the record of `nonce`, if it is held.
    pub(crate) fn read<R>(&self, nonce: &str, read: impl FnOnce(&T) -> R) -> Option<R> {
        self.locks
            .lock()
            .unwrap()
            .get(nonce)
            .map(|h| read(&h.record))
    }

    /// Forgets the acquisition `nonce` (released, or handed back), returning it.
    pub(crate) fn remove(&self, nonce: &str) -> Option<HeldLock<T>> {
        self.locks.lock().unwrap().remove(nonce)
    }

    /// True while `nonce` is held.
    pub(crate) fn contains(&self, nonce: &str) -> bool {
        self.locks.lock().unwrap().contains_key(nonce)
    }

    /// Forgets `nonce` and fires its lost signal; its record, if it was held.
    pub(crate) fn lose(&self, nonce: &str, reason: LostReason) -> Option<T> {
        let held = self.remove(nonce)?;
        held.lost.fire(reason);
        Some(held.record)
    }

    /// Forgets every lock for which `lost` says so, fires their signals and returns their
    /// records.
    pub(crate) fn lose_where(
        &self,
        mut lost: impl FnMut(&T) -> bool,
        reason: LostReason,
    ) -> Vec<T> {
        let gone: Vec<HeldLock<T>> = {
            let mut locks = self.locks.lock().unwrap();
            let nonces: Vec<String> = locks
                .iter()
                .filter(|(_, held)| lost(&held.record))
                .map(|(nonce, _)| nonce.clone())
                .collect();
            nonces.iter().filter_map(|n| locks.remove(n)).collect()
        };
        gone.into_iter()
            .map(|held| {
                held.lost.fire(reason);
                held.record
            })
            .collect()
    }

    /// Forgets the locks whose signal has fired already (reported lost elsewhere, as by the
    /// core when a session stays suspended too long); returns their records.
    pub(crate) fn remove_lost(&self) -> Vec<T> {
        let mut locks = self.locks.lock().unwrap();
        let nonces: Vec<String> = locks
            .iter()
            .filter(|(_, held)| held.lost.reason().is_some())
            .map(|(nonce, _)| nonce.clone())
            .collect();
        nonces
            .iter()
            .filter_map(|n| locks.remove(n))
            .map(|held| held.record)
            .collect()
    }

    /// Forgets every lock and fires every signal; returns the records.
    pub(crate) fn lose_all(&self, reason: LostReason) -> Vec<T> {
        self.lose_where(|_| true, reason)
    }

    /// Forgets every lock without firing anything (the core reports them on stop).
    pub(crate) fn clear(&self) -> Vec<T> {
        let drained: Vec<HeldLock<T>> =
            self.locks.lock().unwrap().drain().map(|(_, h)| h).collect();
        drained.into_iter().map(|held| held.record).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(nonce: &str) -> LockRequest {
        LockRequest {
            name: "lock".into(),
            owner: "me".into(),
            nonce: nonce.into(),
            mode: crate::types::LockMode::Exclusive,
            lost: LostSignal::default(),
        }
    }

    #[test]
    fn losing_fires_only_the_chosen_signals() {
        let held = HeldLocks::default();
        let (a, b) = (request("a"), request("b"));
        held.insert(&a, 1);
        held.insert(&b, 2);
        assert_eq!(held.lose_where(|n| *n == 2, LostReason::Expired), vec![2]);
        assert_eq!(b.lost.reason(), Some(LostReason::Expired));
        assert_eq!(a.lost.reason(), None);
        assert!(held.contains("a") && !held.contains("b"));
        held.insert(&b, 2);
        assert_eq!(held.remove_lost(), vec![2]);
        assert!(held.contains("a") && !held.contains("b"));
        assert_eq!(held.lose("a", LostReason::Broken), Some(1));
        assert_eq!(a.lost.reason(), Some(LostReason::Broken));
        assert!(held.lose("a", LostReason::Broken).is_none());
    }

    #[test]
    fn a_failed_check_records_nothing() {
        let held = HeldLocks::default();
        let a = request("a");
        assert_eq!(held.insert_if(&a, 1, || Ok::<_, ()>(false)), Ok(false));
        assert_eq!(held.insert_if(&a, 2, || Err(())), Err(()));
        assert!(!held.contains("a"));
        assert_eq!(held.insert_if(&a, 3, || Ok::<_, ()>(true)), Ok(true));
        assert_eq!(held.read("a", |n| *n), Some(3));
    }

    #[test]
    fn clearing_fires_nothing() {
        let held = HeldLocks::default();
        let a = request("a");
        held.insert(&a, ());
        assert_eq!(held.clear().len(), 1);
        assert_eq!(a.lost.reason(), None);
        assert!(held.remove("a").is_none());
    }
}
