//! Membership watchers: tooz-style callbacks (tooz's group F and `TestHook`) and streams.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tooz::{Error, GroupEvent, WatchId};

use crate::ctx::{watch_events, Case, Ctx, Outcome};
use crate::{assert_err, cases};

pub fn cases() -> Vec<Case> {
    cases![
        Watch => watch_group_join,
        Watch => watch_leave_group,
        Watch => watch_join_group_disappear,
        Watch => watch_join_group_non_existent,
        Watch => watch_join_group_booted_out,
        Watch => watch_leave_group_non_existent,
        Watch => unwatch_join_group_callback_not_found,
        Watch => unwatch_leave_group,
        Watch => unwatch_leave_group_callback_not_found,
        Watch => register_hook,
        Watch => unregister_hook,
        Watch => run_watchers_without_events_returns_empty,
        PushWatch => watch_stream_in_order,
        Watch => watch_stream_converges,
        Watch => watch_stream_sees_other_coordinators,
    ]
}

fn joined(group: &tooz::Id, member: &tooz::Id) -> GroupEvent {
    GroupEvent::Joined {
        group: group.clone(),
        member: member.clone(),
    }
}

fn left(group: &tooz::Id, member: &tooz::Id) -> GroupEvent {
    GroupEvent::Left {
        group: group.clone(),
        member: member.clone(),
    }
}

const QUIET: Option<Duration> = Some(Duration::from_millis(300));

async fn watch_group_join(ctx: Ctx) -> Outcome {
    let (c, other) = (ctx.coord().await, ctx.coord().await);
    let group = ctx.name("group");
    c.create_group(group.clone()).await?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let id = c
        .watch_join_group(group.clone(), move |e| sink.lock().unwrap().push(e.clone()))
        .await?;
    other.join_group(group.clone(), ()).await?;
    watch_events(&c, 1).await;
    assert_eq!(*seen.lock().unwrap(), [joined(&group, other.member_id())]);
    c.unwatch_join_group(group.clone(), id)?;
    other.leave_group(group.clone()).await?;
    other.join_group(group.clone(), ()).await?;
    assert!(c.run_watchers(QUIET).await?.is_empty());
    assert_eq!(seen.lock().unwrap().len(), 1);
    Ok(())
}

async fn watch_leave_group(ctx: Ctx) -> Outcome {
    let (c, other) = (ctx.coord().await, ctx.coord().await);
    let group = ctx.name("group");
    c.create_group(group.clone()).await?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (s1, s2) = (seen.clone(), seen.clone());
    c.watch_join_group(group.clone(), move |e| s1.lock().unwrap().push(e.clone()))
        .await?;
    let id = c
        .watch_leave_group(group.clone(), move |e| s2.lock().unwrap().push(e.clone()))
        .await?;
    other.join_group(group.clone(), ()).await?;
    watch_events(&c, 1).await;
    other.leave_group(group.clone()).await?;
    watch_events(&c, 1).await;
    assert_eq!(
        *seen.lock().unwrap(),
        [
            joined(&group, other.member_id()),
            left(&group, other.member_id())
        ]
    );
    c.unwatch_leave_group(group.clone(), id)?;
    other.join_group(group.clone(), ()).await?;
    watch_events(&c, 1).await; // the join, still watched
    other.leave_group(group.clone()).await?;
    assert!(c.run_watchers(QUIET).await?.is_empty());
    assert_eq!(seen.lock().unwrap().len(), 3);
    Ok(())
}

/// A watched group that empties and disappears reports the leave; the watch survives the
/// group being deleted and created again.
async fn watch_join_group_disappear(ctx: Ctx) -> Outcome {
    let (c, other) = (ctx.coord().await, ctx.coord().await);
    let group = ctx.name("group");
    c.create_group(group.clone()).await?;
    c.watch_join_group(group.clone(), |_| {}).await?;
    c.watch_leave_group(group.clone(), |_| {}).await?;
    other.join_group(group.clone(), ()).await?;
    let events = watch_events(&c, 1).await;
    assert_eq!(events, [joined(&group, other.member_id())]);
    other.leave_group(group.clone()).await?;
    c.delete_group(group.clone()).await?;
    let events = watch_events(&c, 1).await;
    assert_eq!(events, [left(&group, other.member_id())]);
    other.join_group_create(group.clone(), ()).await?;
    let events = watch_events(&c, 1).await;
    assert_eq!(events, [joined(&group, other.member_id())]);
    Ok(())
}

async fn watch_join_group_non_existent(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    assert_err!(
        c.watch_join_group(group.clone(), |_| {}).await,
        Error::GroupNotCreated { .. }
    );
    assert_eq!(c.watch_count(group), (0, 0, 0));
    Ok(())
}

/// Another coordinator with our member id removes us: we notice and forget the group.
async fn watch_join_group_booted_out(ctx: Ctx) -> Outcome {
    let member = ctx.name("member");
    let c = ctx.coord_as(member.clone()).await;
    let twin = ctx.coord_as(member.clone()).await;
    let group = ctx.name("group");
    c.join_group_create(group.clone(), ()).await?;
    c.watch_join_group(group.clone(), |_| {}).await?;
    c.watch_leave_group(group.clone(), |_| {}).await?;
    assert!(c.joined_groups().contains(&group));
    twin.leave_group(group.clone()).await?;
    let events = watch_events(&c, 1).await;
    assert_eq!(events, [left(&group, &member)]);
    assert!(!c.joined_groups().contains(&group));
    Ok(())
}

async fn watch_leave_group_non_existent(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    assert_err!(
        c.watch_leave_group(group.clone(), |_| {}).await,
        Error::GroupNotCreated { .. }
    );
    assert_eq!(c.watch_count(group), (0, 0, 0));
    Ok(())
}

async fn unwatch_join_group_callback_not_found(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    c.create_group(group.clone()).await?;
    let id = c.watch_leave_group(group.clone(), |_| {}).await?;
    assert_err!(
        c.unwatch_join_group(group.clone(), id),
        Error::WatchCallbackNotFound { .. }
    );
    assert_err!(
        c.unwatch_join_group(ctx.name("other"), id),
        Error::WatchCallbackNotFound { .. }
    );
    Ok(())
}

async fn unwatch_leave_group(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    c.create_group(group.clone()).await?;
    let id = c.watch_leave_group(group.clone(), |_| {}).await?;
    assert_eq!(c.watch_count(group.clone()), (0, 1, 0));
    c.unwatch_leave_group(group.clone(), id)?;
    assert_eq!(c.watch_count(group), (0, 0, 0));
    Ok(())
}

async fn unwatch_leave_group_callback_not_found(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    c.create_group(group.clone()).await?;
    let id = c.watch_join_group(group.clone(), |_| {}).await?;
    assert_err!(
        c.unwatch_leave_group(group.clone(), id),
        Error::WatchCallbackNotFound { .. }
    );
    assert_err!(
        c.unwatch_leave_group(group, WatchId::from_raw(u64::MAX)),
        Error::WatchCallbackNotFound { .. }
    );
    Ok(())
}

/// Every callback registered on a group runs for each event.
async fn register_hook(ctx: Ctx) -> Outcome {
    let (c, other) = (ctx.coord().await, ctx.coord().await);
    let group = ctx.name("group");
    c.create_group(group.clone()).await?;
    let calls = Arc::new(Mutex::new(Vec::new()));
    for tag in ["first", "second"] {
        let calls = calls.clone();
        c.watch_join_group(group.clone(), move |_| calls.lock().unwrap().push(tag))
            .await?;
    }
    other.join_group(group.clone(), ()).await?;
    let events = watch_events(&c, 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(*calls.lock().unwrap(), ["first", "second"]);
    Ok(())
}

async fn unregister_hook(ctx: Ctx) -> Outcome {
    let (c, other) = (ctx.coord().await, ctx.coord().await);
    let group = ctx.name("group");
    c.create_group(group.clone()).await?;
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut ids = Vec::new();
    for tag in ["first", "second"] {
        let calls = calls.clone();
        let id = c
            .watch_join_group(group.clone(), move |_| calls.lock().unwrap().push(tag))
            .await?;
        ids.push(id);
    }
    c.unwatch_join_group(group.clone(), ids[0])?;
    assert_eq!(c.watch_count(group.clone()), (1, 0, 0));
    other.join_group(group.clone(), ()).await?;
    watch_events(&c, 1).await;
    assert_eq!(*calls.lock().unwrap(), ["second"]);
    Ok(())
}

async fn run_watchers_without_events_returns_empty(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    assert!(c.run_watchers(None).await?.is_empty());
    let group = ctx.name("group");
    c.create_group(group.clone()).await?;
    c.watch_join_group(group, |_| {}).await?;
    assert!(c.run_watchers(QUIET).await?.is_empty());
    Ok(())
}

/// The stream delivers joins and leaves in the order they happened.
async fn watch_stream_in_order(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    c.create_group(group.clone()).await?;
    let mut stream = c.watch_group(group.clone()).await?;
    let members: Vec<_> = (0..4).map(|_| ctx.name("m")).collect();
    let mut coords = Vec::new();
    for m in &members {
        let mc = ctx.coord_as(m.clone()).await;
        mc.join_group(group.clone(), ()).await?;
        coords.push(mc);
    }
    for mc in coords.iter().rev() {
        mc.leave_group(group.clone()).await?;
    }
    let mut expected: Vec<_> = members.iter().map(|m| joined(&group, m)).collect();
    expected.extend(members.iter().rev().map(|m| left(&group, m)));
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
        match next {
            Ok(Some(event)) => got.push(event),
            other => panic!("stream ended or stalled after {got:?}: {other:?}"),
        }
    }
    assert_eq!(got, expected);
    Ok(())
}

/// Under fast churn a watcher may coalesce, but what it delivers is a consistent history
/// (no join of a present member, no leave of an absent one) that ends in the true state.
async fn watch_stream_converges(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    c.create_group(group.clone()).await?;
    let mut stream = c.watch_group(group.clone()).await?;
    let mut coords = Vec::new();
    for _ in 0..4 {
        let mc = ctx.coord().await;
        mc.join_group(group.clone(), ()).await?;
        coords.push(mc);
    }
    for mc in coords.drain(..2) {
        mc.stop().await?;
    }
    let truth = c.get_members(group.clone()).await?;
    let mut seen = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen != truth {
        let event = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("stuck at {seen:?}, expected {truth:?}"))
            .expect("stream ended");
        match event {
            GroupEvent::Joined { member, .. } => assert!(seen.insert(member), "double join"),
            GroupEvent::Left { member, .. } => assert!(seen.remove(&member), "leave unseen"),
            other => panic!("unexpected {other:?}"),
        }
    }
    Ok(())
}

async fn watch_stream_sees_other_coordinators(ctx: Ctx) -> Outcome {
    let (c, other) = (ctx.coord().await, ctx.coord().await);
    let group = ctx.name("group");
    c.join_group_create(group.clone(), ()).await?;
    let mut stream = c.watch_group(group.clone()).await?;
    other.join_group(group.clone(), ()).await?;
    assert_eq!(next(&mut stream).await, joined(&group, other.member_id()));
    other.stop().await?;
    assert_eq!(next(&mut stream).await, left(&group, other.member_id()));
    Ok(())
}

async fn next(stream: &mut tooz::GroupWatch) -> GroupEvent {
    let event = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
    event.expect("stalled").expect("stream ended")
}
