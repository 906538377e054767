//! Terminal output: TTY detection, colours, aligned tables, JSON, the waiting spinner, and
//! the one-line error report.

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::exit::Failure;

/// True if stdin is a terminal.
pub fn stdin_is_tty() -> bool {
    io::stdin().is_terminal()
}

/// True if stdout is a terminal.
pub fn stdout_is_tty() -> bool {
    io::stdout().is_terminal()
}

/// True if stderr is a terminal.
pub fn stderr_is_tty() -> bool {
    io::stderr().is_terminal()
}

fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Styling for one stream: on for a terminal unless NO_COLOR is set.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    on: bool,
}

impl Style {
    /// Styling for stdout.
    pub fn stdout() -> Self {
        Style {
            on: stdout_is_tty() && !no_color(),
        }
    }

    /// Styling for stderr.
    pub fn stderr() -> Self {
        Style {
            on: stderr_is_tty() && !no_color(),
        }
    }

    /// True when colours are on.
    pub fn is_on(self) -> bool {
        self.on
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// Bold text.
    pub fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }

    /// Dimmed text.
    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }

    /// Green text.
    pub fn green(self, text: &str) -> String {
        self.paint("32", text)
    }

    /// Red text.
    pub fn red(self, text: &str) -> String {
        self.paint("31", text)
    }
}

/// Writes `text` to stdout and flushes it (a closed pipe becomes a quiet failure).
pub fn print(text: &str) -> Result<(), Failure> {
    print_bytes(text.as_bytes())
}

/// Writes `bytes` to stdout and flushes them (a closed pipe becomes a quiet failure).
pub fn print_bytes(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

/// Writes one compact JSON document and a newline to stdout.
pub fn json(value: &serde_json::Value) -> Result<(), Failure> {
    print(&format!("{value}\n"))
}

/// Prints `tooz: <message>` on stderr: one line, whatever the message holds, with the
/// secrets of the URLs given scrubbed.
pub fn error_line(message: &str) {
    let message = crate::secrets::scrub(message);
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let style = Style::stderr();
    let _ = writeln!(
        io::stderr(),
        "{} {message}",
        style.red(&style.bold("tooz:"))
    );
}

/// Rows as a table for a terminal (bold header, aligned columns) or, for a pipe, as
/// tab-separated lines without header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    if !stdout_is_tty() {
        for row in rows {
            out.push_str(&row.join("\t"));
            out.push('\n');
        }
        return out;
    }
    let style = Style::stdout();
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>, lengths: Vec<usize>| {
        let mut text = String::new();
        for (i, (cell, len)) in cells.iter().zip(lengths).enumerate() {
            text.push_str(cell);
            if i + 1 < columns {
                text.push_str(&" ".repeat(widths[i] - len + 2));
            }
        }
        text.trim_end().to_string() + "\n"
    };
    out.push_str(&line(
        header.iter().map(|h| style.bold(h)).collect(),
        header.iter().map(|h| h.chars().count()).collect(),
    ));
    for row in rows {
        out.push_str(&line(
            row.clone(),
            row.iter().map(|c| c.chars().count()).collect(),
        ));
    }
    out
}

/// `3.4s`, `1m05s`, `2h03m`.
pub fn elapsed(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// A duration as given on the command line: `5s`, `0.25s`.
pub fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// A spinner with the time waited, on stderr while it is a terminal; erased when dropped.
pub struct Spinner {
    task: Option<JoinHandle<()>>,
}

impl Spinner {
    /// Starts spinning with `message` (nothing happens unless stderr is a terminal).
    pub fn start(message: String) -> Spinner {
        if !stderr_is_tty() {
            return Spinner { task: None };
        }
        let utf8 = ["LC_ALL", "LC_CTYPE", "LANG"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
            .is_some_and(|v| v.to_ascii_uppercase().contains("UTF-8"));
        let frames: Vec<char> = if utf8 {
            "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏".chars().collect()
        } else {
            "|/-\\".chars().collect()
        };
        let style = Style::stderr();
        let started = Instant::now();
        let task = tokio::spawn(async move {
            for frame in frames.iter().cycle() {
                let line = format!(
                    "\r\x1b[2K{} {message} {}",
                    style.bold(&frame.to_string()),
                    style.dim(&elapsed(started.elapsed()))
                );
                let _ = io::stderr().write_all(line.as_bytes());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Spinner { task: Some(task) }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = io::stderr().write_all(b"\r\x1b[2K");
        }
    }
}

/// Replaces the panic report with one line (a bug is still a bug, but no backtrace).
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        error_line(&format!("internal error: {what}{place}"));
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_is_short() {
        assert_eq!(elapsed(Duration::from_millis(3400)), "3.4s");
        assert_eq!(elapsed(Duration::from_secs(65)), "1m05s");
        assert_eq!(elapsed(Duration::from_secs(7380)), "2h03m");
    }

    #[test]
    fn seconds_as_given() {
        assert_eq!(seconds(Duration::from_secs(5)), "5s");
        assert_eq!(seconds(Duration::from_millis(250)), "0.25s");
    }
}
