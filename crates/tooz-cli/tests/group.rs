//! `tooz group`, `tooz partition` and `tooz leader` with the real binary on `file://`.

mod common;

use common::{next_line, signal, stdout_lines, wait_exit, Env};
use serde_json::{json, Value};
use tooz::hashring::HashRing;

fn stdout(cmd: &mut assert_cmd::Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn group_round_trip() {
    let env = Env::new();
    env.tooz().args(["group", "create", "g"]).assert().success();
    env.tooz()
        .args(["group", "create", "g"])
        .assert()
        .code(1)
        .stderr("tooz: group g already exists\n");
    assert_eq!(stdout(env.tooz().args(["group", "list"])), "g\n");
    assert_eq!(
        stdout(env.tooz().args(["--json", "group", "list"])),
        "[\"g\"]\n"
    );

    // Members exist while their `join` runs; the innermost command lists them.
    let list = r#""$TOOZ_BIN" --json group members g --caps > "$DIR/members.json""#;
    env.tooz()
        .args([
            "--member",
            "a",
            "group",
            "join",
            "g",
            "--caps-json",
            r#"{"zone":"x"}"#,
        ])
        .args(["--", common::TOOZ, "--member", "b", "group", "join", "g"])
        .args(["--caps", "hello", "--", "sh", "-c", list])
        .assert()
        .success();
    let members: Value =
        serde_json::from_str(&std::fs::read_to_string(env.path("members.json")).unwrap()).unwrap();
    assert_eq!(
        members,
        json!([
            {"member": "a", "capabilities": {"zone": "x"}},
            {"member": "b", "capabilities": "hello"},
        ])
    );
    // Left on exit.
    assert_eq!(stdout(env.tooz().args(["group", "members", "g"])), "");

    env.tooz()
        .args(["group", "leave", "g"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--member"));

    env.tooz().args(["group", "delete", "g"]).assert().success();
    assert_eq!(stdout(env.tooz().args(["group", "list"])), "");
    env.tooz()
        .args(["group", "members", "g"])
        .assert()
        .code(1)
        .stderr("tooz: group g does not exist\n");
}

#[test]
fn join_holds_membership_until_interrupted() {
    let env = Env::new();
    let mut member = env.spawn(&["--json", "--member", "solo", "group", "join", "g"]);
    let lines = stdout_lines(&mut member);
    let joined: Value = serde_json::from_str(&next_line(&lines)).unwrap();
    assert_eq!(
        joined,
        json!({"event": "joined", "group": "g", "member": "solo"})
    );
    assert_eq!(stdout(env.tooz().args(["group", "members", "g"])), "solo\n");
    signal(&member, libc::SIGINT);
    assert_eq!(wait_exit(&mut member), 0);
    assert_eq!(stdout(env.tooz().args(["group", "members", "g"])), "");
}

#[test]
fn watch_streams_joins_and_leaves() {
    let env = Env::new();
    env.tooz().args(["group", "create", "w"]).assert().success();
    let mut watch = env.spawn(&["--json", "group", "watch", "w"]);
    let lines = stdout_lines(&mut watch);
    let first: Value = serde_json::from_str(&next_line(&lines)).unwrap();
    assert_eq!(
        first,
        json!({"event": "watching", "group": "w", "members": []})
    );

    env.tooz()
        .args(["--member", "m1", "group", "join", "w", "--", "true"])
        .assert()
        .success();
    for expected in ["joined", "left"] {
        let event: Value = serde_json::from_str(&next_line(&lines)).unwrap();
        assert_eq!(event["event"], expected, "{event}");
        assert_eq!(event["member"], "m1");
        assert_eq!(event["group"], "w");
        assert!(event["time"].as_f64().unwrap() > 0.0);
    }
    signal(&watch, libc::SIGTERM);
    assert_eq!(wait_exit(&mut watch), 0);
}

#[test]
fn partition_places_keys_as_the_hash_ring() {
    let env = Env::new();
    // a (weight 2), b and c are members while the innermost command runs.
    let query = r#""$TOOZ_BIN" --json partition p object-42 --replicas 2 > "$DIR/two.json"
"$TOOZ_BIN" partition p object-42 > "$DIR/one.txt"
"$TOOZ_BIN" partition p object-42 --replicas 3 --ignore a > "$DIR/ignored.txt""#;
    env.tooz()
        .args(["--member", "a", "group", "join", "p", "--weight", "2", "--"])
        .args([common::TOOZ, "--member", "b", "group", "join", "p", "--"])
        .args([common::TOOZ, "--member", "c", "group", "join", "p", "--"])
        .args(["sh", "-c", query])
        .assert()
        .success();

    let mut ring = HashRing::with_partitions(Vec::<&str>::new(), 32);
    ring.add_node("a", 2);
    ring.add_node("b", 1);
    ring.add_node("c", 1);
    let owners = |replicas, ignore: &[&str]| -> Vec<String> {
        let mut owners: Vec<String> = ring
            .get_nodes(b"object-42", ignore, replicas)
            .unwrap()
            .into_iter()
            .map(|n| String::from_utf8(n.to_vec()).unwrap())
            .collect();
        owners.sort();
        owners
    };
    let primary = String::from_utf8(ring.get_node(b"object-42").unwrap().to_vec()).unwrap();

    let two: Value =
        serde_json::from_str(&std::fs::read_to_string(env.path("two.json")).unwrap()).unwrap();
    assert_eq!(
        two["members"],
        json!([
            {"member": "a", "weight": 2},
            {"member": "b", "weight": 1},
            {"member": "c", "weight": 1},
        ])
    );
    assert_eq!(two["primary"], json!(primary));
    let mut got: Vec<String> = serde_json::from_value(two["owners"].clone()).unwrap();
    assert_eq!(got[0], primary, "the primary comes first");
    got.sort();
    assert_eq!(got, owners(2, &[]));

    let one = std::fs::read_to_string(env.path("one.txt")).unwrap();
    assert_eq!(one, format!("{primary}\n"));

    let ignored = std::fs::read_to_string(env.path("ignored.txt")).unwrap();
    let mut ignored: Vec<String> = ignored.lines().map(String::from).collect();
    ignored.sort();
    assert_eq!(ignored, owners(3, &["a"]));
    assert_eq!(ignored, vec!["b".to_string(), "c".to_string()]);
}

/// `group leave` from another process removes a member: its `group join -- CMD` stops CMD
/// (SIGTERM, then SIGKILL) and exits 76; without CMD, the join ends with 76 too.
#[test]
fn membership_loss_stops_cmd() {
    let env = Env::new();
    let leave = r#"trap '' TERM
"$TOOZ_BIN" --member c group leave g && "$TOOZ_BIN" group members g > "$DIR/after"
touch "$DIR/left"
sleep 30"#;
    let out = env
        .tooz()
        .args(["--member", "c", "group", "join", "g", "--kill-after", "0.3"])
        .args(["--", "sh", "-c", leave])
        .output()
        .unwrap();
    let err = common::stderr_of(&out);
    assert_eq!(out.status.code(), Some(76), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("membership of g lost"), "{err}");
    assert!(err.contains("SIGKILL"), "{err}");
    assert!(env.path("left").exists());
    assert_eq!(std::fs::read_to_string(env.path("after")).unwrap(), "");

    let mut member = env.spawn(&["--json", "--member", "d", "group", "join", "g"]);
    let lines = stdout_lines(&mut member);
    next_line(&lines);
    env.tooz()
        .args(["--member", "d", "group", "leave", "g"])
        .assert()
        .success();
    assert_eq!(wait_exit(&mut member), 76);
}

/// Names reach scripts exactly: a 208-byte member id holding a newline comes out whole in
/// TOOZ_MEMBER, in `--json group members` and `group watch`, and feeding it back to
/// `group leave` works.
#[test]
fn names_are_exact_in_json_and_environment() {
    let env = Env::new();
    let long = format!("mem-{}\nend", "x".repeat(200));
    let record = r#"printf %s "$TOOZ_MEMBER" > "$DIR/member"
"$TOOZ_BIN" --json group members g > "$DIR/members.json"
"$TOOZ_BIN" group members g > "$DIR/members.txt""#;
    env.tooz()
        .args([
            "--member", &long, "group", "join", "g", "--", "sh", "-c", record,
        ])
        .assert()
        .success();
    assert_eq!(std::fs::read_to_string(env.path("member")).unwrap(), long);
    let members: Value =
        serde_json::from_str(&std::fs::read_to_string(env.path("members.json")).unwrap()).unwrap();
    assert_eq!(members, json!([long]));
    assert_eq!(
        std::fs::read_to_string(env.path("members.txt")).unwrap(),
        format!("{long}\n")
    );

    // What --json printed, fed back to `group leave`, removes the member.
    let mut member = env.spawn(&["--json", "--member", &long, "group", "join", "g"]);
    let lines = stdout_lines(&mut member);
    let joined: Value = serde_json::from_str(&next_line(&lines)).unwrap();
    assert_eq!(joined["member"], json!(long));
    let out = env
        .tooz()
        .args(["--json", "group", "members", "g"])
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let name = listed[0].as_str().unwrap();
    env.tooz()
        .args(["--member", name, "group", "leave", "g"])
        .assert()
        .success();
    assert_eq!(wait_exit(&mut member), 76);
    assert_eq!(stdout(env.tooz().args(["group", "members", "g"])), "");
}
