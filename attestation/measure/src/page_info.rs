//! The launch digest's chaining rule. Every page the hypervisor hands to the
//! SEV-SNP firmware with SNP_LAUNCH_UPDATE extends the guest context's launch
//! digest (GCTX.LD): the firmware hashes a PAGE_INFO structure that holds the
//! current digest, a digest of the page's contents, the page type and its GPA
//! (AMD SEV-SNP ABI specification, "PAGE_INFO"), and the SHA-384 of that
//! becomes the new digest. This module is that rule and nothing else; which
//! pages are added, and in what order, is decided in `snp`.

use sha2::{Digest, Sha384};

use crate::MeasureError;

/// Size of a launch digest (SHA-384).
pub const LD_SIZE: usize = 48;
/// Size of a guest page.
pub const PAGE_SIZE: usize = 4096;
/// GPA recorded for VMSA pages: the RMP uses (u64)-1, page aligned and with
/// the bits above 51 cleared.
pub const VMSA_GPA: u64 = 0xFFFF_FFFF_F000;
/// Length of PAGE_INFO, which is also its first field after the digests.
const PAGE_INFO_LEN: usize = 0x70;

/// Page types of SNP_LAUNCH_UPDATE, as PAGE_INFO records them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PageType {
    /// Contents given by the hypervisor and measured.
    Normal = 0x01,
    /// A vCPU's initial save area.
    Vmsa = 0x02,
    /// Zero-filled by the firmware.
    Zero = 0x03,
    /// Contents given but not measured.
    Unmeasured = 0x04,
    /// Filled by the firmware with the guest's secrets.
    Secrets = 0x05,
    /// CPUID values, checked by the firmware.
    Cpuid = 0x06,
}

/// A guest context's launch digest, extended page by page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestContext {
    ld: [u8; LD_SIZE],
}

impl Default for GuestContext {
    fn default() -> Self {
        Self::new()
    }
}

impl GuestContext {
    /// A fresh context: the firmware starts from an all-zero digest.
    pub fn new() -> Self {
        Self { ld: [0; LD_SIZE] }
    }

    /// A context that continues from a digest computed elsewhere (a
    /// precomputed OVMF hash).
    pub fn from_digest(ld: [u8; LD_SIZE]) -> Self {
        Self { ld }
    }

    /// The launch digest so far.
    pub fn digest(&self) -> [u8; LD_SIZE] {
        self.ld
    }

    /// Extends the digest with one page. `contents` is the SHA-384 of the page
    /// for NORMAL and VMSA pages and zero for the other types.
    pub fn update(&mut self, page_type: PageType, gpa: u64, contents: &[u8; LD_SIZE]) {
        let mut page_info = [0u8; PAGE_INFO_LEN];
        page_info[..LD_SIZE].copy_from_slice(&self.ld);
        page_info[LD_SIZE..2 * LD_SIZE].copy_from_slice(contents);
        let rest = &mut page_info[2 * LD_SIZE..];
        rest[0..2].copy_from_slice(&(PAGE_INFO_LEN as u16).to_le_bytes());
        rest[2] = page_type as u8;
        // rest[3]: IMI_PAGE = 0; rest[4..7]: VMPL3/2/1 permissions = 0;
        // rest[7]: reserved.
        rest[8..16].copy_from_slice(&gpa.to_le_bytes());
        self.ld = Sha384::digest(page_info).into();
    }

    /// Extends the digest with NORMAL pages holding `data`, the first at `gpa`.
    pub fn update_normal_pages(&mut self, gpa: u64, data: &[u8]) -> Result<(), MeasureError> {
        if !data.len().is_multiple_of(PAGE_SIZE) {
            return Err(MeasureError::OvmfNotPageAligned { len: data.len() });
        }
        for (i, page) in data.chunks_exact(PAGE_SIZE).enumerate() {
            let contents: [u8; LD_SIZE] = Sha384::digest(page).into();
            self.update(PageType::Normal, gpa + (i * PAGE_SIZE) as u64, &contents);
        }
        Ok(())
    }

    /// Extends the digest with one vCPU's VMSA page.
    pub fn update_vmsa_page(&mut self, page: &[u8; PAGE_SIZE]) {
        let contents: [u8; LD_SIZE] = Sha384::digest(page).into();
        self.update(PageType::Vmsa, VMSA_GPA, &contents);
    }

    /// Extends the digest with `len` bytes of ZERO pages from `gpa`.
    pub fn update_zero_pages(
        &mut self,
        kind: &'static str,
        gpa: u64,
        len: u64,
    ) -> Result<(), MeasureError> {
        self.update_empty_pages(PageType::Zero, kind, gpa, len)
    }

    /// Extends the digest with `len` bytes of UNMEASURED pages from `gpa`.
    pub fn update_unmeasured_pages(
        &mut self,
        kind: &'static str,
        gpa: u64,
        len: u64,
    ) -> Result<(), MeasureError> {
        self.update_empty_pages(PageType::Unmeasured, kind, gpa, len)
    }

    /// Extends the digest with the SECRETS page at `gpa`.
    pub fn update_secrets_page(&mut self, gpa: u64) {
        self.update(PageType::Secrets, gpa, &[0; LD_SIZE]);
    }

    /// Extends the digest with the CPUID page at `gpa`.
    pub fn update_cpuid_page(&mut self, gpa: u64) {
        self.update(PageType::Cpuid, gpa, &[0; LD_SIZE]);
    }

    fn update_empty_pages(
        &mut self,
        page_type: PageType,
        kind: &'static str,
        gpa: u64,
        len: u64,
    ) -> Result<(), MeasureError> {
        if !len.is_multiple_of(PAGE_SIZE as u64) {
            return Err(MeasureError::SectionNotPageAligned {
                kind,
                gpa,
                size: len,
            });
        }
        for offset in (0..len).step_by(PAGE_SIZE) {
            self.update(page_type, gpa + offset, &[0; LD_SIZE]);
        }
        Ok(())
    }
}
