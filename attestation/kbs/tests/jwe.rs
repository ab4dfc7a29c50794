//! The KBS's JWE encryption against the client's decryption (both real), for
//! both TEE key kinds, and the client's refusal of anything tampered with.
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cloister_kbs::jwe;
use cloister_kbs_client::{TeeKey, TeeKeyKind};

fn roundtrip(kind: TeeKeyKind) {
    let key = TeeKey::generate(kind).unwrap();
    let payload = b"resource bytes \x00\xff".repeat(50);
    let resp = jwe::encrypt(&key.public(), &payload).unwrap();
    let json = serde_json::to_vec(&resp).unwrap();
    assert_eq!(key.decrypt(&json).unwrap(), payload);

    // Another key of the same kind cannot decrypt it.
    let other = TeeKey::generate(kind).unwrap();
    assert!(other.decrypt(&json).is_err());

    // Every member matters.
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    for member in ["encrypted_key", "iv", "ciphertext", "tag", "protected"] {
        let mut t = v.clone();
        let mut bytes = URL_SAFE_NO_PAD.decode(t[member].as_str().unwrap()).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        t[member] = URL_SAFE_NO_PAD.encode(bytes).into();
        let e = key.decrypt(&serde_json::to_vec(&t).unwrap());
        assert!(e.is_err(), "{kind:?}: tampered {member} was accepted");
    }
}

#[test]
fn ec_p256_ecdh_es_a256kw() {
    roundtrip(TeeKeyKind::EcP256);
    let key = TeeKey::generate(TeeKeyKind::EcP256).unwrap();
    let resp = jwe::encrypt(&key.public(), b"x").unwrap();
    assert_eq!(resp.protected.alg, "ECDH-ES+A256KW");
    assert_eq!(resp.protected.enc, "A256GCM");
    assert_eq!(resp.protected.other_fields["epk"]["crv"], "P-256");
    assert_eq!(resp.encrypted_key.len(), 40);
}

#[test]
fn rsa_oaep_256() {
    roundtrip(TeeKeyKind::Rsa2048);
}
