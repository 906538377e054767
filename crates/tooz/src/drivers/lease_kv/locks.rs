//! The lock recipe (see the module docs of `lease_kv` and `layout`).

use tokio::time::Instant;

use super::layout::{holder_of, holder_value};
use super::store::{Compare, Event, KeyRange, KvStore, Op, Read};
use super::LeaseKvDriver;
use crate::driver::Driver;
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
    let txn = driver
        .store
        .txn(when, take(driver, req, lease), vec![])
        .await?;
    Ok(txn.succeeded.then(|| token(txn.revision)))
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
    let queued = driver
        .store
        .txn(
            vec![Compare::absent(KeyRange::key(place.clone()))],
            vec![Op::Put {
                key: place.clone(),
                value: Vec::new(),
                lease,
            }],
            vec![],
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
    let store = driver.store.clone();
    let leave_key = place.clone();
    let leave = OnAbandon::spawn(tokio::runtime::Handle::current(), async move {
        let _ = store
            .txn(vec![], vec![Op::Delete(KeyRange::key(leave_key))], vec![])
            .await;
    });
    loop {
        // The waiter just before this one, if any.
        let (before, revision) = driver
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
            if !wait_deleted(driver, &before.key, revision + 1, deadline).await? {
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
            Op::Get(Read::all(KeyRange::key(driver.layout.legacy_lock(&req.name)))),
            Op::Get(Read::all(KeyRange::key(place.clone()))),
        ];
        let txn = driver.store.txn(when, then, otherwise).await?;
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
            if !wait_deleted(driver, &holder.key, txn.revision + 1, deadline).await? {
                leave.undo_now().await;
                return Ok(None);
            }
        }
    }
}

/// Waits until `key` is deleted (watching from `from`), or until `deadline` (`false`). A
/// watch that breaks ends the wait too: the caller looks again.
async fn wait_deleted<S: KvStore>(
    driver: &LeaseKvDriver<S>,
    key: &[u8],
    from: i64,
    deadline: Option<Instant>,
) -> Result<bool> {
    let wait = async {
        let mut events = driver.store.watch(KeyRange::key(key.to_vec()), from).await?;
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
    let txn = driver
        .store
        .txn(
            vec![Compare::value_is(key.clone(), value.clone())],
            vec![
                Op::Delete(KeyRange::key(key)),
                Op::Delete(KeyRange::key(legacy)),
            ],
            vec![],
        )
        .await?;
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

pub(super) async fn holder<S: KvStore>(
    driver: &LeaseKvDriver<S>,
    name: &Id,
) -> Result<Option<Id>> {
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
        Some(kv) => holder_of(name, &kv.value).map(Some),
    }
}
