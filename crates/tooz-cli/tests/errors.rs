//! Connection errors say where tooz tried to connect and why it failed (run when the redis
//! driver is built; the wrong-protocol case when memcached listens on 11211).

mod common;

use common::{stderr_of, Env};

#[test]
fn connection_errors_name_the_place_and_the_cause() {
    if !common::driver_built("redis") {
        eprintln!("skipping: the redis driver is not built in");
        return;
    }
    let env = Env::new();
    let out = env
        .tooz()
        .args(["--url", "redis://127.0.0.1:1", "group", "list"])
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(err.to_lowercase().contains("refused"), "{err}");

    // A Redis URL pointed at memcached: not a bare "broken pipe".
    if let Some(url) = common::server_url(
        "redis",
        "127.0.0.1:11211",
        "redis://127.0.0.1:11211?timeout=3".to_string(),
    ) {
        let out = env
            .tooz()
            .args(["--url", &url, "group", "list"])
            .output()
            .unwrap();
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("127.0.0.1:11211"), "{err}");
        assert!(
            err.contains("is a redis server listening there")
                || err.contains("did not answer as a Redis server"),
            "{err}"
        );
    }
}
