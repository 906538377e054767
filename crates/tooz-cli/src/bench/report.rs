//! The report: the machine, a table per backend (terminal or Markdown), and SVG bar charts of
//! tooz-rs against Python tooz and the floor.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use crate::output;

/// Marks around the generated section of the Markdown file.
pub const BEGIN: &str = "<!-- tooz bench: generated section begins; `bench/run` rewrites it -->";
/// End mark.
pub const END: &str = "<!-- tooz bench: generated section ends -->";

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").trim().to_string()
}

fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| first_line(&String::from_utf8_lossy(&out.stdout)))
}

/// The machine and versions.
pub fn machine(python: Option<&Path>) -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kib| (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0);
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|l| l.trim_matches('"').to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|k| k.trim().to_string());
    let python_version = python.and_then(|p| {
        command_line(
            &p.to_string_lossy(),
            &[
                "-c",
                "import sys, importlib.metadata as m; print(sys.version.split()[0], m.version('tooz'))",
            ],
        )
    });
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "memory_gib": memory_gib,
        "os": os,
        "kernel": kernel,
        "tooz_rs": env!("CARGO_PKG_VERSION"),
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "rustc": command_line("rustc", &["--version"]),
        "python_and_tooz": python_version,
        "load_average": std::fs::read_to_string("/proc/loadavg").ok().map(|l| {
            l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        }),
    })
}

/// What a row shows: a rate (higher is better) or a latency / size (lower is better).
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Rate,
    Ms,
    Kib,
}

/// (measure, field, label, kind)
const ROWS: &[(&str, &str, &str, Kind)] = &[
    (
        "lock_1",
        "per_s",
        "lock acquire+release, 1 client",
        Kind::Rate,
    ),
    (
        "lock_16",
        "per_s",
        "lock acquire+release, 16 clients on 16 locks",
        Kind::Rate,
    ),
    (
        "handoff",
        "acquisitions_per_s",
        "contended lock: acquisitions",
        Kind::Rate,
    ),
    ("handoff", "p50_ms", "contended hand-off p50", Kind::Ms),
    ("handoff", "p99_ms", "contended hand-off p99", Kind::Ms),
    ("handoff", "max_ms", "contended hand-off max", Kind::Ms),
    ("join_leave", "per_s", "join + leave", Kind::Rate),
    ("get_members_10", "p50_ms", "get_members p50", Kind::Ms),
    ("get_members_1000", "p50_ms", "get_members p50", Kind::Ms),
    ("get_members_10000", "p50_ms", "get_members p50", Kind::Ms),
    ("watch", "p50_ms", "watch: join seen, p50", Kind::Ms),
    ("watch", "p99_ms", "watch: join seen, p99", Kind::Ms),
    ("failover", "p50_ms", "election fail-over p50", Kind::Ms),
    ("failover", "max_ms", "election fail-over max", Kind::Ms),
    (
        "memory",
        "idle_coordinator_kib",
        "memory per idle coordinator",
        Kind::Kib,
    ),
    ("memory", "per_lock_kib", "memory per held lock", Kind::Kib),
    (
        "memory",
        "per_group_kib",
        "memory per joined group",
        Kind::Kib,
    ),
];

fn figure(side: &Value, measure: &str, field: &str) -> Result<f64, String> {
    let m = side.get(measure).unwrap_or(&Value::Null);
    if let Some(na) = side.get("na").or_else(|| m.get("na")) {
        return Err(na.as_str().unwrap_or("n/a").to_string());
    }
    match m.get(field) {
        Some(Value::Number(n)) => n.as_f64().ok_or_else(|| "n/a".into()),
        Some(Value::String(s)) => Err(s.trim_start_matches("n/a: ").to_string()),
        _ if m.is_null() => Err("not measured".into()),
        _ => Err("n/a".into()),
    }
}

/// Three significant digits, thousands separated.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".into();
    }
    let digits = if value.abs() >= 100.0 {
        0
    } else if value.abs() >= 10.0 {
        1
    } else if value.abs() >= 1.0 {
        2
    } else {
        3
    };
    let rounded = if value.abs() >= 1000.0 {
        let scale = 10f64.powi(value.abs().log10().floor() as i32 - 2);
        (value / scale).round() * scale
    } else {
        value
    };
    let text = format!("{rounded:.digits$}");
    let (int, frac) = text
        .split_once('.')
        .map_or((text.as_str(), None), |(i, f)| (i, Some(f)));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 && c != '-' {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{grouped}.{f}"),
        None => grouped,
    }
}

fn cell(value: &Result<f64, String>, kind: Kind) -> String {
    match value {
        Ok(v) => match kind {
            Kind::Rate => format!("{} /s", number(*v)),
            Kind::Ms => format!("{} ms", number(*v)),
            Kind::Kib => format!("{} KiB", number(*v)),
        },
        Err(_) => "n/a".into(),
    }
}

fn label(backend: &Value, measure: &str, text: &str) -> String {
    match measure.strip_prefix("get_members_") {
        Some(_) => {
            let members = backend["tooz_rs"][measure]["members"]
                .as_u64()
                .map(|n| {
                    let text = n.to_string();
                    if n >= 1000 {
                        number(n as f64)
                    } else {
                        text
                    }
                })
                .unwrap_or_else(|| {
                    let tier = measure.trim_start_matches("get_members_");
                    tier.parse::<f64>()
                        .map(number)
                        .unwrap_or_else(|_| tier.into())
                });
            format!("{text}, {members} members")
        }
        None => text.to_string(),
    }
}

/// How `a` compares with `b` (rates: a ÷ b; latencies: lower or higher).
fn ratio(a: &Result<f64, String>, b: &Result<f64, String>, kind: Kind) -> String {
    match (a, b) {
        (Ok(a), Ok(b)) if *a > 0.0 && *b > 0.0 => match kind {
            Kind::Rate => format!("{}×", number(a / b)),
            _ if b >= a => format!("{}× lower", number(b / a)),
            _ => format!("{}× higher", number(a / b)),
        },
        _ => String::new(),
    }
}

/// One backend's rows: label, tooz-rs, Python tooz, Python via tooz-rs, vs floor,
/// tooz-rs ÷ Python, Python via tooz-rs ÷ Python.
fn rows(backend: &Value) -> Vec<Vec<String>> {
    let floor = &backend["floor"];
    let floor_rate = floor["per_s"].as_f64();
    let floor_ms = floor["p50_ms"].as_f64();
    let mut out = Vec::new();
    for &(measure, field, text, kind) in ROWS {
        let ours = figure(&backend["tooz_rs"], measure, field);
        let theirs = figure(&backend["python"], measure, field);
        let via = figure(&backend["python_rs"], measure, field);
        let vs_floor = match (&ours, kind, floor_rate, floor_ms) {
            (Ok(v), Kind::Rate, Some(f), _) if measure != "handoff" => {
                format!("{} of floor rate", number(v / f))
            }
            (Ok(v), Kind::Ms, _, Some(f)) if f > 0.0 => format!("{} floor RTTs", number(v / f)),
            _ => String::new(),
        };
        out.push(vec![
            label(backend, measure, text),
            cell(&ours, kind),
            cell(&theirs, kind),
            cell(&via, kind),
            vs_floor,
            ratio(&ours, &theirs, kind),
            ratio(&via, &theirs, kind),
        ]);
    }
    let floor_text = match (floor["op"].as_str(), floor_rate, floor_ms) {
        (Some(_), Some(rate), Some(p50)) => {
            format!("{} /s, p50 {} ms", number(rate), number(p50))
        }
        _ => "n/a".into(),
    };
    let mut floor_row = vec![
        format!(
            "floor: {}",
            floor["op"].as_str().unwrap_or("raw round trip")
        ),
        floor_text,
    ];
    floor_row.resize(HEADER.len(), String::new());
    out.push(floor_row);
    out
}

const HEADER: [&str; 7] = [
    "measure",
    "tooz-rs",
    "Python tooz",
    "Python via tooz-rs",
    "vs floor",
    "tooz-rs vs Python",
    "via tooz-rs vs Python",
];

/// Why some cells are n/a, one line each.
fn reasons(backend: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (side, name) in [
        ("tooz_rs", "tooz-rs"),
        ("python", "Python tooz"),
        ("python_rs", "Python via tooz-rs"),
        ("floor", "floor"),
    ] {
        let value = &backend[side];
        if let Some(na) = value.get("na").and_then(Value::as_str) {
            out.push(format!("{name}: {na}"));
            continue;
        }
        if let Some(map) = value.as_object() {
            for (measure, figures) in map {
                if let Some(na) = figures.get("na").and_then(Value::as_str) {
                    out.push(format!("{name} {measure}: {na}"));
                }
            }
        }
    }
    out
}

/// Which Python tooz the column shows, when this backend's interpreter is not the run's
/// (one named by `TOOZ_BENCH_PYTHON_<SCHEME>`); `path` adds the interpreter's path.
fn python_note(backend: &Value, path: bool) -> Option<String> {
    let from = backend.get("python_from").filter(|f| f.is_object())?;
    let version = backend["python"]["tooz_version"]
        .as_str()
        .map(|v| format!("Python tooz {v}"))
        .unwrap_or_else(|| "Python tooz".into());
    let variable = from["variable"].as_str().unwrap_or("?");
    let shown = match (path, from["interpreter"].as_str()) {
        (true, Some(interpreter)) => format!("{variable}={interpreter}"),
        _ => format!("`{variable}`"),
    };
    Some(format!(
        "{version} in this table: its interpreter comes from {shown}"
    ))
}

fn title(backend: &Value) -> String {
    let server = backend["server"]
        .as_str()
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    format!(
        "{} {}{server}",
        backend["driver"].as_str().unwrap_or("?"),
        backend["url"].as_str().unwrap_or("?")
    )
}

/// The terminal report.
pub fn table(document: &Value) -> String {
    let style = output::Style::stdout();
    let mut out = String::new();
    for backend in document["backends"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "{}", style.bold(&title(backend)));
        out.push_str(&output::table(&HEADER, &rows(backend)));
        if let Some(note) = python_note(backend, true) {
            let _ = writeln!(out, "{}", style.dim(&format!("  {note}")));
        }
        for reason in reasons(backend) {
            let _ = writeln!(out, "{}", style.dim(&format!("  n/a: {reason}")));
        }
        out.push('\n');
    }
    out
}

fn machine_line(m: &Value) -> String {
    let text = |k: &str| m[k].as_str().unwrap_or("?").to_string();
    let python = m["python_and_tooz"]
        .as_str()
        .map(|p| {
            let mut parts = p.split_whitespace();
            format!(
                "Python {}, Python tooz {}",
                parts.next().unwrap_or("?"),
                parts.next().unwrap_or("?")
            )
        })
        .unwrap_or_else(|| "Python tooz not measured".into());
    format!(
        "{} cores ({}), {} GiB, {}, Linux {}, {}, tooz-rs {} ({} build), {}; load average at the end {}.",
        m["cores"].as_u64().unwrap_or(0),
        text("cpu"),
        m["memory_gib"].as_f64().unwrap_or(0.0),
        text("os"),
        text("kernel"),
        text("rustc"),
        text("tooz_rs"),
        text("build"),
        python,
        text("load_average"),
    )
}

/// Writes the generated section of `path` (between the marks, or appended) and one SVG per
/// backend in `<dir of path>/bench/`.
pub fn write_docs(path: &Path, document: &Value) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new(".")).join("bench");
    std::fs::create_dir_all(&dir)?;
    let mut section = String::new();
    section.push_str(BEGIN);
    section.push_str("\n\n## Side by side: tooz-rs, Python tooz and the floor (`bench/run`)\n\n");
    section.push_str(
        "Generated by `bench/run` (`tooz bench`): every backend measured in one run, with Python \
         tooz and the server's own round trip (the floor) measured in the same run. ",
    );
    let _ = writeln!(section, "Machine: {}\n", machine_line(&document["machine"]));
    section.push_str(
        "\"vs floor\": a rate as a fraction of the floor's operations per second, a latency in \
         floor operation times (the floor's `op` is named in its row: where it is one round trip, \
         as redis's PING, an acquire + release needing two round trips is at the floor at 0.5; \
         where it is the lock recipe's own acquire + release, as for memcached and etcd, at \
         1.0). Memory is the growth of the process's resident set divided by the count \
         (approximate). Hand-off: several clients loop on one lock; latency from the holder's \
         release call to the next holder's acquire returning. Watch: `join_group` called → the \
         event out of a watcher in another process (Python: a watcher calling `run_watchers()` \
         every 1 ms). Fail-over: the leader's coordinator stops → the waiting candidate's \
         campaign returns (Python: its `watch_elected_as_leader` callback, `run_watchers()` \
         every 1 ms). The floor is one connection doing one thing at a time: 16 clients on 16 \
         connections can exceed it. Memory growth below the allocator's granularity can come out \
         at 0 or slightly negative: read it as small. In get_members every member is a \
         coordinator of its own (connection, session, heartbeat), in one process. \
         \"Python via tooz-rs\": the Python harness of the Python tooz column run on \
         `rs+<scheme>://` URLs, i.e. Python tooz's API over the tooz-rs package \
         (crates/tooz-py, release build).\n\n",
    );
    for (index, backend) in document["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let driver = backend["driver"].as_str().unwrap_or("backend");
        let file = format!("{driver}-{index}.svg");
        std::fs::write(dir.join(&file), svg(backend))?;
        let server = backend["server"]
            .as_str()
            .map(|s| format!(", {s}"))
            .unwrap_or_default();
        let _ = writeln!(
            section,
            "### {driver} (`{}`{server})\n",
            backend["url"].as_str().unwrap_or("?")
        );
        let _ = writeln!(section, "| {} |", HEADER.join(" | "));
        let _ = writeln!(section, "|{}", "---|".repeat(HEADER.len()));
        for row in rows(backend) {
            let _ = writeln!(section, "| {} |", row.join(" | "));
        }
        section.push('\n');
        if let Some(note) = python_note(backend, false) {
            let _ = writeln!(section, "- {note}");
        }
        for reason in reasons(backend) {
            let _ = writeln!(section, "- n/a: {}", reason.replace('|', "/"));
        }
        let _ = writeln!(
            section,
            "\n![{driver}: tooz-rs, Python tooz, floor](bench/{file})\n"
        );
    }
    section.push_str(END);
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if e > b => {
            format!("{}{section}{}", &old[..b], &old[e + END.len()..])
        }
        _ => format!("{}\n\n{section}\n", old.trim_end()),
    };
    std::fs::write(path, new)
}

/// (measure, field, label) of the two charts.
const RATE_BARS: &[(&str, &str, &str)] = &[
    ("lock_1", "per_s", "lock acq+rel, 1 client"),
    ("lock_16", "per_s", "lock acq+rel, 16 clients"),
    ("handoff", "acquisitions_per_s", "contended acquisitions"),
    ("join_leave", "per_s", "join + leave"),
];
const LATENCY_BARS: &[(&str, &str, &str)] = &[
    ("handoff", "p50_ms", "hand-off p50"),
    ("get_members_1000", "p50_ms", "get_members (1,000) p50"),
    ("watch", "p50_ms", "watch p50"),
    ("failover", "p50_ms", "fail-over p50"),
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Two horizontal log-scale bar charts (rates, latencies): tooz-rs, Python tooz, floor.
pub fn svg(backend: &Value) -> String {
    let series = [
        ("tooz-rs", "#1f77b4"),
        ("Python tooz", "#ff7f0e"),
        ("floor", "#7f7f7f"),
    ];
    let value = |side: usize, measure: &str, field: &str, rate: bool| -> Option<f64> {
        match side {
            0 => figure(&backend["tooz_rs"], measure, field).ok(),
            1 => figure(&backend["python"], measure, field).ok(),
            _ if rate && (measure == "lock_1" || measure == "lock_16") => {
                backend["floor"]["per_s"].as_f64()
            }
            _ if !rate => backend["floor"]["p50_ms"].as_f64(),
            _ => None,
        }
        .filter(|v| *v > 0.0)
    };
    let (width, bar, gap, label_w, chart_w) = (960.0, 9.0, 10.0, 170.0, 250.0);
    let rows = RATE_BARS.len().max(LATENCY_BARS.len()) as f64;
    let height = 70.0 + rows * (3.0 * bar + gap) + 30.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"18\" font-size=\"14\" font-weight=\"bold\">{}</text>\n",
        escape(&title(backend))
    );
    for (i, (name, colour)) in series.iter().enumerate() {
        let x = 10.0 + i as f64 * 120.0;
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
             <text x=\"{}\" y=\"{}\">{name}</text>",
            height - 20.0,
            x + 14.0,
            height - 11.0
        );
    }
    for (panel, (bars, rate, heading)) in [
        (RATE_BARS, true, "per second, log scale (longer is better)"),
        (
            LATENCY_BARS,
            false,
            "milliseconds, log scale (shorter is better)",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let x0 = 10.0 + panel as f64 * (width / 2.0);
        let _ = writeln!(out, "<text x=\"{x0}\" y=\"40\">{heading}</text>");
        let all: Vec<f64> = bars
            .iter()
            .flat_map(|(m, f, _)| (0..3).filter_map(move |s| value(s, m, f, rate)))
            .collect();
        if all.is_empty() {
            continue;
        }
        let lo = all.iter().cloned().fold(f64::MAX, f64::min).log10().floor() - 0.3;
        let hi = all.iter().cloned().fold(f64::MIN, f64::max).log10().ceil();
        let scale = |v: f64| ((v.log10() - lo) / (hi - lo)).clamp(0.0, 1.0) * chart_w;
        for (row, (measure, field, text)) in bars.iter().enumerate() {
            let y = 55.0 + row as f64 * (3.0 * bar + gap);
            let _ = writeln!(
                out,
                "<text x=\"{x0}\" y=\"{}\">{}</text>",
                y + 1.5 * bar + 4.0,
                escape(text)
            );
            for (s, (_, colour)) in series.iter().enumerate() {
                let by = y + s as f64 * bar;
                match value(s, measure, field, rate) {
                    Some(v) => {
                        let w = scale(v).max(1.0);
                        let shown = if rate {
                            number(v)
                        } else {
                            format!("{} ms", number(v))
                        };
                        let _ = writeln!(
                            out,
                            "<rect x=\"{}\" y=\"{by}\" width=\"{w:.1}\" height=\"{}\" fill=\"{colour}\"/>\
                             <text x=\"{:.1}\" y=\"{}\" font-size=\"9\">{shown}</text>",
                            x0 + label_w,
                            bar - 1.0,
                            x0 + label_w + w + 3.0,
                            by + bar - 2.0
                        );
                    }
                    None if s < 2 => {
                        let _ = writeln!(
                            out,
                            "<text x=\"{}\" y=\"{}\" font-size=\"9\" fill=\"#999\">n/a</text>",
                            x0 + label_w + 2.0,
                            by + bar - 2.0
                        );
                    }
                    None => {}
                }
            }
        }
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_have_three_digits() {
        assert_eq!(number(1_234_567.0), "1,230,000");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(0.01234), "0.012");
        assert_eq!(number(999.4), "999");
    }

    #[test]
    fn docs_section_is_replaced_between_marks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.md");
        std::fs::write(&path, "# B\n\nhand-written\n").unwrap();
        let doc = json!({"machine": {}, "backends": [{"driver": "zake", "url": "zake://",
            "tooz_rs": {"lock_1": {"per_s": 10.0}}, "floor": {"na": "none"},
            "python": {"na": "none"}}]});
        write_docs(&path, &doc).unwrap();
        write_docs(&path, &doc).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# B\n\nhand-written\n"));
        assert_eq!(text.matches(BEGIN).count(), 1);
        assert!(text.contains("| lock acquire+release, 1 client | 10.0 /s |"));
        assert!(dir.path().join("bench/zake-0.svg").exists());
    }
}
