//! `LockGuard::lease` and `confirmed_at`: what a supervisor of a lock holder can count on.

use tooz::Coordinator;

#[tokio::test]
async fn locks_that_end_with_their_holder_have_no_lease() {
    let coord = Coordinator::builder("zake://lease", "m")
        .start()
        .await
        .unwrap();
    let guard = coord.lock("l").acquire().await.unwrap();
    assert_eq!(guard.lease(), None);
    let leadership = coord.campaign("g").await.unwrap();
    assert_eq!(leadership.lease(), None);
    leadership.resign().await.unwrap();
    guard.release().await.unwrap();
    coord.stop().await.unwrap();
}

/// On redis the lease is the lock's TTL, and each heartbeat's refresh moves the confirmation
/// forward (skipped when no server answers on 127.0.0.1:6379).
#[cfg(feature = "redis")]
#[tokio::test]
async fn refreshes_move_the_confirmation_forward() {
    use std::time::Duration;
    let address = "127.0.0.1:6379".parse().unwrap();
    if std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_err() {
        eprintln!("skipping: no redis on {address}");
        return;
    }
    let url = format!(
        "redis://127.0.0.1:6379?lock_timeout=2&namespace=lease-{}",
        std::process::id()
    );
    let coord = Coordinator::builder(&url, "m").start().await.unwrap();
    let guard = coord.lock("l").try_acquire().await.unwrap().unwrap();
    assert_eq!(guard.lease(), Some(Duration::from_secs(2)));
    let first = guard.confirmed_at();
    let mut moved = false;
    // The heartbeat comes every half second here (a quarter of the window): within 3 s.
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if guard.confirmed_at() > first {
            moved = true;
            break;
        }
    }
    assert!(moved, "no refresh confirmed within 3 s");
    assert!(guard.confirmed_at().elapsed() < Duration::from_secs(2));
    guard.release().await.unwrap();
    coord.stop().await.unwrap();
}
