//! The initdata TOML document the host hands the agent at CreateSandbox
//! (policy, image-signature policy, KBS URL and certificate).
#![no_main]
use cloister_agent::initdata::Initdata;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(doc) = Initdata::parse(text) {
            let _ = doc.sha256_hex();
        }
    }
});
