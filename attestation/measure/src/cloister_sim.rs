//! The sim TEE's launch digest: what the sim chip reports as MEASUREMENT for a
//! guest that cloister boots directly (QEMU or the builtin VMM, no firmware).
//! Development only — it stands in for the SNP launch digest so that reference
//! values, the KBS and the agent run the same way with and without SEV.
//!
//! ```text
//! digest = SHA-384(
//!     "cloister-sim launch digest v1\0"
//!     "kernel\0"     sha256(kernel)                        32 bytes
//!     "initrd\0"     sha256(initrd)                        32 bytes (sha256 of empty if none)
//!     "cmdline\0"    u64 little-endian byte length, bytes  the command line as the user gave it
//!     "vcpus\0"      u32 little-endian
//!     "memory_mib\0" u32 little-endian
//! )
//! ```
//!
//! Each field is preceded by its NUL-terminated name and has a fixed width or an
//! explicit length, so no two different launches encode to the same bytes. The
//! command line is the one the user asked for, before the VMM appends anything
//! of its own (e.g. QEMU's `virtio_mmio.device=`).
use sha2::{Digest, Sha256, Sha384};

/// The domain separator at the start of the encoding.
pub const DOMAIN: &[u8] = b"cloister-sim launch digest v1\0";

/// What the sim launch digest covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimLaunchInputs {
    pub kernel_sha256: [u8; 32],
    pub initrd_sha256: [u8; 32],
    pub cmdline: String,
    pub vcpus: u32,
    pub memory_mib: u32,
}

impl SimLaunchInputs {
    /// From the kernel and initrd contents.
    pub fn from_contents(
        kernel: &[u8],
        initrd: &[u8],
        cmdline: &str,
        vcpus: u32,
        memory_mib: u32,
    ) -> Self {
        SimLaunchInputs {
            kernel_sha256: Sha256::digest(kernel).into(),
            initrd_sha256: Sha256::digest(initrd).into(),
            cmdline: cmdline.to_string(),
            vcpus,
            memory_mib,
        }
    }

    /// The exact bytes that are hashed (see the module documentation).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160 + self.cmdline.len());
        out.extend_from_slice(DOMAIN);
        out.extend_from_slice(b"kernel\0");
        out.extend_from_slice(&self.kernel_sha256);
        out.extend_from_slice(b"initrd\0");
        out.extend_from_slice(&self.initrd_sha256);
        out.extend_from_slice(b"cmdline\0");
        out.extend_from_slice(&(self.cmdline.len() as u64).to_le_bytes());
        out.extend_from_slice(self.cmdline.as_bytes());
        out.extend_from_slice(b"vcpus\0");
        out.extend_from_slice(&self.vcpus.to_le_bytes());
        out.extend_from_slice(b"memory_mib\0");
        out.extend_from_slice(&self.memory_mib.to_le_bytes());
        out
    }
}

/// The 48-byte sim launch digest.
pub fn sim_launch_digest(inputs: &SimLaunchInputs) -> [u8; 48] {
    Sha384::digest(inputs.encode()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> SimLaunchInputs {
        SimLaunchInputs::from_contents(b"kernel", b"initrd", "console=ttyS0", 1, 256)
    }

    #[test]
    fn known_answer() {
        // Computed independently: python3 -c 'import hashlib,struct; k=hashlib.sha256(b"kernel").digest();
        // i=hashlib.sha256(b"initrd").digest(); c=b"console=ttyS0"; print(hashlib.sha384(
        // b"cloister-sim launch digest v1\0"+b"kernel\0"+k+b"initrd\0"+i+b"cmdline\0"+struct.pack("<Q",len(c))+c
        // +b"vcpus\0"+struct.pack("<I",1)+b"memory_mib\0"+struct.pack("<I",256)).hexdigest())'
        assert_eq!(hex::encode(sim_launch_digest(&base())), KNOWN);
    }

    const KNOWN: &str = "ad7d09828b7d5a7990c37f0f86f99899abcd8f11752d0c36b8148ed49770d8b80cdd6dae3f4048589c578178b72bddb2";

    #[test]
    fn every_input_changes_the_digest() {
        let d = sim_launch_digest(&base());
        let variants = [
            SimLaunchInputs::from_contents(b"kernel2", b"initrd", "console=ttyS0", 1, 256),
            SimLaunchInputs::from_contents(b"kernel", b"initrd2", "console=ttyS0", 1, 256),
            SimLaunchInputs::from_contents(b"kernel", b"initrd", "console=ttyS1", 1, 256),
            SimLaunchInputs::from_contents(b"kernel", b"initrd", "console=ttyS0", 2, 256),
            SimLaunchInputs::from_contents(b"kernel", b"initrd", "console=ttyS0", 1, 512),
        ];
        for v in variants {
            assert_ne!(sim_launch_digest(&v), d, "{v:?}");
        }
    }
}
