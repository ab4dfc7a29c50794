//! `cloister`: the command-line entry point. Each subcommand lives in
//! `cli/`; this file only parses arguments and sets up logging.
mod cli;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cloister",
    version,
    about = "Confidential containers in measured micro-VMs"
)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info`, `debug`.
    #[arg(long, global = true, env = "CLOISTER_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Boot and inspect VMs.
    #[command(subcommand)]
    Vm(cli::vm::VmCommand),
    /// Build initramfs images.
    #[command(subcommand)]
    Initrd(cli::initrd::InitrdCommand),
    /// Measure performance, against a real peer where there is one.
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
    /// Pull, verify, decrypt and unpack container images (the guest's pipeline).
    #[command(subcommand)]
    Image(cli::image::ImageCommand),
    /// Verify TEE evidence (SNP reports, TDX quotes).
    #[command(subcommand)]
    Attest(cli::attest::AttestCommand),
    /// Compute launch measurements (reference values) for TEE guests.
    #[command(subcommand)]
    Measure(cli::measure::MeasureCommand),
    /// Agent policies: evaluate, test, generate from manifests, explain denials.
    #[command(subcommand)]
    Policy(cli::policy::PolicyCommand),
    /// Run one confidential container: boot a measured sandbox, let the guest
    /// attest, pull, verify and decrypt the image, stream the output, and exit
    /// with the container's exit code.
    Run(Box<cli::run::RunArgs>),
    /// The demo: a local KBS and registry, an encrypted and signed image, and
    /// one confidential container run end to end (sim TEE), then cleaned up.
    Demo(cli::demo::DemoArgs),
    /// Place what a node needs to run cloister pods (binaries, kernel,
    /// initramfs, default policy, node config, snapshotter unit), merge or
    /// print the containerd snippet; `--uninstall` removes exactly that.
    Install(cli::install::InstallArgs),
    /// One Prometheus endpoint for every pod on the node: VMM, agent and
    /// guest figures, the guest's only where the pod's policy allows.
    Monitor(cli::monitor::MonitorArgs),
}

fn main() -> std::process::ExitCode {
    // `cloister vmm-serve SPEC`: the process a detached VM runs in
    // (hypervisor::vmm_process); not a user command.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() == 3 && args[1] == cloister_host::hypervisor::vmm_process::SERVE_ARG {
        let code = cloister_host::hypervisor::vmm_process::serve(std::path::Path::new(&args[2]));
        return std::process::ExitCode::from(code.clamp(0, 255) as u8);
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Vm(c) => cli::vm::run(c),
        Command::Initrd(c) => cli::initrd::run(c),
        Command::Bench(c) => cli::bench::run(c),
        Command::Image(c) => cli::image::run(c),
        Command::Attest(c) => cli::attest::run(c),
        Command::Measure(c) => cli::measure::run(c),
        Command::Policy(c) => cli::policy::run(c),
        Command::Run(c) => cli::run::run(*c),
        Command::Demo(c) => cli::demo::run(c),
        Command::Install(c) => cli::install::run(c),
        Command::Monitor(c) => cli::monitor::run(c),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cloister: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
