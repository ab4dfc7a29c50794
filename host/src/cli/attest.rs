//! `cloister attest`: verify TEE evidence from the command line, with the same
//! verifiers the KBS uses (crate `cloister-evidence`), and show every check made.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use cloister_evidence::sim::SimEvidence;
use cloister_evidence::snp::{Product, SnpEvidence};
use cloister_evidence::tdx::TdxEvidence;
use cloister_evidence::{Check, Evidence, EvidenceFormat, ReferenceValues, VerifyOptions};

#[derive(Subcommand)]
pub enum AttestCommand {
    /// Verify an SNP report or a TDX quote against the vendor roots built into cloister.
    ///
    /// Output: the verified claims as JSON on stdout (only when the evidence is
    /// accepted), and one line per check on stderr:
    ///
    ///   [ ok ] <check>: <detail>    passed
    ///   [skip] <check>: <detail>    not performed (not applicable, or not implemented yet)
    ///   [FAIL] <check>: <detail>    rejected the evidence; checking stops here
    ///
    /// Exit status: 0 when the evidence is accepted; 1 otherwise, with
    /// "cloister: error: evidence rejected: <check>: <expected vs got>" last on stderr.
    ///
    /// SNP: --evidence is the raw 1184-byte report and --vcek its VCEK or VLEK (DER
    /// or PEM). Without --chain, AMD's ARK/ASK/ASVK built in for the report's product
    /// are used (product from the report's CPUID for version >= 3 reports, else from
    /// the VCEK's productName). A --chain must end in AMD's ARK for that product.
    ///
    /// TDX: --evidence is a v4 or v5 quote; its PCK chain is read from the quote
    /// unless --chain gives one. The chain must end in Intel's SGX Root CA. TCB-info
    /// and QE-identity evaluation are not performed yet (shown as [skip]).
    ///
    /// Sim (development only, NOT A TEE): --evidence is a cloister-sim report, --vcek
    /// the sim VCEK and --chain the sim ASK and ARK, as the sim chip hands them out.
    /// Refused unless --allow-sim is given; --sim-ark pins the sim root (e.g.
    /// <sim state>/ca/ark.pem), otherwise the chain's own sim ARK is accepted.
    #[command(verbatim_doc_comment)]
    Verify {
        /// The evidence file: raw SNP report or TDX quote.
        #[arg(long)]
        evidence: PathBuf,
        /// Evidence format: snp, tdx or sim (default: detected from the bytes).
        #[arg(long)]
        format: Option<EvidenceFormat>,
        /// SNP: the VCEK or VLEK certificate (DER or PEM).
        #[arg(long)]
        vcek: Option<PathBuf>,
        /// SNP: PEM bundle of ASK and/or ASVK with the ARK. TDX: PCK chain (PEM).
        #[arg(long)]
        chain: Option<PathBuf>,
        /// SNP: the product (milan, genoa, turin), when the evidence does not tell.
        #[arg(long)]
        product: Option<Product>,
        /// Verify as of this time (RFC 3339 UTC, e.g. 2025-06-01T00:00:00Z; default now).
        #[arg(long)]
        at: Option<String>,
        /// JSON file of expected values, e.g. {"measurement": "<hex>", "host_data":
        /// "<hex>", "min_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115},
        /// "policy": {"allow_debug": false}, "vmpl": 0}. Also: report_data;
        /// policy.allow_migration_agent, allow_smt, require_single_socket
        /// (cloister_evidence::ReferenceValues).
        #[arg(long)]
        reference_values: Option<PathBuf>,
        /// Accept guests whose policy allows debugging (SNP policy bit 19, TDX debug TD).
        #[arg(long)]
        allow_debug: bool,
        /// Accept sim evidence (development only: it proves nothing about hardware).
        #[arg(long)]
        allow_sim: bool,
        /// Sim: the sim ARK certificate (PEM or DER) the chain must end in.
        #[arg(long)]
        sim_ark: Option<PathBuf>,
    },
}

pub fn run(cmd: AttestCommand) -> anyhow::Result<()> {
    match cmd {
        AttestCommand::Verify {
            evidence,
            format,
            vcek,
            chain,
            product,
            at,
            reference_values,
            allow_debug,
            allow_sim,
            sim_ark,
        } => {
            let bytes = read(&evidence, "evidence")?;
            let format = match format {
                Some(f) => f,
                None => EvidenceFormat::detect(&bytes).with_context(|| {
                    format!(
                        "cannot tell the format of {} ({} bytes); pass --format snp|tdx|sim",
                        evidence.display(),
                        bytes.len()
                    )
                })?,
            };
            let mut opts = VerifyOptions::default();
            if let Some(at) = at {
                opts.at = cloister_evidence::time::parse_rfc3339(&at).context("--at")?;
            }
            if let Some(path) = reference_values {
                let json = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                opts.reference = ReferenceValues::from_json(&json)
                    .with_context(|| path.display().to_string())?;
            }
            if allow_debug {
                opts.reference.policy.allow_debug = true;
            }
            opts.allow_sim = allow_sim;
            opts.sim_ark = sim_ark.map(|p| read(&p, "--sim-ark")).transpose()?;
            let chain = chain.map(|p| read(&p, "chain")).transpose()?;

            let vek;
            let input = match format {
                EvidenceFormat::Snp => {
                    let path = vcek.context("--vcek is required for SNP evidence (the VCEK or VLEK certificate, DER or PEM)")?;
                    vek = read(&path, "--vcek")?;
                    Evidence::Snp(SnpEvidence {
                        report: &bytes,
                        vek: &vek,
                        chain: chain.as_deref(),
                        product,
                    })
                }
                EvidenceFormat::Sim => {
                    let path =
                        vcek.context("--vcek is required for sim evidence (the sim VCEK)")?;
                    vek = read(&path, "--vcek")?;
                    Evidence::Sim(SimEvidence {
                        report: &bytes,
                        vcek: &vek,
                        chain: chain.as_deref().context(
                            "--chain is required for sim evidence (the sim ASK and ARK)",
                        )?,
                    })
                }
                EvidenceFormat::Tdx => {
                    if vcek.is_some() || product.is_some() {
                        bail!("--vcek and --product apply to SNP evidence only");
                    }
                    Evidence::Tdx(TdxEvidence {
                        quote: &bytes,
                        pck_chain: chain.as_deref(),
                    })
                }
                other => bail!(
                    "evidence format {other} is not supported by `cloister attest verify` yet"
                ),
            };

            match cloister_evidence::verify(&input, &opts) {
                Ok(verified) => {
                    print_checks(&verified.checks);
                    println!("{}", serde_json::to_string_pretty(&verified.claims)?);
                    Ok(())
                }
                Err(rejected) => {
                    print_checks(&rejected.checks);
                    Err(anyhow::Error::new(rejected).context("evidence rejected"))
                }
            }
        }
    }
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

fn print_checks(checks: &[Check]) {
    for c in checks {
        eprintln!("{c}");
    }
}
