//! Inputs that cannot be measured: each gives an error that names why, and no
//! input makes the parser panic. The corrupt OVMF images are the real
//! fixtures with one field changed.
mod common;

use cloister_measure::ovmf::{Ovmf, SEV_ES_RESET_BLOCK_GUID, SEV_HASH_TABLE_RV_GUID};
use cloister_measure::{
    parse_ovmf_hash, snp_launch_digest, snp_ovmf_hash, KernelHashes, MeasureError, SnpLaunchInputs,
    VcpuType, VmmType,
};

const EPYC_V4: u32 = 0x0080_0f12;

fn digest(ovmf: &[u8]) -> Result<String, MeasureError> {
    snp_launch_digest(&SnpLaunchInputs::new(ovmf, 2, EPYC_V4)).map(|d| d.to_hex())
}

fn find(data: &[u8], needle: &[u8]) -> usize {
    data.windows(needle.len())
        .position(|w| w == needle)
        .expect("needle in fixture")
}

/// Offset of the SEV metadata header in the AmdSev fixture.
fn metadata_start(data: &[u8]) -> usize {
    find(data, b"ASEV")
}

#[test]
fn kernel_with_ovmf_lacking_kernel_hashes_section() {
    let ovmf = common::ovmf_x64();
    let hashes = KernelHashes::from_contents(b"kernel", b"", "console=ttyS0");
    let err = snp_launch_digest(&SnpLaunchInputs::new(&ovmf, 1, EPYC_V4).with_kernel(hashes))
        .unwrap_err();
    assert_eq!(err, MeasureError::NoKernelHashesSection);
    assert!(err.to_string().contains("SNP_KERNEL_HASHES"), "{err}");
    // The same OVMF measures fine without a kernel.
    assert!(digest(&ovmf).is_ok());
}

#[test]
fn ovmf_too_small_or_empty() {
    for len in [0, 1, 49] {
        let data = vec![0u8; len];
        assert_eq!(
            digest(&data).unwrap_err(),
            MeasureError::OvmfTooSmall { len, min: 50 }
        );
    }
}

#[test]
fn ovmf_without_footer_table() {
    let mut data = common::amd_sev_ovmf();
    let len = data.len();
    data[len - 40] ^= 0xff; // inside the footer GUID
    let err = digest(&data).unwrap_err();
    assert!(matches!(err, MeasureError::NoFooterTable { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("96b582de-1fb2-45f7-baea-a366c55a082d"),
        "{err}"
    );
    // A page of zeros (not an OVMF at all) says the same.
    assert!(matches!(
        digest(&[0u8; 4096]).unwrap_err(),
        MeasureError::NoFooterTable { .. }
    ));
}

#[test]
fn footer_table_larger_than_image() {
    let mut data = common::amd_sev_ovmf();
    let len = data.len();
    data[len - 50..len - 48].copy_from_slice(&0xfff0u16.to_le_bytes());
    let err = digest(&data).unwrap_err();
    assert!(
        matches!(
            err,
            MeasureError::FooterTableSize {
                claimed: 0xffde,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn footer_entry_shorter_than_its_header() {
    let mut data = common::amd_sev_ovmf();
    let at = find(&data, &SEV_HASH_TABLE_RV_GUID.to_bytes_le());
    data[at - 2..at].copy_from_slice(&3u16.to_le_bytes());
    let err = digest(&data).unwrap_err();
    assert!(
        matches!(err, MeasureError::FooterEntryTooShort { size: 3, .. }),
        "{err}"
    );
}

#[test]
fn footer_entry_overrunning_the_table() {
    let mut data = common::amd_sev_ovmf();
    let at = find(&data, &SEV_HASH_TABLE_RV_GUID.to_bytes_le());
    data[at - 2..at].copy_from_slice(&0x4000u16.to_le_bytes());
    let err = digest(&data).unwrap_err();
    assert!(
        matches!(err, MeasureError::FooterEntryOverrun { size: 0x4000, .. }),
        "{err}"
    );
}

#[test]
fn missing_reset_block() {
    let mut data = common::amd_sev_ovmf();
    let at = find(&data, &SEV_ES_RESET_BLOCK_GUID.to_bytes_le());
    data[at] ^= 0x01;
    let err = digest(&data).unwrap_err();
    assert!(
        matches!(
            err,
            MeasureError::MissingFooterEntry {
                name: "SEV_ES_RESET_BLOCK",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn ap_reset_eip_zero_with_several_vcpus() {
    let mut data = common::amd_sev_ovmf();
    let at = find(&data, &SEV_ES_RESET_BLOCK_GUID.to_bytes_le());
    // The reset block's data (EIP first) precedes its size and GUID.
    let eip_at = Ovmf::parse(&data)
        .unwrap()
        .footer_entry(&SEV_ES_RESET_BLOCK_GUID)
        .unwrap()
        .len();
    let start = at - 2 - eip_at;
    data[start..start + 4].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(
        digest(&data).unwrap_err(),
        MeasureError::NoApResetEip { vcpus: 2 }
    );
    assert!(
        snp_launch_digest(&SnpLaunchInputs::new(&data, 1, EPYC_V4)).is_ok(),
        "one vCPU needs no AP EIP"
    );
}

#[test]
fn metadata_with_bad_signature_version_or_items() {
    let original = common::amd_sev_ovmf();
    let start = metadata_start(&original);

    let mut data = original.clone();
    data[start] = b'X';
    assert_eq!(
        digest(&data).unwrap_err(),
        MeasureError::SevMetadataSignature { found: *b"XSEV" }
    );

    let mut data = original.clone();
    data[start + 8..start + 12].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(
        digest(&data).unwrap_err(),
        MeasureError::SevMetadataVersion { found: 2 }
    );

    let mut data = original.clone();
    data[start + 12..start + 16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        digest(&data).unwrap_err(),
        MeasureError::SevMetadataItems {
            num_items: u32::MAX,
            ..
        }
    ));

    let mut data = original.clone();
    data[start + 4..start + 8].copy_from_slice(&0x10000u32.to_le_bytes());
    assert!(matches!(
        digest(&data).unwrap_err(),
        MeasureError::SevMetadataItems { size: 0x10000, .. }
    ));
}

#[test]
fn metadata_out_of_bounds() {
    let mut data = common::amd_sev_ovmf();
    let at = find(
        &data,
        &cloister_measure::ovmf::SEV_METADATA_GUID.to_bytes_le(),
    );
    // The entry's data is the 4-byte offset from the end, just before size and GUID.
    data[at - 6..at - 2].copy_from_slice(&0x2000u32.to_le_bytes());
    let err = digest(&data).unwrap_err();
    assert!(
        matches!(
            err,
            MeasureError::SevMetadataOutOfBounds {
                offset_from_end: 0x2000,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn unknown_section_type() {
    let mut data = common::amd_sev_ovmf();
    let item = metadata_start(&data) + 16 + 2 * 12; // the third section (SNP_SECRETS)
    data[item + 8..item + 12].copy_from_slice(&7u32.to_le_bytes());
    assert_eq!(
        digest(&data).unwrap_err(),
        MeasureError::UnknownSectionType {
            index: 2,
            section_type: 7
        }
    );
}

#[test]
fn section_not_page_aligned() {
    let mut data = common::amd_sev_ovmf();
    let item = metadata_start(&data) + 16; // the first section (SNP_SEC_MEM)
    data[item + 4..item + 8].copy_from_slice(&0x1800u32.to_le_bytes());
    let err = digest(&data).unwrap_err();
    assert_eq!(
        err,
        MeasureError::SectionNotPageAligned {
            kind: "SNP_SEC_MEM",
            gpa: 0x800000,
            size: 0x1800
        }
    );
}

#[test]
fn kernel_hashes_section_must_be_one_page() {
    let mut data = common::amd_sev_ovmf();
    let item = metadata_start(&data) + 16 + 5 * 12; // SNP_KERNEL_HASHES
    data[item + 4..item + 8].copy_from_slice(&0x2000u32.to_le_bytes());
    let hashes = KernelHashes::from_contents(b"k", b"i", "c");
    let err = snp_launch_digest(&SnpLaunchInputs::new(&data, 1, EPYC_V4).with_kernel(hashes))
        .unwrap_err();
    assert_eq!(
        err,
        MeasureError::KernelHashesSectionSize {
            gpa: 0x810000,
            size: 0x2000
        }
    );
}

#[test]
fn kernel_hashes_table_must_fit_its_page() {
    let mut data = common::amd_sev_ovmf();
    let at = find(&data, &SEV_HASH_TABLE_RV_GUID.to_bytes_le());
    // The entry's data is GPA then size (8 bytes) before its size and GUID.
    data[at - 10..at - 6].copy_from_slice(&0x810f80u32.to_le_bytes());
    let hashes = KernelHashes::from_contents(b"k", b"i", "c");
    let err = snp_launch_digest(&SnpLaunchInputs::new(&data, 1, EPYC_V4).with_kernel(hashes))
        .unwrap_err();
    assert_eq!(
        err,
        MeasureError::KernelHashesTableOffset {
            offset: 0xf80,
            len: 176
        }
    );
}

#[test]
fn ovmf_not_whole_pages_unless_its_hash_is_given() {
    let data = common::amd_sev_ovmf();
    let tail = &data[1..];
    assert_eq!(
        digest(tail).unwrap_err(),
        MeasureError::OvmfNotPageAligned { len: 4095 }
    );
    assert_eq!(
        snp_ovmf_hash(tail).unwrap_err(),
        MeasureError::OvmfNotPageAligned { len: 4095 }
    );
    // With a precomputed hash the pages are not hashed, only the tables read.
    let seed = snp_ovmf_hash(&data).unwrap();
    let from_tail =
        snp_launch_digest(&SnpLaunchInputs::new(tail, 2, EPYC_V4).with_ovmf_hash(seed)).unwrap();
    assert_eq!(from_tail.to_hex(), digest(&data).unwrap());
}

#[test]
fn zero_vcpus() {
    let data = common::amd_sev_ovmf();
    let err = snp_launch_digest(&SnpLaunchInputs::new(&data, 0, EPYC_V4)).unwrap_err();
    assert_eq!(err, MeasureError::NoVcpus);
}

#[test]
fn unknown_vcpu_and_vmm_types() {
    let err = "EPYC-Zen9".parse::<VcpuType>().unwrap_err();
    assert!(matches!(err, MeasureError::UnknownVcpuType { .. }));
    assert!(
        err.to_string().contains("EPYC-Zen9") && err.to_string().contains("EPYC-Milan"),
        "{err}"
    );
    assert!(""
        .parse::<VcpuType>()
        .unwrap_err()
        .to_string()
        .contains("unknown vCPU type"));
    assert_eq!(
        "kvmtool".parse::<VmmType>().unwrap_err(),
        MeasureError::UnknownVmmType {
            name: "kvmtool".into()
        }
    );
    assert_eq!("QEMU".parse::<VmmType>().unwrap(), VmmType::Qemu);
    assert_eq!("GCE".parse::<VmmType>().unwrap(), VmmType::Gce);
}

#[test]
fn bad_ovmf_hash_text() {
    assert!(matches!(
        parse_ovmf_hash("xyz"),
        Err(MeasureError::OvmfHashHex { .. })
    ));
    assert!(
        matches!(
            parse_ovmf_hash("abc"),
            Err(MeasureError::OvmfHashHex { .. })
        ),
        "odd length"
    );
    assert_eq!(
        parse_ovmf_hash("00ff").unwrap_err(),
        MeasureError::OvmfHashLength { got: 2 }
    );
    assert_eq!(
        parse_ovmf_hash("").unwrap_err(),
        MeasureError::OvmfHashLength { got: 0 }
    );
    let ok = "086E2E9149EBF45ABDC3445FBA5B2DA8270BDBB04094D7A2C37FAAA4B24AF3AA16AFF8C374C2A55C467A50DA6D466B74";
    assert_eq!(
        parse_ovmf_hash(ok).unwrap()[..2],
        [0x08, 0x6e],
        "upper case accepted"
    );
}

/// Every truncation of a real image, and every byte of its footer table and
/// SEV metadata changed, gives a digest or an error, never a panic. (A
/// changed section size can ask for a million pages, which is slow but
/// legitimate, so those images are only parsed.)
#[test]
fn hostile_images_never_panic() {
    let hashes = KernelHashes::from_contents(b"k", b"i", "c");
    let mut digests = 0;
    let mut measure = |data: &[u8]| {
        let Ok(ovmf) = Ovmf::parse(data) else { return };
        if ovmf
            .sections()
            .iter()
            .map(|s| u64::from(s.size))
            .sum::<u64>()
            > 0x10_0000
        {
            return;
        }
        let _ = snp_launch_digest(&SnpLaunchInputs::new(data, 3, EPYC_V4).with_kernel(hashes));
        let _ = snp_launch_digest(&SnpLaunchInputs::new(data, 2, EPYC_V4).with_vmm(VmmType::Gce));
        digests += 1;
    };
    for fixture in [common::amd_sev_ovmf(), common::ovmf_x64()] {
        for cut in 0..fixture.len() {
            measure(&fixture[cut..]);
        }
        let len = fixture.len();
        let table_len = usize::from(u16::from_le_bytes([fixture[len - 50], fixture[len - 49]]));
        let metadata = metadata_start(&fixture);
        let mut data = fixture.clone();
        for at in (len - 32 - table_len..len - 32).chain(metadata..metadata + 16 + 7 * 12) {
            for value in [0x00, 0x01, 0x7f, 0xff] {
                let old = data[at];
                data[at] = value;
                measure(&data);
                data[at] = old;
            }
        }
    }
    assert!(digests > 1000, "{digests} images measured");
}
