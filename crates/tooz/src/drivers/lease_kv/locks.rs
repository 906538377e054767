//! The lock recipe (see the module docs of `lease_kv` and `layout`).

use tokio::time::Instant;

use super::store::{Compare, Event, KeyRange, KvStore, Op, Read};
use super::LeaseKvDriver;
use crate::driver::Driver;
use crate::drivers::common::holder::{holder_of, holder_value};
use crate::drivers::common::OnAbandon;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::types::{FencingToken, LockMode, LockRequest, LostReason};
use futures::StreamExt;

fn check_mode<S: KvStore>(driver: &LeaseKvDriver<S>, req: &LockRequest) -> Result<()> {
    match req.mode {
        LockMode::Exclusive => Ok(()),
        LockMode::Shared => Err(Error::NotImplemented {
            driver: driver.scheme(),
            operation: "shared locks",
            reason: "the lock recipe has no shared mode",
        }),
    }
}

fn token(revision: i64) -> FencingToken {
    FencingToken(revision.max(0) as u64)
}

/// The writes that take lock `name` for `req` on `lease`.
fn take<S: KvStore>(driver: &LeaseKvDriver<S>, req: &LockRequest, lease: i64) -> Vec<Op> {
    let value = holder_value(&req.nonce, &driver.member);
    vec![
        Op::Put {
            key: driver.layout.lock(&req.name),
            value: value.clone(),
            lease,
        },
        Op::Put {
            key: driver.layout.legacy_lock(&req.name),
            value,
            lease,
        },
    ]
}

/// Both lock keys (tooz 5+ and tooz 4.x) are free.
fn free<S: KvStore>(driver: &LeaseKvDriver<S>, name: &Id) -> Vec<Compare> {
    vec![
        Compare::absent(KeyRange::key(driver.layout.lock(name))),
        Compare::absent(KeyRange::key(driver.layout.legacy_lock(name))),
    ]
}

/// One transaction: the lock is taken if both its keys are free and nobody queues for it.
pub(super) async fn try_acquire<S: KvStore>(
    driver: &LeaseKvDriver<S>,
    req: &LockRequest,
) -> Result<Option<FencingToken>> {
    check_mode(driver, req)?;
    let lease = driver.lease()?;
    let mut when = free(driver, &req.name);
    when.push(Compare::absent(KeyRange::prefix(
        driver.layout.queue(&req.name),
    )));
    let undo = undo_take(driver, req);
    let txn = write_or_undo(driver, when, take(driver, req, lease), vec![], undo).await?;
    Ok(txn.succeeded.then(|| token(txn.revision)))
}

/// What undoes a take whose reply was lost: the lock keys deleted if they are this
/// acquisition's.
fn undo_take<S: KvStore>(driver: &LeaseKvDriver<S>, req: &LockRequest) -> Undo {
    let key = driver.layout.lock(&req.name);
    let value = holder_value(&req.nonce, &driver.member);
    Undo {
        when: vec![Compare::value_is(key.clone(), value)],
        then: vec![
            Op::Delete(KeyRange::key(key)),
            Op::Delete(KeyRange::key(driver.layout.legacy_lock(&req.name))),
        ],
    }
}

/// A transaction that undoes a write.
struct Undo {
    when: Vec<Compare>,
    then: Vec<Op>,
}

/// How often, and how many times, an undo is tried before the lease is left to end it.
const UNDO_RETRY: std::time::Duration = std::time::Duration::from_millis(100);
const UNDO_TRIES: u32 = 100;

/// Runs `undo` when dropped armed: in the background, tried until the store answers it
/// (bounded: after that the session's lease, when it ends, deletes what was left).
fn undo_on_abandon<S: KvStore>(driver: &LeaseKvDriver<S>, undo: Undo) -> OnAbandon {
    let store = driver.store.clone();
    OnAbandon::spawn(tokio::runtime::Handle::current(), async move {
        for _ in 0..UNDO_TRIES {
            let attempt = store.txn(undo.when.clone(), undo.then.clone(), vec![]);
            if attempt.await.is_ok() {
                return;
            }
            tokio::time::sleep(UNDO_RETRY).await;
        }
    })
}

/// Runs a transaction that writes on the session's lease (or releases what is on it). If no
/// reply comes (an error, a timeout, the future dropped), the write may have happened unseen
/// (or the release not at all), and the lease would keep it alive: `undo` is then run in the
/// background until the store answers it.
async fn write_or_undo<S: KvStore>(
    driver: &LeaseKvDriver<S>,
    when: Vec<Compare>,
    then: Vec<Op>,
    otherwise: Vec<Op>,
    undo: Undo,
) -> Result<super::store::TxnResult> {
    let guard = undo_on_abandon(driver, undo);
    let result = driver.store.txn(when, then, otherwise).await;
    if result.is_ok() {
        guard.disarm();
    }
    result
}

/// Takes the lock, queueing behind earlier waiters, until `deadline`.
pub(super) async fn acquire<S: KvStore>(
    driver: &LeaseKvDriver<S>,
    req: &LockRequest,
    deadline: Option<Instant>,
) -> Result<Option<FencingToken>> {
    if let Some(token) = try_acquire(driver, req).await? {
        return Ok(Some(token));
    }
    let lease = driver.lease()?;
    let queue = driver.layout.queue(&req.name);
    let place = driver.layout.waiter(&req.name, lease, &req.nonce);
    let leave_queue = || Undo {
        when: vec![],
        then: vec![Op::Delete(KeyRange::key(place.clone()))],
    };
    let queued = write_or_undo(
        driver,
        vec![Compare::absent(KeyRange::key(place.clone()))],
        vec![Op::Put {
            key: place.clone(),
            value: Vec::new(),
            lease,
        }],
        vec![],
        leave_queue(),
    )
    .await?;
    if !queued.succeeded {
        return Err(Error::Backend {
            driver: driver.scheme(),
            message: format!("lock {}: this acquisition already queues", req.name),
        });
    }
    let my_revision = queued.revision;
    // Leaving the queue, whoever gives up: a timeout, an error, a dropped future.
    let leave = undo_on_abandon(driver, leave_queue());
    loop {
        // The waiter just before this one, if any.
        let (before, _) = driver
            .store
            .range(Read {
                range: KeyRange::prefix(queue.clone()),
                limit: 1,
                max_create_revision: my_revision - 1,
                newest_first: true,
                keys_only: true,
            })
            .await?;
        if let Some(before) = before.first() {
            if !wait_deleted(driver, &before.key, deadline).await? {
                leave.undo_now().await;
                return Ok(None);
            }
            continue;
        }
        // First in the queue: take the lock if it is free and this place still exists.
        let mut when = free(driver, &req.name);
        when.push(Compare::created_at(place.clone(), my_revision));
        let mut then = take(driver, req, lease);
        then.push(Op::Delete(KeyRange::key(place.clone())));
        let otherwise = vec![
            Op::Get(Read::all(KeyRange::key(driver.layout.lock(&req.name)))),
            Op::Get(Read::all(KeyRange::key(
                driver.layout.legacy_lock(&req.name),
            ))),
            Op::Get(Read::all(KeyRange::key(place.clone()))),
        ];
        let txn = write_or_undo(driver, when, then, otherwise, undo_take(driver, req)).await?;
        if txn.succeeded {
            leave.disarm();
            return Ok(Some(token(txn.revision)));
        }
        if txn.got(2).is_empty() {
            // The queue place vanished with its lease: the session is lost.
            leave.disarm();
            return Err(Error::Lost(format!(
                "lock {} (the session lease expired while it waited)",
                req.name
            )));
        }
        let holder = txn.got(0).first().or(txn.got(1).first());
        if let Some(holder) = holder {
            if !wait_deleted(driver, &holder.key, deadline).await? {
                leave.undo_now().await;
                return Ok(None);
            }
        }
    }
}

/// Waits until `key` is deleted, or until `deadline` (`false`). The watch starts from now
/// and the key is read after the server confirmed it: a watch from a past revision would be
/// one etcd catches up in batches (every 100 ms), late for a hand-off. A watch that breaks
/// ends the wait too: the caller looks again.
async fn wait_deleted<S: KvStore>(
    driver: &LeaseKvDriver<S>,
    key: &[u8],
    deadline: Option<Instant>,
) -> Result<bool> {
    let wait = async {
        let mut events = driver.store.watch(KeyRange::key(key.to_vec()), 0).await?;
        let (still, _) = driver
            .store
            .range(Read {
                keys_only: true,
                ..Read::all(KeyRange::key(key.to_vec()))
            })
            .await?;
        if still.is_empty() {
            return Ok(());
        }
        while let Some(batch) = events.next().await {
            match batch {
                Ok(batch) if batch.iter().any(|e| matches!(e, Event::Delete(_))) => break,
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "lock watch broke; looking again");
                    break;
                }
            }
        }
        Ok(())
    };
    match deadline {
        None => wait.await.map(|()| true),
        Some(deadline) => match tokio::time::timeout_at(deadline, wait).await {
            Ok(result) => result.map(|()| true),
            Err(_) => Ok(false),
        },
    }
}

/// Deletes the lock keys if they still hold this acquisition's value.
pub(super) async fn release<S: KvStore>(
    driver: &LeaseKvDriver<S>,
    req: &LockRequest,
) -> Result<bool> {
    let key = driver.layout.lock(&req.name);
    let legacy = driver.layout.legacy_lock(&req.name);
    let value = holder_value(&req.nonce, &driver.member);
    // A release whose reply is lost is tried again in the background: the session's lease
    // would keep the lock alive.
    let when = vec![Compare::value_is(key.clone(), value)];
    let then = vec![
        Op::Delete(KeyRange::key(key)),
        Op::Delete(KeyRange::key(legacy)),
    ];
    let txn = write_or_undo(driver, when, then, vec![], undo_take(driver, req)).await?;
    Ok(txn.succeeded)
}

/// Whether the lock key still holds this acquisition's value. Its lease is the session's,
/// which the heartbeat has just renewed (a lost lease is reported as a lost session first),
/// so a key gone or rewritten was broken.
pub(super) async fn still_held<S: KvStore>(
    driver: &LeaseKvDriver<S>,
    req: &LockRequest,
) -> Result<bool> {
    let (kvs, _) = driver
        .store
        .range(Read::all(KeyRange::key(driver.layout.lock(&req.name))))
        .await?;
    let value = holder_value(&req.nonce, &driver.member);
    let held = kvs.first().is_some_and(|kv| kv.value == value);
    if !held {
        req.lost.fire(LostReason::Broken);
    }
    Ok(held)
}

pub(super) async fn break_lock<S: KvStore>(driver: &LeaseKvDriver<S>, name: &Id) -> Result<bool> {
    let txn = driver
        .store
        .txn(
            vec![],
            vec![
                Op::Delete(KeyRange::key(driver.layout.lock(name))),
                Op::Delete(KeyRange::key(driver.layout.legacy_lock(name))),
            ],
            vec![],
        )
        .await?;
    Ok(txn.deleted() > 0)
}

pub(super) async fn holder<S: KvStore>(driver: &LeaseKvDriver<S>, name: &Id) -> Result<Option<Id>> {
    let txn = driver
        .store
        .txn(
            vec![],
            vec![
                Op::Get(Read::all(KeyRange::key(driver.layout.lock(name)))),
                Op::Get(Read::all(KeyRange::key(driver.layout.legacy_lock(name)))),
            ],
            vec![],
        )
        .await?;
    match txn.got(0).first().or(txn.got(1).first()) {
        None => Ok(None),
        Some(kv) => holder_of(driver.scheme(), name, &kv.value).map(Some),
    }
}
