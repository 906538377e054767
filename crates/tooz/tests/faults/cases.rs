//! The cases. Each checks what the driver promises under one fault, within the bounds of
//! `bounds.rs`, and leaves the servers as it found them.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libtest_mimic::Failed;
use tooz::{Capabilities, ConnectionState, Coordinator, Error, GroupEvent, Id, LostReason};

use crate::bounds::{RECOVER, SLACK};
use crate::support::TempDir;
use crate::{child, Case, Ctx, Need, Outcome};

/// The capabilities members join with, to see that a membership came back whole.
const CAPS: &[u8] = b"zone-a";

/// How long a queued acquire waits before it gives up.
const QUEUE_WAIT: Duration = Duration::from_secs(1);

pub fn all() -> Vec<Case> {
    macro_rules! cases {
        ($($need:ident => $name:ident),* $(,)?) => {
            vec![$(Case {
                name: stringify!($name),
                need: Need::$need,
                run: |ctx| Box::pin($name(ctx)),
            }),*]
        };
    }
    cases![
        Proxy => cut_off_holder_loses_its_lock,
        Server => killed_holder_frees_its_lock,
        Restart => server_restart_is_survived,
        Proxy => lost_acquire_reply_leaves_no_orphan_lock,
        Proxy => lost_queued_acquire_reply_leaves_no_queue_entry,
        Proxy => black_holed_calls_fail_in_time,
    ]
}

/// `fut`'s output, or a failure naming `what` if it takes more than `bound`.
async fn within<T>(bound: Duration, what: &str, fut: impl Future<Output = T>) -> Result<T, Failed> {
    tokio::time::timeout(bound, fut)
        .await
        .map_err(|_| format!("{what}: not within {bound:?}").into())
}

/// Retries `op` while it fails with a transient error, for at most [`RECOVER`].
async fn recovered<T, F, Fut>(what: &str, mut op: F) -> Result<T, Failed>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = tooz::Result<T>>,
{
    let end = Instant::now() + RECOVER;
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(e) if e.is_transient() && Instant::now() < end => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(format!("{what}: {e}").into()),
        }
    }
}

/// Polls `check` every 50 ms until it says yes, for at most `bound`; transient errors count as
/// no. The last answer names what was seen when it never said yes.
async fn eventually<F, Fut>(bound: Duration, what: &str, mut check: F) -> Outcome
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, String>>,
{
    let end = Instant::now() + bound;
    loop {
        let seen = check().await;
        if seen == Ok(true) {
            return Ok(());
        }
        if Instant::now() >= end {
            return Err(format!("{what}: not within {bound:?} (last: {seen:?})").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The connection states `coord` reports from now on, each with when it was reported.
type States = Arc<Mutex<Vec<(ConnectionState, Instant)>>>;

fn record_states(coord: &Coordinator) -> States {
    let seen: States = Arc::default();
    let mut states = coord.connection_states();
    states.borrow_and_update();
    let sink = Arc::clone(&seen);
    tokio::spawn(async move {
        while states.changed().await.is_ok() {
            let state = *states.borrow_and_update();
            sink.lock().unwrap().push((state, Instant::now()));
        }
    });
    seen
}

fn first(states: &States, want: ConnectionState) -> Option<Instant> {
    let states = states.lock().unwrap();
    states.iter().find(|(s, _)| *s == want).map(|(_, at)| *at)
}

fn names(states: &States) -> Vec<ConnectionState> {
    states.lock().unwrap().iter().map(|(s, _)| *s).collect()
}

/// Waits until `coord` reports itself connected again; `seen` are its states so far.
async fn reconnected(coord: &Coordinator, seen: &States) -> Outcome {
    let mut states = coord.connection_states();
    let what = format!("connected again (states so far: {:?})", names(seen));
    within(RECOVER, &what, async {
        while !states.borrow_and_update().is_connected() {
            if states.changed().await.is_err() {
                return;
            }
        }
    })
    .await
}

fn is_timeout_or_connection(e: &Error) -> bool {
    matches!(e, Error::OperationTimedOut(_) | Error::Connection(_))
}

/// Case 1: a lock holder cut off (black-holed) past its session: `lost()` fires within the bound,
/// the holder is warned (`Suspended`, and `lost()` where the driver promises it) before another
/// client takes the lock with a larger token, its leadership and membership end too; once healed,
/// it works again, is a member again (joined by the driver where it says so, by hand otherwise),
/// and knows the lock is not its.
async fn cut_off_holder_loses_its_lock(ctx: Ctx) -> Outcome {
    let b = ctx.bounds;
    let net = ctx.proxied().await;
    let (lock, group) = (ctx.name("lock"), ctx.name("group"));
    let holder = ctx.coord(&net.url, "cut-off").await;
    let other = ctx.coord(&ctx.url, "other").await;
    holder.join_group_create(group.as_str(), CAPS).await?;
    let guard = Arc::new(holder.lock(lock.as_str()).acquire().await?);
    let leadership = if ctx.support.election {
        Some(holder.campaign(group.as_str()).await?)
    } else {
        None
    };
    let states = record_states(&holder);
    let waiter = {
        let (other, lock) = (other.clone(), lock.clone());
        tokio::spawn(async move {
            let got = other
                .lock(lock.as_str())
                .acquire_timeout(b.free + 2 * SLACK)
                .await;
            (got, Instant::now())
        })
    };
    let lost = {
        let guard = Arc::clone(&guard);
        tokio::spawn(async move { (guard.lost().await, Instant::now()) })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the lock is held: the other waits");

    net.black_hole();
    let cut = Instant::now();
    let (reason, lost_at) = within(b.lost + SLACK, "lost() of the cut-off holder", lost).await??;
    assert!(
        matches!(reason, LostReason::SessionLost | LostReason::Expired),
        "{reason:?}"
    );
    let (taken, taken_at) = waiter.await?;
    let taken = taken.map_err(|e| format!("the other client never got the lock: {e}"))?;
    assert!(
        taken_at - cut <= b.free + SLACK,
        "taken {:?} after the cut",
        taken_at - cut
    );
    assert!(
        taken.fencing_token() > guard.fencing_token(),
        "{} after {}",
        taken.fencing_token(),
        guard.fencing_token()
    );
    let suspended = first(&states, ConnectionState::Suspended);
    assert!(
        suspended.is_some_and(|at| at <= taken_at),
        "the holder was not Suspended before the lock was taken: {:?}",
        names(&states)
    );
    if b.lost_before_free {
        assert!(
            lost_at <= taken_at,
            "lost() fired {:?} after the lock was taken",
            lost_at - taken_at
        );
    }
    eprintln!(
        "lost() {:?} and lock taken {:?} after the cut",
        lost_at - cut,
        taken_at - cut
    );
    let term = match &leadership {
        Some(leadership) => {
            let left = (cut + b.lost + SLACK).saturating_duration_since(Instant::now());
            within(left, "lost() of the leadership", leadership.lost()).await?;
            let term = within(
                b.free + SLACK,
                "the other's election",
                other.campaign(group.as_str()),
            )
            .await??;
            assert!(
                term.term() > leadership.term(),
                "{} after {}",
                term.term(),
                leadership.term()
            );
            Some(term)
        }
        None => None,
    };
    let left = (cut + b.member_gone + SLACK).saturating_duration_since(Instant::now());
    eventually(left, "the cut-off member leaves its group", || async {
        let members = other.get_members(group.as_str()).await;
        members
            .map(|m| !m.contains(&Id::from("cut-off")))
            .map_err(|e| e.to_string())
    })
    .await?;

    net.heal();
    reconnected(&holder, &states).await?;
    if !b.rejoins_after_lost {
        recovered("joining again after Lost", || {
            holder.join_group(group.as_str(), CAPS)
        })
        .await?;
    }
    eventually(RECOVER, "the member is in its group again", || async {
        let caps = other
            .get_member_capabilities(group.as_str(), "cut-off")
            .await;
        caps.map(|c| c == Capabilities::from(CAPS))
            .map_err(|e| e.to_string())
    })
    .await?;
    let mine = holder.lock(lock.as_str());
    let again = recovered("try_acquire after healing", || mine.try_acquire()).await?;
    assert!(again.is_none(), "the other client holds the lock");
    let guard = Arc::try_unwrap(guard).expect("the lost() task is done");
    assert!(!guard.release().await?, "a lost lock's release says false");
    let seen = names(&states);
    let suspended_at = seen.iter().position(|s| *s == ConnectionState::Suspended);
    let lost_state_at = seen.iter().position(|s| *s == ConnectionState::Lost);
    assert!(
        matches!((suspended_at, lost_state_at), (Some(s), Some(l)) if s < l),
        "states: {seen:?}"
    );
    assert!(taken.release().await?);
    if let Some(term) = term {
        term.resign().await?;
    }
    holder.stop().await?;
    other.stop().await?;
    Ok(())
}

/// Case 2: a lock holder killed with SIGKILL (a child process): its lock is free within the bound,
/// taken with a larger token, and a watcher sees it leave its group.
async fn killed_holder_frees_its_lock(ctx: Ctx) -> Outcome {
    let b = ctx.bounds;
    let dir = TempDir::new("tooz-faults-kill");
    let (lock, group) = (ctx.name("lock"), ctx.name("group"));
    let mut child = child::Holder::spawn(&ctx.url, &lock, &group, &dir.0).await;
    let theirs = child.token;
    let me = ctx.coord(&ctx.url, "survivor").await;
    let doomed = Id::from("doomed");
    assert!(
        me.lock(lock.as_str()).try_acquire().await?.is_none(),
        "the child holds it"
    );
    assert!(me.get_members(group.as_str()).await?.contains(&doomed));
    let mut watch = me.watch_group(group.as_str()).await?;

    let killed = Instant::now();
    child.kill().await;
    let guard = within(
        b.free + SLACK,
        "the dead holder's lock is free",
        me.lock(lock.as_str()).acquire(),
    )
    .await??;
    let freed = killed.elapsed();
    assert!(
        guard.fencing_token() > theirs,
        "{} after {theirs}",
        guard.fencing_token()
    );
    let left = (killed + b.member_gone + SLACK).saturating_duration_since(Instant::now());
    within(left, "the dead member leaves its group", async {
        while let Some(event) = watch.next().await {
            if matches!(&event, GroupEvent::Left { member, .. } if *member == doomed) {
                return;
            }
        }
        panic!("the watch ended");
    })
    .await?;
    assert!(!me.get_members(group.as_str()).await?.contains(&doomed));
    eprintln!("free {freed:?}, left {:?} after the kill", killed.elapsed());
    assert!(guard.release().await?);
    me.stop().await?;
    Ok(())
}

/// Case 3: the servers behind the URL restart; the coordinator, not restarted, works again; its
/// lock is either reported lost or still held (whichever the server says), with larger tokens
/// afterwards either way; its membership comes back (joined again by hand only where the session
/// was reported `Lost` and the driver does not rejoin by itself).
async fn server_restart_is_survived(ctx: Ctx) -> Outcome {
    let b = ctx.bounds;
    let (lock, group) = (ctx.name("lock"), ctx.name("group"));
    let me = ctx.coord(&ctx.url, "survivor").await;
    me.join_group_create(group.as_str(), CAPS).await?;
    let guard = me.lock(lock.as_str()).acquire().await?;
    let states = record_states(&me);

    let restarted = ctx.restart_servers().await?;
    let back = Instant::now();
    recovered("the coordinator works again", || me.get_groups()).await?;
    let working = back.elapsed();
    reconnected(&me, &states).await?;
    let observer = ctx.coord(&ctx.url, "observer").await;

    // The driver has until its lost() bound to notice a lock the servers forgot.
    let _ = tokio::time::timeout(b.lost + SLACK, guard.lost()).await;
    let kept = guard.lost_reason().is_none();
    let before = guard.fencing_token();
    if kept {
        let holder = observer.lock(lock.as_str()).holder().await?;
        assert_eq!(holder, Some(Id::from("survivor")), "lost() never fired");
        assert!(observer.lock(lock.as_str()).try_acquire().await?.is_none());
        assert!(guard.release().await?, "the kept lock is released");
    } else {
        let reason = guard.lost_reason();
        assert!(
            matches!(reason, Some(LostReason::Expired | LostReason::SessionLost)),
            "{reason:?}"
        );
        assert!(!guard.release().await?, "a lost lock's release says false");
    }
    let next = within(
        b.free + SLACK,
        "the lock is free for another",
        observer.lock(lock.as_str()).acquire(),
    )
    .await??;
    assert!(
        next.fencing_token() > before,
        "{} after {before}",
        next.fencing_token()
    );
    let session_lost = first(&states, ConnectionState::Lost).is_some();
    eprintln!(
        "restarted {restarted}; working again {working:?} after; lock {}; states {:?}, now {:?}",
        if kept { "kept" } else { "reported lost" },
        names(&states),
        me.connection_state()
    );
    if session_lost && !b.rejoins_after_lost {
        recovered("joining again after Lost", || {
            me.join_group_create(group.as_str(), CAPS)
        })
        .await?;
    }
    eventually(RECOVER, "the membership comes back", || async {
        let caps = observer
            .get_member_capabilities(group.as_str(), "survivor")
            .await;
        caps.map(|c| c == Capabilities::from(CAPS))
            .map_err(|e| e.to_string())
    })
    .await?;
    assert!(next.release().await?);
    observer.stop().await?;
    me.stop().await?;
    Ok(())
}

/// Case 4a: an acquire of a free lock whose reply is lost (it reaches the server, which grants it):
/// once healed, the lock the client never learnt of is free within the bound.
async fn lost_acquire_reply_leaves_no_orphan_lock(ctx: Ctx) -> Outcome {
    let b = ctx.bounds;
    let net = ctx.proxied().await;
    let lock = ctx.name("lock");
    let client = ctx.coord(&net.url, "lost-reply").await;
    let other = ctx.coord(&ctx.url, "other").await;
    // Whatever an acquire makes once per lock (ZooKeeper: its directory) is made before the
    // fault, so that the request whose reply is lost is the acquisition itself.
    let mine = client.lock(lock.as_str());
    assert!(mine.acquire().await?.release().await?);

    net.drop_replies();
    // Meanwhile the other client looks for the client's acquisition on the server.
    let done = Arc::new(AtomicBool::new(false));
    let seen = {
        let (other, lock, done) = (other.clone(), lock.clone(), Arc::clone(&done));
        tokio::spawn(async move {
            while !done.load(Ordering::Acquire) {
                if other.lock(lock.as_str()).holder().await.ok().flatten()
                    == Some(Id::from("lost-reply"))
                {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            false
        })
    };
    let attempt = within(
        b.lost + SLACK,
        "the acquire whose reply is lost ends",
        mine.try_acquire(),
    )
    .await?;
    done.store(true, Ordering::Release);
    assert!(
        matches!(&attempt, Err(e) if is_timeout_or_connection(e)),
        "{:?}",
        attempt.map(|g| g.is_some())
    );
    assert!(
        seen.await?,
        "the server never granted the acquire: no reply was at stake"
    );

    net.heal();
    let healed = Instant::now();
    let got = other
        .lock(lock.as_str())
        .acquire_timeout(b.orphan_lock + SLACK)
        .await
        .map_err(|e| format!("an orphan holds the lock: {e}"))?;
    eprintln!("free {:?} after healing", healed.elapsed());
    let again = recovered("try_acquire after healing", || mine.try_acquire()).await?;
    assert!(again.is_none(), "the other client holds the lock");
    assert!(got.release().await?);
    client.stop().await?;
    other.stop().await?;
    Ok(())
}

/// Case 4b: a queued acquire whose replies are lost gives up: once healed and the lock released,
/// the next waiter gets it within the bound (no queue place of the client holds it up).
async fn lost_queued_acquire_reply_leaves_no_queue_entry(ctx: Ctx) -> Outcome {
    let b = ctx.bounds;
    let net = ctx.proxied().await;
    let lock = ctx.name("lock");
    let holder = ctx.coord(&ctx.url, "holder").await;
    let client = ctx.coord(&net.url, "lost-reply").await;
    let other = ctx.coord(&ctx.url, "other").await;
    // As above: the request whose reply is lost is the one that queues.
    let mine = client.lock(lock.as_str());
    assert!(mine.acquire().await?.release().await?);
    let held = holder.lock(lock.as_str()).acquire().await?;

    net.drop_replies();
    let gave_up = within(
        QUEUE_WAIT + b.lost + SLACK,
        "the queued acquire whose replies are lost ends",
        mine.acquire_timeout(QUEUE_WAIT),
    )
    .await?;
    assert!(
        gave_up.is_err(),
        "the lock is held: the acquire must give up"
    );

    net.heal();
    let next = {
        let (other, lock) = (other.clone(), lock.clone());
        tokio::spawn(async move {
            let got = other
                .lock(lock.as_str())
                .acquire_timeout(b.orphan_place + 3 * SLACK)
                .await;
            (got, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!next.is_finished(), "the lock is held: the other waits");
    let first = held.fencing_token();
    assert!(held.release().await?);
    let released = Instant::now();
    let (got, at) = next.await?;
    let got = got.map_err(|e| format!("the next waiter never got the lock: {e}"))?;
    assert!(
        at - released <= b.orphan_place + SLACK,
        "the next waiter got the lock {:?} after the release",
        at - released
    );
    assert!(got.fencing_token() > first);
    eprintln!("next waiter served {:?} after the release", at - released);
    assert!(got.release().await?);
    for coord in [client, other, holder] {
        coord.stop().await?;
    }
    Ok(())
}

/// Case 5: on a black-holed connection calls fail in time, with a timeout or connection error, and
/// work again once healed.
async fn black_holed_calls_fail_in_time(ctx: Ctx) -> Outcome {
    let b = ctx.bounds;
    let net = ctx.proxied().await;
    let (lock, group) = (ctx.name("lock"), ctx.name("group"));
    let client = ctx.coord(&net.url, "black-holed").await;
    client.join_group_create(group.as_str(), CAPS).await?;

    net.black_hole();
    let mut timings = Vec::new();
    type Call<'a> = std::pin::Pin<Box<dyn Future<Output = tooz::Result<()>> + Send + 'a>>;
    let calls: Vec<(&str, Duration, Call)> = vec![
        (
            "get_members",
            b.call,
            Box::pin(async { client.get_members(group.as_str()).await.map(drop) }),
        ),
        (
            "join_group_create",
            b.call,
            Box::pin(async {
                client
                    .join_group_create(ctx.name("group").as_str(), ())
                    .await
            }),
        ),
        (
            "try_acquire",
            b.call,
            Box::pin(async { client.lock(lock.as_str()).try_acquire().await.map(drop) }),
        ),
        (
            "acquire_timeout",
            QUEUE_WAIT + b.call,
            Box::pin(async {
                client
                    .lock(lock.as_str())
                    .acquire_timeout(QUEUE_WAIT)
                    .await
                    .map(drop)
            }),
        ),
    ];
    for (name, bound, call) in calls {
        let start = Instant::now();
        let result = within(bound + SLACK, name, call).await?;
        match result {
            Err(e) if is_timeout_or_connection(&e) => timings.push((name, start.elapsed())),
            Err(e) => {
                return Err(format!("{name}: {e:?}, not a timeout or connection error").into())
            }
            Ok(()) => return Err(format!("{name} succeeded on a black-holed connection").into()),
        }
    }
    eprintln!("failed after {timings:?}");

    net.heal();
    recovered("get_members after healing", || {
        client.get_members(group.as_str())
    })
    .await?;
    let mine = client.lock(lock.as_str());
    let guard = recovered("try_acquire after healing", || mine.try_acquire())
        .await?
        .ok_or("the lock is free")?;
    assert!(guard.release().await?);
    client.stop().await?;
    Ok(())
}
