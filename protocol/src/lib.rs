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
pub mod oci;

/// The request message of every RPC, which is also the name of the policy
/// rule that decides it (`data.agent_policy.<name>`, docs/policy.md).
pub const REQUEST_NAMES: &[&str] = &[
    "HealthCheckRequest",
    "CreateSandboxRequest",
    "DestroySandboxRequest",
    "CreateContainerRequest",
    "StartContainerRequest",
    "RemoveContainerRequest",
    "ExecProcessRequest",
    "SignalProcessRequest",
    "WaitProcessRequest",
    "WriteStdinRequest",
    "ReadStdoutRequest",
    "ReadStderrRequest",
    "CloseStdinRequest",
    "TtyWinResizeRequest",
    "StatsContainerRequest",
    "GetMetricsRequest",
    "GetGuestDetailsRequest",
    "SetPolicyRequest",
    "UpdateInterfaceRequest",
    "UpdateRoutesRequest",
    "CopyFileRequest",
];

#[cfg(test)]
mod tests {
    use protobuf::reflect::FileDescriptor;

    fn file() -> FileDescriptor {
        super::agent::file_descriptor().clone()
    }

    #[test]
    fn every_rpc_takes_a_listed_request_named_after_it() {
        let mut inputs = Vec::new();
        for svc in file().services() {
            for m in svc.methods() {
                let input = m.input_type().name().to_string();
                assert!(
                    input == format!("{}Request", m.proto().name())
                        || (m.proto().name() == "Check" && input == "HealthCheckRequest"),
                    "{}.{} takes {input}",
                    svc.proto().name(),
                    m.proto().name()
                );
                inputs.push(input);
            }
        }
        inputs.sort();
        let mut listed: Vec<String> = super::REQUEST_NAMES.iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert_eq!(inputs, listed);
    }

    #[test]
    fn no_request_has_a_field_named_state() {
        // The agent adds `state` to every policy input.
        for name in super::REQUEST_NAMES {
            let m = file().message_by_package_relative_name(name).unwrap();
            assert!(
                m.field_by_name("state").is_none(),
                "{name} has a state field"
            );
        }
    }
}
