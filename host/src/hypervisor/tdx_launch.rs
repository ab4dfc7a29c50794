//! The QEMU command line for an Intel TDX guest (a TD), for upstream QEMU
//! 10.1 or later: the first release with the `tdx-guest` object and its
//! `mrconfigid` property. Debian 12's QEMU 7.2 has no TDX at all (no
//! `tdx-guest`, no guest_memfd private memory, no TDVF loading); the
//! patched QEMU of Intel's and the distributions' TDX stacks predate the
//! upstream property names.
//!
//! The initdata binding: MRCONFIGID, a 48-byte TD field set by the VMM at
//! launch and reported in every quote, carries sha256(initdata) followed by 16
//! zero bytes (`qapi/qom.json` `TdxGuestProperties`: "base64 encoded SHA384
//! digest", i.e. 48 bytes). The agent reads it back from its TD report.
//!
//! Not yet in cloister: the agent's TDX quote (configfs-tsm) and MRCONFIGID
//! reader, and the expected MRTD/RTMR values (`cloister measure` has no TDX
//! mode). See docs/snp-launch.md, "TDX".
use std::ffi::OsString;
use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::confidential::{boot_args, device_args, memory_args, RAM_ID};
use super::qemu::QemuPaths;
use super::qemu_version::QemuVersion;

/// The first upstream QEMU with `tdx-guest` and `mrconfigid`.
pub const MIN_QEMU: QemuVersion = QemuVersion::new(10, 1, 0);

/// Everything a TDX launch depends on.
#[derive(Debug, Clone)]
pub struct TdxLaunch {
    /// TDVF: an OVMF built from `OvmfPkg/IntelTdx/IntelTdxX64.dsc` (`-bios`).
    pub firmware: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
    pub vcpus: u32,
    pub memory_mib: u32,
    /// MRCONFIGID: sha256(initdata) and 16 zero bytes, or zeros.
    pub mrconfigid: [u8; 48],
    /// Have EPT violations on private memory not turn into #VE (Linux TD
    /// guests require it: `sept-ve-disable=on`).
    pub sept_ve_disable: bool,
}

impl TdxLaunch {
    pub fn new(
        firmware: PathBuf,
        kernel: PathBuf,
        initrd: PathBuf,
        cmdline: String,
        vcpus: u32,
        memory_mib: u32,
    ) -> TdxLaunch {
        TdxLaunch {
            firmware,
            kernel,
            initrd,
            cmdline,
            vcpus,
            memory_mib,
            mrconfigid: [0; 48],
            sept_ve_disable: true,
        }
    }

    /// The `tdx-guest` object's properties.
    pub fn tdx_object(&self) -> String {
        format!(
            "tdx-guest,id=tdx0,sept-ve-disable={},mrconfigid={}",
            if self.sept_ve_disable { "on" } else { "off" },
            STANDARD.encode(self.mrconfigid)
        )
    }

    /// The QEMU arguments, files of the VM in `paths`. Pure. TDX needs the
    /// split IRQ chip and the host CPU model.
    pub fn qemu_args(&self, paths: &QemuPaths) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "-accel".into(),
            "kvm".into(),
            "-machine".into(),
            format!(
                "q35,kernel-irqchip=split,confidential-guest-support=tdx0,memory-backend={RAM_ID}"
            )
            .into(),
            "-cpu".into(),
            "host".into(),
        ];
        a.extend(memory_args(self.vcpus, self.memory_mib));
        a.push("-object".into());
        a.push(self.tdx_object().into());
        a.extend(device_args(paths));
        a.extend(boot_args(
            &self.firmware,
            &self.kernel,
            &self.initrd,
            &self.cmdline,
        ));
        a
    }
}

#[cfg(test)]
mod tests {
    use super::super::confidential::value_of;
    use super::super::tee;
    use super::*;
    use sha2::Digest;
    use std::path::Path;

    #[test]
    fn argv_is_a_td_with_mrconfigid_from_initdata() {
        let initdata = b"version = \"0.1.0\"\nalgorithm = \"sha256\"\n";
        let mut l = TdxLaunch::new(
            "/fw/OVMF.tdx.fd".into(),
            "/k/bzImage".into(),
            "/k/initrd".into(),
            "console=ttyS0".into(),
            4,
            1024,
        );
        l.mrconfigid = tee::mrconfigid(Some(initdata));
        let a = l.qemu_args(&QemuPaths::in_dir(Path::new("/run/td")));
        let s: Vec<String> = a.iter().map(|x| x.to_string_lossy().into_owned()).collect();
        let j = s.join(" ");
        assert!(j.starts_with("-accel kvm -machine q35,kernel-irqchip=split,confidential-guest-support=tdx0,memory-backend=ram1 -cpu host -smp 4 -m 1024M"), "{j}");
        let obj = s.iter().find(|o| o.starts_with("tdx-guest,")).unwrap();
        assert!(
            obj.starts_with("tdx-guest,id=tdx0,sept-ve-disable=on,mrconfigid="),
            "{obj}"
        );
        let b64 = obj.rsplit("mrconfigid=").next().unwrap();
        let raw = STANDARD.decode(b64).unwrap();
        assert_eq!(raw.len(), 48, "a SHA384-sized field");
        assert_eq!(raw[..32], sha2::Sha256::digest(initdata)[..]);
        assert_eq!(raw[32..], [0u8; 16]);
        assert_eq!(value_of(&a, "-bios").unwrap(), "/fw/OVMF.tdx.fd");
        assert_eq!(value_of(&a, "-append").unwrap(), "console=ttyS0");
        assert!(
            j.contains("vhost-user-vsock-pci,chardev=vsock,disable-legacy=on,iommu_platform=on")
        );
        assert!(!j.contains("sev"), "{j}");
    }
}
