//! ExecProcess, SignalProcess, WaitProcess, after the policy allowed them.
use std::sync::Arc;

use cloister_protocol::{
    Empty, ExecProcessRequest, SignalProcessRequest, WaitProcessRequest, WaitProcessResponse,
};
use cloister_runtime::ExecProcess;
use nix::sys::signal::Signal;

use super::containers::known;
use super::{blocking, check_id, runtime_status, status, AgentState};

/// Most arguments / environment entries an exec may have, and their size.
const MAX_ITEMS: usize = 4096;
const MAX_ITEM: usize = 128 << 10;

pub async fn exec(s: &Arc<AgentState>, req: ExecProcessRequest) -> ttrpc::Result<Empty> {
    known(s, &req.container_id)?;
    check_id("exec_id", &req.exec_id)?;
    let p = req
        .process
        .as_ref()
        .ok_or_else(|| status(ttrpc::Code::INVALID_ARGUMENT, "process is required"))?;
    if p.args.is_empty() {
        return Err(status(
            ttrpc::Code::INVALID_ARGUMENT,
            "process.args is empty",
        ));
    }
    for (what, list) in [("args", &p.args), ("env", &p.env)] {
        if list.len() > MAX_ITEMS || list.iter().any(|a| a.len() > MAX_ITEM) {
            return Err(status(
                ttrpc::Code::INVALID_ARGUMENT,
                format!("process.{what}: at most {MAX_ITEMS} entries of {MAX_ITEM} bytes"),
            ));
        }
    }
    if !p.cwd.is_empty() && !p.cwd.starts_with('/') {
        return Err(status(
            ttrpc::Code::INVALID_ARGUMENT,
            format!("process.cwd {:?} is not absolute", p.cwd),
        ));
    }
    let ep = ExecProcess {
        args: p.args.clone(),
        env: p.env.clone(),
        cwd: p.cwd.clone(),
        terminal: p.terminal,
        uid: p.uid,
        gid: p.gid,
    };
    let rt = s.runtime.clone();
    let (id, exec_id) = (req.container_id.clone(), req.exec_id.clone());
    blocking(move || rt.exec(&id, &exec_id, &ep)).await?;
    if let Some(c) = s.sandbox().containers.get_mut(&req.container_id) {
        c.execs.push(req.exec_id.clone());
    }
    Ok(Empty::default())
}

pub fn signal(s: &AgentState, req: SignalProcessRequest) -> ttrpc::Result<Empty> {
    known(s, &req.container_id)?;
    let sig = i32::try_from(req.signal)
        .ok()
        .and_then(|n| Signal::try_from(n).ok())
        .ok_or_else(|| {
            status(
                ttrpc::Code::INVALID_ARGUMENT,
                format!("signal {} is not a Linux signal", req.signal),
            )
        })?;
    let p = s
        .runtime
        .process(&req.container_id, &req.exec_id)
        .map_err(runtime_status)?;
    p.signal(sig).map_err(runtime_status)?;
    Ok(Empty::default())
}

pub async fn wait(s: &AgentState, req: WaitProcessRequest) -> ttrpc::Result<WaitProcessResponse> {
    known(s, &req.container_id)?;
    let p = s
        .runtime
        .process(&req.container_id, &req.exec_id)
        .map_err(runtime_status)?;
    Ok(WaitProcessResponse {
        status: p.wait().await,
        ..Default::default()
    })
}
