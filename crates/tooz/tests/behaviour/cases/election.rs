//! Leader election (tooz's group G) and its `campaign` form.

use std::time::Duration;

use tooz::{Error, GroupEvent, LostReason, WatchId};

use crate::ctx::{watch_events, Case, Ctx, Outcome};
use crate::{assert_err, cases};

pub fn cases() -> Vec<Case> {
    cases![
        Election => run_for_election,
        Election => run_for_election_multiple_clients,
        Election => get_leader,
        Election => run_for_election_multiple_clients_stand_down,
        Election => unwatch_elected_as_leader,
        Election => unwatch_elected_as_leader_callback_not_found,
        Election => campaign_waits_for_the_leader,
        Election => leader_terms_increase,
        Election => leadership_lost_when_leader_lock_broken,
        Election => stand_down_when_not_leader,
        Election => leader_is_not_a_member,
    ]
}

fn elected(group: &tooz::Id, member: &tooz::Id) -> GroupEvent {
    GroupEvent::LeaderElected {
        group: group.clone(),
        member: member.clone(),
    }
}

const QUIET: Option<Duration> = Some(Duration::from_millis(300));

async fn run_for_election(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    c.watch_elected_as_leader(group.clone(), |_| {}).await?;
    let events = watch_events(&c, 1).await;
    assert_eq!(events, [elected(&group, c.member_id())]);
    Ok(())
}

async fn run_for_election_multiple_clients(ctx: Ctx) -> Outcome {
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    let group = ctx.name("group");
    a.watch_elected_as_leader(group.clone(), |_| {}).await?;
    watch_events(&a, 1).await;
    b.watch_elected_as_leader(group.clone(), |_| {}).await?;
    assert!(b.run_watchers(QUIET).await?.is_empty());
    assert_eq!(
        b.get_leader(group.clone()).await?.as_ref(),
        Some(a.member_id())
    );
    a.stop().await?;
    let events = watch_events(&b, 1).await;
    assert_eq!(events, [elected(&group, b.member_id())]);
    assert_eq!(b.get_leader(group).await?.as_ref(), Some(b.member_id()));
    Ok(())
}

async fn get_leader(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    assert_eq!(c.get_leader(group.clone()).await?, None);
    if ctx.support.groups {
        c.join_group_create(group.clone(), ()).await?;
        assert_eq!(c.get_leader(group.clone()).await?, None);
    }
    c.watch_elected_as_leader(group.clone(), |_| {}).await?;
    watch_events(&c, 1).await;
    assert_eq!(c.get_leader(group).await?.as_ref(), Some(c.member_id()));
    Ok(())
}

async fn run_for_election_multiple_clients_stand_down(ctx: Ctx) -> Outcome {
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    let group = ctx.name("group");
    a.watch_elected_as_leader(group.clone(), |_| {}).await?;
    watch_events(&a, 1).await;
    b.watch_elected_as_leader(group.clone(), |_| {}).await?;
    assert!(b.run_watchers(QUIET).await?.is_empty());

    assert!(a.stand_down_group_leader(group.clone()).await?);
    assert_eq!(watch_events(&b, 1).await, [elected(&group, b.member_id())]);
    assert!(a.run_watchers(QUIET).await?.is_empty()); // re-enters, behind b
    assert_eq!(
        b.get_leader(group.clone()).await?.as_ref(),
        Some(b.member_id())
    );

    assert!(b.stand_down_group_leader(group.clone()).await?);
    assert_eq!(watch_events(&a, 1).await, [elected(&group, a.member_id())]);
    assert_eq!(a.get_leader(group).await?.as_ref(), Some(a.member_id()));
    Ok(())
}

async fn unwatch_elected_as_leader(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    let id = c.watch_elected_as_leader(group.clone(), |_| {}).await?;
    assert_eq!(c.watch_count(group.clone()), (0, 0, 1));
    c.unwatch_elected_as_leader(group.clone(), id)?;
    assert_eq!(c.watch_count(group), (0, 0, 0));
    Ok(())
}

async fn unwatch_elected_as_leader_callback_not_found(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    assert_err!(
        c.unwatch_elected_as_leader(group.clone(), WatchId::from_raw(7)),
        Error::WatchCallbackNotFound { .. }
    );
    assert_eq!(c.watch_count(group), (0, 0, 0));
    Ok(())
}

async fn campaign_waits_for_the_leader(ctx: Ctx) -> Outcome {
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    let group = ctx.name("group");
    let leader = a.campaign(group.clone()).await?;
    let b2 = b.clone();
    let g2 = group.clone();
    let waiting = tokio::spawn(async move { b2.campaign(g2).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "two leaders at once");
    assert!(leader.resign().await?);
    let next = tokio::time::timeout(Duration::from_secs(10), waiting).await??;
    let next = next?;
    assert_eq!(b.get_leader(group).await?.as_ref(), Some(b.member_id()));
    next.resign().await?;
    Ok(())
}

async fn leader_terms_increase(ctx: Ctx) -> Outcome {
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    let group = ctx.name("group");
    let mut last = None;
    for c in [&a, &b, &a] {
        let leadership = c.campaign(group.clone()).await?;
        let term = leadership.term();
        assert!(last < Some(term), "term {term} after {last:?}");
        last = Some(term);
        leadership.resign().await?;
    }
    Ok(())
}

async fn leadership_lost_when_leader_lock_broken(ctx: Ctx) -> Outcome {
    if !ctx.support.break_lock {
        return Ok(());
    }
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    let group = ctx.name("group");
    let leadership = a.campaign(group.clone()).await?;
    assert!(b.leader_lock(group.clone()).break_lock().await?);
    let reason = tokio::time::timeout(Duration::from_secs(10), leadership.lost()).await?;
    assert_eq!(reason, LostReason::Broken);
    assert_eq!(b.get_leader(group).await?, None);
    Ok(())
}

async fn stand_down_when_not_leader(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    assert!(!c.stand_down_group_leader(ctx.name("group")).await?);
    Ok(())
}

/// The election must not show up as a member of the group (a ZooKeeper quirk of tooz).
async fn leader_is_not_a_member(ctx: Ctx) -> Outcome {
    if !ctx.support.groups {
        return Ok(());
    }
    let c = ctx.coord().await;
    let group = ctx.name("group");
    c.create_group(group.clone()).await?;
    let leadership = c.campaign(group.clone()).await?;
    assert!(c.get_members(group.clone()).await?.is_empty());
    leadership.resign().await?;
    Ok(())
}
