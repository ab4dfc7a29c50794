//! Each vCPU's initial state is a VMSA page (the SEV-ES save area, AMD APM
//! vol. 2 table B-4) that the firmware measures. Only the registers the VMM
//! sets at reset are non-zero; they are written here at their save-area
//! offsets. The BSP starts at the reset vector below 4 GiB, the APs at the
//! OVMF's SEV-ES reset block.

use crate::page_info::PAGE_SIZE;
use crate::platform::VmmType;

/// Where the BSP starts: the architectural reset vector.
pub const BSP_EIP: u32 = 0xffff_fff0;

// Save-area offsets (AMD APM vol. 2, table B-4).
const ES: usize = 0x00;
const CS: usize = 0x10;
const SS: usize = 0x20;
const DS: usize = 0x30;
const FS: usize = 0x40;
const GS: usize = 0x50;
const GDTR: usize = 0x60;
const LDTR: usize = 0x70;
const IDTR: usize = 0x80;
const TR: usize = 0x90;
const EFER: usize = 0xd0;
const CR4: usize = 0x148;
const CR0: usize = 0x158;
const DR7: usize = 0x160;
const DR6: usize = 0x168;
const RFLAGS: usize = 0x170;
const RIP: usize = 0x178;
const G_PAT: usize = 0x268;
const RDX: usize = 0x310;
const SEV_FEATURES: usize = 0x3b0;
const XCR0: usize = 0x3e8;
const MXCSR: usize = 0x408;
const X87_FCW: usize = 0x410;

/// Default PAT MSR value (AMD APM vol. 2, section A.3).
const DEFAULT_G_PAT: u64 = 0x0007_0406_0007_0406;
/// GCE's hypervisor overwrites the default PAT with this.
const GCE_G_PAT: u64 = 0x0007_0106;
/// Initial RDX under EC2 and GCE, which do not put the CPUID signature there.
const CLOUD_RDX: u64 = 0x600;

/// The initial state one VMM gives a vCPU that starts at `eip`.
struct ResetState {
    cs_attrib: u16,
    ss_attrib: u16,
    tr_attrib: u16,
    g_pat: u64,
    rdx: u64,
    mxcsr: u32,
    fcw: u16,
}

impl ResetState {
    fn for_vmm(vmm: VmmType, eip: u32, vcpu_sig: u32) -> Self {
        match vmm {
            VmmType::Qemu => Self {
                cs_attrib: 0x9b,
                ss_attrib: 0x93,
                tr_attrib: 0x8b,
                g_pat: DEFAULT_G_PAT,
                rdx: u64::from(vcpu_sig),
                mxcsr: 0x1f80,
                fcw: 0x37f,
            },
            VmmType::Ec2 => Self {
                // EC2 leaves the code segment's accessed bit clear on the BSP.
                cs_attrib: if eip == BSP_EIP { 0x9a } else { 0x9b },
                ss_attrib: 0x92,
                tr_attrib: 0x83,
                g_pat: DEFAULT_G_PAT,
                rdx: CLOUD_RDX,
                mxcsr: 0,
                fcw: 0,
            },
            VmmType::Gce => Self {
                cs_attrib: 0x9b,
                ss_attrib: 0x93,
                tr_attrib: 0x8b,
                g_pat: GCE_G_PAT,
                rdx: CLOUD_RDX,
                mxcsr: 0,
                fcw: 0,
            },
        }
    }
}

/// The VMSA page of a vCPU that starts at `eip`, with `sev_features` (the
/// guest features) and, under QEMU, `vcpu_sig` in RDX.
pub fn vmsa_page(eip: u32, sev_features: u64, vcpu_sig: u32, vmm: VmmType) -> [u8; PAGE_SIZE] {
    let s = ResetState::for_vmm(vmm, eip, vcpu_sig);
    let mut page = [0u8; PAGE_SIZE];
    let p = &mut page;
    segment(p, ES, 0, 0x93, 0xffff, 0);
    segment(
        p,
        CS,
        0xf000,
        s.cs_attrib,
        0xffff,
        u64::from(eip & 0xffff_0000),
    );
    segment(p, SS, 0, s.ss_attrib, 0xffff, 0);
    segment(p, DS, 0, 0x93, 0xffff, 0);
    segment(p, FS, 0, 0x93, 0xffff, 0);
    segment(p, GS, 0, 0x93, 0xffff, 0);
    segment(p, GDTR, 0, 0, 0xffff, 0);
    segment(p, LDTR, 0, 0x82, 0xffff, 0);
    segment(p, IDTR, 0, 0, 0xffff, 0);
    segment(p, TR, 0, s.tr_attrib, 0xffff, 0);
    put(p, EFER, &0x1000u64.to_le_bytes()); // KVM sets EFER.SVME
    put(p, CR4, &0x40u64.to_le_bytes()); // KVM sets CR4.MCE
    put(p, CR0, &0x10u64.to_le_bytes());
    put(p, DR7, &0x400u64.to_le_bytes());
    put(p, DR6, &0xffff_0ff0u64.to_le_bytes());
    put(p, RFLAGS, &0x2u64.to_le_bytes());
    put(p, RIP, &u64::from(eip & 0xffff).to_le_bytes());
    put(p, G_PAT, &s.g_pat.to_le_bytes());
    put(p, RDX, &s.rdx.to_le_bytes());
    put(p, SEV_FEATURES, &sev_features.to_le_bytes());
    put(p, XCR0, &0x1u64.to_le_bytes());
    put(p, MXCSR, &s.mxcsr.to_le_bytes());
    put(p, X87_FCW, &s.fcw.to_le_bytes());
    page
}

/// Writes a segment register (`struct vmcb_seg`) at `at`.
fn segment(
    page: &mut [u8; PAGE_SIZE],
    at: usize,
    selector: u16,
    attrib: u16,
    limit: u32,
    base: u64,
) {
    put(page, at, &selector.to_le_bytes());
    put(page, at + 2, &attrib.to_le_bytes());
    put(page, at + 4, &limit.to_le_bytes());
    put(page, at + 8, &base.to_le_bytes());
}

/// Writes `bytes` at a fixed save-area offset (all offsets are constants far
/// inside the page).
fn put(page: &mut [u8; PAGE_SIZE], at: usize, bytes: &[u8]) {
    page[at..at + bytes.len()].copy_from_slice(bytes);
}
