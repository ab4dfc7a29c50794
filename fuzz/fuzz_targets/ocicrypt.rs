//! The ocicrypt layer annotations and the JWE key unwrapping (RSA-OAEP and
//! ECDH-ES+A*KW recipients), then the layer decryptor on a real encrypted
//! layer when a key comes out.
//!
//! Input: the JWE document (JSON), a newline, then the public options
//! (JSON). The target base64-encodes both into the annotations, as skopeo
//! does, so that mutations reach the JSON rather than dying in base64.
#![no_main]
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cloister_image::ocicrypt::{
    EncryptionInfo, KeyRing, ANNOTATION_KEYS_JWE, ANNOTATION_PUBOPTS,
};
use libfuzzer_sys::fuzz_target;

const LAYER: &[u8] = include_bytes!("../keys/layer.enc");

fn keys() -> &'static KeyRing {
    static KEYS: OnceLock<KeyRing> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut k = KeyRing::new();
        k.add_pem("rsa", include_bytes!("../keys/rsa.pem")).unwrap();
        k.add_pem("ec", include_bytes!("../keys/ec.pem")).unwrap();
        k
    })
}

fuzz_target!(|data: &[u8]| {
    let (jwe, pubopts) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let mut a = BTreeMap::new();
    a.insert(ANNOTATION_KEYS_JWE.to_string(), STANDARD.encode(jwe));
    a.insert(ANNOTATION_PUBOPTS.to_string(), STANDARD.encode(pubopts));
    let Ok(info) = EncryptionInfo::from_annotations(Some(&a)) else {
        return;
    };
    let Ok(key) = info.unwrap(keys()) else {
        return;
    };
    let mut out = Vec::new();
    let _ = key.decryptor(LAYER).read_to_end(&mut out);
});
