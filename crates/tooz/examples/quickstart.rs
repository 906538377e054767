//! Membership, a watcher, an election and a lock, with no server: `cargo run --example quickstart`.
//!
//! Pass a URL as the first argument to run the same on another backend.

use std::time::Duration;

use futures::StreamExt;
use tooz::{Coordinator, GroupEvent};

#[tokio::main]
async fn main() -> tooz::Result<()> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "zake://".into());
    let alice = Coordinator::connect(&url, "alice").await?;
    let bob = Coordinator::connect(&url, "bob").await?;
    alice.start().await?;
    bob.start().await?;
    println!("driver {} {}", alice.driver_name(), alice.characteristics());

    // Membership, watched as a stream.
    alice.join_group_create("workers", b"zone-a").await?;
    let mut events = alice.watch_group("workers").await?;
    bob.join_group("workers", b"zone-b").await?;
    if let Some(GroupEvent::Joined { member, .. }) = events.next().await {
        println!("alice saw {member} join");
    }
    for (member, caps) in alice.get_members_with_capabilities("workers").await? {
        let caps = String::from_utf8_lossy(caps.as_bytes().unwrap_or_default());
        println!("  member {member}: {caps}");
    }

    // Leader election: bob waits until alice resigns.
    let leadership = alice.campaign("workers").await?;
    let leader = alice.get_leader("workers").await?.unwrap_or_default();
    println!("leader: {leader} (term {})", leadership.term());
    let bob_campaign = {
        let bob = bob.clone();
        tokio::spawn(async move { bob.campaign("workers").await })
    };
    leadership.resign().await?;
    let bob_leads = bob_campaign.await.expect("campaign task")?;
    let leader = bob.get_leader("workers").await?.unwrap_or_default();
    println!("leader: {leader} (term {})", bob_leads.term());
    bob_leads.resign().await?;

    // A lock with a fencing token, handed from alice to bob.
    let guard = alice.lock("reindex").acquire().await?;
    println!("alice holds reindex, token {}", guard.fencing_token());
    let bob_lock = bob.lock("reindex");
    assert!(bob_lock.try_acquire().await?.is_none());
    guard.release().await?;
    let guard = bob_lock.acquire_timeout(Duration::from_secs(5)).await?;
    println!("bob holds reindex, token {}", guard.fencing_token());
    guard.release().await?;

    bob.stop().await?;
    if let Some(GroupEvent::Left { member, .. }) = events.next().await {
        println!("alice saw {member} leave");
    }
    alice.stop().await?;
    Ok(())
}
