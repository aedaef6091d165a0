//! TLS for downstream listeners: a rustls server config from PEM files,
//! offering HTTP/2 and HTTP/1.1 through ALPN.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file holds no PEM certificate.
    #[error("no PEM certificate found (a `BEGIN CERTIFICATE` section)")]
    NoCertificate,
    /// A PEM section of the certificate file could not be read.
    #[error("bad PEM: {}", pem_error_text(.0))]
    CertificatePem(rustls::pki_types::pem::Error),
    /// The key file holds no PEM private key.
    #[error(
        "no PEM private key found (a `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY` section)"
    )]
    NoKey,
    /// The key file holds an encrypted private key, which weir cannot
    /// read without its passphrase.
    #[error(
        "the private key is encrypted (a `BEGIN ENCRYPTED PRIVATE KEY` section); weir reads unencrypted keys: write one with `openssl pkcs8 -in KEY -out PLAIN.key` and name that"
    )]
    EncryptedKey,
    /// A PEM section of the key file could not be read.
    #[error("bad PEM: {}", pem_error_text(.0))]
    KeyPem(rustls::pki_types::pem::Error),
    /// rustls refused the certificate or key (e.g. they do not match).
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

/// A PEM error as text: the parser shows the lines it names as lists of
/// byte values.
fn pem_error_text(error: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match error {
        Error::MissingSectionEnd { end_marker } => {
            let label = String::from_utf8_lossy(end_marker);
            format!(
                "a `{label}` section has no `-----END {label}-----` line (is the file cut short?)"
            )
        }
        Error::IllegalSectionStart { line } => {
            format!(
                "a section starts with a malformed line: {:?}",
                String::from_utf8_lossy(line)
            )
        }
        other => other.to_string(),
    }
}

/// Which file of a listener's `tls` a [`TlsError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// `certFile`.
    Certificate,
    /// `keyFile`.
    Key,
}

impl TlsError {
    /// The file at fault; `None` when it is the two together (a key that
    /// does not match the certificate).
    pub fn file(&self) -> Option<TlsFile> {
        match self {
            TlsError::NoCertificate | TlsError::CertificatePem(_) => Some(TlsFile::Certificate),
            TlsError::NoKey | TlsError::EncryptedKey | TlsError::KeyPem(_) => Some(TlsFile::Key),
            TlsError::Rustls(_) => None,
        }
    }
}

/// A server config for the certificate chain and private key, both PEM.
///
/// # Errors
/// [`TlsError`] when either does not parse or they do not belong together.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsError::CertificatePem)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound
            if key_pem
                .windows(b"-----BEGIN ENCRYPTED PRIVATE KEY-----".len())
                .any(|w| w == b"-----BEGIN ENCRYPTED PRIVATE KEY-----") =>
        {
            TlsError::EncryptedKey
        }
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey,
        other => TlsError::KeyPem(other),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// When a certificate may be used: its `notBefore` and `notAfter`, in
/// seconds since the UNIX epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertificateValidity {
    /// The first second it is valid.
    pub not_before: i64,
    /// The last second it is valid.
    pub not_after: i64,
}

/// The validity of the first certificate of a PEM chain (the one served),
/// `None` when there is none or it does not parse as X.509 (rustls has
/// refused such a chain before this is asked).
pub fn certificate_validity(cert_pem: &[u8]) -> Option<CertificateValidity> {
    let first = CertificateDer::pem_slice_iter(cert_pem).next()?.ok()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(&first).ok()?;
    let validity = certificate.validity();
    Some(CertificateValidity {
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_cut_short_is_named_in_words() {
        let cut = b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n";
        let error = server_config(cut, b"").expect_err("a cut certificate");
        assert_eq!(error.file(), Some(TlsFile::Certificate));
        assert_eq!(
            error.to_string(),
            "bad PEM: a `CERTIFICATE` section has no `-----END CERTIFICATE-----` line (is the file cut short?)"
        );
    }

    #[test]
    fn an_encrypted_key_is_named_as_such() {
        let cert = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let encrypted =
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let error = server_config(cert, encrypted).expect_err("an encrypted key");
        assert_eq!(error.file(), Some(TlsFile::Key));
        assert!(
            error
                .to_string()
                .starts_with("the private key is encrypted"),
            "{error}"
        );
        let error = server_config(cert, b"nothing").expect_err("no key");
        assert!(
            error.to_string().starts_with("no PEM private key found"),
            "{error}"
        );
    }
}
