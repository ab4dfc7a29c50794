//! A pod: one measured sandbox VM and its containers. What `cloister run`
//! and the containerd shim do alike lives here, so both take one path:
//! the boot options from the node config, CreateSandbox with the initdata
//! and DNS, the network through UpdateInterface/UpdateRoutes, and the
//! files a container's mounts need through CopyFile.
//!
//! * [`initdata`]: the initdata annotation (or the node's default).
//! * [`annotations`]: the `cloister.dev/` overrides the config allows.
//! * [`network`]: the guest network, applied by RPC.
//! * [`cni`]: the pod's CNI interface bridged to the VM's tap.
//! * [`spec`]: containerd's OCI spec made into the guest's.
pub mod annotations;
pub mod cni;
pub mod initdata;
pub mod network;
pub mod spec;

use std::time::Duration;

use cloister_protocol::{CopyFileRequest, CreateSandboxResponse};

use crate::agent_client::Agent;
use crate::node_config::NodeConfig;
use crate::run::rpc_message;
use crate::sandbox::BootOptions;
use network::GuestNetwork;

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("the guest refused the initdata: {0}")]
    Sandbox(String),
    #[error(transparent)]
    Network(#[from] network::NetworkError),
    #[error("CopyFile {path}: {message}")]
    Copy { path: String, message: String },
}

/// CreateSandbox with the initdata (and the DNS servers), then the
/// network. The first thing done with a booted sandbox.
pub async fn start_sandbox(
    agent: &Agent,
    sandbox_id: &str,
    hostname: &str,
    initdata: &str,
    net: &GuestNetwork,
) -> Result<CreateSandboxResponse, PodError> {
    let resp = agent
        .create_sandbox(sandbox_id, hostname, initdata, &net.dns)
        .await
        .map_err(|e| PodError::Sandbox(rpc_message(&e)))?;
    net.apply(agent).await?;
    Ok(resp)
}

/// Copies a container's files into the guest's sandbox directory.
pub async fn copy_files(agent: &Agent, items: &[spec::CopyItem]) -> Result<(), PodError> {
    for i in items {
        let req = CopyFileRequest {
            path: i.path.clone(),
            data: i.data.clone(),
            mode: i.mode,
            directory: i.directory,
            ..Default::default()
        };
        agent
            .rpc()
            .copy_file(agent.ctx_for(Duration::from_secs(30)), &req)
            .await
            .map_err(|e| PodError::Copy {
                path: i.path.clone(),
                message: rpc_message(&e),
            })?;
    }
    Ok(())
}

/// Boot options from the node's config, with a pod's overrides.
pub fn boot_options(cfg: &NodeConfig, o: &annotations::Overrides) -> BootOptions {
    let h = &cfg.hypervisor;
    let mut b = BootOptions::new(h.kernel.clone(), h.initrd.clone());
    b.vm.cmdline = h.cmdline.clone();
    b.vm.memory_mib = o.memory_mib.unwrap_or(h.memory_mib);
    b.vm.vcpus = o.vcpus.unwrap_or(h.vcpus);
    b.qemu_binary = h.qemu.clone();
    b.accel = cfg.accel();
    b.agent_timeout = Duration::from_secs(h.agent_timeout_secs);
    b.tee = cfg.tee();
    b.sim_state = Some(cfg.tee.sim_state.clone());
    b
}
