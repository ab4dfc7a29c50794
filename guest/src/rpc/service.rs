//! The Agent service: one short handler per RPC. Each checks the policy
//! before anything else, then calls the module that does the work.
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

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

    /// The one path every RPC takes: the policy decides first, then `work`
    /// runs; the latency and the outcome are counted either way.
    async fn serve<M, R, F>(
        &self,
        req: M,
        work: impl FnOnce(Arc<AgentState>, M) -> F,
    ) -> ttrpc::Result<R>
    where
        M: protobuf::MessageFull,
        F: Future<Output = ttrpc::Result<R>>,
    {
        let started = Instant::now();
        let result = match self.state.authorize(&req) {
            Ok(()) => work(self.state.clone(), req).await,
            Err(e) => Err(e),
        };
        let outcome = match &result {
            Ok(_) => "ok".to_string(),
            Err(ttrpc::Error::RpcStatus(st)) => format!("{:?}", st.code()),
            Err(_) => "error".to_string(),
        };
        self.state
            .metrics
            .observe_rpc(M::descriptor().name(), &outcome, started.elapsed());
        result
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
        self.serve(req, |s, req| async move { sandbox::create(&s, req) })
            .await
    }

    async fn destroy_sandbox(
        &self,
        _: Ctx<'_>,
        req: DestroySandboxRequest,
    ) -> ttrpc::Result<Empty> {
        self.serve(req, |s, _| async move { sandbox::destroy(&s).await })
            .await
    }

    async fn create_container(
        &self,
        _: Ctx<'_>,
        req: CreateContainerRequest,
    ) -> ttrpc::Result<CreateContainerResponse> {
        self.serve(
            req,
            |s, req| async move { containers::create(&s, req).await },
        )
        .await
    }

    async fn start_container(
        &self,
        _: Ctx<'_>,
        req: StartContainerRequest,
    ) -> ttrpc::Result<StartContainerResponse> {
        self.serve(
            req,
            |s, req| async move { containers::start(&s, req).await },
        )
        .await
    }

    async fn remove_container(
        &self,
        _: Ctx<'_>,
        req: RemoveContainerRequest,
    ) -> ttrpc::Result<Empty> {
        self.serve(
            req,
            |s, req| async move { containers::remove(&s, req).await },
        )
        .await
    }

    async fn exec_process(&self, _: Ctx<'_>, req: ExecProcessRequest) -> ttrpc::Result<Empty> {
        self.serve(req, |s, req| async move { processes::exec(&s, req).await })
            .await
    }

    async fn signal_process(&self, _: Ctx<'_>, req: SignalProcessRequest) -> ttrpc::Result<Empty> {
        self.serve(req, |s, req| async move { processes::signal(&s, req) })
            .await
    }

    async fn wait_process(
        &self,
        _: Ctx<'_>,
        req: WaitProcessRequest,
    ) -> ttrpc::Result<WaitProcessResponse> {
        self.serve(req, |s, req| async move { processes::wait(&s, req).await })
            .await
    }

    async fn write_stdin(
        &self,
        _: Ctx<'_>,
        req: WriteStdinRequest,
    ) -> ttrpc::Result<WriteStdinResponse> {
        self.serve(req, |s, req| async move { stdio::write_stdin(&s, req) })
            .await
    }

    async fn read_stdout(
        &self,
        _: Ctx<'_>,
        req: ReadStdoutRequest,
    ) -> ttrpc::Result<ReadStreamResponse> {
        self.serve(req, |s, req| async move {
            stdio::read(
                &s,
                &req.container_id,
                &req.exec_id,
                stdio::Stream::Stdout,
                req.max_len,
            )
            .await
        })
        .await
    }

    async fn read_stderr(
        &self,
        _: Ctx<'_>,
        req: ReadStderrRequest,
    ) -> ttrpc::Result<ReadStreamResponse> {
        self.serve(req, |s, req| async move {
            stdio::read(
                &s,
                &req.container_id,
                &req.exec_id,
                stdio::Stream::Stderr,
                req.max_len,
            )
            .await
        })
        .await
    }

    async fn close_stdin(&self, _: Ctx<'_>, req: CloseStdinRequest) -> ttrpc::Result<Empty> {
        self.serve(req, |s, req| async move { stdio::close_stdin(&s, req) })
            .await
    }

    async fn tty_win_resize(&self, _: Ctx<'_>, req: TtyWinResizeRequest) -> ttrpc::Result<Empty> {
        self.serve(req, |s, req| async move { stdio::resize(&s, req) })
            .await
    }

    async fn stats_container(
        &self,
        _: Ctx<'_>,
        req: StatsContainerRequest,
    ) -> ttrpc::Result<StatsContainerResponse> {
        self.serve(
            req,
            |s, req| async move { containers::stats(&s, req).await },
        )
        .await
    }

    async fn get_metrics(&self, _: Ctx<'_>, req: GetMetricsRequest) -> ttrpc::Result<Metrics> {
        self.serve(req, |s, _| async move { Ok(control::metrics(&s).await) })
            .await
    }

    async fn get_guest_details(
        &self,
        _: Ctx<'_>,
        req: GetGuestDetailsRequest,
    ) -> ttrpc::Result<GuestDetails> {
        self.serve(req, |s, _| async move { Ok(details::guest_details(&s)) })
            .await
    }

    async fn set_policy(&self, _: Ctx<'_>, req: SetPolicyRequest) -> ttrpc::Result<Empty> {
        self.serve(req, |s, req| async move { control::set_policy(&s, req) })
            .await
    }

    async fn update_interface(
        &self,
        _: Ctx<'_>,
        req: UpdateInterfaceRequest,
    ) -> ttrpc::Result<Interface> {
        self.serve(
            req,
            |s, req| async move { network::update_interface(&s, req) },
        )
        .await
    }

    async fn update_routes(&self, _: Ctx<'_>, req: UpdateRoutesRequest) -> ttrpc::Result<Routes> {
        self.serve(req, |s, req| async move { network::update_routes(&s, req) })
            .await
    }

    async fn copy_file(&self, _: Ctx<'_>, req: CopyFileRequest) -> ttrpc::Result<Empty> {
        self.serve(req, |s, req| async move { files::copy_file(&s, req) })
            .await
    }
}
