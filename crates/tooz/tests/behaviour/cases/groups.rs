//! Group CRUD and membership (tooz's groups B and C).

use tooz::{Error, Id};

use crate::ctx::{Case, Ctx, Outcome};
use crate::{assert_err, cases};

pub fn cases() -> Vec<Case> {
    cases![
        Groups => create_group,
        Groups => create_group_already_exist,
        Groups => get_groups,
        Groups => get_groups_str_group_id,
        Groups => delete_group,
        Groups => delete_group_non_existent,
        Groups => delete_group_non_empty,
        Groups => join_group,
        Groups => join_nonexistent_group,
        Groups => join_group_create,
        Groups => join_group_create_existing,
        Groups => join_group_with_member_id_already_exists,
        Groups => leave_group,
        Groups => leave_nonexistent_group,
        Groups => leave_group_not_joined_by_member,
        Groups => get_members,
        Groups => get_members_str_member_id,
        Groups => get_members_binary_member_id,
        Groups => get_members_nonexistent_group,
        Groups => disconnect_leave_group,
        Groups => joined_groups_tracked,
    ]
}

async fn create_group(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    c.create_group(group.clone()).await?;
    assert!(c.get_groups().await?.contains(&group));
    Ok(())
}

async fn create_group_already_exist(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    c.create_group(group.clone()).await?;
    assert_err!(c.create_group(group).await, Error::GroupAlreadyExist { .. });
    Ok(())
}

async fn get_groups(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let groups: Vec<Id> = (0..5).map(|_| ctx.name("group")).collect();
    for g in &groups {
        c.create_group(g.clone()).await?;
    }
    let listed = c.get_groups().await?;
    for g in &groups {
        assert!(listed.contains(g), "{g} missing from {listed:?}");
    }
    Ok(())
}

/// A text group id comes back as its UTF-8 bytes.
async fn get_groups_str_group_id(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let text = format!("grüppe-{}", uuid::Uuid::new_v4().simple());
    c.create_group(text.as_str()).await?;
    let listed = c.get_groups().await?;
    assert!(listed.contains(&Id::from(text.as_bytes())));
    assert!(listed.iter().any(|g| g.as_str() == Some(text.as_str())));
    // Not left behind: Python tooz's zookeeper driver cannot list a non-ASCII group id.
    c.delete_group(text.as_str()).await?;
    Ok(())
}

async fn delete_group(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    c.create_group(group.clone()).await?;
    c.delete_group(group.clone()).await?;
    assert!(!c.get_groups().await?.contains(&group));
    assert_err!(c.join_group(group, ()).await, Error::GroupNotCreated { .. });
    Ok(())
}

async fn delete_group_non_existent(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    assert_err!(
        c.delete_group(ctx.name("group")).await,
        Error::GroupNotCreated { .. }
    );
    Ok(())
}

async fn delete_group_non_empty(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    c.create_group(group.clone()).await?;
    c.join_group(group.clone(), ()).await?;
    assert_err!(
        c.delete_group(group.clone()).await,
        Error::GroupNotEmpty { .. }
    );
    c.leave_group(group.clone()).await?;
    c.delete_group(group).await?;
    Ok(())
}

async fn join_group(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    c.create_group(group.clone()).await?;
    c.join_group(group.clone(), ()).await?;
    assert!(c.get_members(group).await?.contains(c.member_id()));
    Ok(())
}

async fn join_nonexistent_group(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    assert_err!(
        c.join_group(ctx.name("group"), ()).await,
        Error::GroupNotCreated { .. }
    );
    Ok(())
}

async fn join_group_create(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    c.join_group_create(group.clone(), ()).await?;
    assert!(c.get_groups().await?.contains(&group));
    assert!(c.get_members(group).await?.contains(c.member_id()));
    Ok(())
}

async fn join_group_create_existing(ctx: Ctx) -> Outcome {
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    let group = ctx.name("group");
    a.join_group_create(group.clone(), ()).await?;
    b.join_group_create(group.clone(), ()).await?;
    assert_eq!(a.get_members(group).await?.len(), 2);
    Ok(())
}

async fn join_group_with_member_id_already_exists(ctx: Ctx) -> Outcome {
    let member = ctx.name("member");
    let a = ctx.coord_as(member.clone()).await;
    let group = ctx.name("group");
    a.join_group_create(group.clone(), b"first").await?;
    let b = ctx.coord_as(member.clone()).await;
    assert_err!(
        b.join_group(group.clone(), b"second").await,
        Error::MemberAlreadyExist { .. }
    );
    // The failed join must not have touched the first member's capabilities.
    let caps = a.get_member_capabilities(group, member).await?;
    assert_eq!(caps.as_bytes(), Some(&b"first"[..]));
    Ok(())
}

async fn leave_group(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    c.join_group_create(group.clone(), ()).await?;
    c.leave_group(group.clone()).await?;
    assert!(!c.get_members(group).await?.contains(c.member_id()));
    Ok(())
}

async fn leave_nonexistent_group(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    assert_err!(
        c.leave_group(ctx.name("group")).await,
        Error::GroupNotCreated { .. } | Error::MemberNotJoined { .. }
    );
    Ok(())
}

async fn leave_group_not_joined_by_member(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    c.create_group(group.clone()).await?;
    assert_err!(c.leave_group(group).await, Error::MemberNotJoined { .. });
    Ok(())
}

async fn get_members(ctx: Ctx) -> Outcome {
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    let group = ctx.name("group");
    a.join_group_create(group.clone(), ()).await?;
    b.join_group(group.clone(), ()).await?;
    let members = a.get_members(group).await?;
    let expected = [a.member_id().clone(), b.member_id().clone()]
        .into_iter()
        .collect();
    assert_eq!(members, expected);
    Ok(())
}

async fn get_members_str_member_id(ctx: Ctx) -> Outcome {
    let member = format!("mëmber-{}", uuid::Uuid::new_v4().simple());
    let c = ctx.coord_as(member.as_str()).await;
    let group = ctx.name("group");
    c.join_group_create(group.clone(), ()).await?;
    let members = c.get_members(group).await?;
    assert!(members.iter().any(|m| m.as_str() == Some(member.as_str())));
    Ok(())
}

/// Member ids are bytes: a non-UTF-8 one joins and is listed unchanged.
async fn get_members_binary_member_id(ctx: Ctx) -> Outcome {
    let mut member = vec![0xff, 0x00, 0xfe, b'/'];
    member.extend_from_slice(ctx.name("bin").as_bytes());
    let member = Id::from(member);
    let c = ctx.coord_as(member.clone()).await;
    let group = ctx.name("group");
    c.join_group_create(group.clone(), ()).await?;
    assert!(c.get_members(group.clone()).await?.contains(&member));
    c.leave_group(group).await?;
    Ok(())
}

async fn get_members_nonexistent_group(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    assert_err!(
        c.get_members(ctx.name("group")).await,
        Error::GroupNotCreated { .. }
    );
    Ok(())
}

async fn disconnect_leave_group(ctx: Ctx) -> Outcome {
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    let group = ctx.name("group");
    a.join_group_create(group.clone(), ()).await?;
    b.join_group(group.clone(), ()).await?;
    b.stop().await?;
    let members = a.get_members(group).await?;
    assert!(members.contains(a.member_id()));
    assert!(!members.contains(b.member_id()));
    Ok(())
}

async fn joined_groups_tracked(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    c.join_group_create(group.clone(), ()).await?;
    assert!(c.joined_groups().contains(&group));
    c.leave_group(group.clone()).await?;
    assert!(!c.joined_groups().contains(&group));
    Ok(())
}
