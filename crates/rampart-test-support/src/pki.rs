//! A throw-away PKI: a test CA, a server certificate for `localhost` / `127.0.0.1`, a client
//! certificate signed by the CA and a "rogue" client certificate signed by another, untrusted
//! CA. PEM files live in a fresh temp directory that is removed when the [`TestPki`] drops.
//!
//! Files in [`TestPki::dir`]: `ca.pem`, `server.pem`, `server.key` (PKCS#8), and for
//! completeness `client.pem`/`client.key` and `rogue-ca.pem`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::crypto_provider;

/// A client certificate and its key, both PEM.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// The leaf certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PKCS#8 PEM.
    pub key_pem: String,
}

/// A test CA with its issued certificates, written to a temp directory (removed on drop).
pub struct TestPki {
    /// The temp directory holding the PEM files.
    pub dir: PathBuf,
    /// The CA certificate, PEM (the trust anchor for both server and `client`).
    pub ca_pem: String,
    /// `dir/server.pem`: the server certificate (leaf only), for `localhost` and `127.0.0.1`.
    pub server_cert_path: PathBuf,
    /// `dir/server.key`: the server's private key, PKCS#8 PEM.
    pub server_key_path: PathBuf,
    /// `dir/ca.pem`: the CA certificate.
    pub ca_path: PathBuf,
    /// A client certificate (CN `client-1`, SAN DNS `client-1.test`) signed by the CA.
    pub client: ClientIdentity,
    /// A client certificate with the same names, signed by an untrusted CA.
    pub rogue_client: ClientIdentity,
    /// The untrusted CA that signed `rogue_client`, PEM.
    pub rogue_ca_pem: String,
    ca: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

impl TestPki {
    /// Generates the CAs and certificates and writes them into a fresh temp directory.
    pub fn new() -> TestPki {
        let dir = unique_temp_dir();
        let (ca, ca_pem) = new_ca("Rampart Test CA");
        let (rogue_ca, rogue_ca_pem) = new_ca("Rampart Rogue CA");
        let client = issue_client(&ca);
        let rogue_client = issue_client(&rogue_ca);

        let pki = TestPki {
            server_cert_path: dir.join("server.pem"),
            server_key_path: dir.join("server.key"),
            ca_path: dir.join("ca.pem"),
            dir,
            ca_pem,
            client,
            rogue_client,
            rogue_ca_pem,
            ca,
        };
        write_atomically(&pki.ca_path, &pki.ca_pem);
        write_atomically(&pki.dir.join("rogue-ca.pem"), &pki.rogue_ca_pem);
        write_atomically(&pki.dir.join("client.pem"), &pki.client.cert_pem);
        write_atomically(&pki.dir.join("client.key"), &pki.client.key_pem);
        pki.write_new_server_cert();
        pki
    }

    /// Issues a new server certificate (new key, same names, same CA), overwrites
    /// `server_key_path` then `server_cert_path` (each by an atomic rename) and returns the
    /// new certificate's PEM.
    pub fn write_new_server_cert(&self) -> String {
        let key = KeyPair::generate().expect("generate server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server cert params");
        params.distinguished_name = common_name("localhost");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.ca).expect("sign server cert");
        let cert_pem = cert.pem();
        write_atomically(&self.server_key_path, &key.serialize_pem());
        write_atomically(&self.server_cert_path, &cert_pem);
        cert_pem
    }

    /// The server certificate currently on disk, PEM.
    pub fn server_cert_pem(&self) -> String {
        std::fs::read_to_string(&self.server_cert_path).expect("read server cert")
    }

    /// A rustls server config serving the certificate currently on disk (aws-lc-rs
    /// provider), advertising `alpn`. With `require_client_auth`, clients must present a
    /// certificate chaining to this CA.
    pub fn server_tls_config(
        &self,
        require_client_auth: bool,
        alpn: &[&[u8]],
    ) -> Arc<rustls::ServerConfig> {
        let provider = crypto_provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = if require_client_auth {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()), provider)
                    .build()
                    .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let certs =
            vec![CertificateDer::from_pem_file(&self.server_cert_path).expect("server cert")];
        let key = PrivateKeyDer::from_pem_file(&self.server_key_path).expect("server key");
        let mut config = builder.with_single_cert(certs, key).expect("server config");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A root store holding only this PKI's CA.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(cert_der_from_pem(&self.ca_pem)))
            .expect("add CA to roots");
        roots
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The DER of the first certificate in `pem`.
pub fn cert_der_from_pem(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("a PEM certificate")
        .to_vec()
}

fn unique_temp_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "rampart-test-pki-{}-{}-{nanos}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create PKI temp dir");
    dir
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn new_ca(cn: &str) -> (Issuer<'static, KeyPair>, String) {
    let key = KeyPair::generate().expect("generate CA key");
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let pem = params.self_signed(&key).expect("self-sign CA").pem();
    (Issuer::new(params, key), pem)
}

fn issue_client(ca: &Issuer<'_, KeyPair>) -> ClientIdentity {
    let key = KeyPair::generate().expect("generate client key");
    let mut params =
        CertificateParams::new(vec!["client-1.test".to_owned()]).expect("client cert params");
    params.distinguished_name = common_name("client-1");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, ca).expect("sign client cert");
    ClientIdentity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Writes `contents` to a sibling temp file and renames it over `path`, so a reader (a
/// certificate reloader) never sees a half-written file.
fn write_atomically(path: &Path, contents: &str) {
    let mut name = path.file_name().expect("PKI file name").to_owned();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    std::fs::write(&tmp, contents).expect("write PKI file");
    std::fs::rename(&tmp, path).expect("rename PKI file");
}
