//! Groups, members and capabilities, with tooz-style join/leave callbacks.

use std::time::Duration;

use tooz::Coordinator;

#[tokio::main]
async fn main() -> tooz::Result<()> {
    let me = Coordinator::connect("zake://", "member-1").await?;
    let other = Coordinator::connect("zake://", "member-2").await?;
    me.start().await?;
    other.start().await?;
    me.create_group("group").await?;
    me.watch_join_group("group", |e| println!("joined: {}", e.member()))
        .await?;
    me.watch_leave_group("group", |e| println!("left: {}", e.member()))
        .await?;
    other
        .join_group("group", "capabilities of member-2")
        .await?;
    other.leave_group("group").await?;
    let mut delivered = 0;
    while delivered < 2 {
        delivered += me.run_watchers(Some(Duration::from_secs(5))).await?.len();
    }
    println!("groups: {:?}", me.get_groups().await?);
    me.delete_group("group").await?;
    other.stop().await?;
    me.stop().await
}
