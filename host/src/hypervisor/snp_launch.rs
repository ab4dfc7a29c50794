//! The QEMU command line for an SEV-SNP guest, and the launch digest the
//! AMD-SP will report for it — from one [`SnpLaunch`], so that what is
//! launched and what is expected cannot drift apart.
//!
//! Needs QEMU 9.1 or later (the `sev-snp-guest` object; Debian 12's QEMU 7.2
//! has none), a host kernel with SEV-SNP KVM support, and an OVMF built from
//! `OvmfPkg/AmdSev/AmdSevX64.dsc`, the build that checks `-kernel`, `-initrd`
//! and `-append` against the hashes QEMU puts into the launch measurement
//! (`kernel-hashes=on`). See docs/snp-launch.md.
//!
//! Property names and encodings are those of QEMU's `qapi/qom.json`
//! (`SevSnpGuestProperties`): `policy` (uint64), `host-data` (32 bytes,
//! base64), `kernel-hashes` (bool, from `SevCommonProperties`), `cbitpos`,
//! `reduced-phys-bits`.
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use cloister_measure::{
    snp_launch_digest, KernelHashes, MeasureError, SnpLaunchDigest, SnpLaunchInputs, VcpuType,
    VmmType, DEFAULT_GUEST_FEATURES,
};

use super::confidential::{boot_args, device_args, memory_args, RAM_ID};
use super::qemu::QemuPaths;
use super::qemu_version::QemuVersion;

/// The first QEMU with `sev-snp-guest`.
pub const MIN_QEMU: QemuVersion = QemuVersion::new(9, 1, 0);
/// The C-bit position on Milan, Genoa and Turin (CPUID 0x8000001F EBX[5:0]).
pub const DEFAULT_CBITPOS: u32 = 51;
/// Physical address bits lost to encryption on those CPUs.
pub const DEFAULT_REDUCED_PHYS_BITS: u32 = 1;
/// The vCPU model cloister launches with unless told otherwise.
pub const DEFAULT_VCPU_TYPE: &str = "EPYC-v4";

#[derive(Debug, thiserror::Error)]
pub enum SnpLaunchError {
    #[error("SEV-SNP guest policy {bits:#x}: {problem}")]
    Policy { bits: u64, problem: String },
    #[error("reading {what} {path}: {error}")]
    Read {
        what: &'static str,
        path: String,
        error: std::io::Error,
    },
    #[error("measuring the launch with OVMF {ovmf}: {error}")]
    Measure { ovmf: String, error: MeasureError },
    #[error("{0}")]
    Invalid(String),
}

/// The SEV-SNP guest policy (SEV-SNP firmware ABI, "Guest Policy"):
/// bits 7:0 ABI minor, 15:8 ABI major, 16 SMT allowed, 17 reserved (must be
/// one), 18 migration agent allowed, 19 debug allowed, 20 single socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnpPolicy {
    pub abi_major: u8,
    pub abi_minor: u8,
    pub smt: bool,
    pub migrate_ma: bool,
    pub debug: bool,
    pub single_socket: bool,
}

const SMT: u64 = 1 << 16;
const RESERVED_ONE: u64 = 1 << 17;
const MIGRATE_MA: u64 = 1 << 18;
const DEBUG: u64 = 1 << 19;
const SINGLE_SOCKET: u64 = 1 << 20;
const KNOWN: u64 = 0xffff | SMT | RESERVED_ONE | MIGRATE_MA | DEBUG | SINGLE_SOCKET;

impl Default for SnpPolicy {
    /// SMT allowed, nothing else: QEMU's default, 0x30000.
    fn default() -> Self {
        SnpPolicy {
            abi_major: 0,
            abi_minor: 0,
            smt: true,
            migrate_ma: false,
            debug: false,
            single_socket: false,
        }
    }
}

impl SnpPolicy {
    /// The 64-bit policy value.
    pub fn bits(&self) -> u64 {
        let flag = |on: bool, bit: u64| if on { bit } else { 0 };
        u64::from(self.abi_minor)
            | (u64::from(self.abi_major) << 8)
            | RESERVED_ONE
            | flag(self.smt, SMT)
            | flag(self.migrate_ma, MIGRATE_MA)
            | flag(self.debug, DEBUG)
            | flag(self.single_socket, SINGLE_SOCKET)
    }

    /// Reads a policy value; bits this type does not know are refused
    /// rather than dropped.
    pub fn from_bits(bits: u64) -> Result<SnpPolicy, SnpLaunchError> {
        let problem = |p: &str| SnpLaunchError::Policy {
            bits,
            problem: p.to_string(),
        };
        if bits & RESERVED_ONE == 0 {
            return Err(problem("bit 17 is reserved and must be set"));
        }
        if bits & !KNOWN != 0 {
            return Err(problem(&format!(
                "bits {:#x} are not supported by cloister (only ABI version, SMT, migration agent, debug, single socket)",
                bits & !KNOWN
            )));
        }
        Ok(SnpPolicy {
            abi_minor: (bits & 0xff) as u8,
            abi_major: ((bits >> 8) & 0xff) as u8,
            smt: bits & SMT != 0,
            migrate_ma: bits & MIGRATE_MA != 0,
            debug: bits & DEBUG != 0,
            single_socket: bits & SINGLE_SOCKET != 0,
        })
    }
}

/// Everything an SEV-SNP launch depends on. [`SnpLaunch::qemu_args`] and
/// [`SnpLaunch::expected_measurement`] read the same fields.
#[derive(Debug, Clone)]
pub struct SnpLaunch {
    /// OVMF, an `OvmfPkg/AmdSev` build (`-bios`).
    pub ovmf: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The kernel command line, exactly as measured (q35 adds nothing to it).
    pub cmdline: String,
    pub vcpus: u32,
    pub memory_mib: u32,
    /// QEMU's `-cpu` model; its CPUID signature is in every VMSA.
    pub vcpu_type: VcpuType,
    pub policy: SnpPolicy,
    /// HOST_DATA: sha256(initdata), or zeros.
    pub host_data: [u8; 32],
    pub cbitpos: u32,
    pub reduced_phys_bits: u32,
    /// The VMSA's SEV_FEATURES. QEMU ≥ 9.1 on a kernel with KVM_SEV_INIT2
    /// sets only SNPActive (0x1); a host that also enables DebugSwap needs 0x21.
    pub guest_features: u64,
}

impl SnpLaunch {
    /// A launch with the defaults: EPYC-v4, policy 0x30000, cbitpos 51,
    /// reduced-phys-bits 1, guest features 0x1, no initdata.
    pub fn new(
        ovmf: PathBuf,
        kernel: PathBuf,
        initrd: PathBuf,
        cmdline: String,
        vcpus: u32,
        memory_mib: u32,
    ) -> SnpLaunch {
        SnpLaunch {
            ovmf,
            kernel,
            initrd,
            cmdline,
            vcpus,
            memory_mib,
            vcpu_type: DEFAULT_VCPU_TYPE.parse().expect("a known vCPU type"),
            policy: SnpPolicy::default(),
            host_data: [0; 32],
            cbitpos: DEFAULT_CBITPOS,
            reduced_phys_bits: DEFAULT_REDUCED_PHYS_BITS,
            guest_features: DEFAULT_GUEST_FEATURES,
        }
    }

    /// Refuses launches QEMU or the firmware would refuse, with a reason.
    pub fn validate(&self) -> Result<(), SnpLaunchError> {
        if self.vcpus == 0 || self.memory_mib < 64 {
            return Err(SnpLaunchError::Invalid(
                "an SEV-SNP guest needs at least 1 vCPU and 64 MiB".into(),
            ));
        }
        if !(32..=63).contains(&self.cbitpos) {
            return Err(SnpLaunchError::Invalid(format!(
                "cbitpos {} is not a physical address bit (32..=63)",
                self.cbitpos
            )));
        }
        SnpPolicy::from_bits(self.policy.bits())?;
        Ok(())
    }

    /// The `sev-snp-guest` object's properties.
    pub fn sev_object(&self) -> String {
        format!(
            "sev-snp-guest,id=sev0,cbitpos={},reduced-phys-bits={},policy={:#x},kernel-hashes=on,host-data={}",
            self.cbitpos,
            self.reduced_phys_bits,
            self.policy.bits(),
            STANDARD.encode(self.host_data)
        )
    }

    /// The QEMU arguments, files of the VM in `paths`. Pure.
    pub fn qemu_args(&self, paths: &QemuPaths) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "-accel".into(),
            "kvm".into(),
            "-machine".into(),
            format!("q35,confidential-guest-support=sev0,memory-backend={RAM_ID}").into(),
            "-cpu".into(),
            self.vcpu_type.name().into(),
        ];
        a.extend(memory_args(self.vcpus, self.memory_mib));
        a.push("-object".into());
        a.push(self.sev_object().into());
        a.extend(device_args(paths));
        a.extend(boot_args(
            &self.ovmf,
            &self.kernel,
            &self.initrd,
            &self.cmdline,
        ));
        a
    }

    /// The `cloister measure snp` arguments (also sev-snp-measure's, with
    /// `--mode snp`) for this launch.
    pub fn measure_args(&self) -> Vec<OsString> {
        vec![
            "--ovmf".into(),
            self.ovmf.clone().into(),
            "--kernel".into(),
            self.kernel.clone().into(),
            "--initrd".into(),
            self.initrd.clone().into(),
            "--append".into(),
            self.cmdline.clone().into(),
            "--vcpus".into(),
            self.vcpus.to_string().into(),
            "--vcpu-type".into(),
            self.vcpu_type.name().into(),
            "--guest-features".into(),
            format!("{:#x}", self.guest_features).into(),
        ]
    }

    /// The MEASUREMENT the guest's reports will carry: reads the OVMF,
    /// kernel and initrd.
    pub fn expected_measurement(&self) -> Result<SnpLaunchDigest, SnpLaunchError> {
        let ovmf = read(&self.ovmf, "OVMF")?;
        let kernel = read(&self.kernel, "kernel")?;
        let initrd = read(&self.initrd, "initrd")?;
        let inputs = SnpLaunchInputs::new(&ovmf, self.vcpus, self.vcpu_type.signature())
            .with_vmm(VmmType::Qemu)
            .with_guest_features(self.guest_features)
            .with_kernel(KernelHashes::from_contents(&kernel, &initrd, &self.cmdline));
        snp_launch_digest(&inputs).map_err(|error| SnpLaunchError::Measure {
            ovmf: self.ovmf.display().to_string(),
            error,
        })
    }
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, SnpLaunchError> {
    std::fs::read(path).map_err(|error| SnpLaunchError::Read {
        what,
        path: path.display().to_string(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::super::confidential::value_of;
    use super::super::tee;
    use super::*;

    fn launch() -> SnpLaunch {
        let mut l = SnpLaunch::new(
            "/fw/OVMF.amdsev.fd".into(),
            "/k/bzImage".into(),
            "/k/initrd.cpio".into(),
            "console=ttyS0 quiet".into(),
            2,
            512,
        );
        l.host_data = tee::host_data(Some(b"version = \"0.1.0\"\n"));
        l
    }

    fn strings(a: &[OsString]) -> Vec<String> {
        a.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn policy_bits() {
        assert_eq!(SnpPolicy::default().bits(), 0x30000);
        let all = SnpPolicy {
            abi_major: 1,
            abi_minor: 55,
            smt: false,
            migrate_ma: true,
            debug: true,
            single_socket: true,
        };
        assert_eq!(all.bits(), 0x1e0137);
        assert_eq!(SnpPolicy::from_bits(0x1e0137).unwrap(), all);
        let no_smt = SnpPolicy {
            smt: false,
            ..SnpPolicy::default()
        };
        assert_eq!(no_smt.bits(), 0x20000);
        let e = SnpPolicy::from_bits(0x10000).unwrap_err().to_string();
        assert!(e.contains("bit 17 is reserved and must be set"), "{e}");
        let e = SnpPolicy::from_bits(0x30000 | 1 << 22)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bits 0x400000 are not supported"), "{e}");
    }

    #[test]
    fn argv_is_a_q35_snp_launch_with_kernel_hashes() {
        let l = launch();
        let a = l.qemu_args(&QemuPaths::in_dir(Path::new("/run/vm")));
        let s = strings(&a).join(" ");
        assert!(s.starts_with("-accel kvm -machine q35,confidential-guest-support=sev0,memory-backend=ram1 -cpu EPYC-v4 -smp 2 -m 512M"), "{s}");
        assert!(
            s.contains("-object memory-backend-memfd,id=ram1,size=512M,share=true,prealloc=false"),
            "{s}"
        );
        let obj = strings(&a)
            .into_iter()
            .find(|o| o.starts_with("sev-snp-guest,"))
            .unwrap();
        assert!(
            obj.starts_with("sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000,kernel-hashes=on,host-data="),
            "{obj}"
        );
        // host-data is base64 of sha256(initdata), 32 bytes.
        let b64 = obj.rsplit("host-data=").next().unwrap();
        assert_eq!(STANDARD.decode(b64).unwrap(), l.host_data.to_vec());
        assert_eq!(
            b64,
            STANDARD.encode(sha2::Sha256::digest(b"version = \"0.1.0\"\n"))
        );
        assert!(
            s.contains(
                "-device vhost-user-vsock-pci,chardev=vsock,disable-legacy=on,iommu_platform=on"
            ),
            "{s}"
        );
        assert!(
            s.contains("-chardev file,id=console,path=/run/vm/console.log -serial chardev:console"),
            "{s}"
        );
        assert!(
            s.contains("-chardev socket,id=vsock,path=/run/vm/vhost-vsock.sock"),
            "{s}"
        );
        assert!(!s.contains("microvm") && !s.contains("tcg"), "{s}");
        // The command line is one argument, unchanged.
        assert_eq!(value_of(&a, "-append").unwrap(), "console=ttyS0 quiet");
    }

    use sha2::Digest as _;

    #[test]
    fn measurement_inputs_are_the_launch_inputs() {
        let l = launch();
        let q = l.qemu_args(&QemuPaths::in_dir(Path::new("/run/vm")));
        let m = l.measure_args();
        let pairs = [
            ("-bios", "--ovmf"),
            ("-kernel", "--kernel"),
            ("-initrd", "--initrd"),
            ("-append", "--append"),
            ("-smp", "--vcpus"),
            ("-cpu", "--vcpu-type"),
        ];
        for (qflag, mflag) in pairs {
            assert_eq!(
                value_of(&q, qflag),
                value_of(&m, mflag),
                "{qflag} vs {mflag}"
            );
        }
        assert_eq!(value_of(&m, "--guest-features").unwrap(), "0x1");
    }

    #[test]
    fn expected_measurement_uses_the_files_and_fails_clearly() {
        let d = tempfile::tempdir().unwrap();
        let ovmf = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../attestation/measure/testdata/fixtures/ovmf_AmdSev_suffix.bin");
        let (k, i) = (d.path().join("k"), d.path().join("i"));
        std::fs::write(&k, b"kernel bytes").unwrap();
        std::fs::write(&i, b"initrd bytes").unwrap();
        let mut l = SnpLaunch::new(ovmf.clone(), k.clone(), i.clone(), "c".into(), 1, 256);
        let d1 = l.expected_measurement().unwrap();
        // The same as measuring the same inputs directly.
        let fw = std::fs::read(&ovmf).unwrap();
        let direct = snp_launch_digest(
            &SnpLaunchInputs::new(&fw, 1, l.vcpu_type.signature()).with_kernel(
                KernelHashes::from_contents(b"kernel bytes", b"initrd bytes", "c"),
            ),
        )
        .unwrap();
        assert_eq!(d1, direct);
        // Every input changes it.
        l.cmdline = "c2".into();
        assert_ne!(l.expected_measurement().unwrap(), d1);
        l.cmdline = "c".into();
        l.vcpus = 2;
        assert_ne!(l.expected_measurement().unwrap(), d1);
        l.vcpus = 1;
        l.vcpu_type = "EPYC-Milan".parse().unwrap();
        assert_ne!(l.expected_measurement().unwrap(), d1);

        l.ovmf = d.path().join("missing.fd");
        let e = l.expected_measurement().unwrap_err().to_string();
        assert!(e.starts_with("reading OVMF"), "{e}");
        // A firmware that is not an AmdSev build cannot take kernel hashes.
        l.ovmf = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../attestation/measure/testdata/fixtures/ovmf_OvmfX64_suffix.bin");
        let e = l.expected_measurement().unwrap_err().to_string();
        assert!(e.contains("AmdSev"), "{e}");
    }

    #[test]
    fn validation() {
        let mut l = launch();
        assert!(l.validate().is_ok());
        l.cbitpos = 5;
        assert!(l.validate().unwrap_err().to_string().contains("cbitpos 5"));
        l.cbitpos = 51;
        l.vcpus = 0;
        assert!(l.validate().is_err());
    }
}
