//! Why a launch digest could not be computed. Every variant says what was
//! wrong with which input, and what was expected instead, because the usual
//! reader is someone holding an OVMF build or a command line that does not
//! measure.

use thiserror::Error;

/// An input that cannot be measured.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MeasureError {
    #[error("OVMF image is {len} bytes; at least {min} are needed to hold the footer GUID table")]
    OvmfTooSmall { len: usize, min: usize },

    #[error("OVMF image is {len} bytes; it must end at 4 GiB, so it cannot be larger than 4 GiB")]
    OvmfTooLarge { len: usize },

    #[error("OVMF image is {len} bytes, not a whole number of 4096-byte pages")]
    OvmfNotPageAligned { len: usize },

    #[error(
        "OVMF image has no footer GUID table (expected GUID {expected} 32 bytes before the end, found {found}); \
         it is not an SEV-capable OVMF build"
    )]
    NoFooterTable { expected: String, found: String },

    #[error("OVMF footer table claims {claimed} bytes, but only {available} bytes precede its footer entry")]
    FooterTableSize { claimed: usize, available: usize },

    #[error("OVMF footer table entry {guid} has size {size}; an entry is at least {min} bytes (size + GUID)")]
    FooterEntryTooShort {
        guid: String,
        size: usize,
        min: usize,
    },

    #[error("OVMF footer table entry {guid} claims {size} bytes, but only {remaining} bytes of the table remain")]
    FooterEntryOverrun {
        guid: String,
        size: usize,
        remaining: usize,
    },

    #[error("OVMF footer table has no {name} entry (GUID {guid})")]
    MissingFooterEntry { name: &'static str, guid: String },

    #[error("OVMF footer table entry {name} has {len} bytes of data; at least {min} are needed")]
    FooterEntryTooSmall {
        name: &'static str,
        len: usize,
        min: usize,
    },

    #[error("SEV metadata is said to start {offset_from_end} bytes before the end of a {len}-byte OVMF image; its {header}-byte header does not fit")]
    SevMetadataOutOfBounds {
        offset_from_end: u32,
        len: usize,
        header: usize,
    },

    #[error("SEV metadata signature is {found:02x?}, expected \"ASEV\"")]
    SevMetadataSignature { found: [u8; 4] },

    #[error("SEV metadata version is {found}, expected 1")]
    SevMetadataVersion { found: u32 },

    #[error(
        "SEV metadata header says {size} bytes with {num_items} sections, which needs {needed} bytes \
         and must lie within the image ({available} bytes available from its start)"
    )]
    SevMetadataItems {
        size: u32,
        num_items: u32,
        needed: u64,
        available: usize,
    },

    #[error("SEV metadata section {index} has unknown type {section_type:#x} (known: 1 SNP_SEC_MEM, 2 SNP_SECRETS, 3 CPUID, 4 SVSM_CAA, 0x10 SNP_KERNEL_HASHES)")]
    UnknownSectionType { index: usize, section_type: u32 },

    #[error("SEV metadata section {kind} at GPA {gpa:#x} has size {size:#x}, not a whole number of 4096-byte pages")]
    SectionNotPageAligned {
        kind: &'static str,
        gpa: u64,
        size: u64,
    },

    #[error(
        "a kernel was given, but the OVMF's SEV metadata has no SNP_KERNEL_HASHES section: this OVMF \
         cannot measure a kernel, initrd and command line (use an AmdSev build, or measure without --kernel)"
    )]
    NoKernelHashesSection,

    #[error("the SNP_KERNEL_HASHES section at GPA {gpa:#x} is {size:#x} bytes; it must be exactly one 4096-byte page")]
    KernelHashesSectionSize { gpa: u64, size: u64 },

    #[error("the SEV hashes table at page offset {offset:#x} ({len} bytes) does not fit in its 4096-byte page")]
    KernelHashesTableOffset { offset: usize, len: usize },

    #[error("vCPU count must be at least 1, got 0")]
    NoVcpus,

    #[error("the OVMF's SEV-ES reset block gives AP reset EIP 0, so {vcpus} vCPUs cannot be measured (only the BSP can)")]
    NoApResetEip { vcpus: u32 },

    #[error("unknown vCPU type {name:?}; known types: {known}")]
    UnknownVcpuType { name: String, known: String },

    #[error("unknown VMM type {name:?}; known types: qemu, ec2, gce")]
    UnknownVmmType { name: String },

    #[error("OVMF hash is not valid hex: {reason}")]
    OvmfHashHex { reason: String },

    #[error("OVMF hash is {got} bytes; a launch digest (GCTX) is 48 bytes (96 hex digits)")]
    OvmfHashLength { got: usize },
}
