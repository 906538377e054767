//! Locks (tooz's group H) plus fencing, `lost()`, cancellation and a two-thread stress case.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tooz::{Error, LostReason};

use crate::ctx::{run_child, Case, Ctx, Outcome, CHILD_ACQUIRED, CHILD_BUSY};
use crate::{assert_err, cases};

pub fn cases() -> Vec<Case> {
    cases![
        Locks => get_lock,
        BreakLock => get_lock_release_broken,
        Locks => get_lock_twice_locked_one_released_two,
        Locks => heartbeat_lock_not_acquired,
        SharedLocks => get_shared_lock,
        SharedLocks => get_shared_lock_locking_same_lock_twice,
        SharedLocks => get_shared_lock_locking_two_lock,
        SharedLocks => get_lock_locking_shared_and_exclusive,
        SharedLocks => get_lock_locking_exclusive_and_shared,
        Locks => get_lock_concurrency_locking_same_lock,
        Processes => get_lock_concurrency_locking_two_lock_process,
        Processes => get_lock_serial_locking_two_lock_process,
        Locks => get_lock_concurrency_locking_two_lock_thread1,
        Locks => get_lock_concurrency_locking_two_lock_thread2,
        Locks => get_lock_concurrency_locking2,
        Locks => get_lock_twice_locked_twice,
        Locks => get_lock_context_fails,
        Locks => get_lock_context_check_value,
        Locks => lock_context_manager_acquire_no_argument,
        Locks => lock_context_manager_acquire_argument_return_value,
        Locks => lock_context_manager_acquire_argument_release_within,
        Locks => lock_context_manager_acquire_argument,
        Locks => lock_context_manager_acquire_argument_timeout,
        Locks => get_lock_locked_twice,
        Locks => get_multiple_locks_with_same_coord,
        Locks => ensure_acquire_release_return,
        Locks => get_lock_multiple_coords,
        Locks => acquire_twice_no_deadlock_releasing,
        Locks => fencing_tokens_increase_across_holders,
        BreakLock => lost_fires_when_broken,
        Locks => lost_fires_when_session_ends,
        Locks => abandoned_wait_does_not_take_the_lock,
        Locks => dropped_guard_releases,
        Locks => waiter_is_handed_the_lock,
        Locks => dropped_acquire_does_not_take_the_lock,
        Locks => every_waiter_is_served_in_turn,
        Locks => holder_is_reported,
        Locks => two_threads_never_hold_one_lock,
    ]
}

async fn get_lock(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let lock = c.lock(ctx.name("lock"));
    let guard = lock.acquire().await?;
    assert!(lock.is_held());
    assert!(guard.release().await?);
    assert!(!lock.is_held());
    Ok(())
}

async fn get_lock_release_broken(ctx: Ctx) -> Outcome {
    let (a, b, third) = (ctx.coord().await, ctx.coord().await, ctx.coord().await);
    let name = ctx.name("lock");
    let held = a.lock(name.clone()).acquire().await?;
    let lock_b = b.lock(name.clone());
    assert!(lock_b.try_acquire().await?.is_none());
    assert!(lock_b.break_lock().await?);
    let b_guard = lock_b.try_acquire().await?.expect("free after the break");
    assert!(
        !held.release().await?,
        "a broken lock's release must say false"
    );
    assert!(
        third.lock(name).try_acquire().await?.is_none(),
        "b holds it"
    );
    assert!(b_guard.release().await?);
    Ok(())
}

async fn get_lock_twice_locked_one_released_two(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let name = ctx.name("lock");
    let (one, two) = (c.lock(name.clone()), c.lock(name));
    let held = one.try_acquire().await?.expect("free");
    assert!(two.try_acquire().await?.is_none());
    assert!(!two.release().await?, "two holds nothing");
    assert!(held.release().await?);
    Ok(())
}

/// tooz's `lock.heartbeat()` on a lock not held says False: ours has nothing to keep alive.
async fn heartbeat_lock_not_acquired(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let lock = c.lock(ctx.name("lock"));
    assert!(!lock.is_held());
    assert!(!lock.release().await?);
    Ok(())
}

async fn get_shared_lock(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let lock = c.lock(ctx.name("lock"));
    let guard = lock.acquire_shared().await?;
    assert!(guard.release().await?);
    Ok(())
}

async fn get_shared_lock_locking_same_lock_twice(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let lock = c.lock(ctx.name("lock"));
    let _first = lock.try_acquire_shared().await?.expect("free");
    let _second = lock.try_acquire_shared().await?.expect("shared stacks");
    assert!(lock.release().await?);
    assert!(lock.release().await?);
    assert!(
        !lock.release().await?,
        "a third release has nothing to release"
    );
    Ok(())
}

async fn get_shared_lock_locking_two_lock(ctx: Ctx) -> Outcome {
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    let name = ctx.name("lock");
    let first = a
        .lock(name.clone())
        .try_acquire_shared()
        .await?
        .expect("free");
    let second = b.lock(name).try_acquire_shared().await?.expect("shared");
    assert!(first.release().await?);
    assert!(second.release().await?);
    Ok(())
}

async fn get_lock_locking_shared_and_exclusive(ctx: Ctx) -> Outcome {
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    let name = ctx.name("lock");
    let shared = a
        .lock(name.clone())
        .try_acquire_shared()
        .await?
        .expect("free");
    assert!(b.lock(name.clone()).try_acquire().await?.is_none());
    assert!(shared.release().await?);
    let exclusive = b.lock(name).try_acquire().await?.expect("free again");
    exclusive.release().await?;
    Ok(())
}

async fn get_lock_locking_exclusive_and_shared(ctx: Ctx) -> Outcome {
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    let name = ctx.name("lock");
    let exclusive = a.lock(name.clone()).try_acquire().await?.expect("free");
    assert!(b.lock(name.clone()).try_acquire_shared().await?.is_none());
    assert!(exclusive.release().await?);
    let shared = b
        .lock(name)
        .try_acquire_shared()
        .await?
        .expect("free again");
    shared.release().await?;
    Ok(())
}

/// A second task using the same lock object blocks until the first releases.
async fn get_lock_concurrency_locking_same_lock(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let lock = c.lock(ctx.name("lock"));
    let held = lock.acquire().await?;
    let lock2 = lock.clone();
    let waiter = tokio::spawn(async move { lock2.acquire().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished(), "acquired while held");
    assert!(held.release().await?);
    let guard = tokio::time::timeout(Duration::from_secs(10), waiter).await???;
    guard.release().await?;
    Ok(())
}

async fn get_lock_concurrency_locking_two_lock_process(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let name = ctx.name("lock");
    let held = c.lock(name.clone()).acquire().await?;
    assert_eq!(run_child(&ctx.url, &name).await, CHILD_BUSY);
    held.release().await?;
    Ok(())
}

async fn get_lock_serial_locking_two_lock_process(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let name = ctx.name("lock");
    let held = c.lock(name.clone()).acquire().await?;
    held.release().await?;
    assert_eq!(run_child(&ctx.url, &name).await, CHILD_ACQUIRED);
    Ok(())
}

/// A coordinator in another thread (its own runtime) is excluded.
async fn get_lock_concurrency_locking_two_lock_thread1(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let name = ctx.name("lock");
    let held = c.lock(name.clone()).acquire().await?;
    let name2 = name.clone();
    let got = ctx
        .spawn_thread(move |ctx| async move {
            let other = ctx.coord().await;
            other.lock(name2).try_acquire().await.unwrap().is_some()
        })
        .join()
        .expect("thread")?;
    assert!(!got, "another thread's coordinator took a held lock");
    held.release().await?;
    Ok(())
}

/// The same coordinator used from another thread is excluded too.
async fn get_lock_concurrency_locking_two_lock_thread2(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let name = ctx.name("lock");
    let held = c.lock(name.clone()).acquire().await?;
    let c2 = c.clone();
    let got = tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { c2.lock(name).try_acquire().await.map(|g| g.is_some()) })
    })
    .await??;
    assert!(!got);
    held.release().await?;
    Ok(())
}

/// Taking a second lock does not release the first (one lock per connection backends).
async fn get_lock_concurrency_locking2(ctx: Ctx) -> Outcome {
    let (c, other) = (ctx.coord().await, ctx.coord().await);
    let (n1, n2) = (ctx.name("lock1"), ctx.name("lock2"));
    let l1 = c.lock(n1.clone()).acquire().await?;
    let c2 = c.clone();
    let l2 = tokio::spawn(async move { c2.lock(n2).acquire().await }).await??;
    assert!(other.lock(n1).try_acquire().await?.is_none(), "lock1 freed");
    l2.release().await?;
    l1.release().await?;
    Ok(())
}

async fn get_lock_twice_locked_twice(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let name = ctx.name("lock");
    let held = c.lock(name.clone()).acquire().await?;
    assert!(c.lock(name).try_acquire().await?.is_none());
    held.release().await?;
    Ok(())
}

async fn get_lock_context_fails(ctx: Ctx) -> Outcome {
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    let name = ctx.name("lock");
    let held = a.lock(name.clone()).acquire().await?;
    assert_err!(
        b.lock(name)
            .acquire_timeout(Duration::from_millis(50))
            .await,
        Error::OperationTimedOut(_)
    );
    held.release().await?;
    Ok(())
}

async fn get_lock_context_check_value(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let name = ctx.name("lock");
    let guard = c.lock(name.clone()).acquire().await?;
    assert_eq!(guard.lock().name(), &name);
    guard.release().await?;
    Ok(())
}

async fn lock_context_manager_acquire_no_argument(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let name = ctx.name("lock");
    {
        let _guard = c.lock(name.clone()).acquire().await?;
    }
    let again = c
        .lock(name)
        .acquire_timeout(Duration::from_secs(10))
        .await?;
    again.release().await?;
    Ok(())
}

async fn lock_context_manager_acquire_argument_return_value(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let lock = c.lock(ctx.name("lock"));
    let guard = lock.acquire_timeout(Duration::from_secs_f64(10.12)).await?;
    assert_eq!(guard.lock().name(), lock.name());
    guard.release().await?;
    Ok(())
}

async fn lock_context_manager_acquire_argument_release_within(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let lock = c.lock(ctx.name("lock"));
    let _guard = lock.acquire_timeout(Duration::from_secs_f64(10.12)).await?;
    assert!(lock.release().await?);
    Ok(())
}

/// `acquire_timeout` waits, then gives up; it succeeds when the holder releases in time.
async fn lock_context_manager_acquire_argument(ctx: Ctx) -> Outcome {
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    let name = ctx.name("lock");
    let held = a.lock(name.clone()).acquire().await?;
    let lock_b = b.lock(name);
    let wait = tokio::spawn(async move { lock_b.acquire_timeout(Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    held.release().await?;
    let guard = wait.await??;
    guard.release().await?;
    Ok(())
}

async fn lock_context_manager_acquire_argument_timeout(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let name = ctx.name("lock");
    let held = c.lock(name.clone()).acquire().await?;
    assert!(c.lock(name).try_acquire().await?.is_none());
    held.release().await?;
    Ok(())
}

async fn get_lock_locked_twice(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let lock = c.lock(ctx.name("lock"));
    let guard = lock.acquire().await?;
    assert!(lock.try_acquire().await?.is_none());
    guard.release().await?;
    Ok(())
}

async fn get_multiple_locks_with_same_coord(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let name = ctx.name("lock");
    let guard = c.lock(name.clone()).acquire().await?;
    assert!(c.lock(name.clone()).try_acquire().await?.is_none());
    assert!(c.lock(name).try_acquire().await?.is_none());
    guard.release().await?;
    Ok(())
}

async fn ensure_acquire_release_return(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let lock = c.lock(ctx.name("lock"));
    let _guard = lock.acquire().await?;
    assert!(lock.release().await?);
    assert!(!lock.release().await?);
    Ok(())
}

async fn get_lock_multiple_coords(ctx: Ctx) -> Outcome {
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    let name = ctx.name("lock");
    let held = a.lock(name.clone()).acquire().await?;
    let lock_b = b.lock(name);
    assert!(lock_b.try_acquire().await?.is_none());
    held.release().await?;
    let guard = lock_b.acquire_timeout(Duration::from_secs(10)).await?;
    guard.release().await?;
    Ok(())
}

async fn acquire_twice_no_deadlock_releasing(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let lock = c.lock(ctx.name("lock"));
    let _guard = lock.try_acquire().await?.expect("free");
    assert!(lock.try_acquire().await?.is_none());
    assert!(lock.release().await?);
    Ok(())
}

async fn fencing_tokens_increase_across_holders(ctx: Ctx) -> Outcome {
    let coords = [ctx.coord().await, ctx.coord().await, ctx.coord().await];
    let name = ctx.name("lock");
    let mut last = None;
    for round in 0..9 {
        let guard = coords[round % 3].lock(name.clone()).acquire().await?;
        let token = guard.fencing_token();
        assert!(last < Some(token), "token {token} after {last:?}");
        last = Some(token);
        guard.release().await?;
    }
    Ok(())
}

async fn lost_fires_when_broken(ctx: Ctx) -> Outcome {
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    let name = ctx.name("lock");
    let held = a.lock(name.clone()).acquire().await?;
    assert_eq!(held.lost_reason(), None);
    assert!(b.lock(name.clone()).break_lock().await?);
    let reason = tokio::time::timeout(Duration::from_secs(10), held.lost()).await?;
    assert_eq!(reason, LostReason::Broken);
    let next = b
        .lock(name)
        .acquire_timeout(Duration::from_secs(10))
        .await?;
    assert!(next.fencing_token() > held.fencing_token());
    next.release().await?;
    Ok(())
}

async fn lost_fires_when_session_ends(ctx: Ctx) -> Outcome {
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    let name = ctx.name("lock");
    let held = a.lock(name.clone()).acquire().await?;
    a.stop().await?;
    let reason = tokio::time::timeout(Duration::from_secs(10), held.lost()).await?;
    assert_eq!(reason, LostReason::CoordinatorStopped);
    let next = b
        .lock(name)
        .acquire_timeout(Duration::from_secs(10))
        .await?;
    next.release().await?;
    Ok(())
}

/// A waiter that gives up must not end up holding the lock.
async fn abandoned_wait_does_not_take_the_lock(ctx: Ctx) -> Outcome {
    let (a, b, c) = (ctx.coord().await, ctx.coord().await, ctx.coord().await);
    let name = ctx.name("lock");
    let held = a.lock(name.clone()).acquire().await?;
    assert_err!(
        b.lock(name.clone())
            .acquire_timeout(Duration::from_millis(50))
            .await,
        Error::OperationTimedOut(_)
    );
    held.release().await?;
    let guard = c
        .lock(name)
        .acquire_timeout(Duration::from_secs(10))
        .await?;
    guard.release().await?;
    Ok(())
}

/// An acquire whose future is dropped while it waits leaves nothing behind: no lock taken
/// when the holder releases, no queue place ahead of later waiters.
async fn dropped_acquire_does_not_take_the_lock(ctx: Ctx) -> Outcome {
    let (a, b, c) = (ctx.coord().await, ctx.coord().await, ctx.coord().await);
    let name = ctx.name("lock");
    let held = a.lock(name.clone()).acquire().await?;
    let lock_b = b.lock(name.clone());
    let waiting = lock_b.clone();
    let waiter = tokio::spawn(async move { waiting.acquire().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    waiter.abort();
    assert!(
        waiter.await.is_err_and(|e| e.is_cancelled()),
        "the wait was dropped"
    );
    held.release().await?;
    let guard = c
        .lock(name)
        .acquire_timeout(Duration::from_secs(10))
        .await?;
    assert!(!lock_b.is_held(), "the dropped acquire holds nothing");
    guard.release().await?;
    Ok(())
}

/// Several waiters on one held lock: each is served once the one before releases, with a
/// larger fencing token each time, and never two at once (no waiter is starved or forgotten,
/// whether the driver queues waiters or they retry).
async fn every_waiter_is_served_in_turn(ctx: Ctx) -> Outcome {
    const WAITERS: usize = 4;
    let name = ctx.name("lock");
    let holder = ctx.coord().await;
    let held = holder.lock(name.clone()).acquire().await?;
    let first_token = held.fencing_token();
    let inside = Arc::new(AtomicUsize::new(0));
    let mut waiters = Vec::new();
    for _ in 0..WAITERS {
        let lock = ctx.coord().await.lock(name.clone());
        let inside = inside.clone();
        waiters.push(tokio::spawn(async move {
            let guard = lock.acquire_timeout(Duration::from_secs(20)).await?;
            let token = guard.fencing_token();
            assert_eq!(
                inside.fetch_add(1, Ordering::SeqCst),
                0,
                "two holders at once"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
            inside.fetch_sub(1, Ordering::SeqCst);
            guard.release().await?;
            Ok::<_, Error>(token)
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    held.release().await?;
    let mut tokens = Vec::new();
    for waiter in waiters {
        tokens.push(waiter.await??);
    }
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), WAITERS, "every waiter got its own token");
    assert!(
        tokens[0] > first_token,
        "tokens grow past the first holder's"
    );
    Ok(())
}

async fn dropped_guard_releases(ctx: Ctx) -> Outcome {
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    let name = ctx.name("lock");
    drop(a.lock(name.clone()).acquire().await?);
    let guard = b
        .lock(name)
        .acquire_timeout(Duration::from_secs(10))
        .await?;
    guard.release().await?;
    Ok(())
}

async fn waiter_is_handed_the_lock(ctx: Ctx) -> Outcome {
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    let name = ctx.name("lock");
    let held = a.lock(name.clone()).acquire().await?;
    let lock_b = b.lock(name);
    let waiter = tokio::spawn(async move { lock_b.acquire().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    held.release().await?;
    let guard = tokio::time::timeout(Duration::from_secs(10), waiter).await???;
    guard.release().await?;
    Ok(())
}

async fn holder_is_reported(ctx: Ctx) -> Outcome {
    if !ctx.support.election {
        return Ok(());
    }
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    let lock = a.lock(ctx.name("lock"));
    assert_eq!(lock.holder().await?, None);
    let guard = lock.acquire().await?;
    assert_eq!(
        b.lock(lock.name().clone()).holder().await?.as_ref(),
        Some(a.member_id())
    );
    guard.release().await?;
    Ok(())
}

/// Two coordinators in two threads hammer one lock: never both inside, tokens increase.
async fn two_threads_never_hold_one_lock(ctx: Ctx) -> Outcome {
    const ROUNDS: usize = 200;
    let name = ctx.name("lock");
    let inside = Arc::new(AtomicBool::new(false));
    let last_token = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for _ in 0..2 {
        let name = name.clone();
        let (inside, last_token) = (inside.clone(), last_token.clone());
        threads.push(ctx.spawn_thread(move |ctx| async move {
            let c = ctx.coord().await;
            let lock = c.lock(name);
            for _ in 0..ROUNDS {
                let guard = lock.acquire().await.unwrap();
                assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                let token = guard.fencing_token().0;
                let previous = last_token.swap(token, Ordering::SeqCst);
                assert!(token > previous, "token {token} after {previous}");
                std::thread::sleep(Duration::from_micros(200));
                inside.store(false, Ordering::SeqCst);
                assert!(guard.release().await.unwrap());
            }
        }));
    }
    for t in threads {
        t.join().map_err(|_| "a thread panicked")??;
    }
    Ok(())
}
