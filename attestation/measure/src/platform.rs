//! What the guest's platform contributes to the VMSA: the vCPU model (its
//! CPUID signature is the initial RDX under QEMU) and the VMM, since QEMU, EC2
//! and GCE set up slightly different initial register state and pages.

use std::fmt;
use std::str::FromStr;

use crate::MeasureError;

/// The VMM that launches the guest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VmmType {
    /// QEMU/KVM.
    #[default]
    Qemu,
    /// AWS EC2.
    Ec2,
    /// Google Compute Engine.
    Gce,
}

impl FromStr for VmmType {
    type Err = MeasureError;

    /// Accepts `qemu`, `ec2` and `gce` in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "qemu" => Ok(Self::Qemu),
            "ec2" => Ok(Self::Ec2),
            "gce" => Ok(Self::Gce),
            _ => Err(MeasureError::UnknownVmmType {
                name: s.to_string(),
            }),
        }
    }
}

impl fmt::Display for VmmType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Qemu => "qemu",
            Self::Ec2 => "ec2",
            Self::Gce => "gce",
        })
    }
}

/// QEMU's AMD EPYC CPU models that can run SEV-SNP guests: name, family,
/// model, stepping (QEMU `builtin_x86_defs`; the same set as sev-snp-measure).
const VCPU_TYPES: &[(&str, u32, u32, u32)] = &[
    ("EPYC", 23, 1, 2),
    ("EPYC-v1", 23, 1, 2),
    ("EPYC-v2", 23, 1, 2),
    ("EPYC-IBPB", 23, 1, 2),
    ("EPYC-v3", 23, 1, 2),
    ("EPYC-v4", 23, 1, 2),
    ("EPYC-Rome", 23, 49, 0),
    ("EPYC-Rome-v1", 23, 49, 0),
    ("EPYC-Rome-v2", 23, 49, 0),
    ("EPYC-Rome-v3", 23, 49, 0),
    ("EPYC-Milan", 25, 1, 1),
    ("EPYC-Milan-v1", 25, 1, 1),
    ("EPYC-Milan-v2", 25, 1, 1),
    ("EPYC-Genoa", 25, 17, 0),
    ("EPYC-Genoa-v1", 25, 17, 0),
    ("EPYC-Turin", 26, 0, 0),
];

/// A named QEMU vCPU model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuType {
    name: &'static str,
    family: u32,
    model: u32,
    stepping: u32,
}

impl VcpuType {
    /// Every known vCPU type.
    pub fn all() -> impl Iterator<Item = VcpuType> {
        VCPU_TYPES
            .iter()
            .map(|&(name, family, model, stepping)| VcpuType {
                name,
                family,
                model,
                stepping,
            })
    }

    /// The QEMU name, e.g. `EPYC-Milan`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// CPUID Fn0000_0001_EAX for this model.
    pub fn signature(&self) -> u32 {
        cpu_signature(self.family, self.model, self.stepping)
    }
}

impl FromStr for VcpuType {
    type Err = MeasureError;

    /// Accepts the QEMU names, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::all()
            .find(|t| t.name.eq_ignore_ascii_case(s))
            .ok_or_else(|| MeasureError::UnknownVcpuType {
                name: s.to_string(),
                known: Self::all().map(|t| t.name).collect::<Vec<_>>().join(", "),
            })
    }
}

impl fmt::Display for VcpuType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// CPUID Fn0000_0001_EAX (family, model, stepping) as AMD encodes it (CPUID
/// specification #25481): a family above 0xF is split into base 0xF plus an
/// extended family, and the model into base and extended nibbles.
pub fn cpu_signature(family: u32, model: u32, stepping: u32) -> u32 {
    let (family_low, family_high) = if family > 0xf {
        (0xf, (family - 0xf) & 0xff)
    } else {
        (family, 0)
    };
    let model_low = model & 0xf;
    let model_high = (model >> 4) & 0xf;
    (family_high << 20)
        | (model_high << 16)
        | (family_low << 8)
        | (model_low << 4)
        | (stepping & 0xf)
}
