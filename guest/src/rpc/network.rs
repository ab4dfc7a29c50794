//! UpdateInterface and UpdateRoutes: the pod's network as the host's CNI
//! set it up, applied inside the guest after the policy allowed it.
use std::path::Path;

use cloister_protocol::{Interface, Route, Routes, UpdateInterfaceRequest, UpdateRoutesRequest};
use tracing::info;

use super::{status, AgentState};
use crate::net::{self, Cidr, NetError, RouteSpec};

fn net_status(e: NetError) -> ttrpc::Error {
    let code = match &e {
        NetError::Invalid { .. } => ttrpc::Code::INVALID_ARGUMENT,
        NetError::NoSuchMac(_) => ttrpc::Code::NOT_FOUND,
        NetError::Ioctl { .. } => ttrpc::Code::INTERNAL,
    };
    status(code, e.to_string())
}

fn require_init(s: &AgentState, what: &str) -> ttrpc::Result<()> {
    if s.is_init {
        Ok(())
    } else {
        // As an ordinary process the agent shares the host's network: it
        // must never reconfigure it.
        Err(status(
            ttrpc::Code::FAILED_PRECONDITION,
            format!("{what}: the agent is not PID 1 of a guest; it changes no network"),
        ))
    }
}

pub fn update_interface(s: &AgentState, req: UpdateInterfaceRequest) -> ttrpc::Result<Interface> {
    let want = req.interface.into_option().ok_or_else(|| {
        status(
            ttrpc::Code::INVALID_ARGUMENT,
            "UpdateInterfaceRequest.interface is missing",
        )
    })?;
    let mac = net::parse_mac(&want.hw_addr).map_err(net_status)?;
    let addrs = want
        .addresses
        .iter()
        .map(|a| Cidr::new(&a.address, a.prefix))
        .collect::<Result<Vec<_>, _>>()
        .map_err(net_status)?;
    if addrs.len() > net::MAX_ADDRESSES {
        return Err(status(
            ttrpc::Code::INVALID_ARGUMENT,
            format!("{} addresses: at most {}", addrs.len(), net::MAX_ADDRESSES),
        ));
    }
    require_init(s, "UpdateInterface")?;
    let name = net::find_by_mac(Path::new("/sys/class/net"), &mac).map_err(net_status)?;
    net::configure(&name, &addrs, want.mtu).map_err(net_status)?;
    let shown: Vec<String> = addrs
        .iter()
        .map(|c| format!("{}/{}", c.addr, c.prefix))
        .collect();
    info!(
        interface = name,
        mac,
        addresses = shown.join(","),
        mtu = want.mtu,
        "interface configured"
    );
    Ok(Interface {
        name,
        hw_addr: mac,
        addresses: want.addresses,
        mtu: want.mtu,
        ..Default::default()
    })
}

pub fn update_routes(s: &AgentState, req: UpdateRoutesRequest) -> ttrpc::Result<Routes> {
    if req.routes.len() > net::MAX_ROUTES {
        return Err(status(
            ttrpc::Code::INVALID_ARGUMENT,
            format!("{} routes: at most {}", req.routes.len(), net::MAX_ROUTES),
        ));
    }
    let specs = req
        .routes
        .iter()
        .map(|r| RouteSpec::parse(&r.dest, &r.gateway, &r.device))
        .collect::<Result<Vec<_>, _>>()
        .map_err(net_status)?;
    require_init(s, "UpdateRoutes")?;
    // Directly connected routes first, so that a gateway is reachable when
    // the route through it is added.
    let (direct, via): (Vec<&RouteSpec>, Vec<&RouteSpec>) =
        specs.iter().partition(|r| r.gateway.is_none());
    for r in direct.into_iter().chain(via) {
        net::add_route(r).map_err(net_status)?;
    }
    info!(routes = specs.len(), "routes added");
    Ok(Routes {
        routes: req
            .routes
            .into_iter()
            .map(|r| Route {
                dest: r.dest,
                gateway: r.gateway,
                device: r.device,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

/// The guest resolver for the agent's own pulls and KBS requests
/// (CreateSandboxRequest.dns).
pub fn set_dns(s: &AgentState, servers: &[String]) -> ttrpc::Result<()> {
    if servers.is_empty() || !s.is_init {
        return Ok(());
    }
    net::write_resolv_conf(Path::new("/etc/resolv.conf"), servers).map_err(net_status)
}
