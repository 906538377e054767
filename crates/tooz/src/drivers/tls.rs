//! The TLS crypto provider shared by the drivers that speak TLS.
//!
//! Client libraries build their rustls configurations from the process's default provider.
//! The crate runs on ring; when a dependency also compiles aws-lc-rs in, rustls cannot pick a
//! default by itself, so the drivers install ring before their first handshake, unless the
//! application installed a provider of its own first.

/// Makes ring the process's default rustls provider if none is installed yet.
pub(crate) fn ensure_default_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // A concurrent install won the race: its provider is as good as ours.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
