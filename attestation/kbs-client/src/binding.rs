//! REPORT_DATA for a KBS challenge, as Trustee's KBS expects it:
//! SHA-384 of the JCS-canonical JSON `{"additional-evidence", "nonce", "tee-pubkey"}`,
//! zero-padded to 64 bytes (cloister-kbs's `binding` module documents the same).
use kbs_types::TeePubKey;
use sha2::{Digest, Sha384};

pub fn report_data(
    nonce: &str,
    tee_pubkey: &TeePubKey,
    additional_evidence: &str,
) -> Result<[u8; 64], String> {
    let runtime = serde_json::json!({
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
    fn hashes_the_canonical_runtime_data() {
        let key = TeePubKey::EC {
            crv: "P-256".into(),
            alg: "ECDH-ES+A256KW".into(),
            x: "xx".into(),
            y: "yy".into(),
        };
        let canonical = br#"{"additional-evidence":"","nonce":"n0nce","tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"xx","y":"yy"}}"#;
        let rd = report_data("n0nce", &key, "").unwrap();
        assert_eq!(rd[..48], Sha384::digest(canonical)[..]);
        assert_eq!(rd[48..], [0u8; 16]);
    }
}
