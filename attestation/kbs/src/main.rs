//! `cloister-kbs`: run the key broker, talk to its admin API, or benchmark it.
mod bench;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use cloister_kbs::admin_client::AdminClient;
use cloister_kbs::{KbsConfig, KbsServer, ServerConfig, TlsSource};

#[derive(Parser)]
#[command(
    name = "cloister-kbs",
    version,
    about = "cloister's key broker (Trustee KBS protocol v0)"
)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, global = true, env = "CLOISTER_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the attestation API and, on a second listener, the admin API.
    Serve(ServeArgs),
    /// Set resources, policies or reference values through the admin API.
    Admin(AdminArgs),
    /// Measure attestations per second (sim evidence, KBS pinned to one CPU).
    Bench(BenchArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// State directory (resources, policies, reference values, token key).
    #[arg(long)]
    state: PathBuf,
    /// Attestation API address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Admin API address.
    #[arg(long, default_value = "127.0.0.1:8081")]
    admin_listen: SocketAddr,
    /// TLS certificate chain (PEM, server certificate first).
    #[arg(long, requires = "tls_key", conflicts_with = "tls_self_signed")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Make a CA and certificate in <state>/tls/ (clients pin <state>/tls/ca.pem).
    #[arg(long)]
    tls_self_signed: bool,
    /// Names and addresses for the self-signed certificate.
    #[arg(long, default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
    tls_san: Vec<String>,
    /// File holding the admin API bearer token (at least 16 characters).
    #[arg(long)]
    admin_token_file: PathBuf,
    /// Accept sim evidence. DEVELOPMENT ONLY: sim evidence proves nothing.
    #[arg(long, requires = "sim_ark")]
    allow_sim: bool,
    /// The sim ARK (the sim chip's <state>/ca/ark.pem) that sim evidence must chain to.
    #[arg(long)]
    sim_ark: Option<PathBuf>,
    /// How long an /auth nonce stays usable, e.g. 60s.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    nonce_ttl: Duration,
    /// How long a session and its token last, e.g. 5m.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    session_ttl: Duration,
}

#[derive(clap::Args)]
struct AdminArgs {
    /// Admin API base URL, e.g. https://127.0.0.1:8081.
    #[arg(long)]
    url: String,
    /// CA certificate (PEM) the KBS certificate chains to.
    #[arg(long)]
    ca: PathBuf,
    /// File holding the admin token.
    #[arg(long)]
    token_file: PathBuf,
    #[command(subcommand)]
    action: AdminAction,
}

#[derive(Subcommand)]
enum AdminAction {
    /// Store a resource at <repository>/<type>/<tag>.
    #[command(name = "set-resource")]
    Resource {
        path: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Replace the attestation policy (Rego, package cloister.attestation).
    #[command(name = "set-attestation-policy")]
    AttestationPolicy {
        #[arg(long)]
        file: PathBuf,
    },
    /// Replace the resource policy (Rego, package cloister.resource).
    #[command(name = "set-resource-policy")]
    ResourcePolicy {
        #[arg(long)]
        file: PathBuf,
    },
    /// Replace the reference values (JSON, see cloister attest verify --help).
    #[command(name = "set-reference-values")]
    ReferenceValues {
        #[arg(long)]
        file: PathBuf,
    },
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Timed attestations.
    #[arg(long, default_value_t = 500)]
    attestations: usize,
    /// Untimed attestations first.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Client tasks at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// A new HTTPS connection and TEE key for every attestation.
    #[arg(long)]
    fresh_connections: bool,
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    #[arg(long, default_value_t = 1)]
    client_cpu: usize,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Serve(a) => serve(a),
        Command::Admin(a) => admin(a),
        Command::Bench(a) => bench::run(&bench::BenchOptions {
            attestations: a.attestations,
            warmup: a.warmup,
            concurrency: a.concurrency,
            fresh_connections: a.fresh_connections,
            server_cpu: a.server_cpu,
            client_cpu: a.client_cpu,
        })
        .map(|r| println!("{r}")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cloister-kbs: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(&a.admin_token_file)
        .with_context(|| format!("reading the admin token {}", a.admin_token_file.display()))?;
    let mut config = KbsConfig::new(a.state.clone(), token);
    config.allow_sim = a.allow_sim;
    config.sim_ark = a
        .sim_ark
        .map(|p| std::fs::read(&p).with_context(|| format!("reading --sim-ark {}", p.display())))
        .transpose()?;
    config.nonce_ttl = a.nonce_ttl;
    config.session_ttl = a.session_ttl;
    let tls = match (a.tls_cert, a.tls_key, a.tls_self_signed) {
        (Some(cert), Some(key), false) => TlsSource::Files { cert, key },
        (None, None, true) => TlsSource::SelfSigned { sans: a.tls_san },
        _ => anyhow::bail!("give --tls-cert and --tls-key, or --tls-self-signed"),
    };
    let server = ServerConfig {
        listen: a.listen,
        admin_listen: a.admin_listen,
        tls,
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let s = KbsServer::start(&config, &server)?;
        println!(
            "attestation API https://{}  admin API https://{}",
            s.addr, s.admin_addr
        );
        tokio::select! {
            r = s.wait() => r.context("serving"),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}

fn admin(a: AdminArgs) -> anyhow::Result<()> {
    let ca = std::fs::read(&a.ca).with_context(|| format!("reading --ca {}", a.ca.display()))?;
    let token = std::fs::read_to_string(&a.token_file)
        .with_context(|| format!("reading --token-file {}", a.token_file.display()))?;
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let c = AdminClient::new(&a.url, &ca, &token)?;
        match a.action {
            AdminAction::Resource { path, file } => c.set_resource(&path, &read(&file)?).await?,
            AdminAction::AttestationPolicy { file } => {
                c.set_attestation_policy(&String::from_utf8(read(&file)?)?)
                    .await?
            }
            AdminAction::ResourcePolicy { file } => {
                c.set_resource_policy(&String::from_utf8(read(&file)?)?)
                    .await?
            }
            AdminAction::ReferenceValues { file } => {
                c.set_reference_values(&String::from_utf8(read(&file)?)?)
                    .await?
            }
        }
        Ok(())
    })
}
