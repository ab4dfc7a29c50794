//! Building and signing one sim report in the SNP layout (offsets in
//! `cloister_evidence::sim::layout`).
use cloister_evidence::sim::layout::*;
use cloister_evidence::snp::{REPORT_LEN, SIGNED_LEN};
use p384::ecdsa::signature::Signer;
use sha2::{Digest, Sha256};

/// What a sim report says about the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportFields {
    /// The launch digest of what was booted (`cloister measure sim`).
    pub measurement: [u8; 48],
    /// sha256(initdata), as SNP's HOST_DATA.
    pub host_data: [u8; 32],
    /// The 64 bytes the guest asked to be signed.
    pub report_data: [u8; 64],
}

fn put(report: &mut [u8; REPORT_LEN], off: usize, bytes: &[u8]) {
    report[off..off + bytes.len()].copy_from_slice(bytes);
}

/// Lays out and signs a report with the sim VCEK key.
pub fn build_report(fields: &ReportFields, vcek: &p384::ecdsa::SigningKey) -> [u8; REPORT_LEN] {
    let mut r = [0u8; REPORT_LEN];
    put(&mut r, OFF_VERSION, &VERSION.to_le_bytes());
    put(&mut r, OFF_POLICY, &POLICY.to_le_bytes());
    put(&mut r, OFF_VMPL, &0u32.to_le_bytes());
    put(&mut r, OFF_SIG_ALGO, &1u32.to_le_bytes());
    // KEY_INFO: SIGNING_KEY = 0 (VCEK), no MASK_CHIP_ID.
    put(&mut r, OFF_KEY_INFO, &0u32.to_le_bytes());
    put(&mut r, OFF_REPORT_DATA, &fields.report_data);
    put(&mut r, OFF_MEASUREMENT, &fields.measurement);
    put(&mut r, OFF_HOST_DATA, &fields.host_data);
    // REPORT_ID names the guest: a digest of what it is.
    let mut id = Sha256::new();
    id.update(b"cloister-sim report_id\0");
    id.update(fields.measurement);
    id.update(fields.host_data);
    put(&mut r, OFF_REPORT_ID, &id.finalize());
    put(&mut r, OFF_CHIP_ID, &SIM_MAGIC);
    let key_hash = Sha256::digest(vcek.verifying_key().to_encoded_point(false).as_bytes());
    put(&mut r, OFF_CHIP_ID + 32, &key_hash);

    let sig: p384::ecdsa::Signature = vcek.sign(&r[..SIGNED_LEN]);
    let (sr, ss) = sig.split_bytes();
    let mut le = [0u8; 48];
    le.copy_from_slice(&sr);
    le.reverse();
    put(&mut r, OFF_SIGNATURE_R, &le);
    le.copy_from_slice(&ss);
    le.reverse();
    put(&mut r, OFF_SIGNATURE_S, &le);
    r
}
