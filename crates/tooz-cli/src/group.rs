//! `tooz group list | create | delete | members | join | leave | watch`.

use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use serde_json::json;
use tooz::{Capabilities, Coordinator, GroupEvent, Value};

use crate::child::{self, Lease, Signals};
use crate::cli::{Global, GroupCommand, JoinArgs};
use crate::connect;
use crate::exit::{self, Failure, Outcome};
use crate::membership::Membership;
use crate::names::{self, hex};
use crate::output::{self, Style};

/// Runs a `tooz group` command.
pub async fn run(global: &Global, command: &GroupCommand) -> Outcome {
    if let GroupCommand::Leave { .. } = command {
        if global.member.is_none() {
            return Err(Failure::usage(
                "group leave needs --member ID: the member to remove",
            ));
        }
    }
    let coord = match command {
        GroupCommand::List | GroupCommand::Members { .. } | GroupCommand::Watch { .. } => {
            match connect::reader(global).await? {
                Some(coord) => coord,
                // Reading a store that does not exist must not create it.
                None => return read_nothing(global, command),
            }
        }
        _ => connect::coordinator(global).await?,
    };
    let result = match command {
        GroupCommand::List => list(global, &coord).await,
        GroupCommand::Create { group } => create(global, &coord, group).await,
        GroupCommand::Delete { group } => delete(global, &coord, group).await,
        GroupCommand::Members { group, caps } => members(global, &coord, group, *caps).await,
        GroupCommand::Join(args) => join(global, &coord, args).await,
        GroupCommand::Leave { group } => leave(global, &coord, group).await,
        GroupCommand::Watch { group } => watch(global, &coord, group).await,
    };
    connect::stop(&coord).await;
    result
}

async fn list(global: &Global, coord: &Coordinator) -> Outcome {
    let groups = coord.get_groups().await?;
    if global.json {
        let list: Vec<_> = groups.iter().map(names::json).collect();
        output::json(&json!(list))?;
    } else {
        names::print_lines(&groups)?;
    }
    Ok(0)
}

/// A read of a store that does not exist: no groups, and so no such group.
fn read_nothing(global: &Global, command: &GroupCommand) -> Outcome {
    match command {
        GroupCommand::Members { group, .. } | GroupCommand::Watch { group } => {
            Err(connect::no_such_group(group))
        }
        _ => {
            if global.json {
                output::json(&json!([]))?;
            }
            Ok(0)
        }
    }
}

async fn create(global: &Global, coord: &Coordinator, group: &str) -> Outcome {
    coord.create_group(group).await?;
    if global.json {
        output::json(&json!({ "group": group, "created": true }))?;
    }
    Ok(0)
}

async fn delete(global: &Global, coord: &Coordinator, group: &str) -> Outcome {
    coord.delete_group(group).await?;
    if global.json {
        output::json(&json!({ "group": group, "deleted": true }))?;
    }
    Ok(0)
}

async fn members(global: &Global, coord: &Coordinator, group: &str, caps: bool) -> Outcome {
    let members = coord.get_members_with_capabilities(group).await?;
    if global.json {
        let list: Vec<_> = members
            .iter()
            .map(|(id, c)| match caps {
                true => json!({ "member": names::json(id), "capabilities": to_json(c.value()) }),
                false => names::json(id),
            })
            .collect();
        output::json(&json!(list))?;
    } else if caps {
        let rows: Vec<Vec<String>> = members
            .iter()
            .map(|(id, c)| vec![id.to_string(), to_text(c.value())])
            .collect();
        output::print(&output::table(&["MEMBER", "CAPABILITIES"], &rows))?;
    } else {
        names::print_lines(members.keys())?;
    }
    Ok(0)
}

async fn join(global: &Global, coord: &Coordinator, args: &JoinArgs) -> Outcome {
    let group = args.group.as_str();
    let me = coord.member_id().clone();
    coord.join_group_create(group, capabilities(args)).await?;
    let lost = Membership::watch(coord, group).await?.lost();
    if !args.command.is_empty() {
        let mut signals = Signals::forwarded()?;
        let env = [
            ("TOOZ_GROUP", group.into()),
            ("TOOZ_MEMBER", names::env(&me)),
        ];
        let lease = Lease::none();
        return child::run(
            &args.command,
            &env,
            args.kill_after,
            lost,
            &lease,
            &mut signals,
        )
        .await?
        .outcome();
    }
    let mut signals = Signals::stopping()?;
    if global.json {
        let member = names::json(&me);
        output::json(&json!({ "event": "joined", "group": group, "member": member }))?;
    } else if output::stderr_is_tty() {
        let style = Style::stderr();
        eprintln!(
            "joined {} as {}; Ctrl-C to leave",
            style.bold(group),
            style.bold(&me.to_string())
        );
    }
    tokio::select! {
        reason = lost => Err(Failure::new(exit::LOST, reason)),
        _ = signals.recv() => Ok(0),
    }
}

async fn leave(global: &Global, coord: &Coordinator, group: &str) -> Outcome {
    coord.leave_group(group).await?;
    if global.json {
        let member = names::json(coord.member_id());
        output::json(&json!({ "group": group, "member": member, "left": true }))?;
    }
    Ok(0)
}

async fn watch(global: &Global, coord: &Coordinator, group: &str) -> Outcome {
    let mut signals = Signals::stopping()?;
    let mut events = coord.watch_group(group).await?;
    let members = coord.get_members(group).await?;
    if global.json {
        let list: Vec<_> = members.iter().map(names::json).collect();
        output::json(&json!({ "event": "watching", "group": group, "members": list }))?;
    } else if output::stderr_is_tty() {
        let names: Vec<String> = members.iter().map(|m| m.to_string()).collect();
        eprintln!(
            "watching {group}: {} member(s){}{}; Ctrl-C to stop",
            names.len(),
            if names.is_empty() { "" } else { ": " },
            names.join(", ")
        );
    }
    let style = Style::stdout();
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            _ = signals.recv() => return Ok(0),
        };
        let Some(event) = event else {
            return Err(Failure::msg(format!("the watch of {group} ended")));
        };
        let (kind, member) = match &event {
            GroupEvent::Joined { member, .. } => ("joined", member),
            GroupEvent::Left { member, .. } => ("left", member),
            GroupEvent::LeaderElected { .. } => continue,
        };
        let now = SystemTime::now();
        if global.json {
            let time = now
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            let line = json!({
                "event": kind, "group": group, "member": names::json(member), "time": time,
            });
            output::json(&line)?;
        } else if output::stdout_is_tty() {
            let mark = match kind {
                "joined" => style.green("+ joined"),
                _ => style.red("- left  "),
            };
            let clock = style.dim(&local_clock(now));
            output::print(&format!("{clock} {mark} {member}\n"))?;
        } else {
            let mut line = format!("{kind}\t").into_bytes();
            line.extend_from_slice(member.as_bytes());
            line.push(b'\n');
            output::print_bytes(&line)?;
        }
    }
}

/// The capabilities given to `group join`.
fn capabilities(args: &JoinArgs) -> Capabilities {
    if let Some(text) = &args.caps {
        Capabilities::from(text.as_str())
    } else if let Some(value) = &args.caps_json {
        Capabilities::from(from_json(value))
    } else if let Some(weight) = args.weight {
        Capabilities::from(Value::Map(vec![(
            Value::from("weight"),
            Value::from(weight),
        )]))
    } else {
        Capabilities::none()
    }
}

/// A JSON value as the matching msgpack value.
pub fn from_json(value: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match value {
        J::Null => Value::Nil,
        J::Bool(b) => Value::from(*b),
        J::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Value::from(u),
            (_, Some(i), _) => Value::from(i),
            (_, _, f) => Value::from(f.unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::from(s.as_str()),
        J::Array(items) => Value::Array(items.iter().map(from_json).collect()),
        J::Object(map) => Value::Map(
            map.iter()
                .map(|(k, v)| (Value::from(k.as_str()), from_json(v)))
                .collect(),
        ),
    }
}

/// A msgpack value as JSON: byte strings that are UTF-8 become strings, others
/// `{"hex": "..."}`; map keys are rendered as text.
pub fn to_json(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::Nil => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => json!(u),
            (_, Some(i)) => json!(i),
            _ => J::Null,
        },
        Value::F32(f) => json!(f),
        Value::F64(f) => json!(f),
        Value::String(s) => match s.as_str() {
            Some(s) => json!(s),
            None => json!({ "hex": hex(s.as_bytes()) }),
        },
        Value::Binary(b) => match std::str::from_utf8(b) {
            Ok(s) => json!(s),
            Err(_) => json!({ "hex": hex(b) }),
        },
        Value::Array(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| (key_text(k), to_json(v)))
                .collect(),
        ),
        Value::Ext(kind, bytes) => json!({ "ext": kind, "hex": hex(bytes) }),
    }
}

fn key_text(key: &Value) -> String {
    match to_json(key) {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Capabilities for a table cell: text as it is, anything else as JSON, none as `-`.
pub fn to_text(value: &Value) -> String {
    match to_json(value) {
        serde_json::Value::Null => "-".into(),
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// `HH:MM:SS` in local time.
fn local_clock(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`, which outlives the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return String::from("--:--:--");
    }
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_through_msgpack() {
        let value = json!({"weight": 2, "zone": "a", "tags": [1, -2, 0.5, true, null]});
        assert_eq!(to_json(&from_json(&value)), value);
        assert_eq!(to_text(&Value::Binary(b"zone-a".to_vec())), "zone-a");
        assert_eq!(to_text(&Value::Nil), "-");
        assert_eq!(to_json(&Value::Binary(vec![0xff])), json!({"hex": "ff"}));
    }
}
