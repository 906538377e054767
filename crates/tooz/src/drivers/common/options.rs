//! A driver's option list: the common options followed by its own.

use crate::url::{OptionSpec, COMMON_OPTIONS};

/// Number of options of a driver with `own` options of its own.
pub(crate) const fn count_with_common(own: &[OptionSpec]) -> usize {
    COMMON_OPTIONS.len() + own.len()
}

/// The common options followed by `own`, as a constant:
///
/// ```ignore
/// const OWN: &[OptionSpec] = &[/* ... */];
/// pub(crate) const OPTIONS: [OptionSpec; count_with_common(OWN)] = with_common(OWN);
/// ```
pub(crate) const fn with_common<const N: usize>(own: &[OptionSpec]) -> [OptionSpec; N] {
    assert!(
        N == COMMON_OPTIONS.len() + own.len(),
        "N must be count_with_common(own)"
    );
    let mut all = [COMMON_OPTIONS[0]; N];
    let mut i = 0;
    while i < COMMON_OPTIONS.len() {
        all[i] = COMMON_OPTIONS[i];
        i += 1;
    }
    let mut j = 0;
    while j < own.len() {
        all[COMMON_OPTIONS.len() + j] = own[j];
        j += 1;
    }
    all
}

/// The error for option `option` whose `value` (shortened) is not what is `expected`.
pub(crate) fn bad_option(option: &str, value: &str, expected: &str) -> crate::error::Error {
    crate::error::Error::InvalidOption {
        option: option.into(),
        value: value.chars().take(64).collect(),
        expected: expected.into(),
    }
}

/// True for a namespace the SQL drivers can use as a table-name prefix without quoting and
/// in lock names: a lower-case letter or `_`, then lower-case letters, digits and `_`, at
/// most 40 in all.
pub(crate) fn valid_namespace(ns: &str) -> bool {
    let mut chars = ns.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && ns.len() <= 40
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
