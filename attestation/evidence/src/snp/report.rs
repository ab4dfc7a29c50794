//! The 1184-byte SEV-SNP attestation report (SEV-SNP ABI spec, table
//! "ATTESTATION_REPORT Structure"), read at fixed offsets.
//!
//! Why not `sev::firmware::guest::AttestationReport`: sev 8 guesses the product of
//! a version-2 report from its CHIP_ID and refuses reports whose CHIP_ID is masked
//! (all zero), and it verifies signatures over a re-encoding of the parsed fields.
//! A verifier must take the product from verified sources and check the signature
//! over the bytes it was given, so the framing is read here; the field decoders
//! (TCB layouts, policy and key-info bits) are sev's.
use sev::firmware::guest::KeyInfo;
use sev::firmware::host::TcbVersion;
use sev::parser::ByteParser;

use super::product::Product;

/// Size of a report, signature included.
pub const REPORT_LEN: usize = 1184;
/// The signature covers bytes 0..0x2a0.
pub const SIGNED_LEN: usize = 0x2a0;

const SIG_COMPONENT_LEN: usize = 72;

/// The key that signed a report (KEY_INFO.SIGNING_KEY).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigningKey {
    Vcek,
    Vlek,
    None,
    Reserved(u32),
}

impl std::fmt::Display for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SigningKey::Vcek => f.write_str("VCEK"),
            SigningKey::Vlek => f.write_str("VLEK"),
            SigningKey::None => f.write_str("no key (unsigned report)"),
            SigningKey::Reserved(v) => write!(f, "reserved value {v}"),
        }
    }
}

/// Firmware version as major.minor.build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirmwareVersion {
    pub major: u8,
    pub minor: u8,
    pub build: u8,
}

impl std::fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.build)
    }
}

/// The fields of a report. TCB values stay raw until the product is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnpReport {
    pub version: u32,
    pub guest_svn: u32,
    pub policy: u64,
    pub family_id: [u8; 16],
    pub image_id: [u8; 16],
    pub vmpl: u32,
    pub sig_algo: u32,
    pub current_tcb: u64,
    pub platform_info: u64,
    pub key_info: u32,
    pub report_data: [u8; 64],
    pub measurement: [u8; 48],
    pub host_data: [u8; 32],
    pub id_key_digest: [u8; 48],
    pub author_key_digest: [u8; 48],
    pub report_id: [u8; 32],
    pub report_id_ma: [u8; 32],
    pub reported_tcb: u64,
    /// (family, model, stepping); version 3 and later.
    pub cpuid: Option<(u8, u8, u8)>,
    pub chip_id: [u8; 64],
    pub committed_tcb: u64,
    pub current_version: FirmwareVersion,
    pub committed_version: FirmwareVersion,
    pub launch_tcb: u64,
    /// R and S, little-endian, 72 bytes each.
    pub signature_r: [u8; SIG_COMPONENT_LEN],
    pub signature_s: [u8; SIG_COMPONENT_LEN],
}

fn bytes<const N: usize>(r: &[u8; REPORT_LEN], off: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&r[off..off + N]);
    out
}

fn u32_at(r: &[u8; REPORT_LEN], off: usize) -> u32 {
    u32::from_le_bytes(bytes(r, off))
}

fn u64_at(r: &[u8; REPORT_LEN], off: usize) -> u64 {
    u64::from_le_bytes(bytes(r, off))
}

fn fw(r: &[u8; REPORT_LEN], off: usize) -> FirmwareVersion {
    FirmwareVersion {
        build: r[off],
        minor: r[off + 1],
        major: r[off + 2],
    }
}

impl SnpReport {
    /// Reads a report. Errors say what is wrong with the framing.
    pub fn parse(raw: &[u8]) -> Result<SnpReport, String> {
        let r: &[u8; REPORT_LEN] = raw
            .try_into()
            .map_err(|_| format!("expected {REPORT_LEN} bytes, got {}", raw.len()))?;
        let version = u32_at(r, 0x00);
        if !(2..=5).contains(&version) {
            return Err(format!("version: expected 2 to 5, got {version}"));
        }
        let sig_algo = u32_at(r, 0x34);
        if sig_algo != 1 {
            return Err(format!(
                "signature algorithm: expected 1 (ECDSA P-384 with SHA-384), got {sig_algo}"
            ));
        }
        let cpuid = (version >= 3).then(|| (r[0x188], r[0x189], r[0x18a]));
        Ok(SnpReport {
            version,
            guest_svn: u32_at(r, 0x04),
            policy: u64_at(r, 0x08),
            family_id: bytes(r, 0x10),
            image_id: bytes(r, 0x20),
            vmpl: u32_at(r, 0x30),
            sig_algo,
            current_tcb: u64_at(r, 0x38),
            platform_info: u64_at(r, 0x40),
            key_info: u32_at(r, 0x48),
            report_data: bytes(r, 0x50),
            measurement: bytes(r, 0x90),
            host_data: bytes(r, 0xc0),
            id_key_digest: bytes(r, 0xe0),
            author_key_digest: bytes(r, 0x110),
            report_id: bytes(r, 0x140),
            report_id_ma: bytes(r, 0x160),
            reported_tcb: u64_at(r, 0x180),
            cpuid,
            chip_id: bytes(r, 0x1a0),
            committed_tcb: u64_at(r, 0x1e0),
            current_version: fw(r, 0x1e8),
            committed_version: fw(r, 0x1ec),
            launch_tcb: u64_at(r, 0x1f0),
            signature_r: bytes(r, 0x2a0),
            signature_s: bytes(r, 0x2a0 + SIG_COMPONENT_LEN),
        })
    }

    pub fn signing_key(&self) -> SigningKey {
        match KeyInfo::from(self.key_info).signing_key() {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            7 => SigningKey::None,
            v => SigningKey::Reserved(v),
        }
    }

    /// The CPUID fields when the report has them and they are not zero.
    pub fn cpuid_present(&self) -> Option<(u8, u8, u8)> {
        self.cpuid.filter(|c| *c != (0, 0, 0))
    }

    /// The signature as a P-384 ECDSA signature. The stored components are
    /// little-endian and 72 bytes wide; the top 24 bytes must be zero.
    pub fn signature(&self) -> Result<p384::ecdsa::Signature, String> {
        fn scalar(le: &[u8; SIG_COMPONENT_LEN], name: &str) -> Result<[u8; 48], String> {
            if le[48..].iter().any(|b| *b != 0) {
                return Err(format!("{name} has non-zero bytes beyond 48"));
            }
            let mut be = [0u8; 48];
            be.copy_from_slice(&le[..48]);
            be.reverse();
            Ok(be)
        }
        let r = scalar(&self.signature_r, "R")?;
        let s = scalar(&self.signature_s, "S")?;
        p384::ecdsa::Signature::from_scalars(r, s)
            .map_err(|_| "R or S is zero or not below the curve order".to_string())
    }
}

/// A TCB_VERSION decoded with the product's layout (Turin adds FMC and moves fields).
pub fn decode_tcb(raw: u64, product: Product) -> TcbVersion {
    // Decoding 8 bytes cannot fail for Milan, Genoa and Turin.
    TcbVersion::from_bytes_with(&raw.to_le_bytes(), product.generation()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MILAN: &[u8] = include_bytes!("../../testdata/snp/virtee-sev/report_milan.bin");

    #[test]
    fn parses_fields_at_their_offsets() {
        let r = SnpReport::parse(MILAN).unwrap();
        assert_eq!(r.version, 2);
        assert_eq!(r.policy, 0x30000);
        assert_eq!(r.reported_tcb, 0x7308000000000003);
        assert_eq!(r.current_version.to_string(), "1.52.4");
        assert_eq!(r.signing_key(), SigningKey::Vcek);
        assert_eq!(r.cpuid, None);
        assert_eq!(hex::encode(&r.chip_id[..4]), "d49554ec");
    }

    #[test]
    fn rejects_wrong_length_version_and_algorithm() {
        assert!(SnpReport::parse(&MILAN[..1183])
            .unwrap_err()
            .contains("expected 1184 bytes, got 1183"));
        let mut bad = MILAN.to_vec();
        bad[0] = 1;
        assert!(SnpReport::parse(&bad).unwrap_err().contains("version"));
        let mut bad = MILAN.to_vec();
        bad[0x34] = 2;
        assert!(SnpReport::parse(&bad)
            .unwrap_err()
            .contains("signature algorithm"));
    }

    #[test]
    fn tcb_layouts_differ_by_product() {
        // Milan/Genoa: bootloader, tee, 4 reserved, snp, microcode.
        let t = decode_tcb(0x7308000000000003, Product::Milan);
        assert_eq!(
            (t.bootloader, t.tee, t.snp, t.microcode, t.fmc),
            (3, 0, 8, 0x73, None)
        );
        // Turin: fmc, bootloader, tee, snp, 3 reserved, microcode.
        let t = decode_tcb(u64::from_le_bytes([1, 2, 3, 4, 0, 0, 0, 9]), Product::Turin);
        assert_eq!(
            (t.fmc, t.bootloader, t.tee, t.snp, t.microcode),
            (Some(1), 2, 3, 4, 9)
        );
    }

    #[test]
    fn signature_must_fit_48_bytes() {
        let mut r = SnpReport::parse(MILAN).unwrap();
        assert!(r.signature().is_ok());
        r.signature_s[60] = 1;
        assert!(r.signature().unwrap_err().contains("S has non-zero bytes"));
    }
}
