//! ZooKeeper-specific behaviour of the zookeeper driver: a chroot in the URL.
//!
//! Server: `TOOZ_ZOOKEEPER_URL` (default `zookeeper://127.0.0.1:2181`, started by
//! `scripts/services up zookeeper`). Without the server the tests are skipped, except under
//! `CI=true` where that is a failure.
#![cfg(feature = "zookeeper")]

use tooz::{Coordinator, Id};

fn url() -> String {
    std::env::var("TOOZ_ZOOKEEPER_URL").unwrap_or_else(|_| "zookeeper://127.0.0.1:2181".into())
}

/// A started coordinator, or `None` (skip) when the server is down outside CI.
async fn coord(member: &str) -> Option<Coordinator> {
    let c = Coordinator::connect(&url(), member).await.unwrap();
    match c.start().await {
        Ok(()) => Some(c),
        Err(error) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipping: {} unreachable ({error})", url());
            None
        }
        Err(error) => panic!("ZooKeeper at {} is required under CI: {error}", url()),
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn a_chroot_is_created_and_confines_the_layout() {
    let Some(outside) = coord("outside").await else {
        return;
    };
    let chroot = unique("/chroot");
    let base = url();
    let inside_url = format!("{}{chroot}", base.split('?').next().unwrap());
    let inside = Coordinator::connect(&inside_url, "inside").await.unwrap();
    inside.start().await.unwrap();
    let group = unique("group");
    inside.join_group_create(group.as_str(), ()).await.unwrap();
    assert!(inside
        .get_groups()
        .await
        .unwrap()
        .contains(&Id::from(group.as_str())));
    // Seen from outside the chroot, the group is not in the default namespace.
    assert!(!outside
        .get_groups()
        .await
        .unwrap()
        .contains(&Id::from(group.as_str())));
    let nested = Coordinator::connect(
        &format!(
            "{}?namespace={}/tooz",
            base.split('?').next().unwrap(),
            &chroot[1..]
        ),
        "nested",
    )
    .await
    .unwrap();
    nested.start().await.unwrap();
    assert!(nested
        .get_members(group.as_str())
        .await
        .unwrap()
        .contains(&Id::from("inside")));
    for c in [inside, outside, nested] {
        c.stop().await.unwrap();
    }
}
