//! TLS for both listeners: rustls with the ring provider, chosen explicitly
//! (`builder_with_provider`) because other crates in the workspace bring in
//! aws-lc-rs, and two providers make rustls's implicit default panic.
//!
//! With `--tls-self-signed` the KBS makes its own small CA and server certificate
//! in `<state>/tls/` on first start (ECDSA P-256); clients pin `<state>/tls/ca.pem`.
use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::store::{read_optional, write_atomic};
use crate::KbsError;

/// Certificate chain (PEM) and private key (PEM).
pub struct CertAndKey {
    pub chain_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// The ring provider with TLS 1.3 and 1.2.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls server configuration for the chain and key.
pub fn server_config(ck: &CertAndKey) -> Result<Arc<rustls::ServerConfig>, KbsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&ck.chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| KbsError::Tls(format!("certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(KbsError::Tls("certificate chain: no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&ck.key_pem)
        .map_err(|e| KbsError::Tls(format!("private key: {e}")))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| KbsError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| KbsError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Loads `<state>/tls/{cert,key}.pem`, creating a CA (`ca.pem`) and a server
/// certificate for `sans` first if there are none.
pub fn self_signed(state: &Path, sans: &[String]) -> Result<CertAndKey, KbsError> {
    let dir = state.join("tls");
    if let (Some(chain_pem), Some(key_pem)) = (
        read_optional(&dir.join("cert.pem"))?,
        read_optional(&dir.join("key.pem"))?,
    ) {
        return Ok(CertAndKey { chain_pem, key_pem });
    }
    let e = |e: rcgen::Error| KbsError::Tls(format!("generating the self-signed certificate: {e}"));
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "cloister-kbs self-signed CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = ca_params.self_signed(&ca_key).map_err(e)?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let key = KeyPair::generate().map_err(e)?;
    let mut params = CertificateParams::new(sans.to_vec()).map_err(e)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "cloister-kbs");
    let cert = params.signed_by(&key, &issuer).map_err(e)?;
    let chain_pem = format!("{}{}", cert.pem(), ca.pem()).into_bytes();
    let key_pem = key.serialize_pem().into_bytes();
    write_atomic(&dir.join("ca.pem"), ca.pem().as_bytes(), false)?;
    write_atomic(&dir.join("key.pem"), &key_pem, true)?;
    write_atomic(&dir.join("cert.pem"), &chain_pem, false)?;
    tracing::warn!(ca = %dir.join("ca.pem").display(), ?sans, "created a self-signed TLS CA and certificate; clients must pin ca.pem");
    Ok(CertAndKey { chain_pem, key_pem })
}
