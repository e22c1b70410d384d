//! TLS material for SIP over TLS: what this module owns is turning PEM
//! files into rustls configurations (the ring crypto provider) and naming
//! the file at fault when that fails.
//!
//! - [`server_config`]: a profile's listener certificate chain and key;
//! - [`client_config`]: how a profile verifies the servers it connects to
//!   (requests to `transport=tls` targets and TLS gateways). With a CA file
//!   (`tls_ca`) only that file's certificates are trusted; without one the
//!   bundled web PKI roots are. Verification is never switched off.
//! - [`fingerprint`]: the SHA-256 fingerprint of a certificate file, for
//!   the log line that tells an operator which certificate phones will see.
//!
//! The transports ([`crate::transport`]) use the configurations; nothing
//! else in the SIP core knows about TLS.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring::default_provider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// Which file a [`TlsFileError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFile {
    /// The certificate chain (`tls_cert`).
    Cert,
    /// The private key (`tls_key`).
    Key,
    /// The CA certificates for verifying servers (`tls_ca`).
    Ca,
}

impl TlsFile {
    /// The configuration key naming this file.
    pub fn key(self) -> &'static str {
        match self {
            TlsFile::Cert => "tls_cert",
            TlsFile::Key => "tls_key",
            TlsFile::Ca => "tls_ca",
        }
    }
}

/// A TLS file that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFileError {
    /// Which setting named the file.
    pub which: TlsFile,
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for TlsFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.which.key(),
            self.path.display(),
            self.message
        )
    }
}

impl std::error::Error for TlsFileError {}

fn err(which: TlsFile, path: &Path, message: impl Into<String>) -> TlsFileError {
    TlsFileError {
        which,
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn pem_error(e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(e) => format!("cannot read: {e}"),
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM section of the right kind".into(),
        other => format!("not valid PEM: {other:?}"),
    }
}

/// Reads every certificate of a PEM file (at least one).
pub fn read_certs(
    which: TlsFile,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    // Read first so that a missing file is reported as such.
    let bytes = std::fs::read(path).map_err(|e| err(which, path, format!("cannot read: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(which, path, pem_error(e)))?;
    if certs.is_empty() {
        return Err(err(
            which,
            path,
            "no certificate in it (want PEM `BEGIN CERTIFICATE` sections)",
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    let bytes =
        std::fs::read(path).map_err(|e| err(TlsFile::Key, path, format!("cannot read: {e}")))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => err(
            TlsFile::Key,
            path,
            "no private key in it (want PEM `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` \
             or `BEGIN EC PRIVATE KEY`)",
        ),
        e => err(TlsFile::Key, path, pem_error(e)),
    })
}

/// The server side of a profile's TLS listener.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsFileError> {
    let chain = read_certs(TlsFile::Cert, cert)?;
    let key_der = read_key(key)?;
    let config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| err(TlsFile::Cert, cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            err(
                TlsFile::Key,
                key,
                format!("does not go with {}: {e}", cert.display()),
            )
        })?;
    Ok(Arc::new(config))
}

/// The client side: servers are verified against `ca` when given, else
/// against the bundled web PKI roots.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsFileError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for c in read_certs(TlsFile::Ca, path)? {
                roots
                    .add(c)
                    .map_err(|e| err(TlsFile::Ca, path, format!("not a usable CA: {e}")))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsFileError {
            which: TlsFile::Ca,
            path: ca.map(Path::to_path_buf).unwrap_or_default(),
            message: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// SHA-256 of a certificate's DER, as colon-separated upper-case hex.
pub fn der_fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The SHA-256 fingerprint of the first certificate in a PEM file.
pub fn fingerprint(cert: &Path) -> Result<String, TlsFileError> {
    let certs = read_certs(TlsFile::Cert, cert)?;
    Ok(der_fingerprint(certs[0].as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_garbage_files_name_the_setting() {
        let dir = std::env::temp_dir().join(format!("dialtone-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "hello\n").unwrap();
        let e = server_config(&dir.join("nope.pem"), &junk).unwrap_err();
        assert_eq!(e.which, TlsFile::Cert);
        assert!(e.message.contains("cannot read"), "{e}");
        let e = server_config(&junk, &junk).unwrap_err();
        assert_eq!(e.which, TlsFile::Cert);
        assert!(e.to_string().starts_with("tls_cert "), "{e}");
        let e = client_config(Some(&junk)).unwrap_err();
        assert_eq!(e.which, TlsFile::Ca);
        assert!(client_config(None).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
