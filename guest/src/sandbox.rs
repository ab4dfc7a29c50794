//! What the agent knows about its pod: whether initdata was accepted, and
//! the containers and processes it created. Policies see it as
//! `input.state` (docs/policy.md), so they can refuse unknown ids, a second
//! container of the same name or a reused exec id.
use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::initdata::{Binding, Initdata};

pub struct SandboxInfo {
    pub id: String,
    pub hostname: String,
    pub initdata: Initdata,
    pub binding: Binding,
}

pub struct ContainerRecord {
    /// `io.kubernetes.cri.container-name` of the spec it was created from.
    pub name: String,
    pub image: String,
    pub started: bool,
    pub execs: Vec<String>,
}

#[derive(Default)]
pub struct Sandbox {
    pub info: Option<SandboxInfo>,
    pub containers: BTreeMap<String, ContainerRecord>,
    /// Bytes the runtime copied into the sandbox directory (CopyFile).
    pub copied_bytes: u64,
}

impl Sandbox {
    /// `input.state` for a request named `request`.
    pub fn policy_state(&self, request: &str) -> Value {
        let containers: serde_json::Map<String, Value> = self
            .containers
            .iter()
            .map(|(id, c)| {
                (
                    id.clone(),
                    json!({"name": c.name, "image": c.image, "started": c.started, "execs": c.execs}),
                )
            })
            .collect();
        json!({
            "request": request,
            "sandbox_created": self.info.is_some(),
            "tee_bound": self.info.as_ref().is_some_and(|i| i.binding == Binding::Tee),
            "containers": containers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_lists_containers_and_execs() {
        let mut s = Sandbox::default();
        s.containers.insert(
            "c1".into(),
            ContainerRecord {
                name: "app".into(),
                image: "i".into(),
                started: true,
                execs: vec!["e1".into()],
            },
        );
        assert_eq!(
            s.policy_state("X"),
            json!({
                "request": "X",
                "sandbox_created": false,
                "tee_bound": false,
                "containers": {"c1": {"name": "app", "image": "i", "started": true, "execs": ["e1"]}}
            })
        );
    }
}
