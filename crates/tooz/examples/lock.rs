//! A lock guarding work, stopping when the lock is lost.

use tooz::Coordinator;

#[tokio::main]
async fn main() -> tooz::Result<()> {
    let coord = Coordinator::connect("zake://", "worker-1").await?;
    coord.start().await?;
    let guard = coord.lock("reindex").acquire().await?;
    let token = guard.fencing_token();
    tokio::select! {
        _ = do_work(token) => println!("work done under token {token}"),
        reason = guard.lost() => println!("lock lost ({reason}): stopping"),
    }
    guard.release().await?;
    coord.stop().await
}

async fn do_work(token: tooz::FencingToken) {
    // Hand the token to the resource: it refuses writes with smaller tokens.
    println!("writing with fencing token {token}");
}
