use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use cloister_protocol::TeeType;

use super::{runtime, VmArgs};
use cloister_host::hypervisor::qemu::QemuPaths;
use cloister_host::hypervisor::snp_launch::{self, SnpLaunch, SnpPolicy};
use cloister_host::hypervisor::tdx_launch::{self, TdxLaunch};
use cloister_host::hypervisor::tee::{self, TeeKind};
use cloister_host::hypervisor::{qemu_version, DEFAULT_CMDLINE};
use cloister_host::sandbox::Sandbox;
use cloister_measure::VcpuType;

#[derive(Subcommand)]
pub enum VmCommand {
    /// Boot a VM, wait for the agent, print the guest details and the
    /// milliseconds from launch to agent-ready, then shut the VM down.
    Boot(BootArgs),
    /// Print the QEMU command line of an SEV-SNP or TDX launch (and, for
    /// SEV-SNP, the MEASUREMENT its reports will carry) without launching it.
    /// It needs QEMU 9.1 (SNP) or 10.1 (TDX) on a host with the hardware;
    /// see docs/snp-launch.md.
    LaunchArgs(LaunchArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TeeArg {
    /// No TEE: initdata is not bound (development only).
    None,
    /// The sim TEE: development only, NOT A TEE, no security. A host-side sim
    /// chip issues SNP-layout reports over vsock port 1025.
    Sim,
    /// SEV-SNP (not launched by `vm boot` yet: see `vm launch-args`).
    Snp,
    /// TDX (not launched by `vm boot` yet: see `vm launch-args`).
    Tdx,
}

#[derive(Args, Debug, Clone)]
pub struct BootArgs {
    #[command(flatten)]
    pub vm: VmArgs,
    /// TEE to launch with. `sim` adds cloister.tee=sim to the kernel command
    /// line, measures kernel, initrd, command line, vCPUs and memory
    /// (`cloister measure sim`), and serves the sim chip to the guest.
    #[arg(long, value_enum, default_value = "none")]
    pub tee: TeeArg,
    /// Initdata document (TOML): HOST_DATA = sha256 of its exact bytes.
    #[arg(long)]
    pub initdata: Option<PathBuf>,
    /// Sim CA state directory (default $CLOISTER_CACHE/sim, else
    /// ~/.cache/cloister/sim); configure the KBS with <dir>/ca/ark.pem.
    #[arg(long)]
    pub sim_state: Option<PathBuf>,
}

pub fn run(cmd: VmCommand) -> anyhow::Result<()> {
    match cmd {
        VmCommand::Boot(args) => boot(args),
        VmCommand::LaunchArgs(args) => launch_args(args),
    }
}

fn read_initdata(path: Option<&Path>) -> anyhow::Result<Option<Vec<u8>>> {
    path.map(|p| std::fs::read(p).with_context(|| format!("reading --initdata {}", p.display())))
        .transpose()
}

fn boot(args: BootArgs) -> anyhow::Result<()> {
    let mut opts = args.vm.boot_options()?;
    opts.tee = match args.tee {
        TeeArg::None => TeeKind::None,
        TeeArg::Sim => TeeKind::Sim,
        TeeArg::Snp | TeeArg::Tdx => bail!(
            "`vm boot --tee {}` cannot launch on this machine (no SEV-SNP/TDX, and Debian 12's QEMU 7.2 has neither): \
             `cloister vm launch-args --tee {0} …` prints the QEMU command line for a host that can (docs/snp-launch.md)",
            if args.tee == TeeArg::Snp { "snp" } else { "tdx" }
        ),
    };
    if args.sim_state.is_some() && opts.tee != TeeKind::Sim {
        bail!("--sim-state applies to --tee sim only");
    }
    opts.initdata = read_initdata(args.initdata.as_deref())?;
    opts.sim_state = args.sim_state;
    runtime()?.block_on(async {
        let sb = Sandbox::boot(&opts).await?;
        let details = sb.details().await;
        let ready_ms = sb.ready_after.as_millis();
        let accel = sb.accel;
        let measurement = sb.measurement;
        let host_data = sb.host_data;
        let cmdline = sb.cmdline.clone();
        let ark = sb.sim_ark().map(Path::to_path_buf);
        sb.shutdown();
        let d = details?;
        let tee = match d.tee.enum_value() {
            Ok(TeeType::TEE_TYPE_SNP) => "snp",
            Ok(TeeType::TEE_TYPE_TDX) => "tdx",
            Ok(TeeType::TEE_TYPE_SIM) => "sim (development only)",
            Ok(TeeType::TEE_TYPE_NONE) => "none",
            _ => "unknown",
        };
        println!("agent version:   {}", d.agent_version);
        println!("kernel version:  {}", d.kernel_version);
        println!("tee:             {tee}");
        println!("agent is init:   {}", d.is_init);
        println!("guest memory:    {} KiB", d.memory_total_kib);
        println!("guest cpus:      {}", d.online_cpus);
        println!(
            "agent RSS:       {} KiB (idle, after boot)",
            d.agent_rss_kib
        );
        println!("accelerator:     {}", accel.name());
        println!("agent ready in:  {ready_ms} ms (launch to Health reply)");
        if let Some(m) = measurement {
            println!("kernel cmdline:  {cmdline}");
            println!(
                "measurement:     {} (sim launch digest; cloister-sim: NOT A TEE)",
                hex::encode(m)
            );
            println!("host data:       {}", hex::encode(host_data));
        }
        if let Some(ark) = ark {
            println!(
                "sim ARK:         {} (cloister-kbs --allow-sim --sim-ark <this>)",
                ark.display()
            );
        }
        Ok(())
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LaunchTee {
    Snp,
    Tdx,
}

#[derive(Args, Debug)]
pub struct LaunchArgs {
    /// The TEE: snp (QEMU >= 9.1) or tdx (QEMU >= 10.1).
    #[arg(long, value_enum)]
    tee: LaunchTee,
    /// Firmware: for snp an OVMF OvmfPkg/AmdSev build, for tdx a TDVF
    /// (OvmfPkg/IntelTdx) build.
    #[arg(long)]
    firmware: PathBuf,
    /// Guest kernel (bzImage).
    #[arg(long)]
    kernel: PathBuf,
    /// Initramfs with the agent.
    #[arg(long)]
    initrd: PathBuf,
    /// Kernel command line, exactly as measured.
    #[arg(long, default_value = DEFAULT_CMDLINE)]
    cmdline: String,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    vcpus: u32,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    memory: u32,
    /// Initdata document: HOST_DATA (snp) / MRCONFIGID (tdx) from its sha256.
    #[arg(long)]
    initdata: Option<PathBuf>,
    /// snp: QEMU vCPU model (EPYC-v4, EPYC-Milan, EPYC-Genoa, ...).
    #[arg(long, default_value = snp_launch::DEFAULT_VCPU_TYPE)]
    vcpu_type: VcpuType,
    /// snp: allow debugging the guest (policy bit 19). Never in production.
    #[arg(long)]
    policy_debug: bool,
    /// snp: forbid SMT (clear policy bit 16).
    #[arg(long)]
    policy_no_smt: bool,
    /// snp: allow a migration agent (policy bit 18).
    #[arg(long)]
    policy_migrate_ma: bool,
    /// snp: require a single socket (policy bit 20).
    #[arg(long)]
    policy_single_socket: bool,
    /// snp: C-bit position (CPUID 0x8000001F EBX[5:0]).
    #[arg(long, default_value_t = snp_launch::DEFAULT_CBITPOS)]
    cbitpos: u32,
    /// snp: the VMSA's SEV_FEATURES the host's KVM sets (0x1 for QEMU >= 9.1
    /// without debug-swap).
    #[arg(long, value_parser = parse_hex_u64, default_value = "0x1")]
    guest_features: u64,
    /// Where the VM's console log and vsock sockets go.
    #[arg(long, default_value = "/run/cloister/vm")]
    run_dir: PathBuf,
    /// QEMU binary (its version is checked and a warning printed if too old).
    #[arg(long, default_value = cloister_host::hypervisor::qemu::DEFAULT_QEMU)]
    qemu: String,
    /// Print JSON: {"argv": [...], "measurement", "host_data", "measure_args", "warnings"}.
    #[arg(long)]
    json: bool,
}

fn parse_hex_u64(text: &str) -> Result<u64, String> {
    let t = text.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    }
    .map_err(|e| format!("{text:?} is not an integer: {e}"))
}

fn lossy(a: &[OsString]) -> Vec<String> {
    a.iter().map(|s| s.to_string_lossy().into_owned()).collect()
}

/// Quotes `s` for a POSIX shell when it needs it.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./=:,@%+-".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn launch_args(a: LaunchArgs) -> anyhow::Result<()> {
    let initdata = read_initdata(a.initdata.as_deref())?;
    let paths = QemuPaths::in_dir(&a.run_dir);
    let mut warnings = Vec::new();
    let (min, object, what) = match a.tee {
        LaunchTee::Snp => (snp_launch::MIN_QEMU, "sev-snp-guest", "an SEV-SNP guest"),
        LaunchTee::Tdx => (tdx_launch::MIN_QEMU, "tdx-guest", "a TDX guest"),
    };
    match qemu_version::probe(&a.qemu) {
        Ok(v) => {
            if let Err(e) = qemu_version::require(&a.qemu, v, min, object, what) {
                warnings.push(e.to_string());
            }
        }
        Err(e) => warnings.push(e.to_string()),
    }
    let (argv, measurement, measure_args, binding) = match a.tee {
        LaunchTee::Snp => {
            let mut l = SnpLaunch::new(
                a.firmware.clone(),
                a.kernel.clone(),
                a.initrd.clone(),
                a.cmdline.clone(),
                a.vcpus,
                a.memory,
            );
            l.vcpu_type = a.vcpu_type;
            l.policy = SnpPolicy {
                smt: !a.policy_no_smt,
                migrate_ma: a.policy_migrate_ma,
                debug: a.policy_debug,
                single_socket: a.policy_single_socket,
                ..SnpPolicy::default()
            };
            l.cbitpos = a.cbitpos;
            l.guest_features = a.guest_features;
            l.host_data = tee::host_data(initdata.as_deref());
            l.validate()?;
            if l.policy.debug {
                warnings.push("policy allows debugging (bit 19): the host can read guest memory; a KBS must refuse it".into());
            }
            let m = l.expected_measurement()?;
            (
                l.qemu_args(&paths),
                Some(m.to_hex()),
                lossy(&l.measure_args()),
                hex::encode(l.host_data),
            )
        }
        LaunchTee::Tdx => {
            let mut l = TdxLaunch::new(
                a.firmware.clone(),
                a.kernel.clone(),
                a.initrd.clone(),
                a.cmdline.clone(),
                a.vcpus,
                a.memory,
            );
            l.mrconfigid = tee::mrconfigid(initdata.as_deref());
            warnings.push("TDX: cloister computes no expected MRTD/RTMR yet, and the agent reads no MRCONFIGID yet (initdata is refused in a TD)".into());
            (
                l.qemu_args(&paths),
                None,
                Vec::new(),
                hex::encode(l.mrconfigid),
            )
        }
    };
    let binding_name = match a.tee {
        LaunchTee::Snp => "host_data",
        LaunchTee::Tdx => "mrconfigid",
    };
    let mut full = vec![a.qemu.clone()];
    full.extend(lossy(&argv));
    if a.json {
        let mut v = serde_json::json!({
            "tee": match a.tee { LaunchTee::Snp => "snp", LaunchTee::Tdx => "tdx" },
            "argv": full,
            "measurement": measurement,
            "measure_args": measure_args,
            "warnings": warnings,
        });
        v[binding_name] = binding.into();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for w in &warnings {
        println!("# warning: {w}");
    }
    if let Some(m) = &measurement {
        println!("# expected MEASUREMENT: {m}");
        let args: Vec<String> = measure_args.iter().map(|s| shell_quote(s)).collect();
        println!("#   = cloister measure snp {}", args.join(" "));
    }
    println!("# {}: {binding}", binding_name.to_uppercase());
    let mut line = String::new();
    let mut i = 0;
    while i < full.len() {
        // Flags with their value on one line.
        let takes_value =
            full[i].starts_with('-') && i + 1 < full.len() && !full[i + 1].starts_with('-');
        if i > 0 {
            line.push_str(" \\\n  ");
        }
        line.push_str(&shell_quote(&full[i]));
        if takes_value && i > 0 {
            line.push(' ');
            line.push_str(&shell_quote(&full[i + 1]));
            i += 1;
        }
        i += 1;
    }
    println!("{line}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("-append"), "-append");
        assert_eq!(shell_quote("console=ttyS0 quiet"), "'console=ttyS0 quiet'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn hex_or_decimal() {
        assert_eq!(parse_hex_u64("0x21").unwrap(), 0x21);
        assert_eq!(parse_hex_u64("33").unwrap(), 33);
        assert!(parse_hex_u64("0xzz").is_err());
    }
}
