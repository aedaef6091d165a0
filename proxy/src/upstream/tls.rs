//! TLS from weir to an upstream: a rustls client config per upstream TLS
//! setting (the CA file's certificates, else the system's roots), ALPN for
//! the protocol spoken inside, and the handshake with SNI.
//!
//! Configs are built when a snapshot names a new endpoint, never per
//! request; the system's roots are read once per process.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use weir_config::{UpstreamProtocol, UpstreamTls};

/// Why a TLS client config could not be made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamTlsError {
    /// `caFile` is set but its contents were never loaded.
    #[error("the CA file {0} was not loaded")]
    CaNotLoaded(String),
    /// The CA file holds no usable PEM certificate.
    #[error("no usable PEM certificate in the CA file: {0}")]
    BadCa(String),
    /// No CA file and the system has no root certificates.
    #[error(
        "the system has no root certificates to verify the upstream with; set tls.caFile, or tls.insecureSkipVerify for tests"
    )]
    NoSystemRoots,
    /// The server name is not a DNS name or an IP address.
    #[error("`{0}` is not a valid TLS server name")]
    BadServerName(String),
    /// rustls refused the settings.
    #[error("{0}")]
    Rustls(String),
}

/// What is needed to open TLS connections to one endpoint.
#[derive(Clone)]
pub struct TlsConnector {
    connector: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
    /// Whether the endpoint must agree to `h2` by ALPN (RFC 9113 section
    /// 3.2): HTTP/2 is not spoken to a server that did not say it speaks it.
    requires_h2: bool,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

// === impl TlsConnector ===

impl TlsConnector {
    /// The connector for `addr` with `tls`, offering the ALPN of `protocol`
    /// (`h2` for HTTP/2, `http/1.1` otherwise). The name sent as SNI and
    /// checked in the certificate is the server name of `tls` (the
    /// snapshot fills in the endpoints' host name), else the address.
    ///
    /// # Errors
    /// [`UpstreamTlsError`] when the CAs or the name cannot be used.
    pub fn new(
        tls: &UpstreamTls,
        protocol: UpstreamProtocol,
        addr: SocketAddr,
    ) -> Result<TlsConnector, UpstreamTlsError> {
        let mut config = client_config(tls)?;
        config.alpn_protocols = if protocol.is_http2() {
            vec![b"h2".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        let name = tls
            .server_name
            .as_deref()
            .map(str::to_owned)
            .unwrap_or_else(|| addr.ip().to_string());
        let server_name = ServerName::try_from(name.clone())
            .map_err(|_| UpstreamTlsError::BadServerName(name))?;
        Ok(TlsConnector {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name,
            requires_h2: protocol.is_http2(),
        })
    }

    /// Runs the handshake on `stream`.
    ///
    /// # Errors
    /// The handshake's error: rustls' reason (unknown issuer, a name the
    /// certificate is not valid for, ...) inside an `io::Error`; for an
    /// HTTP/2 endpoint, also a server that did not choose `h2` by ALPN.
    pub async fn connect(&self, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        let stream = self
            .connector
            .connect(self.server_name.clone(), stream)
            .await?;
        if self.requires_h2 && stream.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(std::io::Error::other(
                "the server did not choose h2 by ALPN: it does not speak HTTP/2 over TLS \
                 (protocol: h2); use protocol: http1 with tls for it",
            ));
        }
        Ok(stream)
    }

    /// The name sent as SNI and checked in the certificate.
    pub fn server_name(&self) -> String {
        self.server_name.to_str().into_owned()
    }
}

/// Checks that `tls` makes a usable client config (the CA file's PEM, the
/// system roots, the server name), for the loader to report at load time.
///
/// # Errors
/// [`UpstreamTlsError`] saying what is wrong.
pub fn check(tls: &UpstreamTls) -> Result<(), UpstreamTlsError> {
    client_config(tls)?;
    if let Some(name) = tls.server_name.as_deref() {
        ServerName::try_from(name.to_owned())
            .map_err(|_| UpstreamTlsError::BadServerName(name.to_owned()))?;
    }
    Ok(())
}

/// A rustls client config for `tls`: its CA file's certificates (loaded
/// into `ca_pem`), else the system's roots (which honour `SSL_CERT_FILE`
/// and `SSL_CERT_DIR`), or any certificate with `insecure_skip_verify`; no
/// ALPN. Also used by the control plane's HTTPS clients.
///
/// # Errors
/// [`UpstreamTlsError`] when the CAs cannot be used.
pub fn client_config(tls: &UpstreamTls) -> Result<rustls::ClientConfig, UpstreamTlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| UpstreamTlsError::Rustls(e.to_string()))?;
    if tls.insecure_skip_verify {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth());
    }
    let roots = match (&tls.ca_file, &tls.ca_pem) {
        (_, Some(pem)) => Arc::new(roots_from_pem(pem)?),
        (Some(file), None) => {
            return Err(UpstreamTlsError::CaNotLoaded(file.display().to_string()));
        }
        (None, None) => system_roots()?,
    };
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

fn roots_from_pem(pem: &[u8]) -> Result<RootCertStore, UpstreamTlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| UpstreamTlsError::BadCa(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(UpstreamTlsError::BadCa(
            "it holds no CA certificate".to_owned(),
        ));
    }
    Ok(roots)
}

/// The system's root certificates, read once.
fn system_roots() -> Result<Arc<RootCertStore>, UpstreamTlsError> {
    static ROOTS: OnceLock<Option<Arc<RootCertStore>>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::debug!(%error, "a system root certificate could not be read");
            }
            let mut roots = RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            (added > 0).then(|| Arc::new(roots))
        })
        .clone()
        .ok_or(UpstreamTlsError::NoSystemRoots)
}

/// `insecureSkipVerify`: any certificate is accepted; the handshake's
/// signatures are still checked, so the peer holds the key of the
/// certificate it showed.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
