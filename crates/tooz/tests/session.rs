//! Connection-state supervision, driven through the zake server's fault hooks.

use std::time::Duration;

use tooz::drivers::zake::Server;
use tooz::{ConnectionState, Coordinator, Id, LostReason};

async fn started(server: &str, member: &str, timeout: &str) -> Coordinator {
    let url = format!("zake://{server}?timeout={timeout}");
    let coord = Coordinator::connect(&url, member).await.unwrap();
    coord.start().await.unwrap();
    coord
}

async fn wait_for(coord: &Coordinator, state: ConnectionState) {
    let mut states = coord.connection_states();
    tokio::time::timeout(Duration::from_secs(10), states.wait_for(|s| *s == state))
        .await
        .unwrap_or_else(|_| panic!("never reached {state}"))
        .unwrap();
}

#[tokio::test]
async fn suspension_past_the_session_timeout_loses_the_lock() {
    let server = "session-suspend-lost";
    let holder = started(server, "holder", "0.3").await;
    let guard = holder.lock("l").acquire().await.unwrap();
    assert!(Server::named(server).suspend(&Id::from("holder")));
    wait_for(&holder, ConnectionState::Suspended).await;
    let reason = tokio::time::timeout(Duration::from_secs(10), guard.lost())
        .await
        .unwrap();
    assert_eq!(reason, LostReason::SessionLost);
    wait_for(&holder, ConnectionState::Lost).await;
}

#[tokio::test]
async fn resuming_in_time_keeps_the_lock() {
    let server = "session-suspend-resume";
    let holder = started(server, "holder", "5").await;
    let guard = holder.lock("l").acquire().await.unwrap();
    let zake = Server::named(server);
    zake.suspend(&Id::from("holder"));
    wait_for(&holder, ConnectionState::Suspended).await;
    assert!(
        holder.lock("other").try_acquire().await.is_err(),
        "calls fail while cut off"
    );
    zake.resume(&Id::from("holder"));
    wait_for(&holder, ConnectionState::Reconnected).await;
    assert_eq!(guard.lost_reason(), None);
    assert!(guard.release().await.unwrap());
    holder.stop().await.unwrap();
}

#[tokio::test]
async fn session_expiry_frees_locks_and_memberships_for_others() {
    let server = "session-expire";
    let holder = started(server, "holder", "10").await;
    let other = started(server, "other", "10").await;
    holder.join_group_create("g", ()).await.unwrap();
    let mut watch = other.watch_group("g").await.unwrap();
    let guard = holder.lock("l").acquire().await.unwrap();
    let waiting = {
        let other = other.clone();
        tokio::spawn(async move { other.lock("l").acquire().await })
    };
    Server::named(server).expire_session(&Id::from("holder"));
    assert_eq!(guard.lost().await, LostReason::SessionLost);
    wait_for(&holder, ConnectionState::Lost).await;
    let next = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(next.fencing_token() > guard.fencing_token());
    let left = tokio::time::timeout(
        Duration::from_secs(10),
        futures::StreamExt::next(&mut watch),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        left,
        tooz::GroupEvent::Left {
            group: "g".into(),
            member: "holder".into()
        }
    );
    next.release().await.unwrap();
    other.stop().await.unwrap();
}

#[tokio::test]
async fn an_idle_coordinator_spawns_no_heartbeat() {
    let coord = started("session-idle", "idle", "10").await;
    assert_eq!(coord.heartbeat().await.unwrap(), None);
    coord.stop().await.unwrap();
}
