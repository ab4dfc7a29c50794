//! The SEV hashes table: how a kernel, initrd and command line get into the
//! launch digest. With direct kernel boot, QEMU does not add the kernel to
//! guest memory as measured pages; it writes the SHA-256 of each into a table
//! inside the OVMF's SNP_KERNEL_HASHES page, measures that page, and OVMF
//! refuses to boot anything whose hash differs. The table layout (GUIDed
//! header and entries, padded to 16 bytes) must be byte-for-byte QEMU's
//! (`target/i386/sev.c`, `SevHashTable`).

use sha2::{Digest, Sha256};
use uuid::{uuid, Uuid};

use crate::page_info::PAGE_SIZE;
use crate::MeasureError;

const TABLE_HEADER_GUID: Uuid = uuid!("9438d606-4f22-4cc9-b479-a793d411fd21");
const KERNEL_ENTRY_GUID: Uuid = uuid!("4de79437-abd2-427f-b835-d5b172d2045b");
const INITRD_ENTRY_GUID: Uuid = uuid!("44baf731-3a2f-4bd7-9af1-41e29169781d");
const CMDLINE_ENTRY_GUID: Uuid = uuid!("97d02dd8-bd20-4c94-aa78-e7714d36ab2a");

/// An entry: GUID, `u16` length, SHA-256.
const ENTRY_LEN: usize = 16 + 2 + 32;
/// The table: GUID, `u16` length, then the cmdline, initrd and kernel entries.
const TABLE_LEN: usize = 16 + 2 + 3 * ENTRY_LEN;
/// The table as QEMU writes it: padded to a multiple of 16 bytes.
pub const PADDED_TABLE_LEN: usize = TABLE_LEN.next_multiple_of(16);

/// SHA-256 of the kernel, the initrd and the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelHashes {
    pub kernel: [u8; 32],
    pub initrd: [u8; 32],
    pub cmdline: [u8; 32],
}

impl KernelHashes {
    /// Hashes the boot inputs as QEMU does. No initrd is the same as an empty
    /// one (pass `&[]`), and no command line the same as an empty one (`""`):
    /// QEMU hashes the command line with its NUL terminator either way.
    pub fn from_contents(kernel: &[u8], initrd: &[u8], cmdline: &str) -> Self {
        Self {
            kernel: Sha256::digest(kernel).into(),
            initrd: Sha256::digest(initrd).into(),
            cmdline: Self::cmdline_sha256(cmdline),
        }
    }

    /// SHA-256 of the command line with its NUL terminator.
    pub fn cmdline_sha256(cmdline: &str) -> [u8; 32] {
        Sha256::new()
            .chain_update(cmdline.as_bytes())
            .chain_update([0u8])
            .finalize()
            .into()
    }

    /// The table as QEMU lays it out, with its padding.
    pub fn table(&self) -> [u8; PADDED_TABLE_LEN] {
        let mut t = [0u8; PADDED_TABLE_LEN];
        t[..16].copy_from_slice(&TABLE_HEADER_GUID.to_bytes_le());
        t[16..18].copy_from_slice(&(TABLE_LEN as u16).to_le_bytes());
        let entries = [
            (CMDLINE_ENTRY_GUID, &self.cmdline),
            (INITRD_ENTRY_GUID, &self.initrd),
            (KERNEL_ENTRY_GUID, &self.kernel),
        ];
        for (i, (guid, hash)) in entries.into_iter().enumerate() {
            let e = &mut t[18 + i * ENTRY_LEN..18 + (i + 1) * ENTRY_LEN];
            e[..16].copy_from_slice(&guid.to_bytes_le());
            e[16..18].copy_from_slice(&(ENTRY_LEN as u16).to_le_bytes());
            e[18..].copy_from_slice(hash);
        }
        t
    }

    /// The SNP_KERNEL_HASHES page: zeros with the table at `offset`.
    pub fn page(&self, offset: usize) -> Result<[u8; PAGE_SIZE], MeasureError> {
        let end = offset
            .checked_add(PADDED_TABLE_LEN)
            .filter(|end| *end <= PAGE_SIZE)
            .ok_or(MeasureError::KernelHashesTableOffset {
                offset,
                len: PADDED_TABLE_LEN,
            })?;
        let mut page = [0u8; PAGE_SIZE];
        page[offset..end].copy_from_slice(&self.table());
        Ok(page)
    }
}
