//! `cloister policy`: the agent policy author's tools. The evaluation is the
//! agent's own (`cloister-policy`), so what passes here passes in the guest.
//!
//! * `eval`: one decision (`allow`, exit 0; `deny: <rule>: <reason>`, exit 3).
//! * `test`: a policy's `test_*` rules.
//! * `generate`: a policy from a Kubernetes manifest.
//! * `explain`: a readable account of a denial from the agent's JSON log.
//! * `bench`: decision latency percentiles for a generated policy.
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use cloister_policy::generate::{generate, Options};
use cloister_policy::{explain, run_tests, samples, Decision, Policy};
use serde_json::Value;

/// Exit status of `policy eval` when the request is denied.
pub const EXIT_DENIED: i32 = 3;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Evaluate one request: prints `allow`, or `deny: <rule>: <reason>` and exits 3.
    Eval(EvalArgs),
    /// Run the policy's `test_*` rules (OPA convention); non-zero exit if any fails.
    Test(TestArgs),
    /// Write a policy that allows exactly the containers of a Kubernetes
    /// Pod, Deployment, StatefulSet, Job or DaemonSet.
    Generate(GenerateArgs),
    /// Explain denials from the agent's JSON log (`--log-format json`).
    Explain(ExplainArgs),
    /// Measure decision latency (p50/p99) for a generated policy.
    Bench(BenchArgs),
}

#[derive(Args)]
pub struct EvalArgs {
    /// Rego policy (package agent_policy).
    #[arg(long)]
    policy: PathBuf,
    /// JSON data document merged at the root of `data`.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Request message name, e.g. CreateContainerRequest.
    #[arg(long)]
    request: String,
    /// The request as policy input (JSON; docs/policy.md). `input.state.request`
    /// is set to --request when missing.
    #[arg(long)]
    input: PathBuf,
}

#[derive(Args)]
pub struct TestArgs {
    /// The policy and its test files (e.g. policy.rego policy_test.rego).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Kubernetes manifest (YAML).
    manifest: PathBuf,
    /// Output file (default: stdout).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Accept images referenced by tag instead of digest.
    #[arg(long)]
    allow_tags: bool,
}

#[derive(Args)]
pub struct ExplainArgs {
    /// The policy the agent enforced, for field-by-field differences.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Agent log (JSON lines); `-` or none for stdin. Lines that are not
    /// denials are skipped.
    #[arg(value_name = "LOG")]
    log_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Manifest to generate the policy from (default: a built-in sample pod).
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Evaluations per request kind.
    #[arg(long, default_value_t = 20_000)]
    iterations: usize,
}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Eval(a) => eval(a),
        PolicyCommand::Test(a) => test(a),
        PolicyCommand::Generate(a) => generate_cmd(a),
        PolicyCommand::Explain(a) => explain_cmd(a),
        PolicyCommand::Bench(a) => bench(a),
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    serde_json::from_str(&read(path)?).with_context(|| format!("{} is not JSON", path.display()))
}

fn load_policy(paths: &[PathBuf], data: Option<&Path>) -> anyhow::Result<Policy> {
    let modules = paths
        .iter()
        .map(|p| Ok((p.display().to_string(), read(p)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let data = data.map(read_json).transpose()?;
    Ok(Policy::from_modules(&modules, data.as_ref())?)
}

fn eval(a: EvalArgs) -> anyhow::Result<()> {
    let mut policy = load_policy(std::slice::from_ref(&a.policy), a.data.as_deref())?;
    let mut input = read_json(&a.input)?;
    explain::ensure_request(&mut input, &a.request);
    match policy.evaluate(&a.request, &input) {
        Decision::Allow => {
            println!("allow");
            Ok(())
        }
        Decision::Deny { rule, reason } => {
            println!("deny: {rule}: {reason}");
            std::io::stdout().flush()?;
            std::process::exit(EXIT_DENIED)
        }
    }
}

fn test(a: TestArgs) -> anyhow::Result<()> {
    let mut policy = load_policy(&a.files, a.data.as_deref())?;
    let results = run_tests(&mut policy);
    if results.is_empty() {
        bail!("no test_* rules found in {:?}", a.files);
    }
    let mut failed = 0;
    for r in &results {
        if r.passed {
            println!("PASS {}", r.name);
        } else {
            failed += 1;
            println!("FAIL {}: {}", r.name, r.detail);
        }
    }
    println!("{} passed, {} failed", results.len() - failed, failed);
    if failed > 0 {
        bail!("{failed} policy test(s) failed");
    }
    Ok(())
}

fn generate_cmd(a: GenerateArgs) -> anyhow::Result<()> {
    let manifest = read(&a.manifest)?;
    let g = generate(
        &manifest,
        &Options {
            allow_tags: a.allow_tags,
        },
    )?;
    for w in &g.warnings {
        eprintln!("cloister: warning: {w}");
    }
    match a.output {
        Some(p) => {
            std::fs::write(&p, &g.rego).with_context(|| format!("writing {}", p.display()))?
        }
        None => print!("{}", g.rego),
    }
    Ok(())
}

fn explain_cmd(a: ExplainArgs) -> anyhow::Result<()> {
    let mut policy = match &a.policy {
        Some(p) => Some(load_policy(std::slice::from_ref(p), None)?),
        None => None,
    };
    let reader: Box<dyn BufRead> = match a.log_file.as_deref() {
        None => Box::new(std::io::stdin().lock()),
        Some(p) if p == Path::new("-") => Box::new(std::io::stdin().lock()),
        Some(p) => Box::new(std::io::BufReader::new(
            std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?,
        )),
    };
    let mut n = 0;
    for line in reader.lines() {
        let line = line?;
        match explain::explain(&line, policy.as_mut()) {
            Ok(e) => {
                n += 1;
                println!("{e}");
            }
            Err(_) => continue,
        }
    }
    if n == 0 {
        bail!("no policy denial found in the log (the agent logs them with --log-format json)");
    }
    Ok(())
}

fn bench(a: BenchArgs) -> anyhow::Result<()> {
    if a.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    let manifest = match &a.manifest {
        Some(p) => read(p)?,
        None => samples::POD_YAML.to_string(),
    };
    let rows = cloister_policy::bench::run(&manifest, a.iterations)?;
    println!(
        "policy decision latency, {} evaluations each, policy generated from {}",
        a.iterations,
        a.manifest
            .as_ref()
            .map_or("the built-in sample pod".into(), |p| p
                .display()
                .to_string())
    );
    for r in rows {
        println!(
            "{:<24} {:<5} p50 {:>8.1} µs  p99 {:>8.1} µs  max {:>8.1} µs",
            r.request,
            if r.allowed { "allow" } else { "deny" },
            us(r.p50),
            us(r.p99),
            us(r.max),
        );
    }
    Ok(())
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
