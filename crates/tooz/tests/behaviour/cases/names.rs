//! Odd names: every driver either works with them or answers a typed error.

use tooz::{Error, Id};

use crate::cases;
use crate::ctx::{Case, Ctx, Outcome};

pub fn cases() -> Vec<Case> {
    cases![
        Nothing => empty_names_are_rejected,
        Groups => odd_group_names,
        Locks => odd_lock_names,
        Groups => odd_member_ids,
        Nothing => oversized_names_are_rejected,
    ]
}

/// Names every driver must handle: work, or fail with a typed name error.
fn odd(ctx: &Ctx) -> Vec<Id> {
    let unique = ctx.name("odd");
    let with = |bytes: &[u8]| {
        let mut name = bytes.to_vec();
        name.extend_from_slice(unique.as_bytes());
        Id::from(name)
    };
    vec![
        with(&[b'x'; 10 * 1024]),
        with(b"/"),
        with(b"a/b/"),
        with(b".."),
        with(b"../../etc"),
        with(b"nul\0byte"),
        with(&[0xff, 0xfe, 0x80]),
        with("ünïcødé ☃".as_bytes()),
        with(b"sp ace%20&?#"),
        Id::from(b"/".to_vec()),
        Id::from(b"..".to_vec()),
    ]
}

fn typed_name_error<T>(result: &tooz::Result<T>) -> bool {
    matches!(result, Err(Error::InvalidName { .. }))
}

async fn empty_names_are_rejected(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    assert!(typed_name_error(&c.lock("").try_acquire().await));
    assert!(typed_name_error(&c.create_group("").await));
    assert!(typed_name_error(&c.join_group("", ()).await));
    assert!(typed_name_error(&c.get_members("").await));
    let nobody = ctx.coord_as("").await;
    let group = ctx.name("group");
    if ctx.support.groups {
        nobody.create_group(group.clone()).await?;
        assert!(typed_name_error(&nobody.join_group(group, ()).await));
    }
    Ok(())
}

async fn odd_group_names(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    for group in odd(&ctx) {
        let created = c.create_group(group.clone()).await;
        if typed_name_error(&created) {
            continue;
        }
        match created {
            Ok(()) | Err(Error::GroupAlreadyExist { .. }) => {}
            Err(other) => panic!("create_group({group}): untyped failure {other}"),
        }
        assert!(c.get_groups().await?.contains(&group), "{group} not listed");
        c.join_group(group.clone(), ()).await?;
        assert!(c.get_members(group.clone()).await?.contains(c.member_id()));
        c.leave_group(group.clone()).await?;
        c.delete_group(group.clone()).await?;
        assert!(!c.get_groups().await?.contains(&group));
    }
    Ok(())
}

async fn odd_lock_names(ctx: Ctx) -> Outcome {
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    for name in odd(&ctx) {
        let acquired = a.lock(name.clone()).try_acquire().await;
        if typed_name_error(&acquired) {
            continue;
        }
        let guard = acquired?.unwrap_or_else(|| panic!("{name} busy"));
        assert!(
            b.lock(name.clone()).try_acquire().await?.is_none(),
            "{name}"
        );
        assert!(guard.release().await?);
    }
    Ok(())
}

async fn odd_member_ids(ctx: Ctx) -> Outcome {
    let group = ctx.name("group");
    let owner = ctx.coord().await;
    owner.create_group(group.clone()).await?;
    for member in odd(&ctx) {
        let c = ctx.coord_as(member.clone()).await;
        let joined = c.join_group(group.clone(), ()).await;
        if !typed_name_error(&joined) {
            joined?;
            assert!(owner.get_members(group.clone()).await?.contains(&member));
            c.leave_group(group.clone()).await?;
        }
    }
    Ok(())
}

async fn oversized_names_are_rejected(ctx: Ctx) -> Outcome {
    let huge = Id::from(vec![b'h'; tooz::MAX_NAME_LEN + 1]);
    let c = ctx.coord().await;
    assert!(typed_name_error(&c.lock(huge.clone()).try_acquire().await));
    assert!(typed_name_error(&c.create_group(huge.clone()).await));
    let coord = ctx.coord_as(huge).await;
    if ctx.support.groups {
        let group = ctx.name("group");
        coord.create_group(group.clone()).await?;
        assert!(typed_name_error(&coord.join_group(group, ()).await));
    }
    Ok(())
}
