//! The known answers from sev-snp-measure 0.0.13 (testdata/), and the files
//! they name.
#![allow(dead_code)]
use std::path::PathBuf;

use serde_json::Value;

pub fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(rel)
}

pub fn read(rel: &str) -> Vec<u8> {
    std::fs::read(testdata(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

pub fn kats() -> Value {
    serde_json::from_slice(&read("snp_launch_digest_kats.json")).expect("KAT JSON parses")
}

pub fn amd_sev_ovmf() -> Vec<u8> {
    read("fixtures/ovmf_AmdSev_suffix.bin")
}

pub fn ovmf_x64() -> Vec<u8> {
    read("fixtures/ovmf_OvmfX64_suffix.bin")
}

/// A JSON string as text (panics with the field name if it is not one).
pub fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string in {v}"))
}

/// A JSON string holding a 0x-prefixed number.
pub fn num(v: &Value, field: &str) -> u64 {
    let text = s(v, field);
    u64::from_str_radix(text.trim_start_matches("0x"), 16)
        .unwrap_or_else(|e| panic!("{field}={text}: {e}"))
}

pub fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text).unwrap_or_else(|e| panic!("bad hex {text:?}: {e}"))
}
