//! A paused `tooz` cannot leave CMD running past its lease: the watchdog stops CMD's process
//! group when tooz has not confirmed a refresh of its lock for half the lock's lifetime. On
//! redis, whose locks expire (skipped when the driver is not built or no server answers).

mod common;

use std::time::Duration;

use common::{signal, stderr_of, wait_exit, Env};

#[test]
fn a_paused_tooz_does_not_leave_cmd_running_past_its_lease() {
    let namespace = format!("cli-pause-{}", std::process::id());
    let url = format!("redis://127.0.0.1:6379?namespace={namespace}");
    let Some(url) = common::server_url("redis", "127.0.0.1:6379", url) else {
        return;
    };
    let env = Env::with_url(&url);
    let cmd = common::grandchild_cmd(&env, "first");
    let mut args = vec!["lock", "paused", "--ttl", "2", "--"];
    args.extend(cmd.iter().map(String::as_str));
    let mut first = env.spawn(&args);
    let grandchild = common::read_number(&env.path("first.pid")) as i32;
    std::thread::sleep(Duration::from_millis(300));

    // As a long GC or VM pause would: tooz stops, CMD runs on.
    signal(&first, libc::SIGSTOP);
    let stamp = r#"date +%s%N > "$DIR/second""#;
    let mut second = env.spawn(&["lock", "paused", "--timeout", "30", "--", "sh", "-c", stamp]);
    let second_status = wait_exit(&mut second);
    let started = common::read_number(&env.path("second"));
    let last = common::last_beat(&env, "first");
    let grandchild_gone = !common::alive(grandchild);
    signal(&first, libc::SIGCONT);
    let first_status = wait_exit(&mut first);
    let mut err = String::new();
    std::io::Read::read_to_string(first.stderr.as_mut().unwrap(), &mut err).unwrap();

    assert_eq!(second_status, 0);
    assert!(
        grandchild_gone,
        "CMD's grandchild ran on once the lock could expire"
    );
    assert!(
        last < started,
        "the first command wrote at {last}, after the second started at {started}"
    );
    assert_eq!(first_status, 76, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("lock paused"), "{err}");

    // Without a pause, refreshes keep the deadline ahead: CMD runs past the lease.
    let out = env
        .tooz()
        .args(["lock", "steady", "--ttl", "1", "--", "sleep", "2.5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
}
