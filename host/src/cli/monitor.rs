use std::net::SocketAddr;

use anyhow::Context;
use clap::Args;
use cloister_host::monitor::server;
use cloister_host::node_config::NodeConfig;

#[derive(Args, Debug)]
pub struct MonitorArgs {
    /// Address of the Prometheus endpoint (`/metrics`). Keep it on loopback
    /// or a node-internal address: it names every pod on the node.
    #[arg(long, default_value = "127.0.0.1:9464")]
    listen: SocketAddr,
    /// Print one scrape to stdout and exit, instead of serving.
    #[arg(long)]
    once: bool,
}

pub fn run(a: MonitorArgs) -> anyhow::Result<()> {
    let path = NodeConfig::path_from_env();
    let cfg = NodeConfig::load(&path)?;
    let run_dir = cfg.runtime.run_dir.clone();
    super::runtime()?.block_on(async move {
        if a.once {
            print!("{}", cloister_host::monitor::scrape(&run_dir).await);
            return Ok(());
        }
        let listener = server::bind(a.listen)
            .await
            .with_context(|| format!("listening on {}", a.listen))?;
        eprintln!(
            "cloister monitor: http://{}/metrics, pods below {}",
            listener.local_addr()?,
            run_dir.join("pods").display()
        );
        server::serve(listener, run_dir).await.context("serving")
    })
}
