//! The SEV-SNP launch digest of a QEMU-style direct boot: the order in which
//! the pages of a launch reach SNP_LAUNCH_UPDATE, and so the digest the
//! firmware puts in the attestation report's MEASUREMENT field.
//!
//! 1. The OVMF image, as NORMAL pages ending at 4 GiB (or a precomputed
//!    digest of them).
//! 2. The OVMF's SEV metadata sections, in image order.
//! 3. One VMSA per vCPU: the BSP first, then the APs.

use std::fmt;

use crate::kernel_hashes::KernelHashes;
use crate::ovmf::{MetadataSection, Ovmf, SectionType};
use crate::page_info::{GuestContext, LD_SIZE, PAGE_SIZE};
use crate::platform::VmmType;
use crate::vmsa::{vmsa_page, BSP_EIP};
use crate::MeasureError;

/// The guest features sev-snp-measure assumes when none are given: SNP active.
pub const DEFAULT_GUEST_FEATURES: u64 = 0x1;

/// An SEV-SNP launch digest (48 bytes, SHA-384 sized). Displays as lowercase hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SnpLaunchDigest(pub [u8; LD_SIZE]);

impl SnpLaunchDigest {
    pub fn as_bytes(&self) -> &[u8; LD_SIZE] {
        &self.0
    }

    /// Lowercase hex, as sev-snp-measure prints it.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for SnpLaunchDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// What the launch digest of an SEV-SNP guest depends on.
#[derive(Clone, Debug)]
pub struct SnpLaunchInputs<'a> {
    /// The OVMF image. Its footer table and SEV metadata are always read; its
    /// pages are hashed unless `ovmf_hash` is given.
    pub ovmf: &'a [u8],
    /// A precomputed digest of the OVMF pages ([`snp_ovmf_hash`]) to start
    /// from instead of hashing `ovmf`.
    pub ovmf_hash: Option<[u8; LD_SIZE]>,
    /// Hashes of the directly booted kernel, initrd and command line; `None`
    /// when no kernel is given on the QEMU command line.
    pub kernel: Option<KernelHashes>,
    /// Number of vCPUs (at least 1).
    pub vcpus: u32,
    /// CPUID signature of the vCPU model ([`crate::VcpuType::signature`]);
    /// only QEMU puts it in the VMSA, so it is ignored for EC2 and GCE.
    pub vcpu_sig: u32,
    /// The VMM.
    pub vmm: VmmType,
    /// SEV_FEATURES of every VMSA (the guest features), e.g. 0x1.
    pub guest_features: u64,
}

impl<'a> SnpLaunchInputs<'a> {
    /// Inputs for a QEMU guest booting only the OVMF, with the default guest features.
    pub fn new(ovmf: &'a [u8], vcpus: u32, vcpu_sig: u32) -> Self {
        Self {
            ovmf,
            ovmf_hash: None,
            kernel: None,
            vcpus,
            vcpu_sig,
            vmm: VmmType::Qemu,
            guest_features: DEFAULT_GUEST_FEATURES,
        }
    }

    pub fn with_kernel(mut self, kernel: KernelHashes) -> Self {
        self.kernel = Some(kernel);
        self
    }

    pub fn with_vmm(mut self, vmm: VmmType) -> Self {
        self.vmm = vmm;
        self
    }

    pub fn with_guest_features(mut self, guest_features: u64) -> Self {
        self.guest_features = guest_features;
        self
    }

    pub fn with_ovmf_hash(mut self, ovmf_hash: [u8; LD_SIZE]) -> Self {
        self.ovmf_hash = Some(ovmf_hash);
        self
    }
}

/// The launch digest the SEV-SNP firmware computes for a guest launched
/// with `inputs`; equal to what sev-snp-measure 0.0.13 prints in `snp` mode.
pub fn snp_launch_digest(inputs: &SnpLaunchInputs<'_>) -> Result<SnpLaunchDigest, MeasureError> {
    if inputs.vcpus == 0 {
        return Err(MeasureError::NoVcpus);
    }
    let ovmf = Ovmf::parse(inputs.ovmf)?;
    if inputs.kernel.is_some() && !ovmf.has_section(SectionType::SnpKernelHashes) {
        return Err(MeasureError::NoKernelHashesSection);
    }
    let ap_eip = ovmf.sev_es_reset_eip()?;
    if ap_eip == 0 && inputs.vcpus > 1 {
        return Err(MeasureError::NoApResetEip {
            vcpus: inputs.vcpus,
        });
    }

    let mut gctx = match inputs.ovmf_hash {
        Some(ld) => GuestContext::from_digest(ld),
        None => ovmf_pages(&ovmf)?,
    };
    for section in ovmf.sections() {
        add_section(
            &mut gctx,
            section,
            &ovmf,
            inputs.kernel.as_ref(),
            inputs.vmm,
        )?;
    }
    if inputs.vmm == VmmType::Ec2 {
        // EC2 adds the CPUID pages after every other section.
        for section in ovmf
            .sections()
            .iter()
            .filter(|s| s.kind == SectionType::Cpuid)
        {
            gctx.update_cpuid_page(section.gpa.into());
        }
    }

    let bsp = vmsa_page(BSP_EIP, inputs.guest_features, inputs.vcpu_sig, inputs.vmm);
    let ap = vmsa_page(ap_eip, inputs.guest_features, inputs.vcpu_sig, inputs.vmm);
    gctx.update_vmsa_page(&bsp);
    for _ in 1..inputs.vcpus {
        gctx.update_vmsa_page(&ap);
    }
    Ok(SnpLaunchDigest(gctx.digest()))
}

/// The digest after only the OVMF pages (sev-snp-measure's `snp:ovmf-hash`
/// mode), to pass later as [`SnpLaunchInputs::ovmf_hash`].
pub fn snp_ovmf_hash(ovmf: &[u8]) -> Result<[u8; LD_SIZE], MeasureError> {
    Ok(ovmf_pages(&Ovmf::parse(ovmf)?)?.digest())
}

/// Parses a precomputed OVMF hash given as 96 hex digits.
pub fn parse_ovmf_hash(text: &str) -> Result<[u8; LD_SIZE], MeasureError> {
    let bytes = hex::decode(text.trim()).map_err(|e| MeasureError::OvmfHashHex {
        reason: e.to_string(),
    })?;
    let got = bytes.len();
    bytes
        .try_into()
        .map_err(|_| MeasureError::OvmfHashLength { got })
}

fn ovmf_pages(ovmf: &Ovmf<'_>) -> Result<GuestContext, MeasureError> {
    let mut gctx = GuestContext::new();
    gctx.update_normal_pages(ovmf.gpa(), ovmf.data())?;
    Ok(gctx)
}

fn add_section(
    gctx: &mut GuestContext,
    section: &MetadataSection,
    ovmf: &Ovmf<'_>,
    kernel: Option<&KernelHashes>,
    vmm: VmmType,
) -> Result<(), MeasureError> {
    let (gpa, size, name) = (
        u64::from(section.gpa),
        u64::from(section.size),
        section.kind.name(),
    );
    match section.kind {
        // GCE adds the pre-validated memory unmeasured instead of zeroed.
        SectionType::SnpSecMem if vmm == VmmType::Gce => {
            gctx.update_unmeasured_pages(name, gpa, size)?
        }
        SectionType::SnpSecMem | SectionType::SvsmCaa => gctx.update_zero_pages(name, gpa, size)?,
        SectionType::SnpSecrets => gctx.update_secrets_page(gpa),
        SectionType::Cpuid if vmm == VmmType::Ec2 => {} // added last, see snp_launch_digest
        SectionType::Cpuid => gctx.update_cpuid_page(gpa),
        SectionType::SnpKernelHashes => match kernel {
            Some(hashes) => {
                if size != PAGE_SIZE as u64 {
                    return Err(MeasureError::KernelHashesSectionSize { gpa, size });
                }
                let offset = ovmf.sev_hashes_table_gpa()? as usize % PAGE_SIZE;
                gctx.update_normal_pages(gpa, &hashes.page(offset)?)?;
            }
            None => gctx.update_zero_pages(name, gpa, size)?,
        },
    }
    Ok(())
}
