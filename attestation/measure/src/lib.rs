//! Launch measurements: the SEV-SNP launch digest that the firmware reports as
//! MEASUREMENT for a guest that QEMU (or EC2, or GCE) launches from an OVMF
//! image, optionally with a directly booted kernel, initrd and command line.
//! `cloister measure snp` prints it, and the KBS and `cloister run` use it as
//! the reference value a report must match. It equals what sev-snp-measure
//! 0.0.13 computes for the same inputs.
//!
//! Written here rather than taken from the `sev` crate's `measurement`
//! module because that one takes only file paths (cloister measures inputs it
//! holds in memory), does not know GCE (whose pre-validated memory is
//! unmeasured), and asserts (panics) on malformed OVMF images, where this
//! crate must return an error for hostile input.
//!
//! The stages, each in its own module:
//! - [`ovmf`]: the OVMF footer GUID table and SEV metadata sections;
//! - [`kernel_hashes`]: the SEV hashes table of kernel, initrd and command line;
//! - [`vmsa`]: each vCPU's initial save area;
//! - [`page_info`]: the PAGE_INFO digest chaining of SNP_LAUNCH_UPDATE;
//! - [`snp`]: which pages are added, in which order.

pub mod cloister_sim;
mod error;
pub mod kernel_hashes;
pub mod ovmf;
pub mod page_info;
pub mod platform;
pub mod snp;
pub mod vmsa;

pub use error::MeasureError;
pub use kernel_hashes::KernelHashes;
pub use platform::{cpu_signature, VcpuType, VmmType};
pub use snp::{
    parse_ovmf_hash, snp_launch_digest, snp_ovmf_hash, SnpLaunchDigest, SnpLaunchInputs,
    DEFAULT_GUEST_FEATURES,
};
