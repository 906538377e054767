//! Connecting, starting, stopping, heartbeats, options and the session.

use std::time::Duration;

use tooz::{Characteristic, ConnectionState, Coordinator, Error, GroupEvent};

use crate::ctx::{watch_events, Case, Ctx, Outcome};
use crate::{assert_err, cases};

pub fn cases() -> Vec<Case> {
    cases![
        Hosts => connection_error_bad_host,
        Nothing => stop_first,
        Nothing => get_started_status,
        Nothing => start_twice,
        Nothing => calls_before_start_fail,
        Nothing => heartbeat,
        Nothing => heartbeat_matches_characteristics,
        TimeoutBased => timeout,
        Nothing => unknown_option_is_rejected,
        Nothing => bad_option_value_is_rejected,
        Nothing => required_characteristics,
        Nothing => connection_state_follows_lifecycle,
        Nothing => restart_after_stop,
    ]
}

async fn connection_error_bad_host(ctx: Ctx) -> Outcome {
    // The URL's own scheme: `ctx.scheme` may carry a label telling URLs apart.
    let scheme = ctx.url.split("://").next().unwrap_or_default();
    let url = format!("{scheme}://localhost:1/f00");
    let coord = Coordinator::connect(&url, "m").await?;
    assert_err!(coord.start().await, Error::Connection(_));
    Ok(())
}

async fn stop_first(ctx: Ctx) -> Outcome {
    let coord = Coordinator::connect(&ctx.url, ctx.name("m")).await?;
    assert_err!(coord.stop().await, Error::NotStarted);
    Ok(())
}

async fn get_started_status(ctx: Ctx) -> Outcome {
    let coord = Coordinator::connect(&ctx.url, ctx.name("m")).await?;
    assert!(!coord.is_started());
    coord.start().await?;
    assert!(coord.is_started());
    coord.stop().await?;
    assert!(!coord.is_started());
    Ok(())
}

async fn start_twice(ctx: Ctx) -> Outcome {
    let coord = ctx.coord().await;
    assert_err!(coord.start().await, Error::AlreadyStarted);
    Ok(())
}

async fn calls_before_start_fail(ctx: Ctx) -> Outcome {
    let coord = Coordinator::connect(&ctx.url, ctx.name("m")).await?;
    assert_err!(coord.get_groups().await, Error::NotStarted);
    assert_err!(coord.lock("x").try_acquire().await, Error::NotStarted);
    assert_err!(coord.heartbeat().await, Error::NotStarted);
    Ok(())
}

async fn heartbeat(ctx: Ctx) -> Outcome {
    let coord = ctx.coord().await;
    for _ in 0..3 {
        coord.heartbeat().await?;
    }
    Ok(())
}

/// A timeout-based driver must ask for heartbeats; the others may not.
async fn heartbeat_matches_characteristics(ctx: Ctx) -> Outcome {
    let coord = ctx.coord().await;
    let period = coord.heartbeat().await?;
    let timeout_based = !ctx
        .characteristics
        .contains(Characteristic::NonTimeoutBased);
    if timeout_based {
        assert!(period.is_some(), "a timeout-based driver needs a heartbeat");
    }
    if let Some(period) = period {
        assert!(period > Duration::ZERO);
    }
    Ok(())
}

/// A member whose process vanishes without leaving is dropped once its timeout passes.
async fn timeout(ctx: Ctx) -> Outcome {
    let url = ctx.url_with("timeout=2&membership_timeout=2&lock_timeout=2");
    let group = ctx.name("group");
    let watcher = ctx.coord_at(&url, ctx.name("watcher")).await;
    watcher.create_group(group.clone()).await?;
    let gone = ctx.name("gone");
    let vanishing = ctx.coord_at(&url, gone.clone()).await;
    vanishing.join_group(group.clone(), ()).await?;
    watcher.watch_leave_group(group.clone(), |_| {}).await?;
    ctx.vanish(vanishing);
    let events = watch_events(&watcher, 1).await;
    assert_eq!(
        events,
        [GroupEvent::Left {
            group: group.clone(),
            member: gone.clone()
        }]
    );
    assert!(!watcher.get_members(group).await?.contains(&gone));
    Ok(())
}

async fn unknown_option_is_rejected(ctx: Ctx) -> Outcome {
    let err = Coordinator::connect(&ctx.url_with("tiemout=5"), "m")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownOption { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("tiemout") && msg.contains("timeout"), "{msg}");
    Ok(())
}

async fn bad_option_value_is_rejected(ctx: Ctx) -> Outcome {
    for query in ["timeout=soon", "timeout=-1", "timeout=0", "timeout=nan"] {
        let err = Coordinator::connect(&ctx.url_with(query), "m")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidOption { .. }), "{query}: {err}");
        assert!(err.to_string().contains("`timeout`"), "{err}");
    }
    Ok(())
}

async fn required_characteristics(ctx: Ctx) -> Outcome {
    let has = ctx.characteristics;
    Coordinator::builder(&ctx.url, "m")
        .require(has)
        .connect()
        .await?;
    let all: tooz::Characteristics = Characteristic::ALL.into_iter().collect();
    if has != all {
        let err = Coordinator::builder(&ctx.url, "m")
            .require(all)
            .connect()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DriverChosenPoorly { .. }), "{err}");
    }
    Ok(())
}

async fn connection_state_follows_lifecycle(ctx: Ctx) -> Outcome {
    let coord = Coordinator::connect(&ctx.url, ctx.name("m")).await?;
    assert_eq!(coord.connection_state(), ConnectionState::Disconnected);
    coord.start().await?;
    assert_eq!(coord.connection_state(), ConnectionState::Connected);
    coord.stop().await?;
    assert_eq!(coord.connection_state(), ConnectionState::Disconnected);
    Ok(())
}

async fn restart_after_stop(ctx: Ctx) -> Outcome {
    let coord = ctx.coord().await;
    coord.stop().await?;
    coord.start().await?;
    coord.get_groups().await.or_else(|e| match e {
        Error::NotImplemented { .. } => Ok(Default::default()),
        other => Err(other),
    })?;
    coord.stop().await?;
    Ok(())
}
