//! `tooz drivers`: the registry as a table or JSON.

use serde_json::{json, Value};
use tooz::drivers::{Availability, DriverEntry};
use tooz::WatchKind;

use crate::cli::Global;
use crate::exit::Outcome;
use crate::output;

/// Runs `tooz drivers`.
pub fn run(global: &Global) -> Outcome {
    let entries = tooz::drivers::registry();
    if global.json {
        output::json(&json(&entries))?;
    } else {
        output::print(&table(&entries))?;
    }
    Ok(0)
}

fn availability(entry: &DriverEntry) -> &'static str {
    match entry.availability {
        Availability::Available => "available",
        Availability::NotCompiledIn => "not compiled in",
        Availability::NotImplementedYet => "not implemented yet",
    }
}

fn supported(entry: &DriverEntry) -> Vec<String> {
    let Some(facts) = entry.facts else {
        return Vec::new();
    };
    let mut parts: Vec<String> = facts
        .support
        .entries()
        .iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| name.to_string())
        .collect();
    match facts.support.watch {
        WatchKind::Push => parts.push("push".into()),
        WatchKind::Notified => parts.push("notified".into()),
        WatchKind::Poll | WatchKind::None => {}
    }
    parts
}

fn characteristics(entry: &DriverEntry) -> Vec<&'static str> {
    entry
        .facts
        .map(|f| f.characteristics.iter().map(|c| c.name()).collect())
        .unwrap_or_default()
}

/// One line per driver, then its characteristics and supported API parts indented below.
pub fn table(entries: &[DriverEntry]) -> String {
    let width = entries
        .iter()
        .map(|e| e.scheme.len() + e.aliases.iter().map(|a| a.len() + 2).sum::<usize>())
        .max()
        .unwrap_or(0);
    let width = width.max("DRIVER, ALIASES".len());
    let mut out = format!(
        "{:<width$}  {:<20} {}\n",
        "DRIVER, ALIASES", "AVAILABILITY", "SUMMARY (then characteristics, supported API)"
    );
    for entry in entries {
        let mut names = entry.scheme.to_string();
        for alias in entry.aliases {
            names.push_str(&format!(", {alias}"));
        }
        out.push_str(&format!(
            "{names:<width$}  {:<20} {}\n",
            availability(entry),
            entry.summary
        ));
        if entry.facts.is_some() {
            let pad = " ".repeat(width + 2);
            out.push_str(&format!(
                "{pad}characteristics: {}\n{pad}supports: {}\n",
                characteristics(entry).join(" "),
                supported(entry).join(" ")
            ));
        }
    }
    out
}

/// The registry as a JSON array.
pub fn json(entries: &[DriverEntry]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| {
                json!({
                    "scheme": e.scheme,
                    "aliases": e.aliases,
                    "feature": e.feature,
                    "summary": e.summary,
                    "availability": availability(e),
                    "characteristics": characteristics(e),
                    "supports": supported(e),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_is_listed() {
        let entries = tooz::drivers::registry();
        let text = table(&entries);
        for scheme in [
            "zookeeper",
            "kazoo",
            "zake",
            "memory",
            "memcached",
            "redis",
            "ipc",
            "file",
            "postgresql",
            "mysql",
            "etcd",
            "etcd3",
            "etcd3+http",
            "consul",
        ] {
            assert!(text.contains(scheme), "{scheme} missing:\n{text}");
        }
        assert!(text.contains("DISTRIBUTED_ACROSS_THREADS"));
        let parsed = json(&entries);
        let zake = parsed
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["scheme"] == "zake")
            .unwrap();
        assert_eq!(zake["availability"], "available");
        assert!(zake["supports"]
            .as_array()
            .unwrap()
            .contains(&json!("locks")));
    }
}
