//! Shared helpers: reading the crate's test data and its manifests.
#![allow(dead_code)]
use std::path::PathBuf;
use std::time::SystemTime;

use cloister_evidence::time::parse_rfc3339;
use cloister_evidence::{Check, ReferenceValues, VerifyOptions};

pub fn path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(rel)
}

pub fn read(rel: &str) -> Vec<u8> {
    std::fs::read(path(rel)).unwrap_or_else(|e| panic!("test data {rel}: {e}"))
}

pub fn manifest(rel: &str) -> Vec<serde_json::Value> {
    serde_json::from_slice(&read(rel)).unwrap()
}

pub fn at(s: &str) -> SystemTime {
    parse_rfc3339(s).unwrap()
}

/// A time at which every certificate in the test data is valid (the trustee VLEK
/// expired on 2025-12-10; the newest PCK was issued on 2025-04-08).
pub const VALID_AT: &str = "2025-06-01T00:00:00Z";

pub fn opts_at(s: &str) -> VerifyOptions {
    VerifyOptions {
        at: at(s),
        reference: ReferenceValues::default(),
        ..VerifyOptions::default()
    }
}

pub fn flip(bytes: &[u8], offset: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[offset] ^= 1;
    b
}

pub fn hex_offset(s: &str) -> usize {
    usize::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

pub fn names(checks: &[Check]) -> Vec<&str> {
    checks.iter().map(|c| c.name.as_str()).collect()
}
