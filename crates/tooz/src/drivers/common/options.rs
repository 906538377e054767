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
