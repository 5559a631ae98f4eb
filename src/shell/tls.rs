//! TLS for c2s: load the configured certificate or generate a self-signed one.

use crate::config::Config;
use rustls::crypto::ring::default_provider;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

pub fn server_config(cfg: &Config) -> Result<Arc<ServerConfig>, String> {
    let (cert_path, key_path, generated) = cfg.cert_paths();
    if generated && !(cert_path.exists() && key_path.exists()) {
        generate_self_signed(&cfg.domain.0, &cert_path, &key_path)?;
        log::info!(
            "tls: generated a self-signed certificate for {} in {}",
            cfg.domain.0,
            cert_path.display()
        );
    }
    load(&cert_path, &key_path)
}

/// The upload server's: `[upload] cert` and `key` (an organisation-wide
/// host name's certificate), or the c2s one.
pub fn upload_config(cfg: &Config, c2s: &Arc<ServerConfig>) -> Result<Arc<ServerConfig>, String> {
    match cfg
        .upload
        .as_ref()
        .and_then(|u| u.cert.as_ref().zip(u.key.as_ref()))
    {
        Some((cert, key)) => load(cert, key),
        None => Ok(c2s.clone()),
    }
}

fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .and_then(|it| it.collect())
        .map_err(|e| format!("cannot read certificate {}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate found in {}", cert_path.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| format!("cannot read private key {}: {e}", key_path.display()))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "certificate {} and key {} do not work together: {e}",
                cert_path.display(),
                key_path.display()
            )
        })?;
    // Tickets cost link bytes and memory and buy little for long-lived XMPP streams.
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The same, for the direct TLS port: it names the protocol (ALPN
/// `xmpp-client`, XEP-0368) to a client that asks.
pub fn direct_tls_config(starttls: &Arc<ServerConfig>) -> Arc<ServerConfig> {
    let mut config = starttls.as_ref().clone();
    config.alpn_protocols = vec![b"xmpp-client".to_vec()];
    Arc::new(config)
}

pub(crate) fn generate_self_signed(
    domain: &str,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(), String> {
    let fail = |e: rcgen::Error| format!("cannot generate a certificate: {e}");
    let names = vec![domain.to_string(), format!("*.{domain}")];
    let mut params = rcgen::CertificateParams::new(names).map_err(fail)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, domain);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Outpost (self-signed)");
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let cert = params.self_signed(&key).map_err(fail)?;
    write_private(key_path, key.serialize_pem().as_bytes())?;
    std::fs::write(cert_path, cert.pem())
        .map_err(|e| format!("cannot write {}: {e}", cert_path.display()))
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(data)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
