//! Stdio of container and exec processes, after the policy allowed it.
//! Output is drained whether or not anyone may read it
//! (`cloister_runtime::io`), so a denied ReadStdout never blocks the
//! container.
use cloister_protocol::{
    CloseStdinRequest, Empty, ReadStreamResponse, TtyWinResizeRequest, WriteStdinRequest,
    WriteStdinResponse,
};

use super::containers::known;
use super::{runtime_status, status, AgentState};

/// Largest WriteStdin accepted.
const MAX_WRITE: usize = 1 << 20;

#[derive(Debug, Clone, Copy)]
pub enum Stream {
    Stdout,
    Stderr,
}

pub fn write_stdin(s: &AgentState, req: WriteStdinRequest) -> ttrpc::Result<WriteStdinResponse> {
    known(s, &req.container_id)?;
    if req.data.len() > MAX_WRITE {
        return Err(status(
            ttrpc::Code::INVALID_ARGUMENT,
            format!("data is {} bytes, more than {MAX_WRITE}", req.data.len()),
        ));
    }
    let p = s
        .runtime
        .process(&req.container_id, &req.exec_id)
        .map_err(runtime_status)?;
    let n = p.io.stdin.write(&req.data).map_err(|e| {
        status(
            ttrpc::Code::FAILED_PRECONDITION,
            format!("writing stdin: {e}"),
        )
    })?;
    Ok(WriteStdinResponse {
        len: n as u32,
        ..Default::default()
    })
}

pub async fn read(
    s: &AgentState,
    container_id: &str,
    exec_id: &str,
    stream: Stream,
    max_len: u32,
) -> ttrpc::Result<ReadStreamResponse> {
    known(s, container_id)?;
    let p = s
        .runtime
        .process(container_id, exec_id)
        .map_err(runtime_status)?;
    let out = match stream {
        Stream::Stdout => &p.io.stdout,
        Stream::Stderr => &p.io.stderr,
    };
    let (data, eof) = out.read(max_len as usize).await;
    Ok(ReadStreamResponse {
        data,
        eof,
        ..Default::default()
    })
}

pub fn close_stdin(s: &AgentState, req: CloseStdinRequest) -> ttrpc::Result<Empty> {
    known(s, &req.container_id)?;
    let p = s
        .runtime
        .process(&req.container_id, &req.exec_id)
        .map_err(runtime_status)?;
    p.io.stdin.close();
    Ok(Empty::default())
}

pub fn resize(s: &AgentState, req: TtyWinResizeRequest) -> ttrpc::Result<Empty> {
    known(s, &req.container_id)?;
    let (rows, cols) = match (u16::try_from(req.rows), u16::try_from(req.columns)) {
        (Ok(r), Ok(c)) => (r, c),
        _ => {
            return Err(status(
                ttrpc::Code::INVALID_ARGUMENT,
                "rows and columns must fit 16 bits",
            ))
        }
    };
    let p = s
        .runtime
        .process(&req.container_id, &req.exec_id)
        .map_err(runtime_status)?;
    p.io.resize(rows, cols).map_err(|e| {
        status(
            ttrpc::Code::FAILED_PRECONDITION,
            format!("resizing the terminal: {e}"),
        )
    })?;
    Ok(Empty::default())
}
