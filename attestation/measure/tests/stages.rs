//! Each stage of the measurement against the intermediate values sev-snp-measure
//! 0.0.13 recorded with the known answers, so that a wrong digest points at the
//! stage that went wrong.
mod common;

use std::collections::BTreeMap;

use cloister_measure::kernel_hashes::PADDED_TABLE_LEN;
use cloister_measure::ovmf::Ovmf;
use cloister_measure::page_info::{GuestContext, PageType, PAGE_SIZE, VMSA_GPA};
use cloister_measure::vmsa::{vmsa_page, BSP_EIP};
use cloister_measure::{cpu_signature, snp_ovmf_hash, KernelHashes, VcpuType, VmmType};
use common::{num, read, s};
use sha2::{Digest, Sha384};

#[test]
fn ovmf_footer_tables_match() {
    let kats = common::kats();
    let ovmfs = kats["ovmf"].as_object().unwrap();
    assert_eq!(ovmfs.len(), 2);
    for (name, expect) in ovmfs {
        let data = read(s(expect, "file"));
        assert_eq!(
            data.len() as u64,
            expect["size"].as_u64().unwrap(),
            "{name}: size"
        );
        let ovmf = Ovmf::parse(&data).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ovmf.gpa(), num(expect, "gpa"), "{name}: gpa");

        let got: BTreeMap<String, String> = ovmf
            .footer_entries()
            .iter()
            .map(|e| (e.guid.to_string(), hex::encode(e.data)))
            .collect();
        let want: BTreeMap<String, String> = expect["footer_table"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        assert_eq!(got, want, "{name}: footer table");
        assert_eq!(
            ovmf.footer_entries().len(),
            want.len(),
            "{name}: no duplicate GUIDs"
        );

        assert_eq!(
            u64::from(ovmf.sev_es_reset_eip().unwrap()),
            num(expect, "sev_es_reset_eip"),
            "{name}"
        );
        assert_eq!(
            u64::from(ovmf.sev_hashes_table_gpa().unwrap()),
            num(expect, "sev_hashes_table_gpa"),
            "{name}"
        );
    }
}

#[test]
fn sev_metadata_sections_match() {
    let kats = common::kats();
    for (name, expect) in kats["ovmf"].as_object().unwrap() {
        let data = read(s(expect, "file"));
        let ovmf = Ovmf::parse(&data).unwrap();
        let want = expect["metadata_items"].as_array().unwrap();
        let got = ovmf.sections();
        assert_eq!(got.len(), want.len(), "{name}: section count");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(u64::from(g.gpa), num(w, "gpa"), "{name} section {i} gpa");
            assert_eq!(u64::from(g.size), num(w, "size"), "{name} section {i} size");
            assert_eq!(g.kind.name(), s(w, "type"), "{name} section {i} type");
        }
    }
}

#[test]
fn ovmf_page_hashes_match() {
    let kats = common::kats();
    for (name, expect) in kats["ovmf"].as_object().unwrap() {
        let data = read(s(expect, "file"));
        let got = snp_ovmf_hash(&data).unwrap();
        assert_eq!(hex::encode(got), s(expect, "snp_ovmf_hash"), "{name}");
    }
}

/// Reads "TYPE page type=N gpa=0x..." out of an example's description.
fn describe(desc: &str) -> (u8, u64, bool) {
    let field = |key: &str| {
        let at = desc
            .find(key)
            .unwrap_or_else(|| panic!("{key} in {desc:?}"))
            + key.len();
        desc[at..].split_whitespace().next().unwrap().to_string()
    };
    let page_type: u8 = field("type=").parse().unwrap();
    let gpa = u64::from_str_radix(field("gpa=").trim_start_matches("0x"), 16).unwrap();
    assert!(
        desc.starts_with("ld0=zeros;"),
        "examples start from a zero digest: {desc}"
    );
    (page_type, gpa, desc.contains("contents=4096 zero bytes"))
}

#[test]
fn page_info_examples_match() {
    let kats = common::kats();
    let examples = kats["page_info_examples"].as_array().unwrap();
    assert_eq!(examples.len(), 6);
    let zero_page = [0u8; PAGE_SIZE];
    for ex in examples {
        let desc = s(ex, "desc");
        let (page_type, gpa, zero_contents) = describe(desc);
        let mut gctx = GuestContext::new();
        match page_type {
            1 => {
                assert!(zero_contents);
                gctx.update_normal_pages(gpa, &zero_page).unwrap();
            }
            2 => {
                assert!(zero_contents);
                assert_eq!(gpa, VMSA_GPA);
                gctx.update_vmsa_page(&zero_page);
            }
            3 => gctx
                .update_zero_pages("test", gpa, PAGE_SIZE as u64)
                .unwrap(),
            4 => gctx
                .update_unmeasured_pages("test", gpa, PAGE_SIZE as u64)
                .unwrap(),
            5 => gctx.update_secrets_page(gpa),
            6 => gctx.update_cpuid_page(gpa),
            other => panic!("unknown page type {other} in {desc}"),
        }
        assert_eq!(hex::encode(gctx.digest()), s(ex, "result"), "{desc}");
    }
    // The typed entry point agrees with the per-kind helpers.
    let mut a = GuestContext::new();
    a.update(PageType::Secrets, 0x80d000, &[0; 48]);
    let mut b = GuestContext::new();
    b.update_secrets_page(0x80d000);
    assert_eq!(a, b);
}

#[test]
fn kernel_hashes_tables_match() {
    let kats = common::kats();
    let tables = kats["sev_hashes_tables"].as_array().unwrap();
    assert_eq!(tables.len(), 3);
    for t in tables {
        let kernel = read(s(t, "kernel"));
        let initrd = read(s(t, "initrd"));
        let cmdline = t["append"].as_str().unwrap_or("");
        let hashes = KernelHashes::from_contents(&kernel, &initrd, cmdline);
        assert_eq!(hex::encode(hashes.kernel), s(t, "kernel_sha256"));
        assert_eq!(hex::encode(hashes.initrd), s(t, "initrd_sha256"));
        assert_eq!(
            hex::encode(hashes.cmdline),
            s(t, "cmdline_sha256"),
            "cmdline {cmdline:?} with NUL"
        );

        let table = hashes.table();
        assert_eq!(table.len() as u64, t["table_len"].as_u64().unwrap());
        assert_eq!(PADDED_TABLE_LEN, table.len());
        assert_eq!(
            hex::encode(table),
            s(t, "table_hex"),
            "table for {cmdline:?}"
        );

        let offset = num(t, "page_offset") as usize;
        let page = hashes.page(offset).unwrap();
        assert_eq!(&page[offset..offset + table.len()], &table[..]);
        assert_eq!(
            hex::encode(Sha384::digest(page)),
            s(t, "page_sha384"),
            "page for {cmdline:?}"
        );
    }
}

#[test]
fn vmsa_pages_match() {
    let kats = common::kats();
    let pages = kats["vmsa_pages"].as_array().unwrap();
    assert_eq!(pages.len(), 24);
    for v in pages {
        let vmm: VmmType = s(v, "vmm_type").parse().unwrap();
        let vcpu: VcpuType = s(v, "vcpu_type").parse().unwrap();
        assert_eq!(u64::from(vcpu.signature()), num(v, "vcpu_sig"), "{vcpu}");
        let features = num(v, "guest_features");
        let ap_eip = num(v, "ap_eip") as u32;
        let label = format!("{vmm} {vcpu} features {features:#x}");
        for (which, eip) in [("bsp", BSP_EIP), ("ap", ap_eip)] {
            let page = vmsa_page(eip, features, vcpu.signature(), vmm);
            let nonzero: BTreeMap<u64, u64> = page
                .iter()
                .enumerate()
                .filter(|(_, b)| **b != 0)
                .map(|(i, b)| (i as u64, u64::from(*b)))
                .collect();
            let want: BTreeMap<u64, u64> = v[format!("{which}_nonzero_bytes")]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, b)| {
                    let parse =
                        |x: &str| u64::from_str_radix(x.trim_start_matches("0x"), 16).unwrap();
                    (parse(k), parse(b.as_str().unwrap()))
                })
                .collect();
            assert_eq!(nonzero, want, "{label}: {which} VMSA bytes");
            assert_eq!(
                hex::encode(Sha384::digest(page)),
                s(v, &format!("{which}_sha384")),
                "{label}: {which}"
            );
        }
    }
}

#[test]
fn vcpu_signatures_follow_amd_encoding() {
    // Family 17h model 01h stepping 2 (Naples), 19h/01h/1 (Milan), 1Ah/00h/0 (Turin).
    assert_eq!(cpu_signature(23, 1, 2), 0x0080_0f12);
    assert_eq!(cpu_signature(25, 1, 1), 0x00a0_0f11);
    assert_eq!(cpu_signature(26, 0, 0), 0x00b0_0f00);
    // A family below 0x10 has no extended family.
    assert_eq!(cpu_signature(6, 0x8f, 3), 0x0008_06f3);
    let names: Vec<&str> = VcpuType::all().map(|t| t.name()).collect();
    assert_eq!(names.len(), 16);
    for name in [
        "EPYC",
        "EPYC-v1",
        "EPYC-v4",
        "EPYC-IBPB",
        "EPYC-Rome-v3",
        "EPYC-Milan-v2",
        "EPYC-Genoa-v1",
        "EPYC-Turin",
    ] {
        assert!(names.contains(&name), "{name} is a known type");
    }
    assert_eq!(
        "epyc-milan".parse::<VcpuType>().unwrap().name(),
        "EPYC-Milan"
    );
}

#[test]
fn unmeasured_and_zero_pages_differ() {
    // GCE's unmeasured pre-validated memory must not hash like zero pages.
    let mut zero = GuestContext::new();
    zero.update_zero_pages("test", 0x800000, 2 * PAGE_SIZE as u64)
        .unwrap();
    let mut unmeasured = GuestContext::new();
    unmeasured
        .update_unmeasured_pages("test", 0x800000, 2 * PAGE_SIZE as u64)
        .unwrap();
    assert_ne!(zero.digest(), unmeasured.digest());
    // Two zero pages are two chained updates at consecutive GPAs.
    let mut by_hand = GuestContext::new();
    by_hand.update(PageType::Zero, 0x800000, &[0; 48]);
    by_hand.update(PageType::Zero, 0x801000, &[0; 48]);
    assert_eq!(zero, by_hand);
}
