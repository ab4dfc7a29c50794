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

/// The SANs as recorded next to the certificate: sorted, deduplicated.
fn sans_line(sans: &[String]) -> String {
    let mut v: Vec<&str> = sans.iter().map(String::as_str).collect();
    v.sort_unstable();
    v.dedup();
    v.join(", ")
}

/// Loads `<state>/tls/{cert,key}.pem`, creating a CA (`ca.pem`) and a server
/// certificate for `sans` first if there are none.
pub fn self_signed(state: &Path, sans: &[String]) -> Result<CertAndKey, KbsError> {
    let dir = state.join("tls");
    let wanted = sans_line(sans);
    if let (Some(chain_pem), Some(key_pem)) = (
        read_optional(&dir.join("cert.pem"))?,
        read_optional(&dir.join("key.pem"))?,
    ) {
        // A certificate made for other names would fail every client that
        // uses the new one: say so instead of serving it.
        if let Some(made) = read_optional(&dir.join("sans.txt"))? {
            let made = String::from_utf8_lossy(&made).trim().to_string();
            if made != wanted {
                return Err(KbsError::Tls(format!(
                    "the self-signed certificate in {} was made for [{made}], but --tls-san asks for [{wanted}]; \
                     remove that directory to make a new CA and certificate (clients must then pin the new ca.pem)",
                    dir.display()
                )));
            }
        }
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
    write_atomic(&dir.join("sans.txt"), wanted.as_bytes(), false)?;
    tracing::warn!(ca = %dir.join("ca.pem").display(), ?sans, "created a self-signed TLS CA and certificate; clients must pin ca.pem");
    Ok(CertAndKey { chain_pem, key_pem })
}

#[cfg(test)]
mod san_tests {
    use super::*;

    #[test]
    fn a_certificate_for_other_names_is_refused_not_served() {
        let d = tempfile::tempdir().unwrap();
        let sans = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let first = self_signed(d.path(), &sans(&["localhost", "127.0.0.1"])).unwrap();
        // The same names in another order: the same certificate.
        let again = self_signed(d.path(), &sans(&["127.0.0.1", "localhost"])).unwrap();
        assert_eq!(first.chain_pem, again.chain_pem);
        let e = self_signed(d.path(), &sans(&["127.0.0.1", "10.0.2.2"]))
            .err()
            .expect("other names are refused")
            .to_string();
        assert!(
            e.contains("10.0.2.2") && e.contains("remove that directory"),
            "{e}"
        );
    }
}
