//! Stdio of container and exec processes, after the policy allowed it.
use cloister_protocol::{
    CloseStdinRequest, Empty, ReadStreamResponse, TtyWinResizeRequest, WriteStdinRequest,
    WriteStdinResponse,
};

use super::containers::known;
use super::{status, AgentState};

#[derive(Debug, Clone, Copy)]
pub enum Stream {
    Stdout,
    Stderr,
}

pub fn write_stdin(s: &AgentState, req: WriteStdinRequest) -> ttrpc::Result<WriteStdinResponse> {
    known(s, &req.container_id)?;
    Err(no_runtime())
}

pub fn read(
    s: &AgentState,
    container_id: &str,
    _exec_id: &str,
    _stream: Stream,
    _max_len: u32,
) -> ttrpc::Result<ReadStreamResponse> {
    known(s, container_id)?;
    Err(no_runtime())
}

pub fn close_stdin(s: &AgentState, req: CloseStdinRequest) -> ttrpc::Result<Empty> {
    known(s, &req.container_id)?;
    Err(no_runtime())
}

pub fn resize(s: &AgentState, req: TtyWinResizeRequest) -> ttrpc::Result<Empty> {
    known(s, &req.container_id)?;
    Err(no_runtime())
}

fn no_runtime() -> ttrpc::Error {
    status(
        ttrpc::Code::UNIMPLEMENTED,
        "this agent build has no container runtime yet",
    )
}
