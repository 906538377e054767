//! `tooz elect GROUP -- CMD...`: run CMD only while leader, and `tooz leader GROUP`.

use serde_json::json;
use tooz::{Coordinator, Error, Leadership};

use crate::child::{self, Lease, Signals};
use crate::cli::{ElectArgs, Global, Hold};
use crate::connect;
use crate::exit::{self, Failure, Outcome};
use crate::lock::{interrupted, max_hold};
use crate::names;
use crate::output::{self, Spinner, Style};

/// Runs `tooz elect`.
pub async fn run(global: &Global, args: &ElectArgs) -> Outcome {
    let coord = connect::coordinator(global).await?;
    let result = elected(&coord, args).await;
    connect::stop(&coord).await;
    result
}

async fn elected(coord: &Coordinator, args: &ElectArgs) -> Outcome {
    let mut signals = Signals::forwarded()?;
    let group = args.group.as_str();
    let waiting_for = format!("the leadership of {group}");
    let leadership = tokio::select! {
        leadership = campaign(coord, args) => leadership?,
        sig = signals.recv() => return Err(interrupted(sig, &waiting_for)),
    };
    let term = leadership.term().to_string();
    let env = [
        ("TOOZ_GROUP", group.into()),
        ("TOOZ_MEMBER", names::env(coord.member_id())),
        ("TOOZ_LEADER_TERM", term.clone().into()),
        ("TOOZ_FENCING_TOKEN", term.into()),
    ];
    let lost = lost(&leadership, group, &args.hold);
    let lease = Lease {
        what: format!("the leadership of {group}"),
        deadline: Box::new(|| child::deadline(leadership.lease(), leadership.confirmed_at())),
    };
    let ended = child::run(
        &args.command,
        &env,
        args.hold.kill_after,
        lost,
        &lease,
        &mut signals,
    )
    .await;
    drop(lease);
    let lost_late = leadership.lost_reason();
    if let Err(error) = leadership.resign().await {
        output::error_line(&format!("resigning the leadership of {group}: {error}"));
    }
    match (ended?, lost_late) {
        (child::Ended::Finished(_), Some(reason)) => Err(Failure::new(
            exit::LOST,
            format!("leadership of {group} lost ({reason}) as CMD ended"),
        )),
        (ended, _) => ended.outcome(),
    }
}

async fn campaign(coord: &Coordinator, args: &ElectArgs) -> Result<Leadership, Failure> {
    let group = args.group.as_str();
    // The group exists while anyone campaigns, so that `tooz leader` tells an empty group
    // from a missing one.
    match coord.create_group(group).await {
        Ok(()) | Err(Error::GroupAlreadyExist { .. } | Error::NotImplemented { .. }) => {}
        Err(error) => return Err(error.into()),
    }
    let leader = match coord.get_leader(group).await {
        Ok(Some(leader)) => format!(" (leader: {leader})"),
        Ok(None) => String::new(),
        Err(error) => return Err(error.into()),
    };
    if args.wait.no_wait {
        return match coord.try_campaign(group).await? {
            Some(leadership) => Ok(leadership),
            None => Err(Failure::new(
                exit::BUSY,
                format!("{group} has a leader{leader}"),
            )),
        };
    }
    let _spinner = Spinner::start(format!("waiting to lead {group}{leader}"));
    match args.wait.timeout {
        None => Ok(coord.campaign(group).await?),
        Some(timeout) => match tokio::time::timeout(timeout, coord.campaign(group)).await {
            Ok(leadership) => Ok(leadership?),
            Err(_) => Err(Failure::new(
                exit::BUSY,
                format!(
                    "not leader of {group} after --timeout {}{leader}",
                    output::seconds(timeout)
                ),
            )),
        },
    }
}

async fn lost(leadership: &Leadership, group: &str, hold: &Hold) -> String {
    tokio::select! {
        reason = leadership.lost() => format!("leadership of {group} lost: {reason}"),
        held = max_hold(hold.max_hold) => format!(
            "leader of {group} longer than --max-hold {}",
            output::seconds(held)
        ),
    }
}

/// Runs `tooz leader GROUP`: the leader, nothing (JSON null) when the group has none; a
/// failure when there is neither a leader nor the group, as for `tooz partition`.
pub async fn leader(global: &Global, group: &str) -> Outcome {
    let Some(coord) = connect::reader(global).await? else {
        return Err(connect::no_such_group(group));
    };
    // A campaign needs no group on every backend: only a group with no leader must exist.
    let leader = match coord.get_leader(group).await {
        Ok(None) => coord.get_members(group).await.map(|_| None),
        other => other,
    };
    connect::stop(&coord).await;
    let leader = leader?;
    if global.json {
        let leader = leader.as_ref().map(names::json);
        output::json(&json!({ "group": group, "leader": leader }))?;
    } else if let Some(leader) = leader {
        names::print_lines([&leader])?;
    } else if output::stdout_is_tty() {
        output::print(&format!("{}\n", Style::stdout().dim("(no leader)")))?;
    }
    Ok(0)
}
