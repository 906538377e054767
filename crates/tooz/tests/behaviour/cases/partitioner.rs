//! The partitioner over live membership (tooz's test_partitioner, plus ownership changes).

use std::time::Duration;

use futures::StreamExt;

use crate::cases;
use crate::ctx::{Case, Ctx, Outcome};

pub fn cases() -> Vec<Case> {
    cases![
        Watch => join_partitioned_group,
        Watch => partitioner_members_agree_with_weights,
        Watch => partitioner_follows_leaves,
        Watch => partitioner_ownership_changes,
        Watch => partitioner_hash_consistent,
    ]
}

const WAIT: Duration = Duration::from_secs(10);

async fn join_partitioned_group(ctx: Ctx) -> Outcome {
    let c = ctx.coord().await;
    let group = ctx.name("group");
    let part = c.join_partitioned_group(group.clone(), 1).await?;
    assert!(c.get_members(group.clone()).await?.contains(c.member_id()));
    let caps = c.get_member_capabilities(group, c.member_id()).await?;
    assert_eq!(caps.get("weight").and_then(|w| w.as_u64()), Some(1));
    assert_eq!(part.view().members().len(), 1);
    assert!(part.belongs_to_self(&"anything"));
    part.leave().await?;
    Ok(())
}

async fn partitioner_members_agree_with_weights(ctx: Ctx) -> Outcome {
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    let group = ctx.name("group");
    let pa = a.join_partitioned_group(group.clone(), 5).await?;
    let pb = b.join_partitioned_group(group.clone(), 10).await?;
    tokio::time::timeout(WAIT, pa.wait_for_members(2)).await?;
    tokio::time::timeout(WAIT, pb.wait_for_members(2)).await?;
    let mut owned_by_b = 0;
    for key in 0..1000u32 {
        let (in_a, in_b) = (pa.belongs_to_self(&key), pb.belongs_to_self(&key));
        assert!(in_a != in_b, "key {key}: exactly one owner expected");
        assert_eq!(
            pa.members_for_object(&key, &[], 1),
            pb.members_for_object(&key, &[], 1)
        );
        owned_by_b += usize::from(in_b);
    }
    // Weight 10 against 5: b should own about two thirds.
    assert!(
        (550..=780).contains(&owned_by_b),
        "b owns {owned_by_b} of 1000"
    );
    let both = pa.members_for_object(&"k", &[], 2);
    assert_eq!(both.len(), 2);
    let only_b = pa.members_for_object(&"k", &[a.member_id().clone()], 2);
    assert_eq!(only_b, [b.member_id().clone()].into_iter().collect());
    Ok(())
}

async fn partitioner_follows_leaves(ctx: Ctx) -> Outcome {
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    let group = ctx.name("group");
    let pa = a.join_partitioned_group(group.clone(), 1).await?;
    let pb = b.join_partitioned_group(group.clone(), 1).await?;
    tokio::time::timeout(WAIT, pa.wait_for_members(2)).await?;
    let before = pa.view().epoch;
    pb.leave().await?;
    let mut changes = pa.changes();
    let view = tokio::time::timeout(WAIT, async {
        loop {
            let view = changes.next().await.expect("changes end only when dropped");
            if view.members().len() == 1 {
                return view;
            }
        }
    })
    .await?;
    assert!(view.epoch > before);
    assert!((0..100u32).all(|k| view.belongs_to_self(&k)));
    Ok(())
}

async fn partitioner_ownership_changes(ctx: Ctx) -> Outcome {
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    let group = ctx.name("group");
    let pa = a.join_partitioned_group(group.clone(), 1).await?;
    let keys: Vec<u32> = (0..200).collect();
    let mut ownership = pa.ownership(keys.clone());
    let first = tokio::time::timeout(WAIT, ownership.next())
        .await?
        .expect("first");
    assert_eq!(first.gained, keys);
    let pb = b.join_partitioned_group(group.clone(), 1).await?;
    let change = tokio::time::timeout(WAIT, ownership.next())
        .await?
        .expect("change");
    assert!(change.epoch > first.epoch);
    assert!(change.gained.is_empty());
    assert!(!change.lost.is_empty() && change.lost.len() < keys.len());
    tokio::time::timeout(WAIT, pb.wait_for_members(2)).await?;
    for key in &change.lost {
        assert!(
            pb.belongs_to_self(key),
            "key {key} lost by a but not owned by b"
        );
    }
    Ok(())
}

/// Same object, same owner, from any member (tooz's "чупакабра" check).
async fn partitioner_hash_consistent(ctx: Ctx) -> Outcome {
    let (a, b) = (ctx.coord().await, ctx.coord().await);
    let group = ctx.name("group");
    let pa = a.join_partitioned_group(group.clone(), 1).await?;
    let pb = b.join_partitioned_group(group.clone(), 1).await?;
    tokio::time::timeout(WAIT, pa.wait_for_members(2)).await?;
    tokio::time::timeout(WAIT, pb.wait_for_members(2)).await?;
    for object in ["чупакабра", "", "x"] {
        let owners = pa.members_for_object(&object, &[], 1);
        assert_eq!(owners.len(), 1);
        assert_eq!(owners, pb.members_for_object(&object, &[], 1));
    }
    let bytes: &[u8] = b"\xffbinary";
    assert_eq!(
        pa.members_for_object(&bytes, &[], 1),
        pb.members_for_object(&bytes, &[], 1)
    );
    Ok(())
}
