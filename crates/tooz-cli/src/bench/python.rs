//! Python tooz, measured in the same run: `bench/python_bench.py` run by the given interpreter
//! (a venv with tooz and the backends' client libraries), printing one JSON object with the
//! same measure names. Bounded in time: the process is killed past its budget.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

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
