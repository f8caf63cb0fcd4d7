//! TLS termination with rustls: certificates from PEM files, a minimum version, ALPN,
//! and optional client-certificate verification (mTLS).
//!
//! A server config is built from files each time the runtime is compiled, so a
//! configuration reload (SIGHUP, or a change of the config or certificate files) puts a
//! new certificate in service for new connections without a restart; established
//! connections keep the one they negotiated.

use std::path::Path;
use std::sync::Arc;

use rampart_config::{ClientAuth, Tls, TlsVersion};
use rampart_core::{PeerCertificate, TlsInfo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// Why TLS settings could not be put in service.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the material (key does not match certificate, bad CA).
    #[error("{0}")]
    Rustls(String),
}

/// Builds the rustls server config of a listener. `http2` adds `h2` to ALPN.
pub fn server_config(tls: &Tls, http2: bool) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match &tls.client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => builder.with_client_cert_verifier(client_verifier(auth, provider)?),
    };
    let certs = read_certs(&tls.cert.value)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key.value).map_err(|e| TlsError::Pem {
        path: tls.key.value.display().to_string(),
        message: format!("no usable private key: {e}"),
    })?;
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Rustls(format!("certificate and key: {e}")))?;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

fn client_verifier(
    auth: &ClientAuth,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(&auth.ca.value)? {
        roots
            .add(cert)
            .map_err(|e| TlsError::Rustls(format!("client CA: {e}")))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = if auth.required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder
        .build()
        .map_err(|e| TlsError::Rustls(format!("client verifier: {e}")))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |message: String| TlsError::Pem {
        path: path.display().to_string(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_err("no certificate found".into()));
    }
    Ok(certs)
}

/// What the handshake established, for the request context.
pub fn tls_info(conn: &rustls::ServerConnection) -> TlsInfo {
    TlsInfo {
        server_name: conn.server_name().map(str::to_string),
        alpn: conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        version: conn.protocol_version().map(|v| match v {
            rustls::ProtocolVersion::TLSv1_2 => "1.2".to_string(),
            rustls::ProtocolVersion::TLSv1_3 => "1.3".to_string(),
            other => format!("{other:?}"),
        }),
        peer_certificate: conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|leaf| describe_certificate(leaf.as_ref())),
    }
}

/// Subject, SANs and fingerprint of a (verified) DER certificate.
pub fn describe_certificate(der: &[u8]) -> PeerCertificate {
    let sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (subject, sans) = match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => {
            let sans = cert
                .subject_alternative_name()
                .ok()
                .flatten()
                .map(|ext| {
                    ext.value
                        .general_names
                        .iter()
                        .map(|n| match n {
                            x509_parser::extensions::GeneralName::DNSName(d) => {
                                format!("DNS:{d}")
                            }
                            x509_parser::extensions::GeneralName::URI(u) => format!("URI:{u}"),
                            x509_parser::extensions::GeneralName::RFC822Name(e) => {
                                format!("email:{e}")
                            }
                            other => format!("{other}"),
                        })
                        .collect()
                })
                .unwrap_or_default();
            (cert.subject().to_string(), sans)
        }
        Err(_) => (String::new(), Vec::new()),
    };
    PeerCertificate {
        subject,
        sans,
        sha256,
    }
}

/// The Strict-Transport-Security value for these settings, if enabled.
pub fn hsts_value(tls: &Tls) -> Option<http::HeaderValue> {
    if !tls.hsts.enabled {
        return None;
    }
    let mut v = format!("max-age={}", tls.hsts.max_age.0.as_secs());
    if tls.hsts.include_subdomains {
        v.push_str("; includeSubDomains");
    }
    if tls.hsts.preload {
        v.push_str("; preload");
    }
    http::HeaderValue::try_from(v).ok()
}
