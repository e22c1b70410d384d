//! The SIP profiles' TLS certificates, checked before the switch starts.
//!
//! This module owns two things:
//!
//! - [`check`]: every `tls_cert`, `tls_key` and `tls_ca` a profile names
//!   must be readable PEM that rustls accepts (the key must go with the
//!   certificate); errors are [`ConfigError`]s at that setting's line.
//! - [`prepare`]: a profile with TLS on (the default) that names no
//!   certificate gets the switch's own: a self-signed certificate generated
//!   on first start into `<state_dir>/tls/` ([`CERT_FILE`], [`KEY_FILE`]),
//!   kept across restarts, for `localhost`, `127.0.0.1`, `::1`, the default
//!   domain and every profile address. Its path and SHA-256 fingerprint are
//!   logged, as is every configured certificate's, so phones can pin it.
//!   Delete the two files to get a new one.

use std::path::{Path, PathBuf};

use dialtone_sofia::tls::{self as stls, TlsFileError};

use crate::config::{quote_key, Config, ConfigError};

/// The generated certificate, relative to the state directory.
pub const CERT_FILE: &str = "tls/dialtone.crt";
/// The generated key, relative to the state directory.
pub const KEY_FILE: &str = "tls/dialtone.key";

fn field_error(config: &Config, profile: &str, e: TlsFileError) -> ConfigError {
    let field = format!("sip.profiles.{}.{}", quote_key(profile), e.which.key());
    config.error(&field, format!("{}: {}", e.path.display(), e.message))
}

/// Checks the TLS files the configuration names (not the generated one).
pub fn check(config: &Config) -> Result<(), ConfigError> {
    for p in &config.sip.profiles {
        if p.tls_bind.is_some() {
            if let (Some(cert), Some(key)) = (&p.tls_cert, &p.tls_key) {
                stls::server_config(cert, key).map_err(|e| field_error(config, &p.name, e))?;
            }
        }
        if let Some(ca) = &p.tls_ca {
            stls::client_config(Some(ca)).map_err(|e| field_error(config, &p.name, e))?;
        }
    }
    Ok(())
}

/// Gives every TLS profile without a certificate the generated one
/// (making it if needed), then checks every TLS file and logs each
/// listener's certificate and fingerprint.
pub fn prepare(config: &mut Config) -> Result<(), ConfigError> {
    check(config)?;
    let needs = config
        .sip
        .profiles
        .iter()
        .any(|p| p.tls_bind.is_some() && p.tls_cert.is_none());
    if needs {
        let cert = config.switch.state_dir.join(CERT_FILE);
        let key = config.switch.state_dir.join(KEY_FILE);
        if !cert.exists() || !key.exists() {
            let names = subject_names(config);
            generate(&cert, &key, &names).map_err(|m| {
                config.error(
                    "switch.state_dir",
                    format!("cannot create the TLS certificate {}: {m}", cert.display()),
                )
            })?;
            tracing::info!(cert = %cert.display(), names = ?names, "generated a self-signed TLS certificate");
        }
        stls::server_config(&cert, &key).map_err(|e| {
            config.error(
                "switch.state_dir",
                format!(
                    "the generated TLS certificate is unusable ({e}); delete {} and {} to \
                     generate a new one",
                    cert.display(),
                    key.display()
                ),
            )
        })?;
        for p in config.sip.profiles.iter_mut() {
            if p.tls_bind.is_some() && p.tls_cert.is_none() {
                p.tls_cert = Some(cert.clone());
                p.tls_key = Some(key.clone());
            }
        }
    }
    for p in &config.sip.profiles {
        if let (Some(bind), Some(cert)) = (p.tls_bind, &p.tls_cert) {
            let fingerprint =
                stls::fingerprint(cert).map_err(|e| field_error(config, &p.name, e))?;
            tracing::info!(
                profile = %p.name,
                %bind,
                cert = %cert.display(),
                sha256 = %fingerprint,
                "TLS certificate"
            );
        }
    }
    Ok(())
}

/// `localhost`, the loopback addresses, the default domain and every
/// specific profile address.
fn subject_names(config: &Config) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
        config.switch.default_domain.clone(),
    ];
    for p in &config.sip.profiles {
        for a in std::iter::once(p.bind).chain(p.tls_bind) {
            if !a.ip().is_unspecified() {
                names.push(a.ip().to_string());
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// Writes a new self-signed certificate and its key (mode 0600).
pub fn generate(cert: &Path, key: &Path, names: &[String]) -> Result<(), String> {
    for dir in [cert.parent(), key.parent()].into_iter().flatten() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Dialtone");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Dialtone self-signed");
    let pair = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let c = params.self_signed(&pair).map_err(|e| e.to_string())?;
    write_private(key, pair.serialize_pem().as_bytes())?;
    std::fs::write(cert, c.pem()).map_err(|e| format!("{}: {e}", cert.display()))?;
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The generated certificate's paths under `state_dir`.
pub fn generated_paths(state_dir: &Path) -> (PathBuf, PathBuf) {
    (state_dir.join(CERT_FILE), state_dir.join(KEY_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialtone_sofia::tls::TlsFile;

    #[test]
    fn a_generated_certificate_loads_and_has_a_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = generated_paths(dir.path());
        generate(
            &cert,
            &key,
            &["localhost".into(), "127.0.0.1".into(), "::1".into()],
        )
        .unwrap();
        assert!(stls::server_config(&cert, &key).is_ok());
        let fp = stls::fingerprint(&cert).unwrap();
        assert_eq!(fp.len(), 32 * 3 - 1, "{fp}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A key that does not go with the certificate names tls_key.
        let (cert2, key2) = generated_paths(&dir.path().join("other"));
        generate(&cert2, &key2, &["localhost".into()]).unwrap();
        let e = stls::server_config(&cert, &key2).unwrap_err();
        assert_eq!(e.which, TlsFile::Key, "{e}");
    }
}
