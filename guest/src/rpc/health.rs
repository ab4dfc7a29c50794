//! The Health service: liveness for the host, policy-checked like the rest.
use std::sync::Arc;

use async_trait::async_trait;
use cloister_protocol::agent_ttrpc::Health;
use cloister_protocol::{
    health_check_response::ServingStatus, HealthCheckRequest, HealthCheckResponse,
};
use tracing::debug;

use super::AgentState;

pub struct HealthService {
    state: Arc<AgentState>,
}

impl HealthService {
    pub fn new(state: Arc<AgentState>) -> Self {
        HealthService { state }
    }
}

#[async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        _ctx: &ttrpc::r#async::TtrpcContext,
        req: HealthCheckRequest,
    ) -> ttrpc::Result<HealthCheckResponse> {
        self.state.authorize(&req)?;
        debug!(service = %req.service, "health check");
        Ok(HealthCheckResponse {
            status: ServingStatus::SERVING.into(),
            ..Default::default()
        })
    }
}
