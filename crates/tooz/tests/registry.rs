//! Driver selection by URL: every scheme is known, bad URLs get typed errors, secrets stay hidden.

use tooz::{Coordinator, Error};

fn connect(url: &str) -> tooz::Result<Coordinator> {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(Coordinator::connect(url, "m"))
}

#[test]
fn every_tooz_scheme_and_alias_is_known() {
    for scheme in [
        "zookeeper",
        "kazoo",
        "zake",
        "memory",
        "memcached",
        "redis",
        "ipc",
        "file",
        "postgresql",
        "mysql",
        "etcd",
        "etcd3",
        "etcd3+http",
        "etcd3+https",
        "consul",
    ] {
        let entry = tooz::drivers::lookup(scheme).unwrap_or_else(|| panic!("{scheme} unknown"));
        assert!(entry.scheme == scheme || entry.aliases.contains(&scheme));
        match connect(&format!("{scheme}://127.0.0.1:1/x")) {
            Ok(_) => assert_eq!(entry.availability, tooz::drivers::Availability::Available),
            Err(Error::DriverUnavailable { scheme: s, why }) => {
                assert_eq!(s, entry.scheme);
                assert!(why.contains("not implemented yet") || why.contains("cargo feature"));
            }
            Err(Error::InvalidUrl { .. }) => {} // e.g. zake takes no path
            Err(other) => panic!("{scheme}: unexpected {other}"),
        }
    }
    assert_eq!(tooz::drivers::registry().len(), 12);
}

#[test]
fn memory_is_zake() {
    let coord = connect("memory://").unwrap();
    assert_eq!(coord.driver_name(), "zake");
}

#[test]
fn unknown_scheme_lists_the_known_ones() {
    let err = connect("gopher://h").unwrap_err();
    assert!(matches!(err, Error::UnknownScheme { .. }), "{err}");
    assert!(err.to_string().contains("zookeeper"), "{err}");
}

#[test]
fn malformed_urls_are_typed_errors() {
    for url in ["", "not a url", "://x", "redis://[::1", "zake:// bad"] {
        assert!(
            matches!(
                connect(url),
                Err(Error::InvalidUrl { .. } | Error::UnknownScheme { .. })
            ),
            "{url:?}"
        );
    }
}

#[test]
fn secrets_do_not_leak_through_errors_or_debug() {
    let err = connect("redis://admin:hunter2@[::1/x?password=hunter2").unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(!format!("{err:?}").contains("hunter2"));
    let err = connect("zake://user:hunter2@x/?tiemout=1&password=hunter2").unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let coord = connect("zake://user:hunter2@x?timeout=1").unwrap();
    assert!(!format!("{coord:?}").contains("hunter2"), "{coord:?}");
    assert!(!coord.url().to_string().contains("hunter2"));
}

/// A driver built from a URL that adjusts nothing declares exactly the facts the registry
/// lists (what `tooz drivers` prints); options that change a fact change it in both
/// `characteristics()`/`support()` and nowhere else.
#[test]
fn built_drivers_declare_the_registry_facts() {
    let dir = std::env::temp_dir().join(format!("tooz-facts-{}", std::process::id()));
    let urls = [
        "zake://".to_string(),
        format!("file://{}", dir.display()),
        "ipc://".into(),
        "redis://127.0.0.1:1".into(),
        "zookeeper://127.0.0.1:1".into(),
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    for url in urls {
        let Ok(coord) = rt.block_on(Coordinator::connect(&url, "m")) else {
            continue; // not compiled in
        };
        let entry = tooz::drivers::lookup(coord.driver_name()).unwrap();
        let facts = entry.facts.expect("a built driver lists its facts");
        assert_eq!(coord.characteristics(), facts.characteristics, "{url}");
        assert_eq!(coord.support(), facts.support, "{url}");
    }
    let polled = rt
        .block_on(Coordinator::connect("zake://?watch=poll", "m"))
        .unwrap();
    assert_eq!(polled.support().watch, tooz::WatchKind::Poll);
    let zake = tooz::drivers::lookup("zake").unwrap().facts.unwrap();
    assert_eq!(
        tooz::Support {
            watch: tooz::WatchKind::Push,
            ..polled.support()
        },
        zake.support
    );
}
