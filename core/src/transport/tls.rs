//! TLS for the client: rustls with the ring crypto provider, chosen
//! explicitly. Certificates are verified by default against the system's
//! root store; a CA file (PEM) replaces those roots (for private CAs), the
//! name checked can be overridden, a client certificate enables mutual TLS,
//! and verification can only be turned off with an option whose name says
//! it is dangerous (and which is logged on every connection).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::error::Error;
use crate::log::{log_at, Level};

/// TLS choices of a client; all off means: verify against the system roots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM file with the CA certificates to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// The name to verify the certificate for, instead of the URL's host.
    pub server_name: Option<String>,
    /// PEM certificate chain and private key, for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Accept any certificate. Only for tests against throwaway servers.
    pub dangerous_skip_verification: bool,
}

/// A connector built once per client from its settings.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
    settings: TlsSettings,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

impl Tls {
    /// Loads roots, CA file and client certificate; fails with a message naming the file.
    pub fn new(settings: &TlsSettings) -> Result<Tls, Error> {
        let invalid = |why: String| Error::InvalidArgument(why);
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format!("TLS setup failed: {e}")))?;
        let builder = if settings.dangerous_skip_verification {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
        } else {
            builder.with_root_certificates(root_store(settings)?)
        };
        let config = match &settings.client_cert {
            Some((cert_file, key_file)) => {
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
                    .and_then(|certs| certs.collect())
                    .map_err(|e| invalid(format!("cannot read client certificate {}: {e}", cert_file.display())))?;
                let key = PrivateKeyDer::from_pem_file(key_file)
                    .map_err(|e| invalid(format!("cannot read client key {}: {e}", key_file.display())))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| invalid(format!("client certificate and key do not fit: {e}")))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Tls { connector: TlsConnector::from(Arc::new(config)), settings: settings.clone() })
    }

    /// Performs the TLS handshake on a connected stream.
    pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(&self, stream: S, host: &str) -> io::Result<TlsStream<S>> {
        let name = self.settings.server_name.as_deref().unwrap_or(host);
        let server_name = ServerName::try_from(name.to_owned()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?} is not a valid TLS server name"))
        })?;
        if self.settings.dangerous_skip_verification {
            log_at!(Level::Warn, "TLS certificate verification is OFF for {name} (dangerous_skip_verification)");
        }
        self.connector.connect(server_name, stream).await.map_err(|e| io::Error::new(e.kind(), describe(&e, name)))
    }
}

fn root_store(settings: &TlsSettings) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    match &settings.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| Error::InvalidArgument(format!("cannot read CA file {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(Error::InvalidArgument(format!("CA file {} holds no certificate", path.display())));
            }
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(Error::InvalidArgument(format!("CA file {} holds no usable certificate", path.display())));
            }
        }
        None => {
            // Roots the system does not have simply make verification fail later, with a clear message.
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    Ok(roots)
}

/// A handshake failure in words an application can show.
fn describe(e: &io::Error, name: &str) -> String {
    let Some(rustls_error) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
        return format!("TLS handshake failed: {e}");
    };
    match rustls_error {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "TLS: the server's certificate is signed by an unknown issuer (for a private CA, set a CA file)".into()
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!("TLS: the server's certificate is not valid for the name {name:?}"),
        rustls::Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
            "TLS: the server's certificate has expired".into()
        }
        other => format!("TLS handshake failed: {other}"),
    }
}

/// Accepts every certificate; signatures are still checked so the
/// handshake itself stays sound.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
