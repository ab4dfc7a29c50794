//! Pod networking through CNI, the way Kata's "tcfilter" model does it:
//! kubelet's CNI plugins put an interface (a veth, usually `eth0`) with the
//! pod IP in the pod's network namespace. The shim adds a tap next to it
//! and redirects every frame between the two with tc (ingress qdisc plus a
//! mirred redirect each way). QEMU runs in that namespace, opens the tap,
//! and gives the guest NIC the veth's MAC, so the guest owns the pod IP.
//!
//! Reading the namespace and changing it is done with iproute2 (`ip -j`,
//! `tc`) run inside it: its JSON output is stable, and tc's mirred action
//! has no maintained Rust crate.
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use tracing::{debug, info};

use super::network::{GuestInterface, GuestNetwork, GuestRoute};
use crate::hypervisor::TapNet;

/// The tap the shim adds in a pod's network namespace.
pub const TAP_NAME: &str = "tap0_cloister";

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("opening the pod network namespace {path}: {source}")]
    Netns {
        path: String,
        source: std::io::Error,
    },
    #[error("running `{cmd}` in {netns}: {detail}")]
    Command {
        cmd: String,
        netns: String,
        detail: String,
    },
    #[error("reading `{cmd}` output in {netns}: {detail}")]
    Parse {
        cmd: String,
        netns: String,
        detail: String,
    },
}

/// Runs `prog args` inside the network namespace at `netns`.
fn run_in(netns: &Path, prog: &str, args: &[&str]) -> Result<String, CniError> {
    let ns = std::fs::File::open(netns).map_err(|source| CniError::Netns {
        path: netns.display().to_string(),
        source,
    })?;
    let fd = ns.as_raw_fd();
    let mut cmd = Command::new(prog);
    cmd.args(args);
    // SAFETY: setns(2) is async-signal-safe; it runs in the forked child
    // before exec, while `ns` (and so `fd`) is still open in the parent.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let shown = format!("{prog} {}", args.join(" "));
    let out = cmd.output().map_err(|e| CniError::Command {
        cmd: shown.clone(),
        netns: netns.display().to_string(),
        detail: e.to_string(),
    })?;
    drop(ns);
    if !out.status.success() {
        return Err(CniError::Command {
            cmd: shown,
            netns: netns.display().to_string(),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[derive(Debug, Deserialize)]
struct IpLink {
    ifname: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    mtu: u32,
    #[serde(default)]
    link_type: String,
    #[serde(default)]
    addr_info: Vec<IpAddrInfo>,
}

#[derive(Debug, Deserialize)]
struct IpAddrInfo {
    family: String,
    local: String,
    prefixlen: u32,
}

#[derive(Debug, Deserialize)]
struct IpRoute {
    dst: String,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// The pod interface CNI configured: the first non-loopback interface
/// with an IPv4 address (not our own tap).
fn pick_interface(links: Vec<IpLink>) -> Option<IpLink> {
    links.into_iter().find(|l| {
        l.link_type == "ether"
            && l.ifname != TAP_NAME
            && l.addr_info.iter().any(|a| a.family == "inet")
    })
}

/// The routes the guest needs: everything but the kernel's own
/// directly-connected routes, which the guest gets with the addresses.
fn guest_routes(routes: Vec<IpRoute>) -> Vec<GuestRoute> {
    routes
        .into_iter()
        .filter(|r| {
            !(r.protocol.as_deref() == Some("kernel") && r.scope.as_deref() == Some("link"))
        })
        .map(|r| GuestRoute {
            dest: r.dst,
            gateway: r.gateway.unwrap_or_default(),
            interface: 0,
        })
        .collect()
}

fn parse<T: for<'de> Deserialize<'de>>(text: &str, cmd: &str, netns: &Path) -> Result<T, CniError> {
    serde_json::from_str(text).map_err(|e| CniError::Parse {
        cmd: cmd.into(),
        netns: netns.display().to_string(),
        detail: e.to_string(),
    })
}

/// A pod interface bridged to the VM's tap.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CniAttachment {
    pub netns: PathBuf,
    /// The CNI interface in the pod namespace (e.g. `eth0`).
    pub host_if: String,
    pub tap: String,
    /// What the guest is told (the pod IP, its routes).
    pub network: GuestNetwork,
    pub mac: String,
}

impl CniAttachment {
    /// What QEMU needs to attach the guest NIC.
    pub fn tap_net(&self) -> TapNet {
        TapNet {
            netns: self.netns.clone(),
            tap: self.tap.clone(),
            mac: self.mac.clone(),
        }
    }
}

/// Reads the pod namespace at `netns`. `None` when CNI put no interface
/// there (a pod without networking, or `ctr run` without `--cni`).
pub fn discover(netns: &Path) -> Result<Option<CniAttachment>, CniError> {
    let out = run_in(netns, "ip", &["-j", "addr", "show"])?;
    let links: Vec<IpLink> = parse(&out, "ip -j addr show", netns)?;
    let Some(link) = pick_interface(links) else {
        return Ok(None);
    };
    let out = run_in(
        netns,
        "ip",
        &["-j", "-4", "route", "show", "dev", &link.ifname],
    )?;
    let routes: Vec<IpRoute> = parse(&out, "ip -j -4 route show", netns)?;
    let network = GuestNetwork {
        interfaces: vec![GuestInterface {
            mac: link.address.to_ascii_lowercase(),
            addresses: link
                .addr_info
                .iter()
                .filter(|a| a.family == "inet")
                .map(|a| (a.local.clone(), a.prefixlen))
                .collect(),
            mtu: link.mtu,
        }],
        routes: guest_routes(routes),
        dns: Vec::new(),
    };
    Ok(Some(CniAttachment {
        netns: netns.to_path_buf(),
        host_if: link.ifname,
        tap: TAP_NAME.into(),
        mac: link.address.to_ascii_lowercase(),
        network,
    }))
}

/// Creates the tap and the tc redirects both ways (idempotent: an
/// existing tap from an earlier attempt is replaced).
pub fn attach(a: &CniAttachment) -> Result<(), CniError> {
    let ns = &a.netns;
    let _ = run_in(ns, "ip", &["link", "del", &a.tap]);
    let mtu = a
        .network
        .interfaces
        .first()
        .map(|i| i.mtu)
        .filter(|m| *m > 0)
        .unwrap_or(1500)
        .to_string();
    run_in(ns, "ip", &["tuntap", "add", "dev", &a.tap, "mode", "tap"])?;
    run_in(ns, "ip", &["link", "set", &a.tap, "mtu", &mtu, "up"])?;
    for (from, to) in [(&a.host_if, &a.tap), (&a.tap, &a.host_if)] {
        // An ingress qdisc left by an earlier attempt is fine.
        let _ = run_in(ns, "tc", &["qdisc", "del", "dev", from, "ingress"]);
        run_in(ns, "tc", &["qdisc", "add", "dev", from, "ingress"])?;
        run_in(
            ns,
            "tc",
            &[
                "filter", "add", "dev", from, "parent", "ffff:", "protocol", "all", "u32", "match",
                "u8", "0", "0", "action", "mirred", "egress", "redirect", "dev", to,
            ],
        )?;
    }
    info!(netns = %ns.display(), interface = a.host_if, tap = a.tap, mac = a.mac, "pod interface redirected to the VM's tap");
    Ok(())
}

/// Removes the tap and the redirect (the namespace may be gone already).
pub fn detach(a: &CniAttachment) {
    if !a.netns.exists() {
        return;
    }
    let _ = run_in(
        &a.netns,
        "tc",
        &["qdisc", "del", "dev", &a.host_if, "ingress"],
    );
    if let Err(e) = run_in(&a.netns, "ip", &["link", "del", &a.tap]) {
        debug!(error = %e, "removing the tap");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDRS: &str = r#"[
 {"ifindex":1,"ifname":"lo","mtu":65536,"link_type":"loopback","address":"00:00:00:00:00:00",
  "addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
 {"ifindex":3,"ifname":"eth0","mtu":1450,"link_type":"ether","address":"AA:BB:cc:dd:ee:01",
  "addr_info":[{"family":"inet","local":"10.88.0.7","prefixlen":16},{"family":"inet6","local":"fe80::1","prefixlen":64}]}
]"#;
    const ROUTES: &str = r#"[
 {"dst":"default","gateway":"10.88.0.1","flags":[]},
 {"dst":"10.88.0.0/16","protocol":"kernel","scope":"link","prefsrc":"10.88.0.7","flags":[]},
 {"dst":"10.96.0.0/12","gateway":"10.88.0.1","flags":[]}
]"#;

    #[test]
    fn the_cni_interface_and_its_routes_are_what_the_guest_gets() {
        let links: Vec<IpLink> = serde_json::from_str(ADDRS).unwrap();
        let l = pick_interface(links).unwrap();
        assert_eq!(l.ifname, "eth0");
        let routes = guest_routes(serde_json::from_str(ROUTES).unwrap());
        assert_eq!(
            routes,
            vec![
                GuestRoute {
                    dest: "default".into(),
                    gateway: "10.88.0.1".into(),
                    interface: 0
                },
                GuestRoute {
                    dest: "10.96.0.0/12".into(),
                    gateway: "10.88.0.1".into(),
                    interface: 0
                },
            ]
        );
    }

    #[test]
    fn a_namespace_with_only_loopback_has_no_pod_interface() {
        let links: Vec<IpLink> = serde_json::from_str(
            r#"[{"ifname":"lo","link_type":"loopback","address":"00:00:00:00:00:00","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]}]"#,
        )
        .unwrap();
        assert!(pick_interface(links).is_none());
    }

    #[test]
    fn a_missing_namespace_is_named() {
        let e = discover(Path::new("/nonexistent/netns"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/netns"), "{e}");
    }
}
