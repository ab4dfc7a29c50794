//! The cloister agent's ttrpc API, generated from `proto/agent.proto`.
//!
//! One small crate so that the host (shim, CLI) and the guest (agent) share
//! exactly the same message definitions.

#[allow(warnings, clippy::all, clippy::pedantic)]
pub mod agent {
    include!(concat!(env!("OUT_DIR"), "/agent.rs"));
}

#[allow(warnings, clippy::all, clippy::pedantic)]
pub mod agent_ttrpc {
    include!(concat!(env!("OUT_DIR"), "/agent_ttrpc.rs"));
}

/// vsock port on which the agent serves its ttrpc API.
pub const AGENT_VSOCK_PORT: u32 = 1024;

pub use agent::*;
