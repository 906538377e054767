//! `tooz completions SHELL` and `tooz man [COMMAND...]`, generated from the clap definitions.

use clap::CommandFactory;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

use crate::cli::Cli;
use crate::exit::{self, Failure, Outcome};
use crate::output;

/// Environment variables tooz reads.
const ENVIRONMENT: &[(&str, &str)] = &[
    ("TOOZ_URL", "Backend URL, as --url."),
    ("TOOZ_MEMBER", "Member id, as --member."),
    (
        "XDG_RUNTIME_DIR",
        "Without a URL, tooz uses the file driver in $XDG_RUNTIME_DIR/tooz (or <tmp>/tooz-<uid>).",
    ),
    ("NO_COLOR", "When set and not empty, no colours."),
    (
        "TOOZ_LOG, RUST_LOG",
        "Log filter (tracing-subscriber's EnvFilter syntax, e.g. debug or tooz=debug); TOOZ_LOG \
         first. Without either, -v, -vv and -vvv choose info, debug and trace.",
    ),
];

/// Environment variables CMD is given.
const CMD_ENVIRONMENT: &[(&str, &str)] = &[
    (
        "TOOZ_LOCK_NAME",
        "The lock held (tooz lock), as its exact bytes, as are all names here.",
    ),
    (
        "TOOZ_FENCING_TOKEN",
        "The fencing token: larger with every acquisition of the lock, or every new leader \
         (tooz lock, tooz elect). Hand it to the resource the lock protects.",
    ),
    (
        "TOOZ_GROUP",
        "The group led or joined (tooz elect, tooz group join).",
    ),
    (
        "TOOZ_MEMBER",
        "This member's id (tooz elect, tooz group join).",
    ),
    ("TOOZ_LEADER_TERM", "The leader's term (tooz elect)."),
];

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> Outcome {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "tooz", &mut script);
    output::print(&String::from_utf8_lossy(&script))?;
    Ok(0)
}

/// Prints the man page of `tooz` or of the subcommand named by `path`.
pub fn man(path: &[String]) -> Outcome {
    output::print(&page(path)?)?;
    Ok(0)
}

/// The man page of `tooz` or of the subcommand named by `path`, as roff.
pub fn page(path: &[String]) -> Result<String, Failure> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut current = &cmd;
    for name in path {
        current = current.find_subcommand(name).ok_or_else(|| {
            Failure::usage(format!(
                "no command `{}`; try `tooz man` for the list",
                path.join(" ")
            ))
        })?;
    }
    let wraps_cmd = matches!(
        path.iter().map(String::as_str).collect::<Vec<_>>()[..],
        [] | ["lock"] | ["elect"] | ["group", "join"]
    );
    let man = Man::new(current.clone())
        .source(format!("tooz {}", env!("CARGO_PKG_VERSION")))
        .manual("User Commands");
    let mut out = Vec::new();
    let render = |out: &mut Vec<u8>| -> std::io::Result<()> {
        man.render_title(out)?;
        man.render_name_section(out)?;
        man.render_synopsis_section(out)?;
        man.render_description_section(out)?;
        if current.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(out)?;
        }
        if current.has_subcommands() {
            man.render_subcommands_section(out)?;
        }
        let mut roff = Roff::default();
        if wraps_cmd {
            section(&mut roff, "EXIT STATUS", exit::STATUS_ROWS);
            section(&mut roff, "CMD ENVIRONMENT", CMD_ENVIRONMENT);
        }
        section(&mut roff, "ENVIRONMENT", ENVIRONMENT);
        roff.to_writer(out)?;
        if current.get_version().is_some() {
            man.render_version_section(out)?;
        }
        Ok(())
    };
    render(&mut out).map_err(|e| Failure::msg(format!("rendering the man page: {e}")))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn section(roff: &mut Roff, title: &str, rows: &[(&str, &str)]) {
    roff.control("SH", [title]);
    for (term, text) in rows {
        roff.control("TP", []);
        roff.text([bold(*term)]);
        roff.text([roman(*text)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_exist_for_every_command() {
        let top = page(&[]).unwrap();
        assert!(top.contains(".TH tooz"), "{top}");
        assert!(top.contains("EXIT STATUS"));
        let lock = page(&["lock".into()]).unwrap();
        assert!(
            lock.contains("tooz\\-lock") || lock.contains("tooz-lock"),
            "{lock}"
        );
        assert!(lock.contains("max\\-hold"), "{lock}");
        let join = page(&["group".into(), "join".into()]).unwrap();
        assert!(join.contains("TOOZ_GROUP"));
        assert_eq!(page(&["nope".into()]).unwrap_err().status, exit::USAGE);
    }
}
