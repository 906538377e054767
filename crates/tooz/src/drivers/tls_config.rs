//! A rustls client configuration from Python tooz's usual TLS options (CA file, client
//! certificate and key, whether to check the server's name), for the drivers that build
//! their own TLS connections (memcached, etcd's gateway).
//!
//! Python tooz's default contexts check the server's certificate chain but, unless asked,
//! not its name; the same here: the chain is always verified (against the CA file, or the
//! system's roots), the name only when asked.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::error::{Error, Result};

/// Where a client's TLS material is, and whether the server's name is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    /// CA bundle (PEM); the system's roots when absent.
    pub ca_cert: Option<PathBuf>,
    /// Client certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// Client key (PEM, unencrypted); read from `cert` when absent.
    pub key: Option<PathBuf>,
    /// Whether the server's name must match its certificate.
    pub check_hostname: bool,
}

fn tls_error(what: &str, path: Option<&Path>, error: impl std::fmt::Display) -> Error {
    let place = path
        .map(|p| format!(" {}", p.display()))
        .unwrap_or_default();
    Error::Connection(format!("TLS: {what}{place}: {error}"))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error("cannot read certificates from", Some(path), e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_error("cannot read certificates from", Some(path), e))?;
    if certs.is_empty() {
        return Err(tls_error("no certificate in", Some(path), "empty"));
    }
    Ok(certs)
}

/// Checks the chain; accepts a certificate whose only fault is that it names another host.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        // The chain is verified before the name: a name error means the chain is good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A rustls client configuration for `files` (see the module docs).
pub(crate) fn client_config(files: &TlsFiles) -> Result<rustls::ClientConfig> {
    super::tls::ensure_default_provider();
    let mut roots = rustls::RootCertStore::empty();
    match &files.ca_cert {
        Some(path) => {
            for cert in certificates(path)? {
                roots
                    .add(cert)
                    .map_err(|e| tls_error("a bad CA certificate in", Some(path), e))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(tls_error(
                    "no system CA certificates (give ca_cert)",
                    None,
                    "none found",
                ));
            }
        }
    }
    let verifier = WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| tls_error("cannot verify with these CAs", None, e))?;
    let builder = rustls::ClientConfig::builder();
    let builder = if files.check_hostname {
        builder.with_webpki_verifier(verifier)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)))
    };
    let config = match &files.cert {
        Some(cert) => {
            let key_file = files.key.as_deref().unwrap_or(cert);
            let key = PrivateKeyDer::from_pem_file(key_file)
                .map_err(|e| tls_error("cannot read a private key from", Some(key_file), e))?;
            builder
                .with_client_auth_cert(certificates(cert)?, key)
                .map_err(|e| tls_error("the client certificate", Some(cert), e))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}
