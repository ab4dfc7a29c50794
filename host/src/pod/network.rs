//! The guest's network as the host describes it: interfaces by MAC, with
//! their addresses, and routes. Applied after CreateSandbox through
//! UpdateInterface and UpdateRoutes (each policy-checked in the guest),
//! never through the measured kernel command line.
use cloister_protocol::{IPAddress, Interface, Route, UpdateInterfaceRequest, UpdateRoutesRequest};

use crate::agent_client::Agent;
use crate::hypervisor::{USER_NET_GUEST, USER_NET_HOST, USER_NET_MAC, USER_NET_PREFIX};

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct GuestInterface {
    pub mac: String,
    /// (address, prefix)
    pub addresses: Vec<(String, u32)>,
    /// 0 keeps the guest's default.
    pub mtu: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GuestRoute {
    /// "default" or "ADDR/PREFIX".
    pub dest: String,
    /// Empty for a directly connected route.
    pub gateway: String,
    /// Index into [`GuestNetwork::interfaces`].
    pub interface: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct GuestNetwork {
    pub interfaces: Vec<GuestInterface>,
    pub routes: Vec<GuestRoute>,
    /// DNS servers for the guest's own lookups (CreateSandboxRequest.dns).
    pub dns: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{what} for {mac}: {message}")]
pub struct NetworkError {
    pub what: &'static str,
    pub mac: String,
    pub message: String,
}

impl GuestNetwork {
    /// No network at all.
    pub fn none() -> Self {
        GuestNetwork::default()
    }

    /// QEMU's user networking: 10.0.2.15/24, the host's loopback as 10.0.2.2.
    pub fn user() -> Self {
        GuestNetwork {
            interfaces: vec![GuestInterface {
                mac: USER_NET_MAC.into(),
                addresses: vec![(USER_NET_GUEST.into(), USER_NET_PREFIX)],
                mtu: 0,
            }],
            routes: vec![GuestRoute {
                dest: "default".into(),
                gateway: USER_NET_HOST.into(),
                interface: 0,
            }],
            dns: Vec::new(),
        }
    }

    /// Sends UpdateInterface for each interface, then UpdateRoutes with the
    /// guest's names for them. Returns those names.
    pub async fn apply(&self, agent: &Agent) -> Result<Vec<String>, NetworkError> {
        let mut names = Vec::new();
        for i in &self.interfaces {
            let req = UpdateInterfaceRequest {
                interface: Some(Interface {
                    hw_addr: i.mac.clone(),
                    addresses: i
                        .addresses
                        .iter()
                        .map(|(a, p)| IPAddress {
                            address: a.clone(),
                            prefix: *p,
                            ..Default::default()
                        })
                        .collect(),
                    mtu: i.mtu,
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            };
            let got = agent
                .rpc()
                .update_interface(agent.ctx_for(std::time::Duration::from_secs(10)), &req)
                .await
                .map_err(|e| NetworkError {
                    what: "UpdateInterface",
                    mac: i.mac.clone(),
                    message: crate::run::rpc_message(&e),
                })?;
            names.push(got.name);
        }
        if !self.routes.is_empty() {
            let routes = self
                .routes
                .iter()
                .map(|r| Route {
                    dest: r.dest.clone(),
                    gateway: r.gateway.clone(),
                    device: names.get(r.interface).cloned().unwrap_or_default(),
                    ..Default::default()
                })
                .collect();
            let req = UpdateRoutesRequest {
                routes,
                ..Default::default()
            };
            agent
                .rpc()
                .update_routes(agent.ctx_for(std::time::Duration::from_secs(10)), &req)
                .await
                .map_err(|e| NetworkError {
                    what: "UpdateRoutes",
                    mac: self
                        .interfaces
                        .first()
                        .map(|i| i.mac.clone())
                        .unwrap_or_default(),
                    message: crate::run::rpc_message(&e),
                })?;
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_networking_is_one_interface_with_a_default_route() {
        let n = GuestNetwork::user();
        assert_eq!(n.interfaces[0].mac, "52:54:00:12:34:56");
        assert_eq!(
            n.interfaces[0].addresses,
            vec![("10.0.2.15".to_string(), 24)]
        );
        assert_eq!(n.routes[0].gateway, "10.0.2.2");
        assert!(GuestNetwork::none().interfaces.is_empty());
    }
}
