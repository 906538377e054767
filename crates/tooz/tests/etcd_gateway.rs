//! The etcd3+http driver's API prefixes on the etcd of `scripts/services` (127.0.0.1:2379):
//! each prefix etcd 3.4 serves works when named, the one `/version` implies is found when
//! not, and one etcd does not know is refused before anything is sent. Skipped (saying so)
//! when the server is unreachable, except under `CI=true`.

#![cfg(feature = "etcd3-http")]

mod support;

use tooz::{Coordinator, Error, Id};

const SERVER: &str = "127.0.0.1:2379";

fn reachable() -> bool {
    if std::net::TcpStream::connect(SERVER).is_ok() {
        return true;
    }
    assert!(!support::is_ci(), "etcd on {SERVER} is required under CI");
    eprintln!("skipping: no etcd on {SERVER}");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_prefix_etcd_serves_works() {
    if !reachable() {
        return;
    }
    let run = uuid::Uuid::new_v4().simple().to_string();
    for option in ["", "?api_version=v3", "?api_version=v3beta"] {
        let url = format!("etcd3+http://{SERVER}{option}");
        let coord = support::started(&url, "prefix-member").await;
        let group = format!("prefix-{run}{}", option.len());
        coord.join_group_create(group.as_str(), ()).await.unwrap();
        let members = coord.get_members(group.as_str()).await.unwrap();
        assert!(members.contains(&Id::from("prefix-member")), "{url}");
        let guard = coord.lock(group.as_str()).acquire().await.unwrap();
        assert_eq!(
            coord.lock(group.as_str()).holder().await.unwrap(),
            Some(Id::from("prefix-member")),
            "{url}"
        );
        assert!(guard.release().await.unwrap());
        coord.leave_group(group.as_str()).await.unwrap();
        coord.stop().await.unwrap();
    }
    let refused = Coordinator::connect(&format!("etcd3+http://{SERVER}?api_version=v4"), "m")
        .await
        .unwrap_err();
    assert!(matches!(refused, Error::InvalidOption { .. }), "{refused}");
}
