//! The ttrpc server: binds vsock or a Unix socket and serves the agent API
//! until the process is told to stop.
use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tracing::info;

use crate::rpc::{AgentService, AgentState, HealthService};

pub async fn serve(listen: &str, state: Arc<AgentState>) -> anyhow::Result<()> {
    if let Some(path) = listen.strip_prefix("unix://") {
        // A stale socket from an earlier run would make bind fail.
        let _ = std::fs::remove_file(path);
    }
    let health =
        cloister_protocol::agent_ttrpc::create_health(Arc::new(HealthService::new(state.clone())));
    let agent = cloister_protocol::agent_ttrpc::create_agent(Arc::new(AgentService::new(state)));
    let mut server = ttrpc::asynchronous::Server::new()
        .bind(listen)
        .with_context(|| format!("binding {listen}"))?
        .register_service(health)
        .register_service(agent);
    server
        .start()
        .await
        .with_context(|| format!("starting the ttrpc server on {listen}"))?;
    info!(%listen, "agent API ready");

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: stopping"),
        _ = int.recv() => info!("SIGINT: stopping"),
    }
    server
        .shutdown()
        .await
        .context("stopping the ttrpc server")?;
    if let Some(path) = listen.strip_prefix("unix://") {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}
