//! The cases every URL runs: locks, groups, capabilities and leadership shared across the two
//! languages.

use std::time::Duration;

use futures::StreamExt;
use tooz::{Capabilities, GroupEvent, Id, Value};

use crate::{cases, hex, Case, Ctx};

pub fn all() -> Vec<Case> {
    let mut all = cases![
        rust_lock_excludes_python => [Lock, TryLock],
        python_lock_excludes_rust => [Lock],
        python_lock_holder_is_not_misreported => [Lock],
        python_holder_hands_over_to_rust_waiter => [Lock],
        rust_holder_hands_over_to_python_waiter => [Lock],
        groups_are_listed_both_ways => [Groups],
        members_and_capabilities_are_read_both_ways => [Members],
        rust_watch_sees_python_join_and_leave => [Members, Watch],
        leadership_is_exclusive_across_languages => [Lead],
        leaders_are_named_both_ways => [Lead, Leader],
    ];
    all.extend(crate::expiry::cases());
    #[cfg(feature = "redis")]
    all.extend(crate::redis::cases());
    #[cfg(feature = "zookeeper")]
    all.extend(crate::zookeeper::cases());
    #[cfg(feature = "memcached")]
    all.extend(crate::memcached::cases());
    all
}

/// Long enough for a peer that should not get on to have done so.
const SETTLE: Duration = Duration::from_millis(500);

/// The capabilities `peer.py` joins with (`CAPS`), and how Python prints ours.
fn python_caps() -> Value {
    Value::Map(vec![
        ("lang".into(), "python".into()),
        ("raw".into(), Value::Binary(vec![0, 0xff])),
        ("n".into(), 1.into()),
    ])
}
fn rust_caps() -> Capabilities {
    Capabilities::from(Value::Map(vec![
        ("lang".into(), "rust".into()),
        ("raw".into(), Value::Binary(vec![1])),
        ("f".into(), Value::F64(0.5)),
    ]))
}
const RUST_CAPS_REPR: &str = r"{'lang': 'rust', 'raw': b'\x01', 'f': 0.5}";
const PYTHON_CAPS_REPR: &str = r"{'lang': 'python', 'raw': b'\x00\xff', 'n': 1}";

/// Asserts that what Rust says of a thing Python holds (a lock's holder, a group's leader)
/// is Python's member, or an error where Python's driver records no name: never "nobody".
fn named_or_unnamed(found: tooz::Result<Option<Id>>, python: &str, what: &str) {
    match found {
        Ok(Some(id)) => assert_eq!(id, Id::from(python), "{what}"),
        Ok(None) => panic!("{what}: held by Python, but reported free"),
        Err(_) => {}
    }
}

async fn rust_lock_excludes_python(ctx: Ctx) {
    let name = ctx.name("lock");
    let rust = ctx.coord().await;
    let guard = rust.lock(name.as_str()).acquire().await.unwrap();
    assert_eq!(ctx.output("try-lock", &[&name]).await, "busy");
    assert!(guard.release().await.unwrap());
    assert_eq!(ctx.output("try-lock", &[&name]).await, "acquired");
    rust.stop().await.unwrap();
}

async fn python_lock_excludes_rust(ctx: Ctx) {
    let (name, member) = (ctx.name("lock"), ctx.name("python"));
    let mut holder = ctx.peer("hold-lock", &[&name, &member]);
    holder.expect("ready").await;
    let rust = ctx.coord().await;
    let lock = rust.lock(name.as_str());
    assert!(
        lock.try_acquire().await.unwrap().is_none(),
        "Python holds it"
    );
    holder.say("release").await;
    holder.finish().await.unwrap();
    let guard = lock.try_acquire().await.unwrap();
    assert!(guard
        .expect("free once Python released")
        .release()
        .await
        .unwrap());
    rust.stop().await.unwrap();
}

/// A lock last held by Rust, now by Python: Rust must not name its old holder.
async fn python_lock_holder_is_not_misreported(ctx: Ctx) {
    let (name, member) = (ctx.name("lock"), ctx.name("python"));
    let rust = ctx.coord().await;
    let lock = rust.lock(name.as_str());
    assert!(lock.acquire().await.unwrap().release().await.unwrap());
    let mut holder = ctx.peer("hold-lock", &[&name, &member]);
    holder.expect("ready").await;
    named_or_unnamed(lock.holder().await, &member, "the lock's holder");
    holder.say("release").await;
    holder.finish().await.unwrap();
    rust.stop().await.unwrap();
}

async fn python_holder_hands_over_to_rust_waiter(ctx: Ctx) {
    let (name, member) = (ctx.name("lock"), ctx.name("python"));
    let mut holder = ctx.peer("hold-lock", &[&name, &member]);
    holder.expect("ready").await;
    let rust = ctx.coord().await;
    let waiting = {
        let lock = rust.lock(name.as_str());
        tokio::spawn(async move { lock.acquire_timeout(Duration::from_secs(20)).await })
    };
    tokio::time::sleep(SETTLE).await;
    assert!(!waiting.is_finished(), "Rust took the lock Python holds");
    holder.say("release").await;
    let guard = waiting
        .await
        .unwrap()
        .expect("handed over once Python released");
    holder.finish().await.unwrap();
    assert!(guard.release().await.unwrap());
    rust.stop().await.unwrap();
}

async fn rust_holder_hands_over_to_python_waiter(ctx: Ctx) {
    let name = ctx.name("lock");
    let rust = ctx.coord().await;
    let guard = rust.lock(name.as_str()).acquire().await.unwrap();
    let mut waiter = ctx.peer("wait-lock", &[&name]);
    waiter.expect("waiting").await;
    let early = waiter.says_within(SETTLE).await;
    assert_eq!(early, None, "Python took the lock Rust holds");
    assert!(guard.release().await.unwrap());
    waiter.expect("acquired").await;
    waiter.finish().await.unwrap();
    let guard = rust.lock(name.as_str()).try_acquire().await.unwrap();
    assert!(guard.expect("Python released it").release().await.unwrap());
    rust.stop().await.unwrap();
}

async fn groups_are_listed_both_ways(ctx: Ctx) {
    let (ours, theirs) = (ctx.name("group"), ctx.name("group"));
    let rust = ctx.coord().await;
    rust.create_group(ours.as_str()).await.unwrap();
    let mut creator = ctx.peer("create-group", &[&theirs]);
    let listed = creator.line().await;
    assert!(listed.starts_with("groups"), "{listed}");
    assert!(
        listed.contains(&hex(&ours)),
        "Python does not list ours: {listed}"
    );
    assert!(listed.contains(&hex(&theirs)), "{listed}");
    let groups = rust.get_groups().await.unwrap();
    assert!(groups.contains(&Id::from(theirs.as_str())), "{groups:?}");
    creator.say("stop").await;
    creator.finish().await.unwrap();
    // Still there for both once that Python coordinator stopped.
    let groups = rust.get_groups().await.unwrap();
    for group in [&ours, &theirs] {
        assert!(
            groups.contains(&Id::from(group.as_str())),
            "{group}: {groups:?}"
        );
    }
    let listed = ctx.output("groups", &[]).await;
    assert!(
        listed.contains(&hex(&ours)) && listed.contains(&hex(&theirs)),
        "{listed}"
    );
    for group in [ours, theirs] {
        rust.delete_group(group.as_str()).await.unwrap();
    }
    rust.stop().await.unwrap();
}

async fn members_and_capabilities_are_read_both_ways(ctx: Ctx) {
    let (group, python) = (ctx.name("group"), ctx.name("python"));
    let mut member = ctx.peer("join", &[&group, &python]);
    member.expect("ready").await;
    let rust = ctx.coord().await;
    rust.join_group(group.as_str(), rust_caps()).await.unwrap();

    let found = rust
        .get_members_with_capabilities(group.as_str())
        .await
        .unwrap();
    let theirs = found.get(&Id::from(python.as_str()));
    assert_eq!(
        theirs.map(Capabilities::value),
        Some(&python_caps()),
        "{found:?}"
    );

    let listed = ctx.output("members", &[&group]).await;
    let mut lines: Vec<&str> = listed.lines().collect();
    lines.sort();
    let mut want = vec![
        format!("{} {PYTHON_CAPS_REPR}", hex(&python)),
        format!("{} {RUST_CAPS_REPR}", hex(rust.member_id().as_bytes())),
    ];
    want.sort();
    assert_eq!(lines, want);

    member.say("leave").await;
    member.finish().await.unwrap();
    let members = rust.get_members(group.as_str()).await.unwrap();
    assert_eq!(members, [rust.member_id().clone()].into(), "Python left");
    rust.stop().await.unwrap();
}

async fn rust_watch_sees_python_join_and_leave(ctx: Ctx) {
    let (group, python) = (ctx.name("group"), ctx.name("python"));
    let rust = ctx.coord().await;
    rust.create_group(group.as_str()).await.unwrap();
    let mut events = rust.watch_group(group.as_str()).await.unwrap();
    let (group_id, member_id) = (Id::from(group.as_str()), Id::from(python.as_str()));
    let mut member = ctx.peer("join", &[&group, &python]);
    member.expect("ready").await;
    let joined = GroupEvent::Joined {
        group: group_id.clone(),
        member: member_id.clone(),
    };
    assert_eq!(next_event(&mut events).await, joined);
    member.say("leave").await;
    member.finish().await.unwrap();
    let left = GroupEvent::Left {
        group: group_id,
        member: member_id,
    };
    assert_eq!(next_event(&mut events).await, left);
    rust.stop().await.unwrap();
}

async fn next_event(events: &mut tooz::GroupWatch) -> GroupEvent {
    let next = tokio::time::timeout(Duration::from_secs(10), events.next()).await;
    next.expect("no event within 10 s")
        .expect("the watch ended")
}

async fn leadership_is_exclusive_across_languages(ctx: Ctx) {
    let (group, python) = (ctx.name("group"), ctx.name("python"));
    let rust = ctx.coord().await;
    if ctx.support.groups {
        rust.create_group(group.as_str()).await.unwrap();
    }
    let mut leader = ctx.peer("lead", &[&group, &python]);
    leader.expect("ready").await;
    named_or_unnamed(rust.get_leader(group.as_str()).await, &python, "the leader");
    if ctx.support.groups {
        let members = rust.get_members(group.as_str()).await.unwrap();
        assert!(members.is_empty(), "the election is no member: {members:?}");
    }
    let campaign = {
        let (rust, group) = (rust.clone(), group.clone());
        tokio::spawn(async move { rust.campaign(group.as_str()).await })
    };
    tokio::time::sleep(SETTLE).await;
    assert!(!campaign.is_finished(), "two leaders at once");
    leader.say("stop").await;
    leader.finish().await.unwrap();
    let leadership = tokio::time::timeout(Duration::from_secs(20), campaign)
        .await
        .expect("elected once Python stopped")
        .unwrap()
        .unwrap();
    assert_eq!(ctx.output("try-lead", &[&group]).await, "not-elected");
    assert!(leadership.resign().await.unwrap());
    assert_eq!(ctx.output("try-lead", &[&group]).await, "elected");
    rust.stop().await.unwrap();
}

async fn leaders_are_named_both_ways(ctx: Ctx) {
    let (group, python) = (ctx.name("group"), ctx.name("python"));
    let rust = ctx.coord().await;
    let mut leader = ctx.peer("lead", &[&group, &python]);
    leader.expect("ready").await;
    let named = rust.get_leader(group.as_str()).await.unwrap();
    assert_eq!(named, Some(Id::from(python.as_str())));
    leader.say("stop").await;
    leader.finish().await.unwrap();
    let leadership = rust.campaign(group.as_str()).await.unwrap();
    let ours = hex(rust.member_id().as_bytes());
    assert_eq!(ctx.output("leader", &[&group]).await, ours);
    assert!(leadership.resign().await.unwrap());
    assert_eq!(ctx.output("leader", &[&group]).await, "none");
    rust.stop().await.unwrap();
}
