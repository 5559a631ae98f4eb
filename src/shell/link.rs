//! TLS for node-to-node links, with keys pinned both ways.
//!
//! Each node has a link identity: a key pair and self-signed certificate
//! generated in `data_dir` on first start. Peers are named by the SHA-256 of
//! their certificate's SubjectPublicKeyInfo, base64 (the HPKP `pin-sha256`
//! form), as shown by `outpost check`. No certificate authority is involved:
//! a link is accepted only if the other end holds the pinned key.

use crate::config::Config;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring::default_provider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// SHA-256 of a certificate's SubjectPublicKeyInfo, base64.
pub fn spki_fingerprint(cert: &CertificateDer<'_>) -> Result<String, String> {
    let ee = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| format!("unreadable certificate: {e}"))?;
    let spki = ee.subject_public_key_info();
    Ok(B64.encode(ring::digest::digest(&ring::digest::SHA256, spki.as_ref())))
}

pub struct Identity {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    pub fingerprint: String,
}

fn identity_paths(data_dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    (
        data_dir.join("link-cert.pem"),
        data_dir.join("link-key.pem"),
    )
}

/// This node's link fingerprint, if its identity exists yet.
pub fn existing_fingerprint(data_dir: &Path) -> Option<String> {
    let (cert, _) = identity_paths(data_dir);
    let c = CertificateDer::from_pem_file(cert).ok()?;
    spki_fingerprint(&c).ok()
}

/// Load the link identity, generating it on first start.
pub fn identity(cfg: &Config) -> Result<Identity, String> {
    let (cert_path, key_path) = identity_paths(&cfg.data_dir);
    if !(cert_path.exists() && key_path.exists()) {
        super::tls::generate_self_signed(&cfg.domain.0, &cert_path, &key_path)?;
        log::info!(
            "link: generated this node's link key in {}",
            key_path.display()
        );
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|it| it.collect())
        .map_err(|e| format!("cannot read {}: {e}", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("cannot read {}: {e}", key_path.display()))?;
    let fingerprint = spki_fingerprint(certs.first().ok_or("empty link certificate")?)?;
    Ok(Identity {
        certs,
        key,
        fingerprint,
    })
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    default_provider().signature_verification_algorithms
}

/// Accepts exactly one server key.
#[derive(Debug)]
struct PinnedServer {
    expected: String,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = spki_fingerprint(end_entity).map_err(rustls::Error::General)?;
        if got == self.expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's key is {got}, not the pinned {}",
                self.expected
            )))
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.algs)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Accepts the keys of configured peers, and requires one.
#[derive(Debug)]
struct PinnedClients {
    allowed: Vec<String>,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PinnedClients {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let got = spki_fingerprint(end_entity).map_err(rustls::Error::General)?;
        if self.allowed.contains(&got) {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "key {got} is not configured as a [[link.peer]]"
            )))
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.algs)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Everything the shell needs to accept and dial links.
pub struct LinkTls {
    pub fingerprint: String,
    /// For `[link] listen`: requires a configured peer's key.
    pub server: Option<Arc<ServerConfig>>,
    /// Site domain by key fingerprint.
    pub peer_by_key: HashMap<String, String>,
    /// Upstream MUC service → (address to dial, client config pinned to its key).
    pub upstreams: HashMap<String, (String, Arc<ClientConfig>)>,
}

pub fn setup(cfg: &Config) -> Result<LinkTls, String> {
    let id = identity(cfg)?;
    let provider = Arc::new(default_provider());
    let peer_by_key: HashMap<String, String> = cfg
        .link
        .peer
        .iter()
        .map(|p| (p.fingerprint.trim().to_string(), p.domain.0.clone()))
        .collect();
    let server = match cfg.link.listen {
        None => None,
        Some(_) => {
            let verifier = PinnedClients {
                allowed: peer_by_key.keys().cloned().collect(),
                algs: algorithms(),
            };
            let mut c = ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(|e| format!("link tls: {e}"))?
                .with_client_cert_verifier(Arc::new(verifier))
                .with_single_cert(id.certs.clone(), id.key.clone_key())
                .map_err(|e| format!("link tls: {e}"))?;
            c.send_tls13_tickets = 0;
            Some(Arc::new(c))
        }
    };
    let mut upstreams = HashMap::new();
    for u in &cfg.upstream {
        let verifier = PinnedServer {
            expected: u.fingerprint.trim().to_string(),
            algs: algorithms(),
        };
        let c = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| format!("link tls: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(id.certs.clone(), id.key.clone_key())
            .map_err(|e| format!("link tls: {e}"))?;
        upstreams.insert(u.muc.0.clone(), (u.connect.clone(), Arc::new(c)));
    }
    Ok(LinkTls {
        fingerprint: id.fingerprint,
        server,
        peer_by_key,
        upstreams,
    })
}
