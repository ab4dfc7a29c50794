//! Helpers shared by the fuzz targets: how one fuzz input is cut into the
//! several inputs some entry points take.
use std::time::{Duration, SystemTime};

/// Splits `data` into a piece whose length is given by its first two bytes
/// (little-endian) and the rest. Short inputs give what there is.
pub fn split_prefixed(data: &[u8]) -> (&[u8], &[u8]) {
    if data.len() < 2 {
        return (data, &[]);
    }
    let n = u16::from_le_bytes([data[0], data[1]]) as usize;
    let body = &data[2..];
    let n = n.min(body.len());
    body.split_at(n)
}

/// Joins pieces the way [`split_prefixed`] cuts them (for seed corpora).
pub fn join_prefixed(first: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut out = (first.len() as u16).to_le_bytes().to_vec();
    out.extend_from_slice(first);
    out.extend_from_slice(rest);
    out
}

/// The verification time of the evidence targets: inside the validity of
/// the certificates in `../shared/testdata` (2025-06-01T00:00:00Z), so that
/// mutated inputs get past the chain checks to the later ones.
pub fn evidence_time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_748_736_000)
}
