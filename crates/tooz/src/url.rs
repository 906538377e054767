//! Driver URLs: parsing, typed query options, and redaction of secrets.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};

/// The type of a URL query option, used to validate its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKind {
    /// Seconds as a number (`5`, `0.25`) or with a unit (`250ms`, `2s`, `1m`); must be > 0.
    Duration,
    /// `true`/`false`/`1`/`0`/`yes`/`no`.
    Bool,
    /// A non-negative integer.
    Integer,
    /// Any text.
    Text,
    /// Text that is a secret: never shown in errors, logs or `Debug`.
    Secret,
}

impl OptionKind {
    fn expected(self) -> &'static str {
        match self {
            OptionKind::Duration => {
                "a positive duration in seconds (e.g. `5`, `0.5`, `250ms`, `2m`, `1h`)"
            }
            OptionKind::Bool => "a boolean (`true` or `false`)",
            OptionKind::Integer => "a non-negative integer",
            OptionKind::Text | OptionKind::Secret => "text",
        }
    }
}

/// One accepted query option of a driver.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    /// The option name in the query string.
    pub name: &'static str,
    /// Its type.
    pub kind: OptionKind,
    /// One line of help.
    pub help: &'static str,
}

/// Options every driver accepts.
pub const COMMON_OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "timeout",
        kind: OptionKind::Duration,
        help: "session / operation timeout in seconds",
    },
    OptionSpec {
        name: "lock_timeout",
        kind: OptionKind::Duration,
        help: "lifetime of a lock that is not kept alive",
    },
    OptionSpec {
        name: "membership_timeout",
        kind: OptionKind::Duration,
        help: "lifetime of a membership that is not kept alive",
    },
    OptionSpec {
        name: "leader_timeout",
        kind: OptionKind::Duration,
        help: "lifetime of a leadership that is not kept alive",
    },
    OptionSpec {
        name: "operation_timeout",
        kind: OptionKind::Duration,
        help: "longest one call may take before it fails with a timeout (default: the session \
               timeout)",
    },
    OptionSpec {
        name: "namespace",
        kind: OptionKind::Text,
        help: "prefix under which every key is stored",
    },
    OptionSpec {
        name: "poll_interval",
        kind: OptionKind::Duration,
        help: "interval of the polling fallback where the backend cannot push changes",
    },
];

/// Longest duration accepted by a duration option: one year.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A parsed driver URL: scheme, address, credentials and validated options.
///
/// `Display` and `Debug` show the URL with its password and secret options replaced by `***`.
///
/// ```
/// use tooz::DriverUrl;
/// let url = DriverUrl::parse("redis://user:hunter2@127.0.0.1:6379?timeout=5").unwrap();
/// assert_eq!(url.scheme(), "redis");
/// assert_eq!(url.to_string(), "redis://user:***@127.0.0.1:6379?timeout=5");
/// assert!(!format!("{url:?}").contains("hunter2"));
/// ```
#[derive(Clone)]
pub struct DriverUrl {
    url: url::Url,
    query: Vec<(String, String)>,
    /// Every `host[:port]` of a comma-separated authority (`h1:1,h2:2`); empty otherwise.
    host_list: Vec<String>,
    /// The redacted URL as given, when `url` holds only the first host of a list.
    shown: Option<String>,
    /// Whether `//` followed the scheme as written (`file:relative` has none).
    authority: bool,
}

impl DriverUrl {
    /// Parses `raw` without checking options (that happens once the driver is known).
    ///
    /// An authority may list several hosts separated by commas (`zookeeper://h1:2181,h2:2181`):
    /// [`DriverUrl::host`] and [`DriverUrl::port`] then answer for the first one and
    /// [`DriverUrl::hosts`] lists them all.
    pub fn parse(raw: &str) -> Result<Self> {
        let (parsable, host_list) = split_host_list(raw);
        let url = url::Url::parse(&parsable).map_err(|e| Error::InvalidUrl {
            url: redact_raw(raw),
            reason: e.to_string(),
        })?;
        let query = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let authority = raw
            .split_once(':')
            .is_some_and(|(_, rest)| rest.starts_with("//"));
        let shown = (!host_list.is_empty() || !authority).then(|| redact_raw(raw));
        Ok(DriverUrl {
            url,
            query,
            host_list,
            shown,
            authority,
        })
    }

    /// `raw`, parsable or not, with its secrets (the password, and the values of options whose
    /// names say password, token or secret) replaced by `***`: what to show of a URL.
    ///
    /// ```
    /// let shown = tooz::DriverUrl::redact("redis://:p/w+x=y?z;@db:6379?sentinel_password=pw");
    /// assert_eq!(shown, "redis://:***@db:6379?sentinel_password=***");
    /// ```
    pub fn redact(raw: &str) -> String {
        redact_raw(raw)
    }

    /// Whether the URL was written with `//` after the scheme. `file:relative` and `file:./x`
    /// have none: the URL standard reads them as `/relative` and `/x`, which is never what was
    /// meant.
    pub fn has_authority(&self) -> bool {
        self.authority
    }

    /// Every `host[:port]` of the authority, as written: several for a comma-separated list,
    /// else the one host (with its port when given), or none.
    pub fn hosts(&self) -> Vec<String> {
        if !self.host_list.is_empty() {
            return self.host_list.clone();
        }
        match (self.host(), self.port()) {
            (Some(host), Some(port)) => vec![format!("{host}:{port}")],
            (Some(host), None) => vec![host.to_string()],
            _ => Vec::new(),
        }
    }

    /// The scheme, lower case (e.g. `etcd3+http`).
    pub fn scheme(&self) -> &str {
        self.url.scheme()
    }

    /// The host, if any.
    pub fn host(&self) -> Option<&str> {
        self.url.host_str().filter(|h| !h.is_empty())
    }

    /// The port, if given.
    pub fn port(&self) -> Option<u16> {
        self.url.port()
    }

    /// The percent-decoded path (e.g. the directory of the `file` driver).
    pub fn path(&self) -> String {
        percent_decode(self.url.path())
    }

    /// The user name, if any.
    pub fn username(&self) -> Option<String> {
        Some(percent_decode(self.url.username())).filter(|u| !u.is_empty())
    }

    /// The password, if any. Handle with care: never log it.
    pub fn password(&self) -> Option<String> {
        self.url.password().map(percent_decode)
    }

    /// The last value of the duration option `name`, unchecked: for the core's own options,
    /// which every driver's option list accepts and checks.
    pub(crate) fn duration_option(&self, name: &str) -> Option<Duration> {
        let (_, value) = self.query.iter().rev().find(|(key, _)| key == name)?;
        parse_duration(value)
    }

    /// Checks every query option against `accepted` and returns them typed.
    ///
    /// An unknown option or a value of the wrong type is an error naming the option.
    pub fn options(&self, driver: &'static str, accepted: &[OptionSpec]) -> Result<Options> {
        let mut values: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
        for (key, value) in &self.query {
            let spec =
                accepted
                    .iter()
                    .find(|s| s.name == key)
                    .ok_or_else(|| Error::UnknownOption {
                        option: key.clone(),
                        driver,
                        accepted: accepted
                            .iter()
                            .map(|s| s.name)
                            .collect::<Vec<_>>()
                            .join(", "),
                    })?;
            check_value(spec, value)?;
            values.entry(spec.name).or_default().push(value.clone());
        }
        Ok(Options { values })
    }
}

fn check_value(spec: &OptionSpec, value: &str) -> Result<()> {
    let ok = match spec.kind {
        OptionKind::Duration => parse_duration(value).is_some(),
        OptionKind::Bool => parse_bool(value).is_some(),
        OptionKind::Integer => value.parse::<u64>().is_ok(),
        OptionKind::Text | OptionKind::Secret => true,
    };
    if ok {
        return Ok(());
    }
    Err(Error::InvalidOption {
        option: spec.name.to_string(),
        value: if spec.kind == OptionKind::Secret || is_secret_name(spec.name) {
            "***".into()
        } else {
            value.chars().take(64).collect()
        },
        expected: spec.kind.expected().into(),
    })
}

/// A positive duration, as a URL option takes it: [`duration`] less zero.
fn parse_duration(value: &str) -> Option<Duration> {
    duration(value).filter(|d| !d.is_zero())
}

/// The one duration grammar of tooz, for URL options and the `tooz` command's flags alike:
/// a number of seconds (`5`, `0.5`), or a number with a unit: `ms`, `s`, `m` or `h`
/// (`250ms`, `2m`, `1h`); zero up to a year. `None` for anything else.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(tooz::duration("1h"), Some(Duration::from_secs(3600)));
/// assert_eq!(tooz::duration("250ms"), Some(Duration::from_millis(250)));
/// assert_eq!(tooz::duration("soon"), None);
/// ```
pub fn duration(value: &str) -> Option<Duration> {
    let value = value.trim();
    let (number, scale) = [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)]
        .iter()
        .find_map(|(unit, scale)| value.strip_suffix(unit).map(|n| (n, *scale)))
        .unwrap_or((value, 1.0));
    let seconds: f64 = number.trim().parse().ok()?;
    let seconds = seconds * scale;
    (seconds.is_finite() && seconds >= 0.0 && seconds <= MAX_DURATION.as_secs_f64())
        .then(|| Duration::from_secs_f64(seconds))
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "token", "secret", "passwd"]
        .iter()
        .any(|s| name.contains(s))
}

/// Redacts a URL string that may not even parse: the password part of the authority and the
/// values of query options whose names look secret.
///
/// A password may hold characters that end an authority (`/`, `?`, `#`) when it was not
/// percent-encoded, so the user information runs to the *last* `@`: whatever stands between
/// the first `:` after `scheme://` and that `@` is hidden (more than the password, in the odd
/// URL whose path or query holds an `@`, but never less).
pub(crate) fn redact_raw(raw: &str) -> String {
    let (mut out, rest) = match raw.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, after)) => match userinfo.split_once(':') {
                Some((user, _)) => (format!("{scheme}://{user}:***@"), after),
                None => (format!("{scheme}://{userinfo}@"), after),
            },
            None => (format!("{scheme}://"), rest),
        },
        None => (String::new(), raw),
    };
    let (head, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    out.push_str(head);
    if let Some(query) = query {
        let parts: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_name(k) => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&parts.join("&"));
    }
    out
}

/// Splits a comma-separated host list off the authority of `raw`: returns `raw` keeping only
/// the first host (so that it parses as a URL) and the list, or `raw` unchanged and no list.
fn split_host_list(raw: &str) -> (std::borrow::Cow<'_, str>, Vec<String>) {
    let Some(start) = raw.find("://").map(|i| i + 3) else {
        return (raw.into(), Vec::new());
    };
    let rest = &raw[start..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let hosts = &authority[host_start..];
    if !hosts.contains(',') {
        return (raw.into(), Vec::new());
    }
    let list: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(String::from)
        .collect();
    let first = list.first().map(String::as_str).unwrap_or("");
    let rebuilt = format!(
        "{}{first}{}",
        &raw[..start + host_start],
        &raw[start + end..]
    );
    (rebuilt.into(), list)
}

impl fmt::Display for DriverUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(shown) = &self.shown {
            return f.write_str(shown);
        }
        f.write_str(&redact_raw(self.url.as_str()))
    }
}

impl fmt::Debug for DriverUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DriverUrl({self})")
    }
}

/// The validated query options of a URL, read with typed getters.
///
/// Where an option is repeated, the getters return the last value (as tooz does) and
/// [`Options::all`] returns every value.
#[derive(Clone, Default)]
pub struct Options {
    values: BTreeMap<&'static str, Vec<String>>,
}

impl Options {
    /// The last value of a text option.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.values.get(name)?.last().map(String::as_str)
    }

    /// Every value of a repeated option, in order.
    pub fn all(&self, name: &str) -> &[String] {
        self.values.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// A duration option.
    pub fn duration(&self, name: &str) -> Option<Duration> {
        self.text(name).and_then(parse_duration)
    }

    /// A boolean option.
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.text(name).and_then(parse_bool)
    }

    /// An integer option.
    pub fn integer(&self, name: &str) -> Option<u64> {
        self.text(name).and_then(|v| v.parse().ok())
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (k, vs) in &self.values {
            for v in vs {
                if is_secret_name(k) {
                    map.entry(k, &"***");
                } else {
                    map.entry(k, v);
                }
            }
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[OptionSpec] = &[
        OptionSpec {
            name: "timeout",
            kind: OptionKind::Duration,
            help: "",
        },
        OptionSpec {
            name: "sentinel_password",
            kind: OptionKind::Secret,
            help: "",
        },
        OptionSpec {
            name: "ssl",
            kind: OptionKind::Bool,
            help: "",
        },
        OptionSpec {
            name: "fallback",
            kind: OptionKind::Text,
            help: "",
        },
    ];

    #[test]
    fn host_lists() {
        let url = DriverUrl::parse("zookeeper://u:pw@h1:2181,h2:2182,[::1]:2183/chroot?timeout=5")
            .unwrap();
        assert_eq!(url.hosts(), ["h1:2181", "h2:2182", "[::1]:2183"]);
        assert_eq!((url.host(), url.port()), (Some("h1"), Some(2181)));
        assert_eq!(url.path(), "/chroot");
        assert_eq!(url.password().as_deref(), Some("pw"));
        assert_eq!(
            url.to_string(),
            "zookeeper://u:***@h1:2181,h2:2182,[::1]:2183/chroot?timeout=5"
        );
        let one = DriverUrl::parse("zookeeper://h1:2181").unwrap();
        assert_eq!(one.hosts(), ["h1:2181"]);
        assert!(DriverUrl::parse("zake://").unwrap().hosts().is_empty());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(duration("0"), Some(Duration::ZERO));
        for bad in ["", "0", "-1", "abc", "nan", "inf", "1e30", "5x", "h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn unknown_option_names_the_accepted_ones() {
        let url = DriverUrl::parse("redis://h/?tiemout=5").unwrap();
        let err = url.options("redis", SPECS).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::UnknownOption { .. }), "{msg}");
        assert!(msg.contains("tiemout") && msg.contains("timeout, sentinel_password, ssl"));
    }

    #[test]
    fn bad_value_names_the_option() {
        let url = DriverUrl::parse("redis://h/?timeout=soon").unwrap();
        let msg = url.options("redis", SPECS).unwrap_err().to_string();
        assert!(msg.contains("`timeout`") && msg.contains("soon"), "{msg}");
        let url = DriverUrl::parse("redis://h/?ssl=maybe").unwrap();
        assert!(matches!(
            url.options("redis", SPECS),
            Err(Error::InvalidOption { .. })
        ));
    }

    #[test]
    fn repeated_options_keep_every_value_and_last_wins() {
        let url =
            DriverUrl::parse("redis://h/?fallback=a:1&fallback=b:2&timeout=1&timeout=3").unwrap();
        let opts = url.options("redis", SPECS).unwrap();
        assert_eq!(opts.all("fallback"), ["a:1", "b:2"]);
        assert_eq!(opts.duration("timeout"), Some(Duration::from_secs(3)));
        assert_eq!(opts.bool("ssl"), None);
    }

    #[test]
    fn secrets_never_shown() {
        let raw = "redis://admin:s3cr%40t@127.0.0.1:6379/0?sentinel_password=hunter2&timeout=5";
        let url = DriverUrl::parse(raw).unwrap();
        assert_eq!(url.password().as_deref(), Some("s3cr@t"));
        let opts = url.options("redis", SPECS).unwrap();
        for shown in [
            url.to_string(),
            format!("{url:?}"),
            format!("{opts:?}"),
            redact_raw(raw),
        ] {
            assert!(!shown.contains("s3cr"), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
        let bad = DriverUrl::parse("redis://admin:s3cret@[::1/x").unwrap_err();
        assert!(!bad.to_string().contains("s3cret"), "{bad}");
        // Characters that end an authority, in a password nobody percent-encoded.
        for password in ["p/w0rd", "p?w0rd", "p#w0rd", "p+w=0;rd", "p@w0rd"] {
            let raw = format!("redis://:{password}@host:6379/0?timeout=5");
            let shown = match DriverUrl::parse(&raw) {
                Ok(url) => url.to_string(),
                Err(error) => error.to_string(),
            };
            assert!(!shown.contains("w0rd"), "{shown}");
            assert!(!redact_raw(&raw).contains("w0rd"), "{raw}");
        }
        let bad = DriverUrl::parse("redis://h/?sentinel_password=").unwrap();
        let err = bad
            .options(
                "redis",
                &[OptionSpec {
                    name: "sentinel_password",
                    kind: OptionKind::Duration,
                    help: "",
                }],
            )
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }
}
