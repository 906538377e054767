//! ZooKeeper-only cases: digest authentication, whose node ACL must be the one Python tooz
//! (kazoo) gives, so that each side can use the other's nodes.

use tooz::Coordinator;

use crate::{cases, hex, Case, Ctx};

pub fn cases() -> Vec<Case> {
    cases![digest_auth_nodes_are_shared_with_python => [Lock, Members] if zookeeper]
}

fn zookeeper(url: &str) -> bool {
    url.starts_with("zookeeper://") && !url.contains('?')
}

/// The URL under test with `user:password@` and a namespace of its own.
fn with_auth(ctx: &Ctx, userinfo: &str, namespace: &str) -> String {
    let hosts = ctx.url.trim_start_matches("zookeeper://");
    format!("zookeeper://{userinfo}{hosts}?namespace={namespace}")
}

async fn digest_auth_nodes_are_shared_with_python(ctx: Ctx) {
    let (namespace, group, lock) = (ctx.name("auth"), ctx.name("group"), ctx.name("lock"));
    let authed = with_auth(&ctx, "tooz:s3cret@", &namespace);
    let rust = ctx.coord_at(&authed, ctx.name("rust")).await;
    rust.join_group_create(group.as_str(), b"caps")
        .await
        .unwrap();
    let guard = rust.lock(lock.as_str()).acquire().await.unwrap();

    // Without the credentials the nodes cannot be read.
    let anonymous_url = with_auth(&ctx, "", &namespace);
    let anonymous = Coordinator::connect(&anonymous_url, "anonymous")
        .await
        .unwrap();
    anonymous.start().await.unwrap();
    let denied = anonymous.get_members(group.as_str()).await;
    assert!(
        matches!(denied, Err(tooz::Error::Backend { .. })),
        "{denied:?}"
    );
    anonymous.stop().await.unwrap();

    // Python with the same credentials can: the ACL names the same digest id.
    let listed = ctx
        .peer_at(&authed, "members", &[&group])
        .finish()
        .await
        .unwrap();
    assert!(
        listed.contains(&hex(rust.member_id().as_bytes())),
        "{listed}"
    );
    let tried = ctx
        .peer_at(&authed, "try-lock", &[&lock])
        .finish()
        .await
        .unwrap();
    assert_eq!(tried.trim(), "busy");
    guard.release().await.unwrap();
    rust.stop().await.unwrap();
}
