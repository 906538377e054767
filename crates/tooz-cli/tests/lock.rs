//! `tooz lock` and `tooz elect` with the real binary, several processes on one `file://`
//! directory.

mod common;

use std::time::{Duration, Instant};

use common::{signal, stderr_of, wait_exit, wait_for_file, Env};

/// Fails (status 99) if another command holding the same lock is inside at the same time: the
/// marker is created with noclobber, so a second creator fails. Appends the fencing token.
const EXCLUSIVE: &str = r#"set -C
: > "$DIR/marker" || exit 99
echo "$TOOZ_FENCING_TOKEN" >> "$DIR/tokens"
sleep 0.1
rm "$DIR/marker""#;

fn tokens(env: &Env) -> Vec<u64> {
    std::fs::read_to_string(env.path("tokens"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

#[test]
fn concurrent_holders_never_overlap_and_tokens_increase() {
    let env = Env::new();
    let mut children: Vec<_> = (0..6)
        .map(|_| env.spawn(&["lock", "job", "--", "sh", "-c", EXCLUSIVE]))
        .collect();
    for child in &mut children {
        let status = wait_exit(child);
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert_eq!(
            status, 0,
            "a command ran while another held the lock: {err}"
        );
    }
    let tokens = tokens(&env);
    assert_eq!(tokens.len(), 6);
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
    // Later acquisitions continue the sequence.
    let check = format!("test \"$TOOZ_FENCING_TOKEN\" -gt {}", tokens[5]);
    env.tooz()
        .args(["lock", "job", "--", "sh", "-c", &check])
        .assert()
        .success();
    env.tooz()
        .args([
            "lock",
            "job",
            "--",
            "sh",
            "-c",
            "test \"$TOOZ_LOCK_NAME\" = job",
        ])
        .assert()
        .success();
}

#[test]
fn exit_status_is_cmds() {
    let env = Env::new();
    env.tooz()
        .args(["lock", "a", "--", "sh", "-c", "exit 3"])
        .assert()
        .code(3);
    env.tooz()
        .args(["lock", "a", "--", "sh", "-c", "kill -TERM $$"])
        .assert()
        .code(128 + libc::SIGTERM);
    env.tooz()
        .args(["lock", "a", "--", "/nonexistent/command"])
        .assert()
        .code(127)
        .stderr(predicates::str::contains("command not found"));
}

#[test]
fn busy_lock_with_no_wait_or_timeout_exits_75() {
    let env = Env::new();
    let hold = r#"touch "$DIR/holding"; while [ ! -e "$DIR/stop" ]; do sleep 0.02; done"#;
    let mut holder = env.spawn(&["--member", "holder", "lock", "busy", "--", "sh", "-c", hold]);
    wait_for_file(&env.path("holding"));

    let out = env
        .tooz()
        .args(["lock", "busy", "--no-wait", "--", "touch"])
        .arg(env.path("ran"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75));
    let err = stderr_of(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("tooz: lock busy is held"), "{err}");
    assert!(err.contains("holder"), "{err}");

    let started = Instant::now();
    let out = env
        .tooz()
        .args(["lock", "busy", "--timeout", "0.3", "--", "touch"])
        .arg(env.path("ran"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75));
    assert!(
        stderr_of(&out).contains("--timeout 0.3s"),
        "{}",
        stderr_of(&out)
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(!env.path("ran").exists(), "CMD ran without the lock");

    std::fs::write(env.path("stop"), "").unwrap();
    assert_eq!(wait_exit(&mut holder), 0);
    env.tooz()
        .args(["lock", "busy", "--no-wait", "--", "true"])
        .assert()
        .success();
}

/// The loss path: --max-hold ends the hold as a lost lock would. CMD and its background
/// child ignore SIGTERM, so tooz must escalate to SIGKILL, and nothing of CMD's process
/// group may survive it.
#[test]
fn loss_stops_cmd_and_its_children() {
    let env = Env::new();
    let stubborn = r#"trap '' TERM
(while :; do date +%s%N > "$DIR/beat"; sleep 0.05; done) &
touch "$DIR/started"
wait"#;
    let started = Instant::now();
    let out = env
        .tooz()
        .args(["lock", "job", "--max-hold", "0.5", "--kill-after", "0.5"])
        .args(["--", "sh", "-c", stubborn])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(76), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("lock job held longer than --max-hold 0.5s"),
        "{err}"
    );
    assert!(err.contains("SIGKILL"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(env.path("started").exists());

    let beat = std::fs::read_to_string(env.path("beat")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        std::fs::read_to_string(env.path("beat")).unwrap(),
        beat,
        "a child of CMD still runs"
    );
    // The lock was released.
    env.tooz()
        .args(["lock", "job", "--no-wait", "--", "true"])
        .assert()
        .success();

    // A CMD that obeys SIGTERM is not killed.
    let out = env
        .tooz()
        .args(["lock", "job", "--max-hold", "0.3", "--", "sleep", "30"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(76));
    assert!(
        stderr_of(&out).contains("stopped with SIGTERM"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn signals_are_forwarded_to_cmd() {
    let env = Env::new();
    let trap = r#"trap 'echo term > "$DIR/got"; exit 0' TERM
touch "$DIR/ready"
while :; do sleep 0.05; done"#;
    let mut tooz = env.spawn(&["lock", "sig", "--", "sh", "-c", trap]);
    wait_for_file(&env.path("ready"));
    signal(&tooz, libc::SIGTERM);
    assert_eq!(wait_exit(&mut tooz), 0);
    assert_eq!(
        std::fs::read_to_string(env.path("got")).unwrap().trim(),
        "term"
    );

    // A CMD that does not handle the signal dies of it, and tooz reports it.
    let script = r#"touch "$DIR/ready2"; while :; do sleep 0.05; done"#;
    let mut tooz = env.spawn(&["lock", "sig", "--", "sh", "-c", script]);
    wait_for_file(&env.path("ready2"));
    signal(&tooz, libc::SIGHUP);
    assert_eq!(wait_exit(&mut tooz), 128 + libc::SIGHUP);
    env.tooz()
        .args(["lock", "sig", "--no-wait", "--", "true"])
        .assert()
        .success();
}

#[test]
fn a_signal_ends_the_wait() {
    let env = Env::new();
    let hold = r#"touch "$DIR/holding"; while [ ! -e "$DIR/stop" ]; do sleep 0.02; done"#;
    let mut holder = env.spawn(&["lock", "w", "--", "sh", "-c", hold]);
    wait_for_file(&env.path("holding"));
    let mut waiter = env.spawn(&[
        "lock",
        "w",
        "--",
        "touch",
        env.path("ran").to_str().unwrap(),
    ]);
    std::thread::sleep(Duration::from_millis(300));
    signal(&waiter, libc::SIGINT);
    assert_eq!(wait_exit(&mut waiter), 128 + libc::SIGINT);
    assert!(!env.path("ran").exists());
    std::fs::write(env.path("stop"), "").unwrap();
    assert_eq!(wait_exit(&mut holder), 0);
}

#[test]
fn one_leader_at_a_time() {
    let env = Env::new();
    let script = format!(
        "{EXCLUSIVE}\n[ \"$(\"$TOOZ_BIN\" leader grp)\" = \"$TOOZ_MEMBER\" ] || exit 98\n\
         [ \"$TOOZ_LEADER_TERM\" = \"$TOOZ_FENCING_TOKEN\" ] || exit 97"
    );
    let mut children: Vec<_> = (0..4)
        .map(|i| {
            let member = format!("m{i}");
            env.spawn(&[
                "--member", &member, "elect", "grp", "--", "sh", "-c", &script,
            ])
        })
        .collect();
    for child in &mut children {
        assert_eq!(wait_exit(child), 0);
    }
    let tokens = tokens(&env);
    assert_eq!(tokens.len(), 4);
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
    // Nobody leads once they are all done.
    env.tooz()
        .args(["leader", "grp"])
        .assert()
        .success()
        .stdout("");
}

/// SIGKILL to tooz stops all of CMD: a grandchild of CMD is gone within 1 s (the watchdog
/// kills CMD's process group when its pipe from tooz closes), and the next holder's command
/// starts after the grandchild's last write. Likewise for `elect` and `group join -- CMD`.
#[test]
fn sigkill_of_tooz_stops_cmds_grandchildren() {
    let env = Env::new();
    let cmd = common::grandchild_cmd(&env, "first");
    let mut args = vec!["lock", "crit", "--"];
    args.extend(cmd.iter().map(String::as_str));
    let mut first = env.spawn(&args);
    let grandchild = common::read_number(&env.path("first.pid")) as i32;
    let stamp = r#"date +%s%N > "$DIR/second""#;
    let mut second = env.spawn(&["lock", "crit", "--", "sh", "-c", stamp]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(!env.path("second").exists(), "two holders at once");

    signal(&first, libc::SIGKILL);
    assert_eq!(wait_exit(&mut first), 128 + libc::SIGKILL);
    assert!(
        common::gone_within(grandchild, Duration::from_secs(1)),
        "CMD's grandchild survived tooz"
    );
    assert_eq!(wait_exit(&mut second), 0);
    let started = common::read_number(&env.path("second"));
    let last = common::last_beat(&env, "first");
    assert!(
        last < started,
        "the first command wrote at {last}, after the second started at {started}"
    );

    for (name, command) in [
        ("elect", &["elect", "g"][..]),
        ("join", &["group", "join", "g"]),
    ] {
        let cmd = common::grandchild_cmd(&env, name);
        let mut args = command.to_vec();
        args.push("--");
        args.extend(cmd.iter().map(String::as_str));
        let mut tooz = env.spawn(&args);
        let grandchild = common::read_number(&env.path(&format!("{name}.pid"))) as i32;
        signal(&tooz, libc::SIGKILL);
        assert_eq!(wait_exit(&mut tooz), 128 + libc::SIGKILL);
        assert!(
            common::gone_within(grandchild, Duration::from_secs(1)),
            "{name}: CMD's grandchild survived tooz"
        );
    }
}

/// `elect` takes --no-wait and --timeout as `lock` does; --conflict-exit-code and
/// --lost-exit-code tell tooz's own outcomes from CMD's statuses.
#[test]
fn elect_waits_like_lock_and_statuses_can_be_chosen() {
    let env = Env::new();
    let hold = r#"touch "$DIR/leading"; while [ ! -e "$DIR/stop" ]; do sleep 0.02; done"#;
    let mut leader = env.spawn(&["--member", "first", "elect", "e", "--", "sh", "-c", hold]);
    wait_for_file(&env.path("leading"));
    let out = env
        .tooz()
        .args(["elect", "e", "--no-wait", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("first"), "{}", stderr_of(&out));
    env.tooz()
        .args(["elect", "e", "--timeout", "0.2", "--", "true"])
        .assert()
        .code(75);
    env.tooz()
        .args([
            "elect",
            "e",
            "--no-wait",
            "--conflict-exit-code",
            "200",
            "--",
            "true",
        ])
        .assert()
        .code(200);
    env.tooz()
        .args([
            "lock",
            "l",
            "--max-hold",
            "0.2",
            "--lost-exit-code",
            "201",
            "--",
        ])
        .args(["sleep", "5"])
        .assert()
        .code(201);
    // CMD's own 75 stays 75 whatever was chosen for tooz's.
    env.tooz()
        .args([
            "lock",
            "l",
            "--conflict-exit-code",
            "200",
            "--",
            "sh",
            "-c",
            "exit 75",
        ])
        .assert()
        .code(75);
    std::fs::write(env.path("stop"), "").unwrap();
    assert_eq!(wait_exit(&mut leader), 0);
    env.tooz()
        .args(["elect", "e", "--no-wait", "--", "true"])
        .assert()
        .success();
}
