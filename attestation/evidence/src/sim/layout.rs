//! Where the sim chip writes each field of its SNP-layout report, and the marker
//! that makes a sim report impossible to mistake for a real one.
//!
//! The offsets are those of the SEV-SNP ABI's ATTESTATION_REPORT (read back by
//! [`crate::snp::SnpReport::parse`]). CHIP_ID (0x1A0, 64 bytes) carries:
//!
//! | bytes  | content                                                     |
//! |--------|-------------------------------------------------------------|
//! | 0..32  | [`SIM_MAGIC`]: `CLOISTER-SIM NOT-A-TEE` padded with zeros   |
//! | 32..64 | SHA-256 of the sim VCEK's public key (SEC1 point)           |
//!
//! Real CHIP_IDs are either the chip's 64-byte ID or all zero (masked), so the magic
//! cannot occur on hardware by accident, and a sim report can never pass the SNP
//! verifier (its VCEK is not AMD's).

/// Report version the sim chip writes.
pub const VERSION: u32 = 3;
/// Guest policy the sim chip reports: SMT allowed (bit 16) and the must-be-one bit 17.
pub const POLICY: u64 = 0x3_0000;

pub const OFF_VERSION: usize = 0x00;
pub const OFF_POLICY: usize = 0x08;
pub const OFF_VMPL: usize = 0x30;
pub const OFF_SIG_ALGO: usize = 0x34;
pub const OFF_KEY_INFO: usize = 0x48;
pub const OFF_REPORT_DATA: usize = 0x50;
pub const OFF_MEASUREMENT: usize = 0x90;
pub const OFF_HOST_DATA: usize = 0xc0;
pub const OFF_REPORT_ID: usize = 0x140;
pub const OFF_CHIP_ID: usize = 0x1a0;
pub const OFF_SIGNATURE_R: usize = 0x2a0;
pub const OFF_SIGNATURE_S: usize = 0x2a0 + 72;

/// The first 32 bytes of a sim report's CHIP_ID.
pub const SIM_MAGIC: [u8; 32] = *b"CLOISTER-SIM NOT-A-TEE\0\0\0\0\0\0\0\0\0\0";

/// Subject common names of the sim certificates. The verifier requires them, so a
/// sim certificate is named as such wherever it is shown.
pub const SIM_ARK_CN: &str = "cloister-sim ARK \u{2014} NOT A TEE";
pub const SIM_ASK_CN: &str = "cloister-sim ASK \u{2014} NOT A TEE";
pub const SIM_VCEK_CN: &str = "cloister-sim VCEK \u{2014} NOT A TEE";
/// Organization of every sim certificate.
pub const SIM_ORG: &str = "cloister-sim \u{2014} NOT A TEE";
/// What sim claims and logs call the sim TEE.
pub const SIM_LABEL: &str = "cloister-sim \u{2014} NOT A TEE (development only, no security)";

/// Whether a report's CHIP_ID carries the sim marker.
pub fn has_sim_marker(report: &[u8]) -> bool {
    report.get(OFF_CHIP_ID..OFF_CHIP_ID + 32) == Some(&SIM_MAGIC[..])
}
