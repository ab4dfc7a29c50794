//! `cloister measure`: the launch digest a TEE will report for a guest, so a
//! tenant (or the KBS) knows the reference value before the guest exists. The
//! computation lives in `cloister-measure`; this module only reads files and
//! parses flags. Stdout carries the digest alone, so scripts can capture it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use cloister_measure::{
    cpu_signature, parse_ovmf_hash, snp_launch_digest, snp_ovmf_hash, KernelHashes,
    SnpLaunchInputs, VcpuType, VmmType,
};

#[derive(Subcommand)]
pub enum MeasureCommand {
    /// SEV-SNP launch digest (48 bytes, hex), as sev-snp-measure --mode snp
    /// computes it.
    Snp(SnpArgs),
    /// Digest of the OVMF pages alone (sev-snp-measure --mode snp:ovmf-hash),
    /// to pass later as --ovmf-hash.
    SnpOvmfHash {
        /// OVMF image.
        #[arg(long)]
        ovmf: PathBuf,
    },
    /// The sim TEE's launch digest (48 bytes, hex) for a directly booted kernel,
    /// initrd and command line (development only; see cloister_measure::cloister_sim).
    Sim(SimArgs),
}

#[derive(Args, Debug)]
pub struct SnpArgs {
    /// OVMF image (an AmdSev build to measure a kernel, initrd and command line).
    #[arg(long)]
    ovmf: PathBuf,
    /// Kernel booted directly by QEMU (-kernel).
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Initrd (-initrd); none is the same as an empty one.
    #[arg(long, requires = "kernel")]
    initrd: Option<PathBuf>,
    /// Kernel command line (-append); none is the same as an empty one.
    #[arg(long, requires = "kernel")]
    append: Option<String>,
    /// Number of vCPUs.
    #[arg(long)]
    vcpus: u32,
    /// QEMU vCPU model, e.g. EPYC-v4, EPYC-Milan, EPYC-Genoa (required for qemu).
    #[arg(long, conflicts_with_all = ["vcpu_sig", "vcpu_family"])]
    vcpu_type: Option<VcpuType>,
    /// vCPU signature (CPUID Fn0000_0001_EAX) instead of --vcpu-type.
    #[arg(long, value_parser = parse_u32, conflicts_with = "vcpu_family")]
    vcpu_sig: Option<u32>,
    /// vCPU family instead of --vcpu-type (with --vcpu-model and --vcpu-stepping).
    #[arg(long, requires_all = ["vcpu_model", "vcpu_stepping"])]
    vcpu_family: Option<u32>,
    /// vCPU model (with --vcpu-family).
    #[arg(long, requires = "vcpu_family")]
    vcpu_model: Option<u32>,
    /// vCPU stepping (with --vcpu-family).
    #[arg(long, requires = "vcpu_family")]
    vcpu_stepping: Option<u32>,
    /// VMM launching the guest: qemu, ec2 or gce.
    #[arg(long, default_value = "qemu")]
    vmm_type: VmmType,
    /// Guest features (the VMSA's SEV_FEATURES), e.g. 0x1 or 0x21.
    #[arg(long, value_parser = parse_u64, default_value = "0x1")]
    guest_features: u64,
    /// Precomputed OVMF digest (96 hex digits, from `measure snp-ovmf-hash`):
    /// the OVMF's pages are not hashed, only its tables read.
    #[arg(long)]
    ovmf_hash: Option<String>,
}

pub fn run(cmd: MeasureCommand) -> anyhow::Result<()> {
    match cmd {
        MeasureCommand::Snp(args) => {
            println!("{}", snp(&args)?);
            Ok(())
        }
        MeasureCommand::SnpOvmfHash { ovmf } => {
            let data = read(&ovmf, "OVMF")?;
            let hash = snp_ovmf_hash(&data)
                .with_context(|| format!("measuring OVMF {}", ovmf.display()))?;
            println!("{}", hex::encode(hash));
            Ok(())
        }
        MeasureCommand::Sim(args) => {
            println!("{}", sim(&args)?);
            Ok(())
        }
    }
}

fn snp(args: &SnpArgs) -> anyhow::Result<String> {
    let vcpu_sig = vcpu_signature(args)?;
    let ovmf = read(&args.ovmf, "OVMF")?;
    let mut inputs = SnpLaunchInputs::new(&ovmf, args.vcpus, vcpu_sig)
        .with_vmm(args.vmm_type)
        .with_guest_features(args.guest_features);
    if let Some(text) = &args.ovmf_hash {
        inputs = inputs.with_ovmf_hash(parse_ovmf_hash(text).context("--ovmf-hash")?);
    }
    if let Some(kernel) = &args.kernel {
        let kernel = read(kernel, "kernel")?;
        let initrd = match &args.initrd {
            Some(path) => read(path, "initrd")?,
            None => Vec::new(),
        };
        inputs = inputs.with_kernel(KernelHashes::from_contents(
            &kernel,
            &initrd,
            args.append.as_deref().unwrap_or(""),
        ));
    }
    tracing::debug!(
        ovmf = %args.ovmf.display(), vcpus = args.vcpus, vcpu_sig = format_args!("{vcpu_sig:#x}"),
        vmm = %args.vmm_type, guest_features = format_args!("{:#x}", args.guest_features),
        kernel = inputs.kernel.is_some(), ovmf_hash = inputs.ovmf_hash.is_some(), "measuring SEV-SNP launch"
    );
    let digest = snp_launch_digest(&inputs)
        .with_context(|| format!("measuring with OVMF {}", args.ovmf.display()))?;
    Ok(digest.to_hex())
}

/// The CPUID signature for the VMSA: only QEMU puts it there, so EC2 and GCE
/// need none.
fn vcpu_signature(args: &SnpArgs) -> anyhow::Result<u32> {
    if let Some(family) = args.vcpu_family {
        return Ok(cpu_signature(
            family,
            args.vcpu_model.unwrap_or(0),
            args.vcpu_stepping.unwrap_or(0),
        ));
    }
    match (args.vcpu_sig, args.vcpu_type) {
        (Some(sig), _) => Ok(sig),
        (None, Some(t)) => Ok(t.signature()),
        (None, None) if args.vmm_type != VmmType::Qemu => Ok(0),
        (None, None) => anyhow::bail!(
            "--vmm-type qemu needs the vCPU model: give --vcpu-type (one of {}), --vcpu-sig or --vcpu-family",
            VcpuType::all().map(|t| t.name()).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// An integer in decimal or with a 0x/0o/0b prefix, as sev-snp-measure accepts.
fn parse_u64(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, radix) = match t.get(..2).map(str::to_ascii_lowercase).as_deref() {
        Some("0x") => (&t[2..], 16),
        Some("0o") => (&t[2..], 8),
        Some("0b") => (&t[2..], 2),
        _ => (t, 10),
    };
    u64::from_str_radix(&digits.replace('_', ""), radix)
        .map_err(|e| format!("{text:?} is not an integer: {e}"))
}

fn parse_u32(text: &str) -> Result<u32, String> {
    let v = parse_u64(text)?;
    u32::try_from(v).map_err(|_| format!("{text:?} does not fit in 32 bits"))
}

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Kernel booted directly.
    #[arg(long)]
    kernel: PathBuf,
    /// Initrd; none is the same as an empty one.
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// The kernel command line exactly as booted: `cloister vm boot --cmdline`
    /// plus what boot appends (` cloister.ip=10.0.2.15/24` with --user-net,
    /// then ` cloister.tee=sim`). `vm boot --tee sim` prints it.
    #[arg(long, default_value = "")]
    append: String,
    /// Number of vCPUs.
    #[arg(long)]
    vcpus: u32,
    /// Guest memory in MiB.
    #[arg(long)]
    memory: u32,
}

fn sim(args: &SimArgs) -> anyhow::Result<String> {
    use cloister_measure::cloister_sim::{sim_launch_digest, SimLaunchInputs};
    let kernel = read(&args.kernel, "kernel")?;
    let initrd = match &args.initrd {
        Some(path) => read(path, "initrd")?,
        None => Vec::new(),
    };
    let inputs =
        SimLaunchInputs::from_contents(&kernel, &initrd, &args.append, args.vcpus, args.memory);
    Ok(hex::encode(sim_launch_digest(&inputs)))
}
