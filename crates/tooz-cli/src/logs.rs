//! Logs on stderr: the library's and the command's tracing spans and events, through
//! `tracing-subscriber` with an environment filter.
//!
//! The filter is `TOOZ_LOG`, else `RUST_LOG` (both in `EnvFilter` syntax, e.g. `debug` or
//! `tooz=debug,tooz::drivers::redis=trace`), else what `-v` asks: nothing by default, `info`
//! with `-v`, `debug` (and each span's duration as it closes) with `-vv`, `trace` with `-vvv`.

use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::EnvFilter;

use crate::exit::Failure;

/// The filter for `verbose` (`-v` counted), unless the environment gives one.
fn filter(verbose: u8) -> Result<Option<(EnvFilter, bool)>, Failure> {
    for variable in ["TOOZ_LOG", "RUST_LOG"] {
        if let Some(value) = std::env::var(variable)
            .ok()
            .filter(|v| !v.trim().is_empty())
        {
            let filter = EnvFilter::try_new(&value).map_err(|e| {
                Failure::usage(format!("{variable}={value:?} is not a log filter: {e}"))
            })?;
            let spans = value.contains("debug") || value.contains("trace");
            return Ok(Some((filter, spans)));
        }
    }
    let level = match verbose {
        0 => return Ok(None),
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    Ok(Some((EnvFilter::new(level), verbose >= 2)))
}

/// Installs the subscriber that `verbose` and the environment ask for (none by default).
pub fn init(verbose: u8) -> Result<(), Failure> {
    let Some((filter, spans)) = filter(verbose)? else {
        return Ok(());
    };
    let ansi = crate::output::Style::stderr().is_on();
    let events = if spans { FmtSpan::CLOSE } else { FmtSpan::NONE };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_span_events(events)
        .with_target(true)
        .try_init()
        .map_err(|e| Failure::msg(format!("cannot start the logs: {e}")))
}
