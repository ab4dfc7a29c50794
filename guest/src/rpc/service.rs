//! The Agent service: one short handler per RPC. Each checks the policy
//! before anything else, then calls the module that does the work.
use std::sync::Arc;

use async_trait::async_trait;
use cloister_protocol::agent_ttrpc::Agent;
use cloister_protocol::*;
use ttrpc::r#async::TtrpcContext;

use super::{containers, control, details, files, network, processes, sandbox, stdio, AgentState};

pub struct AgentService {
    state: Arc<AgentState>,
}

impl AgentService {
    pub fn new(state: Arc<AgentState>) -> Self {
        AgentService { state }
    }
}

type Ctx<'a> = &'a TtrpcContext;

#[async_trait]
impl Agent for AgentService {
    async fn create_sandbox(
        &self,
        _: Ctx<'_>,
        req: CreateSandboxRequest,
    ) -> ttrpc::Result<CreateSandboxResponse> {
        self.state.authorize(&req)?;
        sandbox::create(&self.state, req)
    }

    async fn destroy_sandbox(
        &self,
        _: Ctx<'_>,
        req: DestroySandboxRequest,
    ) -> ttrpc::Result<Empty> {
        self.state.authorize(&req)?;
        sandbox::destroy(&self.state).await
    }

    async fn create_container(
        &self,
        _: Ctx<'_>,
        req: CreateContainerRequest,
    ) -> ttrpc::Result<CreateContainerResponse> {
        self.state.authorize(&req)?;
        containers::create(&self.state, req).await
    }

    async fn start_container(
        &self,
        _: Ctx<'_>,
        req: StartContainerRequest,
    ) -> ttrpc::Result<StartContainerResponse> {
        self.state.authorize(&req)?;
        containers::start(&self.state, req).await
    }

    async fn remove_container(
        &self,
        _: Ctx<'_>,
        req: RemoveContainerRequest,
    ) -> ttrpc::Result<Empty> {
        self.state.authorize(&req)?;
        containers::remove(&self.state, req).await
    }

    async fn exec_process(&self, _: Ctx<'_>, req: ExecProcessRequest) -> ttrpc::Result<Empty> {
        self.state.authorize(&req)?;
        processes::exec(&self.state, req).await
    }

    async fn signal_process(&self, _: Ctx<'_>, req: SignalProcessRequest) -> ttrpc::Result<Empty> {
        self.state.authorize(&req)?;
        processes::signal(&self.state, req)
    }

    async fn wait_process(
        &self,
        _: Ctx<'_>,
        req: WaitProcessRequest,
    ) -> ttrpc::Result<WaitProcessResponse> {
        self.state.authorize(&req)?;
        processes::wait(&self.state, req).await
    }

    async fn write_stdin(
        &self,
        _: Ctx<'_>,
        req: WriteStdinRequest,
    ) -> ttrpc::Result<WriteStdinResponse> {
        self.state.authorize(&req)?;
        stdio::write_stdin(&self.state, req)
    }

    async fn read_stdout(
        &self,
        _: Ctx<'_>,
        req: ReadStdoutRequest,
    ) -> ttrpc::Result<ReadStreamResponse> {
        self.state.authorize(&req)?;
        stdio::read(
            &self.state,
            &req.container_id,
            &req.exec_id,
            stdio::Stream::Stdout,
            req.max_len,
        )
        .await
    }

    async fn read_stderr(
        &self,
        _: Ctx<'_>,
        req: ReadStderrRequest,
    ) -> ttrpc::Result<ReadStreamResponse> {
        self.state.authorize(&req)?;
        stdio::read(
            &self.state,
            &req.container_id,
            &req.exec_id,
            stdio::Stream::Stderr,
            req.max_len,
        )
        .await
    }

    async fn close_stdin(&self, _: Ctx<'_>, req: CloseStdinRequest) -> ttrpc::Result<Empty> {
        self.state.authorize(&req)?;
        stdio::close_stdin(&self.state, req)
    }

    async fn tty_win_resize(&self, _: Ctx<'_>, req: TtyWinResizeRequest) -> ttrpc::Result<Empty> {
        self.state.authorize(&req)?;
        stdio::resize(&self.state, req)
    }

    async fn stats_container(
        &self,
        _: Ctx<'_>,
        req: StatsContainerRequest,
    ) -> ttrpc::Result<StatsContainerResponse> {
        self.state.authorize(&req)?;
        containers::stats(&self.state, req).await
    }

    async fn get_metrics(&self, _: Ctx<'_>, req: GetMetricsRequest) -> ttrpc::Result<Metrics> {
        self.state.authorize(&req)?;
        Ok(control::metrics(&self.state))
    }

    async fn get_guest_details(
        &self,
        _: Ctx<'_>,
        req: GetGuestDetailsRequest,
    ) -> ttrpc::Result<GuestDetails> {
        self.state.authorize(&req)?;
        Ok(details::guest_details(&self.state))
    }

    async fn set_policy(&self, _: Ctx<'_>, req: SetPolicyRequest) -> ttrpc::Result<Empty> {
        self.state.authorize(&req)?;
        control::set_policy(&self.state, req)
    }

    async fn update_interface(
        &self,
        _: Ctx<'_>,
        req: UpdateInterfaceRequest,
    ) -> ttrpc::Result<Interface> {
        self.state.authorize(&req)?;
        network::update_interface(&self.state, req)
    }

    async fn update_routes(&self, _: Ctx<'_>, req: UpdateRoutesRequest) -> ttrpc::Result<Routes> {
        self.state.authorize(&req)?;
        network::update_routes(&self.state, req)
    }

    async fn copy_file(&self, _: Ctx<'_>, req: CopyFileRequest) -> ttrpc::Result<Empty> {
        self.state.authorize(&req)?;
        files::copy_file(&self.state, req)
    }
}
