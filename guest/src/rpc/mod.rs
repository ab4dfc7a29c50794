//! ttrpc service implementations. `service.rs` lists the RPCs, each a thin
//! handler: the policy gate first, then one call into the module for its
//! concern (sandbox, containers, processes, stdio, control, details).
mod containers;
mod control;
mod details;
mod files;
mod health;
mod network;
mod processes;
mod sandbox;
mod service;
mod stdio;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

pub use health::HealthService;
pub use service::AgentService;

use cloister_runtime::{Runtime, RuntimeConfig};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::policy::PolicyGate;
use crate::sandbox::Sandbox;
use crate::tee::{HostDataSource, Tee};

/// What every handler may read about the agent itself.
pub struct AgentState {
    pub is_init: bool,
    pub tee: Tee,
    pub started: Instant,
    pub host_data: Arc<dyn HostDataSource>,
    pub metrics: Arc<Metrics>,
    pub gate: PolicyGate,
    /// The container runtime (libcontainer through the helper).
    pub runtime: Arc<Runtime>,
    /// The agent's state directory (`/run/cloister` in the guest).
    pub run_dir: std::path::PathBuf,
    /// The pod's image keys once fetched from the KBS, with how.
    pub image_keys_cache: tokio::sync::Mutex<Option<(Arc<cloister_image::KeyRing>, String)>>,
    sandbox: Mutex<Sandbox>,
}

/// The runtime below `cfg.run_dir`, with this binary as its helper.
pub fn open_runtime(cfg: &Config) -> anyhow::Result<Arc<Runtime>> {
    use anyhow::Context;
    let exe = std::env::current_exe().context("finding the agent's own binary")?;
    let rc = RuntimeConfig::under(&cfg.run_dir, exe);
    Ok(Arc::new(
        Runtime::new(rc, tokio::runtime::Handle::current())
            .with_context(|| format!("state directory {}", cfg.run_dir.display()))?,
    ))
}

impl AgentState {
    pub fn new(
        is_init: bool,
        tee: Tee,
        host_data: Arc<dyn HostDataSource>,
        started: Instant,
        runtime: Arc<Runtime>,
        run_dir: std::path::PathBuf,
    ) -> Arc<Self> {
        let metrics = Arc::new(Metrics::new());
        Arc::new(AgentState {
            is_init,
            tee,
            started,
            host_data,
            gate: PolicyGate::builtin(metrics.clone()),
            metrics,
            runtime,
            run_dir,
            image_keys_cache: tokio::sync::Mutex::new(None),
            sandbox: Mutex::new(Sandbox::default()),
        })
    }

    pub fn sandbox(&self) -> MutexGuard<'_, Sandbox> {
        self.sandbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The image decryption keys the initdata names, from the KBS.
    pub async fn image_keys(
        &self,
        initdata: &crate::initdata::Initdata,
    ) -> ttrpc::Result<(Arc<cloister_image::KeyRing>, String)> {
        crate::keys::image_keys(self, initdata).await
    }

    /// The policy check every handler starts with.
    pub fn authorize<M: protobuf::MessageFull>(&self, req: &M) -> ttrpc::Result<()> {
        let state = self.sandbox().policy_state(M::descriptor().name());
        self.gate.check(req, state)
    }
}

/// A ttrpc error status.
pub fn status(code: ttrpc::Code, msg: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg.into()))
}

/// Longest container/exec id; the same rule the generated policies use.
const MAX_ID: usize = 64;

/// Ids become paths and cgroup names: `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`.
pub fn check_id(what: &str, id: &str) -> ttrpc::Result<()> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        let shown: String = id.chars().take(80).collect();
        Err(status(
            ttrpc::Code::INVALID_ARGUMENT,
            format!(
                "{what} {shown:?} ({} bytes) is not [A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}",
                id.len()
            ),
        ))
    }
}

/// A runtime error as a ttrpc status: unknown ids are NOT_FOUND, a refused
/// spec INVALID_ARGUMENT, the rest FAILED_PRECONDITION or INTERNAL.
pub fn runtime_status(e: cloister_runtime::RuntimeError) -> ttrpc::Error {
    use cloister_runtime::RuntimeError as E;
    let code = match &e {
        E::NoContainer(_) | E::NoProcess(_) => ttrpc::Code::NOT_FOUND,
        E::Exists(_) => ttrpc::Code::ALREADY_EXISTS,
        E::Spec(_) => ttrpc::Code::INVALID_ARGUMENT,
        E::Exited(_) | E::State(_) => ttrpc::Code::FAILED_PRECONDITION,
        _ => ttrpc::Code::INTERNAL,
    };
    status(code, e.to_string())
}

/// Runs blocking runtime work off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, cloister_runtime::RuntimeError> + Send + 'static,
) -> ttrpc::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| status(ttrpc::Code::INTERNAL, format!("runtime task failed: {e}")))?
        .map_err(runtime_status)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_bounded_and_path_free() {
        for good in ["c1", "a.b-c_d", &"x".repeat(64)] {
            assert!(super::check_id("id", good).is_ok(), "{good}");
        }
        for bad in ["", "..", "../x", "a/b", "-a", &"x".repeat(65), "a b", "é"] {
            assert!(super::check_id("id", bad).is_err(), "{bad}");
        }
    }
}
