//! Errors, defaults, completions, man pages and `tooz drivers` with the real binary.

mod common;

use common::{stderr_of, Env};
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;

/// Runs and checks that stderr is one `tooz: ` line containing `needle`; returns the status.
fn one_line_error(cmd: &mut assert_cmd::Command, needle: &str) -> i32 {
    let out = cmd.output().unwrap();
    let err = stderr_of(&out);
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("tooz: "), "{err}");
    assert!(err.contains(needle), "{needle} missing: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    out.status.code().unwrap()
}

#[test]
fn bad_urls_are_one_line() {
    let env = Env::new();
    let status = one_line_error(
        env.tooz().args(["--url", "nope://x", "group", "list"]),
        "unknown URL scheme `nope`",
    );
    assert_eq!(status, 1);
    let bogus = format!("{}?bogus=1", env.url);
    let status = one_line_error(
        env.tooz().args(["--url", &bogus, "group", "list"]),
        "unknown option `bogus`",
    );
    assert_eq!(status, 1);
    let bad_value = format!("{}?timeout=soon", env.url);
    let status = one_line_error(
        env.tooz().args(["--url", &bad_value, "group", "list"]),
        "`timeout`",
    );
    assert_eq!(status, 1);
    let status = one_line_error(
        env.tooz().args(["--url", "not a url", "group", "list"]),
        "invalid URL",
    );
    assert_eq!(status, 1);
    // Wrapping CMD, tooz's own failures are 125, so they cannot pass for CMD's.
    let status = one_line_error(
        env.tooz()
            .args(["--url", "nope://x", "lock", "a", "--", "true"]),
        "nope",
    );
    assert_eq!(status, 125);
    // TOOZ_URL is read too.
    let status = one_line_error(
        env.tooz()
            .env("TOOZ_URL", "nope://y")
            .args(["group", "list"]),
        "nope",
    );
    assert_eq!(status, 1);
}

#[test]
fn bad_options_are_one_line_naming_the_option() {
    let env = Env::new();
    let cases: &[(&[&str], &str)] = &[
        (
            &["lock", "x", "--timeout", "abc", "--", "true"],
            "--timeout",
        ),
        (&["lock", "x", "--frobnicate", "--", "true"], "--frobnicate"),
        (
            &["lock", "x", "--no-wait", "--timeout", "1", "--", "true"],
            "--no-wait",
        ),
        (&["lock", "x", "--ttl", "0", "--", "true"], "--ttl"),
        (&["lock", "x"], "<CMD>"),
        (
            &["elect", "g", "--kill-after", "-1", "--", "true"],
            "--kill-after",
        ),
        (&["partition", "g", "k", "--replicas", "0"], "--replicas"),
        (
            &["group", "join", "g", "--caps-json", "{oops"],
            "--caps-json",
        ),
        (
            &["group", "join", "g", "--caps", "a", "--weight", "2"],
            "--weight",
        ),
        (&["completions", "tcsh"], "tcsh"),
        (&["frobnicate"], "frobnicate"),
    ];
    for (args, needle) in cases {
        let status = one_line_error(env.tooz().args(*args), needle);
        assert_eq!(status, 2, "{args:?}");
    }
    // The hint names the subcommand.
    env.tooz()
        .args(["group", "members"])
        .assert()
        .code(2)
        .stderr(contains("(see 'tooz group members --help')"));
    let url = format!("{}?lock_timeout=3", env.url);
    let status = one_line_error(
        env.tooz()
            .args(["--url", &url, "lock", "x", "--ttl", "5", "--", "true"]),
        "--ttl",
    );
    assert_eq!(status, 2);
}

#[test]
fn the_default_url_is_the_runtime_dir() {
    let env = Env::new();
    let runtime = env.path("runtime");
    std::fs::create_dir(&runtime).unwrap();
    env.tooz()
        .env_remove("TOOZ_URL")
        .env("XDG_RUNTIME_DIR", &runtime)
        .args(["group", "create", "here"])
        .assert()
        .success();
    assert!(runtime.join("tooz").join("groups").is_dir());
    env.tooz()
        .env_remove("TOOZ_URL")
        .env("XDG_RUNTIME_DIR", &runtime)
        .args(["group", "list"])
        .assert()
        .success()
        .stdout("here\n");
    // The member id defaults to <hostname>-<pid>.
    let out = env
        .tooz()
        .args([
            "lock",
            "m",
            "--",
            "sh",
            "-c",
            r#""$TOOZ_BIN" lock m --no-wait -- true"#,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75));
    let err = stderr_of(&out);
    let holder = err
        .strip_prefix("tooz: lock m is held (by ")
        .and_then(|rest| rest.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("{err}"));
    let (host, pid) = holder.rsplit_once('-').unwrap();
    assert!(!host.is_empty() && pid.parse::<u32>().is_ok(), "{holder}");
}

#[test]
fn ttl_is_accepted() {
    let env = Env::new();
    env.tooz()
        .args(["lock", "t", "--ttl", "30", "--", "true"])
        .assert()
        .success();
}

/// zake's state lives in one process: every command that coordinates with other processes
/// refuses it, saying why, rather than coordinating with nobody; `--help` does not offer it.
#[test]
fn drivers_local_to_one_process_are_refused() {
    let env = Env::new();
    let commands: &[&[&str]] = &[
        &["lock", "t", "--", "true"],
        &["elect", "g", "--", "true"],
        &["group", "list"],
        &["group", "join", "g", "--", "true"],
        &["leader", "g"],
        &["partition", "g", "k"],
    ];
    for args in commands {
        for url in ["zake://", "memory://"] {
            let mut cmd = env.tooz();
            cmd.args(["--url", url]).args(*args);
            let status = one_line_error(&mut cmd, "keeps its state inside one process");
            assert!(status == 1 || status == 125, "{args:?}: {status}");
        }
    }
    let out = env.tooz().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(!help.contains("zake"), "{help}");
}

#[test]
fn completions_and_man_pages() {
    let env = Env::new();
    env.tooz()
        .args(["completions", "bash"])
        .assert()
        .success()
        .stdout(contains("_tooz()").and(contains("--kill-after")));
    env.tooz()
        .args(["completions", "zsh"])
        .assert()
        .success()
        .stdout(contains("#compdef tooz"));
    env.tooz()
        .args(["completions", "fish"])
        .assert()
        .success()
        .stdout(contains("complete -c tooz"));
    env.tooz().arg("man").assert().success().stdout(
        contains(".TH tooz")
            .and(contains("EXIT STATUS"))
            .and(contains("75")),
    );
    env.tooz()
        .args(["man", "lock"])
        .assert()
        .success()
        .stdout(contains(".TH tooz-lock").and(contains("TOOZ_FENCING_TOKEN")));
    env.tooz()
        .args(["man", "group", "watch"])
        .assert()
        .success()
        .stdout(contains("tooz-group-watch"));
    env.tooz().args(["man", "nope"]).assert().code(2);
}

#[test]
fn drivers_table_and_json() {
    let env = Env::new();
    env.tooz()
        .arg("drivers")
        .assert()
        .success()
        .stdout(contains("file").and(contains("zake, memory")));
    let out = env.tooz().args(["drivers", "--json"]).output().unwrap();
    assert!(out.status.success());
    let drivers: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(drivers
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["scheme"] == "file" && d["availability"] == "available"));
}

/// `file:relative` and `file:./x` are rejected like `file://relative/dir`, instead of being
/// read as `/relative` and `/x`.
#[test]
fn file_urls_without_authority_are_rejected() {
    let env = Env::new();
    for url in ["file:relative", "file:./x", "file://relative/dir"] {
        let status = one_line_error(
            env.tooz()
                .current_dir(env.dir.path())
                .args(["--url", url, "group", "create", "g"]),
            "absolute path",
        );
        assert_eq!(status, 1, "{url}");
        let out = env
            .tooz()
            .args(["--url", url, "group", "list"])
            .output()
            .unwrap();
        assert!(
            stderr_of(&out).contains(url),
            "the URL as given: {}",
            stderr_of(&out)
        );
    }
    assert!(!env.path("relative").exists() && !env.path("x").exists());
    assert!(!std::path::Path::new("/relative").exists());
}

/// Reading a store that does not exist answers from nothing and creates no directory, with a
/// --url or the default directory.
#[test]
fn read_only_commands_create_nothing() {
    let env = Env::new();
    let missing = env.path("missing").join("deep");
    let url = format!("file://{}", missing.display());
    env.tooz()
        .args(["--url", &url, "group", "list"])
        .assert()
        .success()
        .stdout("");
    env.tooz()
        .args(["--url", &url, "--json", "group", "list"])
        .assert()
        .success()
        .stdout("[]\n");
    let reads: &[&[&str]] = &[
        &["group", "members", "g"],
        &["group", "watch", "g"],
        &["leader", "g"],
        &["partition", "g", "k"],
    ];
    for args in reads {
        let status = one_line_error(
            env.tooz().args(["--url", &url]).args(*args),
            "group g does not exist",
        );
        assert_eq!(status, 1, "{args:?}");
    }
    assert!(!env.path("missing").exists(), "a read created the store");

    let runtime = env.path("runtime");
    std::fs::create_dir(&runtime).unwrap();
    env.tooz()
        .env_remove("TOOZ_URL")
        .env("XDG_RUNTIME_DIR", &runtime)
        .args(["group", "list"])
        .assert()
        .success();
    assert!(
        !runtime.join("tooz").exists(),
        "a read created the default store"
    );
}

/// Flags and URL options take the same durations: `1h` works in both.
#[test]
fn one_duration_grammar_for_flags_and_url_options() {
    let env = Env::new();
    let url = format!("{}?timeout=1h&lock_timeout=2m", env.url);
    env.tooz()
        .args([
            "--url",
            &url,
            "lock",
            "d",
            "--timeout",
            "1h",
            "--kill-after",
            "250ms",
        ])
        .args(["--", "true"])
        .assert()
        .success();
    for bad in ["soon", "-1", "5x"] {
        let url = format!("{}?timeout={bad}", env.url);
        let status = one_line_error(
            env.tooz().args(["--url", &url, "group", "list"]),
            "`timeout`",
        );
        assert_eq!(status, 1);
        let status = one_line_error(
            env.tooz()
                .args(["lock", "d", "--timeout", bad, "--", "true"]),
            "--timeout",
        );
        assert_eq!(status, 2);
    }
}

/// `leader` and `partition` agree: a missing group is an error; an empty one has no leader
/// and owns nothing (documented empty results).
#[test]
fn leader_and_partition_answer_alike() {
    let env = Env::new();
    env.tooz()
        .args(["group", "create", "other"])
        .assert()
        .success();
    for args in [&["leader", "nog"][..], &["partition", "nog", "k"]] {
        let status = one_line_error(env.tooz().args(args), "group nog does not exist");
        assert_eq!(status, 1, "{args:?}");
    }
    env.tooz()
        .args(["group", "create", "empty"])
        .assert()
        .success();
    env.tooz()
        .args(["leader", "empty"])
        .assert()
        .success()
        .stdout("");
    env.tooz()
        .args(["partition", "empty", "k"])
        .assert()
        .success()
        .stdout("");
    let out = env
        .tooz()
        .args(["--json", "leader", "empty"])
        .output()
        .unwrap();
    let leader: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(leader["leader"], serde_json::Value::Null);
    let out = env
        .tooz()
        .args(["--json", "partition", "empty", "k"])
        .output()
        .unwrap();
    let placed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(placed["owners"], serde_json::json!([]));
}

/// -v/-vv and TOOZ_LOG/RUST_LOG show the library's spans and events on stderr; nothing is
/// logged by default; a bad filter is a usage error.
#[test]
fn logs_show_the_librarys_spans_and_events() {
    let env = Env::new();
    env.tooz().args(["group", "create", "g"]).assert().success();
    let quiet = env.tooz().args(["group", "list"]).output().unwrap();
    assert_eq!(stderr_of(&quiet), "");
    let out = env.tooz().args(["-vv", "group", "list"]).output().unwrap();
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("tooz.start"), "no span: {err}");
    assert!(err.contains("coordinator started"), "no event: {err}");
    for variable in ["TOOZ_LOG", "RUST_LOG"] {
        let out = env
            .tooz()
            .env(variable, "tooz=debug")
            .args(["group", "list"])
            .output()
            .unwrap();
        assert!(
            stderr_of(&out).contains("coordinator started"),
            "{variable}: {}",
            stderr_of(&out)
        );
    }
    let status = one_line_error(
        env.tooz().env("TOOZ_LOG", "tooz=[").args(["group", "list"]),
        "TOOZ_LOG",
    );
    assert_eq!(status, 2);
}

/// The smaller points: clap's tips kept, empty names are usage errors quoted as '', a header
/// row for `drivers`, each completion shell on its own help line.
#[test]
fn usage_errors_keep_tips_and_names_must_not_be_empty() {
    let env = Env::new();
    one_line_error(
        env.tooz()
            .args(["lock", "x", "--tiemout", "3", "--", "true"]),
        "tip: a similar argument exists: '--timeout'",
    );
    for args in [
        &["lock", "", "--", "true"][..],
        &["elect", "", "--", "true"],
        &["group", "create", ""],
        &["leader", ""],
        &["partition", "", "k"],
    ] {
        let status = one_line_error(env.tooz().args(args), "invalid value '' for");
        assert_eq!(status, 2, "{args:?}");
    }
    let out = env.tooz().arg("drivers").output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("DRIVER, ALIASES"), "{table}");
    let out = env.tooz().args(["completions", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for shell in ["bash", "zsh", "fish"] {
        let line = help
            .lines()
            .find(|l| l.starts_with(&format!("{shell}:")))
            .unwrap_or_else(|| panic!("no {shell} line: {help}"));
        assert_eq!(line.matches("tooz completions").count(), 1, "{line}");
    }
}
