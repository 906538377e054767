//! TLS to the server (cargo feature `memcached-tls`): the shared client configuration
//! (`drivers/tls_config.rs`) from Python tooz's options, as a tokio-rustls connector.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::options::Tls;
use crate::drivers::tls_config::{client_config, TlsFiles};
use crate::error::{Error, Result};

/// A connector for `tls`, and the name the server is checked against.
pub(super) fn connector(tls: &Tls, host: &str) -> Result<(TlsConnector, ServerName<'static>)> {
    let config = client_config(&TlsFiles {
        ca_cert: tls.ca_cert.clone(),
        cert: tls.cert.clone(),
        key: tls.key.clone(),
        check_hostname: tls.check_hostname,
    })?;
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| Error::Connection(format!("memcached TLS: not a server name: {host}: {e}")))?;
    Ok((TlsConnector::from(Arc::new(config)), name))
}
