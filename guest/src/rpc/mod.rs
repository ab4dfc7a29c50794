//! ttrpc service implementations. Each RPC is a thin handler: later the
//! policy check comes first, then a call into the module that does the work.
mod details;
mod health;

use std::sync::Arc;
use std::time::Instant;

pub use details::AgentService;
pub use health::HealthService;

use crate::tee::Tee;

/// What every handler may read about the agent itself.
pub struct AgentState {
    pub is_init: bool,
    pub tee: Tee,
    pub started: Instant,
}

impl AgentState {
    pub fn new(is_init: bool, tee: Tee, started: Instant) -> Arc<Self> {
        Arc::new(AgentState {
            is_init,
            tee,
            started,
        })
    }
}
