//! Python tooz, measured in the same run: `bench/python_bench.py` run by the given interpreter
//! (a venv with tooz and the backends' client libraries), printing one JSON object with the
//! same measure names. Bounded in time: the process is killed past its budget. A driver's URLs
//! can have an interpreter of their own (`TOOZ_BENCH_PYTHON_<SCHEME>`), for a driver that only
//! another Python tooz version has.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The environment variable naming the interpreter for `scheme`'s URLs:
/// `TOOZ_BENCH_PYTHON_` and the scheme upper-cased, every character but letters and digits
/// made `_` (`etcd3` → `TOOZ_BENCH_PYTHON_ETCD3`, `etcd3+http` → `TOOZ_BENCH_PYTHON_ETCD3_HTTP`).
pub fn scheme_variable(scheme: &str) -> String {
    let suffix: String = scheme
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("TOOZ_BENCH_PYTHON_{suffix}")
}

/// The interpreter for the driver `scheme`: the one its variable names (a Python tooz of
/// another version, say one that still has the driver), returned with the variable's name;
/// else `default` (`--python` / `TOOZ_BENCH_PYTHON`).
pub fn interpreter(default: Option<&Path>, scheme: &str) -> Option<(PathBuf, Option<String>)> {
    let variable = scheme_variable(scheme);
    match std::env::var_os(&variable).filter(|v| !v.is_empty()) {
        Some(path) => Some((PathBuf::from(path), Some(variable))),
        None => default.map(|p| (p.to_path_buf(), None)),
    }
}

/// Runs the Python side for `url`; `Err` says why there are no Python figures.
pub async fn run(python: &Path, script: &Path, url: &str, short: bool) -> Result<Value, String> {
    if !script.is_file() {
        return Err(format!("{} not found", script.display()));
    }
    let mut command = Command::new(python);
    command.arg(script).arg(url);
    if short {
        command.arg("--short");
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let budget = if short {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(240)
    };
    let deadline = Instant::now() + budget;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    let Some(status) = status else {
        return Err(format!("stopped after {} s", budget.as_secs()));
    };
    let last = out.lines().rev().find(|l| l.starts_with('{'));
    match last.map(serde_json::from_str::<Value>) {
        Some(Ok(value)) => Ok(value),
        _ => {
            let why = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            Err(format!("Python side failed ({status}): {why}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_variables() {
        assert_eq!(scheme_variable("etcd3"), "TOOZ_BENCH_PYTHON_ETCD3");
        assert_eq!(
            scheme_variable("etcd3+http"),
            "TOOZ_BENCH_PYTHON_ETCD3_HTTP"
        );
    }
}
