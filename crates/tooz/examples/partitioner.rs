//! Sharding work over a group, and draining what a member loses when another joins.

use futures::StreamExt;
use tooz::Coordinator;

#[tokio::main]
async fn main() -> tooz::Result<()> {
    let a = Coordinator::connect("zake://", "worker-a").await?;
    let b = Coordinator::connect("zake://", "worker-b").await?;
    a.start().await?;
    b.start().await?;

    let shards = a.join_partitioned_group("shards", 1).await?;
    let mut mine = shards.ownership((0..20u32).collect());
    let first = mine.next().await.expect("current ownership");
    println!("epoch {}: worker-a owns {:?}", first.epoch, first.gained);

    let _b_shards = b.join_partitioned_group("shards", 2).await?; // twice the weight
    let change = mine.next().await.expect("membership changed");
    println!("epoch {}: worker-a drains {:?}", change.epoch, change.lost);

    a.stop().await?;
    b.stop().await
}
