//! ExecProcess, SignalProcess, WaitProcess, after the policy allowed them.
use cloister_protocol::{
    Empty, ExecProcessRequest, SignalProcessRequest, WaitProcessRequest, WaitProcessResponse,
};

use super::containers::known;
use super::{check_id, status, AgentState};

pub fn exec(s: &AgentState, req: ExecProcessRequest) -> ttrpc::Result<Empty> {
    known(s, &req.container_id)?;
    check_id("exec_id", &req.exec_id)?;
    Err(no_runtime())
}

pub fn signal(s: &AgentState, req: SignalProcessRequest) -> ttrpc::Result<Empty> {
    known(s, &req.container_id)?;
    if req.signal == 0 || req.signal > 64 {
        return Err(status(
            ttrpc::Code::INVALID_ARGUMENT,
            format!("signal {} is not 1-64", req.signal),
        ));
    }
    Err(no_runtime())
}

pub async fn wait(s: &AgentState, req: WaitProcessRequest) -> ttrpc::Result<WaitProcessResponse> {
    known(s, &req.container_id)?;
    Err(no_runtime())
}

fn no_runtime() -> ttrpc::Error {
    status(
        ttrpc::Code::UNIMPLEMENTED,
        "this agent build has no container runtime yet",
    )
}
