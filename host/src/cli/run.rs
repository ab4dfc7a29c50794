//! `cloister run`: one confidential container, the direct path (no
//! containerd): boot a measured sandbox, let the guest attest, pull, verify
//! and decrypt the image, run it, stream its output, exit with its code.
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use cloister_host::hypervisor::tee::TeeKind;
use cloister_host::run::{RunOptions, RunReport};

use super::vm::TeeArg;
use super::{runtime, VmArgs};

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub vm: VmArgs,
    /// TEE: `sim` (development only, NOT A TEE) or `none` (initdata unbound).
    #[arg(long, value_enum, default_value = "sim")]
    pub tee: TeeArg,
    /// The initdata document (TOML): the agent policy, the image-signature
    /// policy, the registry settings and the KBS (docs/initdata.md). Its
    /// sha256 is the launch's HOST_DATA.
    #[arg(long)]
    pub initdata: PathBuf,
    /// Sim CA state directory (default $CLOISTER_CACHE/sim).
    #[arg(long)]
    pub sim_state: Option<PathBuf>,
    /// OCI runtime spec (config.json) to send instead of the default one
    /// (runc's defaults running ARGS).
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Container id inside the sandbox.
    #[arg(long, default_value = "main")]
    pub id: String,
    /// Seconds the guest may take to attest and pull the image.
    #[arg(long, default_value_t = 600)]
    pub pull_timeout: u64,
    /// Print the summary as JSON on stderr instead of text.
    #[arg(long)]
    pub summary_json: bool,
    /// Image reference, ideally by digest (`registry/repo@sha256:…`).
    pub image: String,
    /// The command to run (default spec only).
    #[arg(last = true)]
    pub args: Vec<String>,
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut boot = args.vm.boot_options()?;
    // The guest pulls the image itself: it needs its network.
    boot.vm.user_net = true;
    boot.tee = match args.tee {
        TeeArg::None => TeeKind::None,
        TeeArg::Sim => TeeKind::Sim,
        TeeArg::Snp | TeeArg::Tdx => bail!(
            "`cloister run --tee snp|tdx` needs SEV-SNP/TDX hardware and a newer QEMU than this machine has \
             (docs/snp-launch.md); use --tee sim for development"
        ),
    };
    boot.sim_state = args.sim_state.clone();
    let initdata = std::fs::read_to_string(&args.initdata)
        .with_context(|| format!("reading --initdata {}", args.initdata.display()))?;
    boot.initdata = Some(initdata.clone().into_bytes());
    let spec = match &args.spec {
        Some(p) => serde_json::from_slice(
            &std::fs::read(p).with_context(|| format!("reading --spec {}", p.display()))?,
        )
        .with_context(|| format!("--spec {} is not JSON", p.display()))?,
        None => {
            if args.args.is_empty() {
                bail!("give the command after `--` (or an OCI spec with --spec)");
            }
            let a: Vec<&str> = args.args.iter().map(String::as_str).collect();
            let mut spec = cloister_protocol::oci::default_spec(&a);
            // Policies find the container by this annotation, as with CRI.
            spec["annotations"] = serde_json::json!({"io.kubernetes.cri.container-name": args.id});
            spec
        }
    };
    let opts = RunOptions {
        boot,
        initdata,
        image: args.image.clone(),
        spec,
        container_id: args.id.clone(),
        pull_timeout: Duration::from_secs(args.pull_timeout),
        network: cloister_host::pod::network::GuestNetwork::user(),
    };
    let report = runtime()?.block_on(cloister_host::run::run(
        &opts,
        |b| {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(b);
            let _ = o.flush();
        },
        |b| {
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(b);
            let _ = e.flush();
        },
    ))?;
    if args.summary_json {
        eprintln!("{}", summary_json(&args.image, &report));
    } else {
        eprint!("{}", summary(&args.image, &report));
    }
    std::process::exit(report.exit_code.clamp(0, 255));
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// The human summary (stderr; stdout is the container's).
pub fn summary(image: &str, r: &RunReport) -> String {
    let c = &r.created;
    let mut s = String::from("\n── cloister run ─────────────────────────────────────────────\n");
    let mut line = |k: &str, v: String| s.push_str(&format!("{k:<14} {v}\n"));
    match &r.measurement {
        Some(m) => {
            line(
                "tee",
                "sim (development only: NOT A TEE, no protection)".into(),
            );
            line("measurement", m.clone());
        }
        None => line("tee", "none (initdata not bound: development only)".into()),
    }
    line(
        "host data",
        format!("{} (sha256 of the initdata)", r.host_data),
    );
    line(
        "initdata",
        if r.bound_to_tee {
            "accepted: its sha256 equals the report's HOST_DATA".into()
        } else {
            "accepted WITHOUT a TEE binding".into()
        },
    );
    line(
        "attestation",
        if c.attestation.is_empty() {
            "not needed (no image keys)".into()
        } else {
            c.attestation.clone()
        },
    );
    line("image", image.to_string());
    line("image digest", c.image_digest.clone());
    line("signature", c.signature.clone());
    line(
        "layers",
        format!(
            "{} downloaded, {} reused, {} decrypted in the guest",
            c.layers_downloaded, c.layers_reused, c.encrypted_layers
        ),
    );
    line("exit code", r.exit_code.to_string());
    let phases: Vec<String> = r
        .phases
        .iter()
        .map(|(n, d)| format!("{n} {}", secs(*d)))
        .collect();
    line("phases", phases.join(" · "));
    line(
        "in the guest",
        format!(
            "attest {} · pull {} · create {}",
            secs(Duration::from_millis(c.attest_ms)),
            secs(Duration::from_millis(c.pull_ms.saturating_sub(c.attest_ms))),
            secs(Duration::from_millis(c.create_ms))
        ),
    );
    s
}

fn summary_json(image: &str, r: &RunReport) -> String {
    let c = &r.created;
    serde_json::json!({
        "tee": if r.measurement.is_some() { "sim" } else { "none" },
        "measurement": r.measurement,
        "host_data": r.host_data,
        "bound_to_tee": r.bound_to_tee,
        "attestation": c.attestation,
        "image": image,
        "image_digest": c.image_digest,
        "signature": c.signature,
        "layers_downloaded": c.layers_downloaded,
        "layers_reused": c.layers_reused,
        "encrypted_layers": c.encrypted_layers,
        "exit_code": r.exit_code,
        "guest_ms": {"attest": c.attest_ms, "pull": c.pull_ms.saturating_sub(c.attest_ms), "create": c.create_ms},
        "phases_ms": r.phases.iter().map(|(n, d)| (n.to_string(), d.as_millis() as u64)).collect::<std::collections::BTreeMap<_, _>>(),
    })
    .to_string()
}
