//! The shim's life cycle as containerd drives it: `start` (spawn the
//! long-lived shim of the pod, or find the one already serving it),
//! `delete` (clean up after a shim that is gone), and serving the task API.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cloister_host::node_config::NodeConfig;
use containerd_shim::asynchronous::publisher::RemotePublisher;
use containerd_shim::asynchronous::{spawn, ExitSignal, Shim};
use containerd_shim::protos::api::DeleteResponse;
use containerd_shim::{Config, Error, Flags, StartOpts};
use tracing::{info, warn};

use crate::service::{kind_of, read_spec, Inner};
use crate::state::{Exit, Kind, PodState};
use crate::task::CloisterTask;

/// Tells the spawned shim which pod it serves.
pub const POD_ENV: &str = "CLOISTER_POD_ID";

/// What the shim keeps of containerd's flags (`Flags` is not `Clone`).
struct ShimFlags {
    id: String,
    namespace: String,
    bundle: String,
}

pub struct CloisterShim {
    flags: ShimFlags,
    exit: Arc<ExitSignal>,
    cfg: Result<NodeConfig, String>,
}

fn load_config() -> Result<NodeConfig, String> {
    let path = NodeConfig::path_from_env();
    NodeConfig::load(&path).map_err(|e| e.to_string())
}

fn bundle_dir(flags: &ShimFlags) -> PathBuf {
    if flags.bundle.is_empty() {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
    } else {
        PathBuf::from(&flags.bundle)
    }
}

/// Stops what a dead shim's pod left running and removes its files.
fn clean_pod(cfg: &NodeConfig, pod_id: &str) {
    let dir = cfg.pod_dir(pod_id);
    let state = match PodState::load(&dir) {
        Ok(s) => s,
        Err(e) => {
            warn!(pod = pod_id, error = %e, "reading the pod state to clean up");
            None
        }
    };
    let vm_dir = state
        .as_ref()
        .map(|s| s.vm_dir.clone())
        .unwrap_or_else(|| dir.join("vm"));
    match cloister_host::hypervisor::vmm_process::VmmProcess::attach(&vm_dir) {
        Ok(mut vmm) => {
            let how = vmm.shutdown(Duration::from_secs(5));
            info!(
                pod = pod_id,
                ?how,
                "stopped the pod's VMM left by a dead shim"
            );
        }
        Err(e) => info!(pod = pod_id, error = %e, "no live VMM to stop"),
    }
    if let Some(a) = state.as_ref().and_then(|s| s.network.as_ref()) {
        cloister_host::pod::cni::detach(a);
    }
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            warn!(dir = %dir.display(), error = %e, "removing the pod directory");
        }
    }
}

#[async_trait]
impl Shim for CloisterShim {
    type T = CloisterTask;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        let cfg = load_config();
        if args.action != "start" && args.action != "delete" {
            crate::logging::init(cfg.as_ref().ok().map(|c| c.log.level.as_str()), args.debug);
        }
        CloisterShim {
            flags: ShimFlags {
                id: args.id.clone(),
                namespace: args.namespace.clone(),
                bundle: args.bundle.clone(),
            },
            exit: Arc::new(ExitSignal::default()),
            cfg,
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> Result<String, Error> {
        // A bad config is refused here, where containerd shows the error.
        let cfg = self
            .cfg
            .as_ref()
            .map_err(|e| Error::InvalidArgument(e.clone()))?;
        cfg.check_files(&NodeConfig::path_from_env())
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let bundle = bundle_dir(&self.flags);
        let grouping = match read_spec(&bundle) {
            Ok(spec) => kind_of(&opts.id, &spec).1,
            Err(_) => opts.id.clone(),
        };
        crate::errors::check_id(&grouping).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let grouping_env = grouping.clone();
        let address = spawn(opts, &grouping, vec![(POD_ENV, grouping_env.as_str())]).await?;
        std::fs::write(bundle.join("address"), &address).map_err(|e| {
            Error::Other(format!("writing {}: {e}", bundle.join("address").display()))
        })?;
        Ok(address)
    }

    async fn delete_shim(&mut self) -> Result<DeleteResponse, Error> {
        let bundle = bundle_dir(&self.flags);
        if let Ok(cfg) = &self.cfg {
            let (kind, pod_id) = match read_spec(&bundle) {
                Ok(spec) => kind_of(&self.flags.id, &spec),
                Err(_) => (Kind::Standalone, self.flags.id.clone()),
            };
            if kind != Kind::Container && crate::errors::check_id(&pod_id).is_ok() {
                clean_pod(cfg, &pod_id);
            }
        }
        let exit = Exit::now(137);
        let mut t =
            containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp::new();
        t.seconds = exit.at_secs;
        t.nanos = exit.at_nanos;
        Ok(DeleteResponse {
            exit_status: 137,
            exited_at: Some(t).into(),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        let cfg = match &self.cfg {
            Ok(c) => c.clone(),
            Err(e) => {
                // start refused it already; a config changed since is
                // reported and the built-in defaults serve.
                warn!(
                    error = e,
                    "the node config is unreadable now; using the defaults"
                );
                NodeConfig::default()
            }
        };
        let pod_hint = std::env::var(POD_ENV).unwrap_or_else(|_| self.flags.id.clone());
        info!(pod = pod_hint, namespace = self.flags.namespace, config = %NodeConfig::path_from_env().display(), "cloister shim serving");
        let inner = Inner::new(
            cfg,
            self.flags.namespace.clone(),
            publisher,
            self.exit.clone(),
        );
        CloisterTask { inner, pod_hint }
    }
}
