use std::sync::Arc;

use async_trait::async_trait;
use cloister_protocol::agent_ttrpc::Health;
use cloister_protocol::{
    health_check_response::ServingStatus, HealthCheckRequest, HealthCheckResponse,
};
use tracing::debug;

use super::AgentState;

pub struct HealthService {
    _state: Arc<AgentState>,
}

impl HealthService {
    pub fn new(state: Arc<AgentState>) -> Self {
        HealthService { _state: state }
    }
}

#[async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        _ctx: &ttrpc::r#async::TtrpcContext,
        req: HealthCheckRequest,
    ) -> ttrpc::Result<HealthCheckResponse> {
        debug!(service = %req.service, "health check");
        Ok(HealthCheckResponse {
            status: ServingStatus::SERVING.into(),
            ..Default::default()
        })
    }
}
