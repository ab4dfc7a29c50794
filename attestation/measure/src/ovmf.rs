//! What an SEV-capable OVMF image tells the measurement, read from the image
//! itself. OVMF ends with a table of GUID-tagged entries (the "footer table",
//! which QEMU also reads): it gives the SEV-ES reset block (the EIP where APs
//! start), the GPA of the SEV hashes table (where QEMU writes the kernel,
//! initrd and command-line hashes) and the offset of the SEV metadata, a list
//! of memory sections the hypervisor must add to the guest at launch
//! (edk2 `OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm`).
//!
//! The image is untrusted input: every offset and length read from it is
//! checked against the image before use.

use uuid::{uuid, Uuid};

use crate::MeasureError;

/// An OVMF image is mapped so that it ends at 4 GiB.
const FOUR_GIB: u64 = 0x1_0000_0000;
/// The footer table's own entry ends this many bytes before the end of the
/// image (the reset vector and padding come after it).
const FOOTER_DISTANCE_FROM_END: usize = 32;
/// An entry header: `u16` size (including this header), then the GUID.
/// Entries are laid out data first, header last, and read from the end.
const ENTRY_HEADER_LEN: usize = 2 + 16;
/// SEV metadata header: signature, size, version, number of sections.
const METADATA_HEADER_LEN: usize = 16;
/// SEV metadata section descriptor: GPA, size, type (all `u32`).
const METADATA_SECTION_LEN: usize = 12;

/// GUID of the footer table's own (last) entry.
pub const FOOTER_TABLE_GUID: Uuid = uuid!("96b582de-1fb2-45f7-baea-a366c55a082d");
/// Entry holding the GPA and size of the SEV hashes table.
pub const SEV_HASH_TABLE_RV_GUID: Uuid = uuid!("7255371f-3a3b-4b04-927b-1da6efa8d454");
/// Entry holding the SEV-ES reset block (the AP reset EIP).
pub const SEV_ES_RESET_BLOCK_GUID: Uuid = uuid!("00f771de-1a7e-4fcb-890e-68c77e2fb44e");
/// Entry holding the SEV metadata's offset from the end of the image.
pub const SEV_METADATA_GUID: Uuid = uuid!("dc886566-984a-4798-a75e-5585a7bf67cc");

/// Kinds of SEV metadata sections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionType {
    /// Memory the guest needs validated before it runs (pre-validated zero pages).
    SnpSecMem,
    /// The SNP secrets page.
    SnpSecrets,
    /// The CPUID page.
    Cpuid,
    /// The SVSM calling area.
    SvsmCaa,
    /// The page holding the SEV hashes table (kernel, initrd, command line).
    SnpKernelHashes,
}

impl SectionType {
    fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::SnpSecMem,
            2 => Self::SnpSecrets,
            3 => Self::Cpuid,
            4 => Self::SvsmCaa,
            0x10 => Self::SnpKernelHashes,
            _ => return None,
        })
    }

    /// The name edk2 and sev-snp-measure use.
    pub fn name(self) -> &'static str {
        match self {
            Self::SnpSecMem => "SNP_SEC_MEM",
            Self::SnpSecrets => "SNP_SECRETS",
            Self::Cpuid => "CPUID",
            Self::SvsmCaa => "SVSM_CAA",
            Self::SnpKernelHashes => "SNP_KERNEL_HASHES",
        }
    }
}

/// One SEV metadata section: memory the hypervisor adds at launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetadataSection {
    pub gpa: u32,
    pub size: u32,
    pub kind: SectionType,
}

/// One footer table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FooterEntry<'a> {
    pub guid: Uuid,
    pub data: &'a [u8],
}

/// A parsed OVMF image.
#[derive(Clone, Debug)]
pub struct Ovmf<'a> {
    data: &'a [u8],
    footer: Vec<FooterEntry<'a>>,
    sections: Vec<MetadataSection>,
}

impl<'a> Ovmf<'a> {
    /// Parses the footer table and SEV metadata of `data`, a whole OVMF image
    /// (or, as in the tests, its last pages: only the tail is read).
    pub fn parse(data: &'a [u8]) -> Result<Self, MeasureError> {
        if data.len() as u64 > FOUR_GIB {
            return Err(MeasureError::OvmfTooLarge { len: data.len() });
        }
        let footer = parse_footer_table(data)?;
        let mut ovmf = Self {
            data,
            footer,
            sections: Vec::new(),
        };
        ovmf.sections = ovmf.parse_sev_metadata()?;
        Ok(ovmf)
    }

    /// The image bytes.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// GPA of the image's first byte (it ends at 4 GiB).
    pub fn gpa(&self) -> u64 {
        FOUR_GIB - self.data.len() as u64
    }

    /// The footer table entries, in the order they were read (from the end).
    pub fn footer_entries(&self) -> &[FooterEntry<'a>] {
        &self.footer
    }

    /// The data of the footer entry with `guid`. When a GUID appears twice,
    /// the entry nearer the start of the image wins, as in sev-snp-measure.
    pub fn footer_entry(&self, guid: &Uuid) -> Option<&'a [u8]> {
        self.footer
            .iter()
            .rev()
            .find(|e| e.guid == *guid)
            .map(|e| e.data)
    }

    /// The SEV metadata sections, in image order (the order they are measured).
    pub fn sections(&self) -> &[MetadataSection] {
        &self.sections
    }

    /// Whether the SEV metadata declares a section of `kind`.
    pub fn has_section(&self, kind: SectionType) -> bool {
        self.sections.iter().any(|s| s.kind == kind)
    }

    /// EIP at which APs start (the SEV-ES reset block).
    pub fn sev_es_reset_eip(&self) -> Result<u32, MeasureError> {
        self.entry_u32("SEV_ES_RESET_BLOCK", &SEV_ES_RESET_BLOCK_GUID)
    }

    /// GPA where QEMU places the SEV hashes table.
    pub fn sev_hashes_table_gpa(&self) -> Result<u32, MeasureError> {
        self.entry_u32("SEV_HASH_TABLE_RV", &SEV_HASH_TABLE_RV_GUID)
    }

    fn entry_u32(&self, name: &'static str, guid: &Uuid) -> Result<u32, MeasureError> {
        let data = self
            .footer_entry(guid)
            .ok_or_else(|| MeasureError::MissingFooterEntry {
                name,
                guid: guid.to_string(),
            })?;
        le_u32(data, 0).ok_or(MeasureError::FooterEntryTooSmall {
            name,
            len: data.len(),
            min: 4,
        })
    }

    fn parse_sev_metadata(&self) -> Result<Vec<MetadataSection>, MeasureError> {
        // An OVMF without SEV metadata (e.g. a plain SEV build) declares no sections.
        let Some(entry) = self.footer_entry(&SEV_METADATA_GUID) else {
            return Ok(Vec::new());
        };
        let offset_from_end = le_u32(entry, 0).ok_or(MeasureError::FooterEntryTooSmall {
            name: "SEV_METADATA",
            len: entry.len(),
            min: 4,
        })?;
        let len = self.data.len();
        let start = len
            .checked_sub(offset_from_end as usize)
            .filter(|start| start + METADATA_HEADER_LEN <= len)
            .ok_or(MeasureError::SevMetadataOutOfBounds {
                offset_from_end,
                len,
                header: METADATA_HEADER_LEN,
            })?;
        let header = &self.data[start..start + METADATA_HEADER_LEN];
        let signature: [u8; 4] = [header[0], header[1], header[2], header[3]];
        if &signature != b"ASEV" {
            return Err(MeasureError::SevMetadataSignature { found: signature });
        }
        let size = le_u32(header, 4).unwrap_or_default();
        let version = le_u32(header, 8).unwrap_or_default();
        let num_items = le_u32(header, 12).unwrap_or_default();
        if version != 1 {
            return Err(MeasureError::SevMetadataVersion { found: version });
        }
        let needed =
            METADATA_HEADER_LEN as u64 + u64::from(num_items) * METADATA_SECTION_LEN as u64;
        let available = len - start;
        if u64::from(size) < needed || size as usize > available {
            return Err(MeasureError::SevMetadataItems {
                size,
                num_items,
                needed,
                available,
            });
        }
        let items = &self.data[start + METADATA_HEADER_LEN..start + size as usize];
        items
            .chunks_exact(METADATA_SECTION_LEN)
            .take(num_items as usize)
            .enumerate()
            .map(|(index, item)| {
                let field = |at| le_u32(item, at).unwrap_or_default();
                let section_type = field(8);
                let kind = SectionType::from_u32(section_type).ok_or(
                    MeasureError::UnknownSectionType {
                        index,
                        section_type,
                    },
                )?;
                Ok(MetadataSection {
                    gpa: field(0),
                    size: field(4),
                    kind,
                })
            })
            .collect()
    }
}

/// Reads the footer table, last entry first, as QEMU and sev-snp-measure do.
fn parse_footer_table(data: &[u8]) -> Result<Vec<FooterEntry<'_>>, MeasureError> {
    let min = FOOTER_DISTANCE_FROM_END + ENTRY_HEADER_LEN;
    let footer_start = data
        .len()
        .checked_sub(min)
        .ok_or(MeasureError::OvmfTooSmall {
            len: data.len(),
            min,
        })?;
    let (footer_size, footer_guid) =
        entry_header(&data[footer_start..footer_start + ENTRY_HEADER_LEN]);
    if footer_guid != FOOTER_TABLE_GUID {
        return Err(MeasureError::NoFooterTable {
            expected: FOOTER_TABLE_GUID.to_string(),
            found: footer_guid.to_string(),
        });
    }
    let table_len =
        footer_size
            .checked_sub(ENTRY_HEADER_LEN)
            .ok_or(MeasureError::FooterEntryTooShort {
                guid: footer_guid.to_string(),
                size: footer_size,
                min: ENTRY_HEADER_LEN,
            })?;
    if table_len > footer_start {
        return Err(MeasureError::FooterTableSize {
            claimed: table_len,
            available: footer_start,
        });
    }
    let mut table = &data[footer_start - table_len..footer_start];
    let mut entries = Vec::new();
    while table.len() >= ENTRY_HEADER_LEN {
        let (size, guid) = entry_header(&table[table.len() - ENTRY_HEADER_LEN..]);
        if size < ENTRY_HEADER_LEN {
            return Err(MeasureError::FooterEntryTooShort {
                guid: guid.to_string(),
                size,
                min: ENTRY_HEADER_LEN,
            });
        }
        if size > table.len() {
            return Err(MeasureError::FooterEntryOverrun {
                guid: guid.to_string(),
                size,
                remaining: table.len(),
            });
        }
        let entry_start = table.len() - size;
        entries.push(FooterEntry {
            guid,
            data: &table[entry_start..table.len() - ENTRY_HEADER_LEN],
        });
        table = &table[..entry_start];
    }
    Ok(entries)
}

/// Splits an entry header (exactly `ENTRY_HEADER_LEN` bytes) into size and GUID.
fn entry_header(header: &[u8]) -> (usize, Uuid) {
    let size = u16::from_le_bytes([header[0], header[1]]) as usize;
    let mut guid = [0u8; 16];
    guid.copy_from_slice(&header[2..ENTRY_HEADER_LEN]);
    (size, Uuid::from_bytes_le(guid))
}

fn le_u32(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}
