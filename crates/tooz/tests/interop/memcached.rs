//! memcached-only cases: the exact keys, flags and values Python tooz reads, checked with its
//! pymemcache client both ways (classic `get`/`set`/`add`, which Python tooz's driver uses).
//! Membership expiry is in `expiry`.

use tooz::{Capabilities, Id, Value};

use crate::{cases, hex, Case, Ctx};

pub fn cases() -> Vec<Case> {
    cases![
        rust_writes_python_tooz_keys => [Lock, Groups] if direct,
        rust_reads_what_pymemcache_stores => [Lock, Members] if direct,
    ]
}

fn memcached(url: &str) -> bool {
    url.starts_with("memcached://")
}

/// A URL without options: pymemcache reaches the same keys.
fn direct(url: &str) -> bool {
    memcached(url) && !url.contains('?')
}

/// `plant.py memcached HOST PORT ARGS...`: what it printed.
fn pymemcache(ctx: &Ctx, args: &[&str]) -> String {
    let rest = ctx.url.trim_start_matches("memcached://");
    let (host, port) = rest.split_once(':').unwrap_or((rest, "11211"));
    let mut all = vec!["memcached", host, port.trim_end_matches('/')];
    all.extend(args);
    crate::support::python_output(&ctx.python, "plant.py", &all)
        .trim()
        .to_string()
}

/// msgpack bytes of `value`, as Python's `utils.dumps` writes them.
fn msgpack(value: &Value) -> String {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).unwrap();
    hex(out)
}

/// The key layout of Python tooz 9, byte for byte and with its memcached flags, as tooz-rs
/// writes it.
async fn rust_writes_python_tooz_keys(ctx: Ctx) {
    let (lock, group) = (ctx.name("lock"), ctx.name("group"));
    let rust = ctx.coord().await;
    let member = rust.member_id().as_bytes().to_vec();
    let guard = rust.lock(lock.as_str()).acquire().await.unwrap();
    rust.join_group_create(group.as_str(), &b"zone-a"[..])
        .await
        .unwrap();
    let holder = pymemcache(&ctx, &["get", &format!("__TOOZ_LOCK_{lock}")]);
    assert_eq!(holder, format!("1 {}", hex(&member)));
    let beat = pymemcache(
        &ctx,
        &[
            "get",
            &format!("_TOOZ_MEMBER_{}", String::from_utf8_lossy(&member)),
        ],
    );
    assert_eq!(beat, format!("1 {}", hex(b"It's alive!")));
    let stored = pymemcache(&ctx, &["get", &format!("_TOOZ_GROUP_{group}")]);
    let want = Value::Map(vec![(
        Value::Binary(member.clone()),
        Value::Map(vec![(
            Value::Binary(b"capabilities".to_vec()),
            Value::Binary(b"zone-a".to_vec()),
        )]),
    )]);
    assert_eq!(stored, format!("2 {}", msgpack(&want)));
    let list = pymemcache(&ctx, &["get", "_TOOZ_GROUP_LIST"]);
    let entry = msgpack(&Value::Binary(group.as_bytes().to_vec()));
    assert!(list.starts_with("2 ") && list.contains(&entry), "{list}");
    guard.release().await.unwrap();
    assert_eq!(
        pymemcache(&ctx, &["get", &format!("__TOOZ_LOCK_{lock}")]),
        "miss"
    );
    rust.stop().await.unwrap();
}

/// Values stored with pymemcache's classic commands and flags (a Python holder's `add`, a
/// group `set` with msgpack, member keys) are read by tooz-rs.
async fn rust_reads_what_pymemcache_stores(ctx: Ctx) {
    let (lock, group, alive, dead) = (
        ctx.name("lock"),
        ctx.name("group"),
        ctx.name("py-alive"),
        ctx.name("py-dead"),
    );
    pymemcache(
        &ctx,
        &[
            "add",
            &format!("__TOOZ_LOCK_{lock}"),
            "1",
            &hex(alive.as_bytes()),
            "30",
        ],
    );
    let caps = Value::Map(vec![("lang".into(), "python".into())]);
    let entry = |caps: &Value| {
        Value::Map(vec![(
            Value::Binary(b"capabilities".to_vec()),
            caps.clone(),
        )])
    };
    let stored = Value::Map(vec![
        (Value::Binary(alive.as_bytes().to_vec()), entry(&caps)),
        (Value::Binary(dead.as_bytes().to_vec()), entry(&Value::Nil)),
    ]);
    pymemcache(
        &ctx,
        &[
            "set",
            &format!("_TOOZ_GROUP_{group}"),
            "2",
            &msgpack(&stored),
        ],
    );
    pymemcache(
        &ctx,
        &[
            "set",
            &format!("_TOOZ_MEMBER_{alive}"),
            "1",
            &hex(b"It's alive!"),
            "30",
        ],
    );
    let rust = ctx.coord().await;
    let mine = rust.lock(lock.as_str());
    assert!(
        mine.try_acquire().await.unwrap().is_none(),
        "Python holds it"
    );
    assert_eq!(mine.holder().await.unwrap(), Some(Id::from(alive.as_str())));
    let members = rust
        .get_members_with_capabilities(group.as_str())
        .await
        .unwrap();
    assert_eq!(
        members.into_iter().collect::<Vec<_>>(),
        vec![(Id::from(alive.as_str()), Capabilities::from(caps))],
        "the member without a key is dead"
    );
    // The dead member was dropped from the stored group, as Python tooz drops it.
    let left = pymemcache(&ctx, &["get", &format!("_TOOZ_GROUP_{group}")]);
    assert!(!left.contains(&hex(dead.as_bytes())), "{left}");
    rust.stop().await.unwrap();
}
