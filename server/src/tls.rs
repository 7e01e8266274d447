//! The server's TLS: a certificate and key from files, or a self-signed pair
//! generated for local use (the certificate written to disk, with its path
//! printed, so clients can trust it as their CA file; the key stays in memory).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Builds the acceptor; returns it and the certificate file in use. With
/// `client_ca`, clients must present a certificate signed by that CA (mutual TLS).
pub fn acceptor(
    cert: Option<&Path>,
    key: Option<&Path>,
    client_ca: Option<&Path>,
) -> Result<(TlsAcceptor, PathBuf), String> {
    let (cert_file, chain, key) = match (cert, key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect())
                .map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("cannot read {}: {e}", key.display()))?;
            (cert.to_path_buf(), chain, key)
        }
        (None, None) => self_signed()?,
        _ => return Err("--cert and --key go together".into()),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_file_iter(path).map_err(|e| format!("cannot read {}: {e}", path.display()))? {
                roots
                    .add(ca.map_err(|e| format!("cannot read {}: {e}", path.display()))?)
                    .map_err(|e| e.to_string())?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| e.to_string())?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| format!("certificate and key do not fit: {e}"))?;
    Ok((TlsAcceptor::from(Arc::new(config)), cert_file))
}

/// Prefix of the directories holding self-signed certificates, followed by the server's process id.
const CERT_DIR_PREFIX: &str = "longconn-server-";

/// A certificate for localhost, 127.0.0.1 and ::1: its file (in a directory
/// of this process's own), the certificate, and the key (never written).
fn self_signed() -> Result<(PathBuf, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let pair = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
    remove_stale_cert_dirs();
    let dir = std::env::temp_dir().join(format!("{CERT_DIR_PREFIX}{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let cert_file = dir.join("cert.pem");
    std::fs::write(&cert_file, pair.cert.pem()).map_err(|e| format!("cannot write {}: {e}", cert_file.display()))?;
    let key = PrivateKeyDer::try_from(pair.signing_key.serialize_der()).map_err(|e| e.to_string())?;
    Ok((cert_file, vec![pair.cert.der().clone()], key))
}

/// Removes the certificate directories of servers that are no longer
/// running (killed servers cannot remove their own). Only where /proc shows
/// which processes exist.
fn remove_stale_cert_dirs() {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(CERT_DIR_PREFIX)) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !proc.join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
