//! `cloister-kbs bench`: attestations per second and latency percentiles of a
//! KBS on loopback with sim evidence. The KBS runs on a tokio current_thread
//! runtime in a thread pinned to one CPU (with its verifier threads, which
//! inherit the pinning); the clients and the sim chip run pinned to another CPU,
//! so the figure is what one core of KBS sustains.
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cloister_kbs_client::{KbsClient, KbsClientConfig, SimAttester, UnixTransport};
use cloister_sim_chip::SimChip;

use cloister_kbs::admin_client::AdminClient;
use cloister_kbs::{KbsConfig, KbsServer, ServerConfig, TlsSource};

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub attestations: usize,
    pub warmup: usize,
    /// Client tasks running at once.
    pub concurrency: usize,
    /// A new HTTPS connection (and TEE key) for every attestation, as a booting
    /// guest has; otherwise each client task keeps its connection.
    pub fresh_connections: bool,
    pub server_cpu: usize,
    pub client_cpu: usize,
}

/// What was measured.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub attestations: usize,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} attestations in {:.2} s: {:.1} attestations/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.attestations, self.seconds, self.per_second, self.p50_ms, self.p99_ms, self.max_ms
        )
    }
}

/// Pins the calling thread (and threads it creates later) to one CPU.
fn pin_to_cpu(cpu: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data that CPU_ZERO/CPU_SET initialise; the pointer
    // and size passed to sched_setaffinity describe that local set; pid 0 means
    // the calling thread.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Runs the benchmark.
pub fn run(opts: &BenchOptions) -> anyhow::Result<BenchReport> {
    let dir = tempfile_dir()?;
    let cleanup = dir.clone();
    let state = dir.join("kbs");
    let chip = SimChip::load_or_create(&dir.join("sim"))?;
    let mut token = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut token);
    let admin_token = hex::encode(token);
    let mut config = KbsConfig::new(state.clone(), admin_token.clone());
    config.allow_sim = true;
    config.sim_ark = Some(chip.ca().ark_pem().as_bytes().to_vec());
    let server_cfg = ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        admin_listen: "127.0.0.1:0".parse()?,
        tls: TlsSource::SelfSigned {
            sans: vec!["127.0.0.1".into(), "localhost".into()],
        },
    };

    // The KBS: one thread, one current_thread runtime, one CPU.
    let (addr_tx, addr_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_cpu = opts.server_cpu;
    let server =
        std::thread::Builder::new()
            .name("kbs".into())
            .spawn(move || -> anyhow::Result<()> {
                if let Err(e) = pin_to_cpu(server_cpu) {
                    tracing::warn!(error = %e, "cannot pin the KBS to CPU {server_cpu}");
                }
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let s = KbsServer::start(&config, &server_cfg)?;
                    let _ = addr_tx.send((s.addr, s.admin_addr));
                    let _ = stop_rx.await;
                    s.shutdown().await;
                    Ok(())
                })
            })?;
    let (addr, admin_addr) = addr_rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| anyhow::anyhow!("the KBS did not start"))?;
    let ca = std::fs::read(state.join("tls/ca.pem"))?;

    // The clients and the sim chip: another thread, another CPU.
    let client_cpu = opts.client_cpu;
    let opts = opts.clone();
    let measurement = [0x5a; 48];
    let result = std::thread::Builder::new()
        .name("bench-clients".into())
        .spawn(move || -> anyhow::Result<BenchReport> {
            if let Err(e) = pin_to_cpu(client_cpu) {
                tracing::warn!(error = %e, "cannot pin the clients to CPU {client_cpu}");
            }
            let sock = dir.join("sim.sock_1025");
            let _chip_server = chip.serve_unix(&sock, measurement, [0; 32])?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let admin = AdminClient::new(&format!("https://{admin_addr}"), &ca, &admin_token)?;
                admin
                    .set_reference_values(&format!(
                        "{{\"measurement\": \"{}\"}}",
                        hex::encode(measurement)
                    ))
                    .await?;
                let url = format!("https://{addr}");
                let total = opts.warmup + opts.attestations;
                let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let mut tasks = Vec::new();
                let start = std::sync::Arc::new(std::sync::Mutex::new(None::<Instant>));
                for _ in 0..opts.concurrency.max(1) {
                    let (next, start, warmup, fresh) = (
                        next.clone(),
                        start.clone(),
                        opts.warmup,
                        opts.fresh_connections,
                    );
                    let (url, ca, sock) = (url.clone(), ca.clone(), sock.clone());
                    let make = move || make_client(&url, &ca, &sock);
                    let mut client = make()?;
                    tasks.push(tokio::spawn(async move {
                        let mut lat = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            if i >= total {
                                break;
                            }
                            if i == warmup {
                                *start.lock().unwrap_or_else(|p| p.into_inner()) =
                                    Some(Instant::now());
                            }
                            if fresh {
                                client = make()?;
                            }
                            let t = Instant::now();
                            client.attest_once().await?;
                            if i >= warmup {
                                lat.push(t.elapsed());
                            }
                        }
                        Ok::<_, anyhow::Error>(lat)
                    }));
                }
                let mut lat = Vec::new();
                for t in tasks {
                    lat.extend(t.await??);
                }
                let began = start
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .ok_or_else(|| anyhow::anyhow!("no timed attestations"))?;
                let seconds = began.elapsed().as_secs_f64();
                lat.sort();
                Ok(BenchReport {
                    attestations: lat.len(),
                    seconds,
                    per_second: lat.len() as f64 / seconds,
                    p50_ms: percentile(&lat, 50.0),
                    p99_ms: percentile(&lat, 99.0),
                    max_ms: lat.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
                })
            })
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("the client thread panicked"))?;
    let _ = stop_tx.send(());
    server
        .join()
        .map_err(|_| anyhow::anyhow!("the KBS thread panicked"))??;
    let _ = std::fs::remove_dir_all(&cleanup);
    result
}

fn make_client(url: &str, ca: &[u8], sock: &std::path::Path) -> anyhow::Result<KbsClient> {
    let attester = SimAttester::new(UnixTransport(sock.to_path_buf()));
    Ok(KbsClient::new(
        KbsClientConfig::new(url, ca),
        Box::new(attester),
    )?)
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let mut b = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    let dir = std::env::temp_dir().join(format!("cloister-kbs-bench-{}", hex::encode(b)));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
