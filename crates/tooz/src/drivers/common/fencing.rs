//! Fencing tokens made of an epoch and a counter, for backends whose counter can be lost
//! (a restarted or failed-over server, an evicted key): the epoch, milliseconds since
//! [`EPOCH_BASE_MS`] when the counter is (re)made, keeps tokens increasing across such losses.

use crate::types::FencingToken;

/// Bits of a token that count acquisitions within one epoch.
pub(crate) const COUNTER_BITS: u32 = 22;
/// Largest counter value before the epoch must be bumped.
pub(crate) const COUNTER_LIMIT: u64 = (1 << COUNTER_BITS) - 1;
/// Epochs count milliseconds from 2020-01-01T00:00:00Z.
pub(crate) const EPOCH_BASE_MS: u64 = 1_577_836_800_000;

/// The token of acquisition `counter` within `epoch`.
pub(crate) fn token(epoch: u64, counter: u64) -> FencingToken {
    FencingToken((epoch << COUNTER_BITS) | (counter & COUNTER_LIMIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_order_by_epoch_then_counter() {
        assert!(token(1, COUNTER_LIMIT) < token(2, 1));
        assert!(token(5, 1) < token(5, 2));
        assert_eq!(token(0, 7), FencingToken(7));
    }
}
