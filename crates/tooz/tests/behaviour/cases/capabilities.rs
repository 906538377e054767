//! Capabilities and member info (tooz's group D).

use tooz::{Capabilities, Error, Value};

use crate::ctx::{Case, Ctx, Outcome};
use crate::{assert_err, cases};

pub fn cases() -> Vec<Case> {
    cases![
        Groups => get_member_capabilities,
        Groups => get_member_capabilities_complex,
        Groups => get_members_with_capabilities,
        Groups => get_members_with_capabilities_multiple,
        Groups => get_members_with_capabilities_nonexistent_group,
        Groups => get_members_with_capabilities_empty_group,
        Groups => get_members_with_capabilities_no_caps,
        Groups => get_member_capabilities_nonexistent_group,
        Groups => get_member_capabilities_nonjoined_member,
        MemberInfo => get_member_info,
        MemberInfo => get_member_info_complex,
        MemberInfo => get_member_info_nonexistent_group,
        MemberInfo => get_member_info_nonjoined_member,
        UpdateCapabilities => update_capabilities,
        UpdateCapabilities => update_capabilities_with_group_id_nonexistent,
    ]
}

fn map(entries: &[(&str, Value)]) -> Value {
    Value::Map(
        entries
            .iter()
            .map(|(k, v)| (Value::from(*k), v.clone()))
            .collect(),
    )
}

fn complex() -> Capabilities {
    Capabilities::from(map(&[
        ("mydict", map(&[("foo", "bar".into())])),
        (
            "mylist",
            Value::Array(vec!["a".into(), "b".into(), 42.into()]),
        ),
        ("bytes", Value::Binary(vec![0, 1, 255])),
        ("float", Value::F64(1.5)),
        ("nil", Value::Nil),
    ]))
}

async fn get_member_capabilities(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    let caps = Capabilities::from(map(&[("data", "test_capabilities".into())]));
    c.join_group_create(group.clone(), caps.clone()).await?;
    let got = c.get_member_capabilities(group, c.member_id()).await?;
    assert_eq!(got, caps);
    Ok(())
}

async fn get_member_capabilities_complex(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    c.join_group_create(group.clone(), complex()).await?;
    let got = c.get_member_capabilities(group, c.member_id()).await?;
    assert_eq!(got, complex());
    Ok(())
}

async fn get_members_with_capabilities(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    c.join_group_create(group.clone(), b"caps").await?;
    let all = c.get_members_with_capabilities(group).await?;
    assert_eq!(all.len(), 1);
    assert_eq!(all[c.member_id()].as_bytes(), Some(&b"caps"[..]));
    Ok(())
}

async fn get_members_with_capabilities_multiple(ctx: Ctx) -> Outcome {
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    let group = ctx.name("group");
    a.join_group_create(group.clone(), b"a-caps").await?;
    b.join_group(group.clone(), "b-caps").await?;
    let all = a.get_members_with_capabilities(group).await?;
    assert_eq!(all.len(), 2);
    assert_eq!(all[a.member_id()], Capabilities::from(b"a-caps"));
    assert_eq!(all[b.member_id()], Capabilities::from("b-caps"));
    Ok(())
}

async fn get_members_with_capabilities_nonexistent_group(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    assert_err!(
        c.get_members_with_capabilities(ctx.name("group")).await,
        Error::GroupNotCreated { .. }
    );
    Ok(())
}

async fn get_members_with_capabilities_empty_group(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    c.create_group(group.clone()).await?;
    assert!(c.get_members_with_capabilities(group).await?.is_empty());
    Ok(())
}

async fn get_members_with_capabilities_no_caps(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    c.join_group_create(group.clone(), ()).await?;
    let all = c.get_members_with_capabilities(group).await?;
    assert!(all[c.member_id()].is_none());
    Ok(())
}

async fn get_member_capabilities_nonexistent_group(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    assert_err!(
        c.get_member_capabilities(ctx.name("group"), c.member_id())
            .await,
        Error::GroupNotCreated { .. } | Error::MemberNotJoined { .. }
    );
    Ok(())
}

async fn get_member_capabilities_nonjoined_member(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    c.create_group(group.clone()).await?;
    assert_err!(
        c.get_member_capabilities(group, ctx.name("other")).await,
        Error::MemberNotJoined { .. }
    );
    Ok(())
}

async fn get_member_info(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    c.join_group_create(group.clone(), b"info").await?;
    let info = c.get_member_info(group, c.member_id()).await?;
    assert_eq!(info.capabilities.as_bytes(), Some(&b"info"[..]));
    Ok(())
}

async fn get_member_info_complex(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    c.join_group_create(group.clone(), complex()).await?;
    let info = c.get_member_info(group, c.member_id()).await?;
    assert_eq!(info.capabilities, complex());
    Ok(())
}

async fn get_member_info_nonexistent_group(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    assert_err!(
        c.get_member_info(ctx.name("group"), c.member_id()).await,
        Error::GroupNotCreated { .. } | Error::MemberNotJoined { .. }
    );
    Ok(())
}

async fn get_member_info_nonjoined_member(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    c.create_group(group.clone()).await?;
    assert_err!(
        c.get_member_info(group, ctx.name("other")).await,
        Error::MemberNotJoined { .. }
    );
    Ok(())
}

async fn update_capabilities(ctx: Ctx) -> Outcome {
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    let group = ctx.name("group");
    let v1 = Capabilities::from(map(&[("version", 1.into())]));
    let v2 = Capabilities::from(map(&[("version", 2.into())]));
    a.join_group_create(group.clone(), v1.clone()).await?;
    assert_eq!(
        b.get_member_capabilities(group.clone(), a.member_id())
            .await?,
        v1
    );
    a.update_capabilities(group.clone(), v2.clone()).await?;
    assert_eq!(b.get_member_capabilities(group, a.member_id()).await?, v2);
    Ok(())
}

async fn update_capabilities_with_group_id_nonexistent(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    assert_err!(
        c.update_capabilities(ctx.name("group"), b"x").await,
        Error::GroupNotCreated { .. } | Error::MemberNotJoined { .. }
    );
    Ok(())
}
