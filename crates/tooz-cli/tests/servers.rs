//! `tooz lock` and `tooz group` against the server drivers, on the servers that
//! `scripts/services up` starts. Without a server they are skipped, except under `CI=true`.
#![cfg(feature = "full")]

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::{wait_exit, Env};

/// Fails (status 99) if another holder is inside at the same time (noclobber marker).
const EXCLUSIVE: &str = r#"set -C
: > "$DIR/marker" || exit 99
echo "$TOOZ_FENCING_TOKEN" >> "$DIR/tokens"
sleep 0.05
rm "$DIR/marker""#;

/// The URL of each server driver whose server answers on loopback, with a fresh namespace.
fn server_urls() -> Vec<String> {
    let namespace = format!("cli-{}", std::process::id());
    let servers = [
        (
            "127.0.0.1:6379",
            format!("redis://127.0.0.1:6379?namespace={namespace}"),
        ),
        (
            "127.0.0.1:2181",
            format!("zookeeper://127.0.0.1:2181?namespace={namespace}"),
        ),
    ];
    let mut urls = Vec::new();
    for (address, url) in servers {
        let up =
            TcpStream::connect_timeout(&address.parse().unwrap(), Duration::from_secs(2)).is_ok();
        match (up, std::env::var("CI").as_deref()) {
            (true, _) => urls.push(url),
            (false, Ok("true")) => panic!("{address} is required under CI (scripts/services up)"),
            (false, _) => eprintln!("skipping {url}: nothing listens on {address}"),
        }
    }
    urls
}

#[test]
fn server_locks_exclude_processes_and_tokens_increase() {
    for url in server_urls() {
        let env = Env::with_url(&url);
        let mut children: Vec<_> = (0..4)
            .map(|_| {
                env.spawn(&[
                    "lock",
                    "cli-job",
                    "--timeout",
                    "30",
                    "--",
                    "sh",
                    "-c",
                    EXCLUSIVE,
                ])
            })
            .collect();
        for child in &mut children {
            assert_eq!(
                wait_exit(child),
                0,
                "{url}: two holders at once, or a failure"
            );
        }
        let tokens: Vec<u64> = std::fs::read_to_string(env.path("tokens"))
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        assert_eq!(tokens.len(), 4, "{url}");
        assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{url}: {tokens:?}");
    }
}

#[test]
fn server_busy_lock_with_no_wait_exits_75() {
    for url in server_urls() {
        let env = Env::with_url(&url);
        let ready = env.path("ready");
        let mut holder = env.spawn(&[
            "lock",
            "cli-busy",
            "--",
            "sh",
            "-c",
            &format!("touch {}; sleep 3", ready.display()),
        ]);
        common::wait_for_file(&ready);
        env.tooz()
            .args(["lock", "cli-busy", "--no-wait", "--", "true"])
            .assert()
            .code(75);
        assert_eq!(wait_exit(&mut holder), 0, "{url}");
    }
}

#[test]
fn server_group_round_trip() {
    for url in server_urls() {
        let env = Env::with_url(&url);
        env.tooz()
            .args(["group", "create", "cli-group"])
            .assert()
            .success();
        let listed = env.tooz().args(["group", "list"]).assert().success();
        let out = String::from_utf8_lossy(&listed.get_output().stdout).to_string();
        assert!(out.lines().any(|l| l.trim() == "cli-group"), "{url}: {out}");
        env.tooz()
            .args(["group", "delete", "cli-group"])
            .assert()
            .success();
    }
}
