//! tooz-style election: a callback run from `run_watchers` when elected.

use std::time::Duration;

use tooz::Coordinator;

#[tokio::main]
async fn main() -> tooz::Result<()> {
    let coord = Coordinator::connect("zake://", "host-1").await?;
    coord.start().await?;
    coord
        .watch_elected_as_leader("scheduler", |event| println!("elected: {event:?}"))
        .await?;
    let events = coord.run_watchers(Some(Duration::from_secs(5))).await?;
    println!(
        "{} event(s); leader is {:?}",
        events.len(),
        coord.get_leader("scheduler").await?
    );
    coord.stop().await
}
