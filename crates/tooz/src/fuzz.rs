//! Test-only proptest strategies for the decoders' "never panic, typed error" properties:
//! arbitrary bytes, and mutations (truncated, a byte flipped, bytes inserted or appended) of
//! a corpus of valid encodings, which reach far deeper into a decoder than noise does. Each
//! decoder's tests give the corpus (Python tooz's own encodings where there are any).

use proptest::prelude::*;

/// One mutation of one corpus entry.
pub(crate) fn mutated(corpus: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let entries = corpus.len();
    (
        0..entries,
        any::<prop::sample::Index>(),
        1..=u8::MAX,
        0..4u8,
        prop::collection::vec(any::<u8>(), 1..8),
    )
        .prop_map(move |(entry, at, flip, how, extra)| {
            let mut bytes = corpus[entry].clone();
            let at = if bytes.is_empty() {
                0
            } else {
                at.index(bytes.len())
            };
            match how {
                0 => bytes.truncate(at),
                1 if !bytes.is_empty() => bytes[at] ^= flip,
                2 => {
                    bytes.splice(at..at, extra);
                }
                _ => bytes.extend(extra),
            }
            bytes
        })
}

/// Arbitrary bytes or a mutated corpus entry.
pub(crate) fn garbage(corpus: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![prop::collection::vec(any::<u8>(), 0..256), mutated(corpus)]
}
