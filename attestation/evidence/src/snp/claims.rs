//! What a verified SNP report tells: the claims in serializable form, with the
//! policy, platform info and TCB values decoded.
use serde::Serialize;
use sev::firmware::guest::{GuestPolicy, PlatformInfo};
use sev::firmware::host::TcbVersion;

use super::product::Product;
use super::report::{decode_tcb, SnpReport};
use super::vek::{VekExtensions, VekKind};

/// A TCB_VERSION, decoded with the product's layout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tcb {
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
    /// Turin and later only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
    /// The 64-bit value as stored, e.g. `0x7308000000000003`.
    pub raw: String,
}

impl Tcb {
    pub(crate) fn decode(raw: u64, product: Product) -> Tcb {
        let TcbVersion {
            fmc,
            bootloader,
            tee,
            snp,
            microcode,
        } = decode_tcb(raw, product);
        Tcb {
            bootloader,
            tee,
            snp,
            microcode,
            fmc,
            raw: format!("{raw:#018x}"),
        }
    }
}

/// The guest policy bits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub raw: String,
    pub abi_major: u64,
    pub abi_minor: u64,
    pub smt_allowed: bool,
    pub migrate_ma_allowed: bool,
    pub debug_allowed: bool,
    pub single_socket_required: bool,
    pub cxl_allowed: bool,
    pub mem_aes_256_xts: bool,
    pub rapl_dis: bool,
    pub ciphertext_hiding: bool,
    pub page_swap_disabled: bool,
}

impl Policy {
    pub(crate) fn decode(raw: u64) -> Policy {
        let p = GuestPolicy::from(raw);
        Policy {
            raw: format!("{raw:#x}"),
            abi_major: p.abi_major(),
            abi_minor: p.abi_minor(),
            smt_allowed: p.smt_allowed(),
            migrate_ma_allowed: p.migrate_ma_allowed(),
            debug_allowed: p.debug_allowed(),
            single_socket_required: p.single_socket_required(),
            cxl_allowed: p.cxl_allowed(),
            mem_aes_256_xts: p.mem_aes_256_xts(),
            rapl_dis: p.rapl_dis(),
            ciphertext_hiding: p.ciphertext_hiding(),
            page_swap_disabled: p.page_swap_disabled(),
        }
    }
}

/// The platform info bits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Platform {
    pub raw: String,
    pub smt_enabled: bool,
    pub tsme_enabled: bool,
    pub ecc_enabled: bool,
    pub rapl_disabled: bool,
    pub ciphertext_hiding_enabled: bool,
    pub alias_check_complete: bool,
}

impl Platform {
    fn decode(raw: u64) -> Platform {
        let p = PlatformInfo::from(raw);
        Platform {
            raw: format!("{raw:#x}"),
            smt_enabled: p.smt_enabled(),
            tsme_enabled: p.tsme_enabled(),
            ecc_enabled: p.ecc_enabled(),
            rapl_disabled: p.rapl_disabled(),
            ciphertext_hiding_enabled: p.ciphertext_hiding_enabled(),
            alias_check_complete: p.alias_check_complete(),
        }
    }
}

/// CPUID family, model and stepping (report version 3 and later).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Cpuid {
    pub family: u8,
    pub model: u8,
    pub stepping: u8,
}

/// The endorsement key that signed the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Endorsement {
    /// `vcek` or `vlek`.
    pub kind: &'static str,
    pub issuer: String,
    pub product_name: Option<String>,
    /// VLEK only: the cloud provider it was issued to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csp_id: Option<String>,
    pub not_after: String,
}

/// The claims of a verified SEV-SNP report. Byte fields are lower-case hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnpClaims {
    pub product: Product,
    pub version: u32,
    pub measurement: String,
    pub host_data: String,
    pub report_data: String,
    pub chip_id: String,
    pub reported_tcb: Tcb,
    pub current_tcb: Tcb,
    pub committed_tcb: Tcb,
    pub launch_tcb: Tcb,
    pub policy: Policy,
    pub vmpl: u32,
    pub guest_svn: u32,
    pub family_id: String,
    pub image_id: String,
    pub id_key_digest: String,
    pub author_key_digest: String,
    pub report_id: String,
    pub report_id_ma: String,
    pub platform_info: Platform,
    pub current_firmware: String,
    pub committed_firmware: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuid: Option<Cpuid>,
    pub endorsement: Endorsement,
}

impl SnpClaims {
    pub(crate) fn new(
        r: &SnpReport,
        product: Product,
        kind: VekKind,
        ext: &VekExtensions,
        issuer: String,
        not_after: String,
    ) -> SnpClaims {
        SnpClaims {
            product,
            version: r.version,
            measurement: hex::encode(r.measurement),
            host_data: hex::encode(r.host_data),
            report_data: hex::encode(r.report_data),
            chip_id: hex::encode(r.chip_id),
            reported_tcb: Tcb::decode(r.reported_tcb, product),
            current_tcb: Tcb::decode(r.current_tcb, product),
            committed_tcb: Tcb::decode(r.committed_tcb, product),
            launch_tcb: Tcb::decode(r.launch_tcb, product),
            policy: Policy::decode(r.policy),
            vmpl: r.vmpl,
            guest_svn: r.guest_svn,
            family_id: hex::encode(r.family_id),
            image_id: hex::encode(r.image_id),
            id_key_digest: hex::encode(r.id_key_digest),
            author_key_digest: hex::encode(r.author_key_digest),
            report_id: hex::encode(r.report_id),
            report_id_ma: hex::encode(r.report_id_ma),
            platform_info: Platform::decode(r.platform_info),
            current_firmware: r.current_version.to_string(),
            committed_firmware: r.committed_version.to_string(),
            cpuid: r.cpuid.map(|(family, model, stepping)| Cpuid {
                family,
                model,
                stepping,
            }),
            endorsement: Endorsement {
                kind: kind.name(),
                issuer,
                product_name: ext.product_name.clone(),
                csp_id: ext.csp_id.clone(),
                not_after,
            },
        }
    }
}
