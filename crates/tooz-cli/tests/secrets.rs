//! Secrets never shown: for random passwords and tokens placed anywhere the URL grammar takes
//! them (the user information, as written or percent-encoded; secret-looking options), no
//! output of `tooz` (stdout or stderr, of errors, `bench` included) contains them.

mod common;

use common::Env;
use proptest::prelude::*;

const SCHEMES: &[&str] = &[
    "redis",
    "rediss",
    "memcached",
    "zookeeper",
    "etcd",
    "etcd3",
    "etcd3+http",
    "consul",
    "postgresql",
    "mysql",
    "file",
    "ipc",
    "zake",
    "nope",
];

/// Characters that end or split parts of a URL, and some that merely look odd in one.
const ODD: &str = "/+=?;:@#&%!$*~.,-";

fn password() -> impl Strategy<Value = String> {
    // A fixed start and end keep the secret distinct from anything tooz prints by itself.
    let chars: Vec<char> = ODD.chars().chain('a'..='z').chain('0'..='9').collect();
    proptest::collection::vec(proptest::sample::select(chars), 2..12)
        .prop_map(|middle| format!("Pw{}Z9", middle.into_iter().collect::<String>()))
}

fn encode(text: &str, keep: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b if b.is_ascii_alphanumeric() || keep.as_bytes().contains(&b) => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// Where the secret goes.
#[derive(Debug, Clone)]
enum Place {
    /// `scheme://user:SECRET@host`, as written.
    Raw,
    /// `scheme://user:SECRET@host`, percent-encoded.
    Encoded,
    /// `scheme://host?NAME=SECRET` (`&`, `#` and `%` encoded, as they must be).
    Option(&'static str),
}

fn place() -> impl Strategy<Value = Place> {
    prop_oneof![
        Just(Place::Raw),
        Just(Place::Encoded),
        proptest::sample::select(vec!["password", "sentinel_password", "token", "acl_token"])
            .prop_map(Place::Option),
    ]
}

fn url(scheme: &str, secret: &str, place: &Place, dir: &std::path::Path) -> String {
    let host = if scheme == "file" {
        format!("{}", dir.join("coord").display())
    } else {
        "127.0.0.1:1".to_string()
    };
    match place {
        Place::Raw => format!("{scheme}://user:{secret}@{host}?timeout=2"),
        Place::Encoded => format!("{scheme}://user:{}@{host}?timeout=2", encode(secret, "-.~")),
        Place::Option(name) => {
            let value = encode(secret, "/+=?;:@!$*~.,-");
            format!("{scheme}://{host}?timeout=2&{name}={value}")
        }
    }
}

fn check(out: &std::process::Output, secret: &str, what: &str) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains(secret), "{what} showed {secret:?}: {text}");
    assert!(!text.contains("panicked"), "{what}: {text}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_output_shows_a_secret_of_the_url(
        scheme in proptest::sample::select(SCHEMES),
        secret in password(),
        place in place(),
    ) {
        let env = Env::new();
        let url = url(scheme, &secret, &place, env.dir.path());
        let what = url.clone();
        for args in [
            &["group", "list"][..],
            &["--json", "group", "members", "g"],
            &["lock", "x", "--no-wait", "--", "true"],
        ] {
            let out = env.tooz().arg("--url").arg(&url).args(args).output().unwrap();
            check(&out, &secret, &format!("{what} {args:?}"));
        }
        let out = env.tooz().env("TOOZ_URL", &url).arg("--help").output().unwrap();
        check(&out, &secret, "--help");
        // tooz bench reports the URL in its header and JSON; measuring a local driver would
        // take a while, so only those that fail at once are measured here.
        if !matches!(scheme, "file" | "ipc" | "zake") {
            let out = env
                .tooz()
                .args(["--json", "bench", "--short"])
                .arg(&url)
                .output()
                .unwrap();
            check(&out, &secret, &format!("bench {what}"));
            let saved = env.path("saved.json");
            let docs = env.path("bench.md");
            std::fs::write(&docs, "# Benchmarks\n").unwrap();
            let table = env
                .tooz()
                .args(["bench", "--short", "--save"])
                .arg(&saved)
                .arg("--docs")
                .arg(&docs)
                .arg(&url)
                .output()
                .unwrap();
            check(&table, &secret, &format!("bench table {what}"));
            for file in [&saved, &docs] {
                let text = std::fs::read_to_string(file).unwrap_or_default();
                assert!(!text.contains(&secret), "{} showed {secret:?}", file.display());
            }
        }
    }
}
