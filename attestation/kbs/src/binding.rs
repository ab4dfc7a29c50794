//! How evidence binds the KBS nonce and the TEE public key, as Trustee does it:
//!
//! ```text
//! REPORT_DATA = SHA-384( JCS({"additional-evidence": <string>,
//!                             "nonce": <nonce from the Challenge>,
//!                             "tee-pubkey": <the JWK sent in the Attestation>}) )
//!               followed by 16 zero bytes (64 bytes in all)
//! ```
//!
//! JCS is the JSON Canonicalization Scheme (RFC 8785: keys sorted, no whitespace).
//! This is the "primary runtime data" of Trustee's KBS (kbs/src/attestation/backend.rs)
//! hashed with SHA-384, the algorithm Trustee's built-in attestation service uses
//! for every TEE but IBM SE, and zero-padded to the 64-byte SNP REPORT_DATA (TDX
//! REPORTDATA is also 64 bytes). The Challenge says `"selected-hash-algorithm": "sha384"`.
use kbs_types::TeePubKey;
use serde_json::json;
use sha2::{Digest, Sha384};

/// The REPORT_DATA a guest must put in its evidence.
pub fn expected_report_data(
    nonce: &str,
    tee_pubkey: &TeePubKey,
    additional_evidence: &str,
) -> Result<[u8; 64], String> {
    let runtime = json!({
        "tee-pubkey": tee_pubkey,
        "nonce": nonce,
        "additional-evidence": additional_evidence,
    });
    let canonical = serde_json_canonicalizer::to_vec(&runtime)
        .map_err(|e| format!("canonicalizing runtime data: {e}"))?;
    let mut out = [0u8; 64];
    out[..48].copy_from_slice(&Sha384::digest(canonical));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_is_hashed() {
        let key = TeePubKey::EC {
            crv: "P-256".into(),
            alg: "ECDH-ES+A256KW".into(),
            x: "xx".into(),
            y: "yy".into(),
        };
        let rd = expected_report_data("n0nce", &key, "").unwrap();
        let canonical = br#"{"additional-evidence":"","nonce":"n0nce","tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"xx","y":"yy"}}"#;
        assert_eq!(rd[..48], Sha384::digest(canonical)[..]);
        assert_eq!(rd[48..], [0u8; 16]);
        assert_ne!(expected_report_data("other", &key, "").unwrap(), rd);
    }
}
