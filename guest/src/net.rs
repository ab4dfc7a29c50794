//! The guest's network: loopback at boot, then the pod's interface and
//! routes as the host asks through UpdateInterface and UpdateRoutes (never
//! the measured kernel command line, so that one reference measurement
//! serves every pod). The interface is found by the MAC address the VMM
//! gave the guest NIC.
//!
//! Set with the classic interface and route ioctls (SIOCSIFADDR,
//! SIOCADDRT, …): a handful of calls, where a netlink crate would add an
//! async stack to PID 1 for the same effect.
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// Most addresses one UpdateInterface may set.
pub const MAX_ADDRESSES: usize = 16;
/// Most routes one UpdateRoutes may add.
pub const MAX_ROUTES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{what}: {value:?} {problem}")]
    Invalid {
        what: &'static str,
        value: String,
        problem: &'static str,
    },
    #[error("no guest interface has MAC address {0}")]
    NoSuchMac(String),
    #[error("{what} on {ifname}: {source}")]
    Ioctl {
        what: &'static str,
        ifname: String,
        source: io::Error,
    },
}

fn invalid(what: &'static str, value: impl Into<String>, problem: &'static str) -> NetError {
    NetError::Invalid {
        what,
        value: value.into(),
        problem,
    }
}

/// An IPv4 address and prefix, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    pub fn new(addr: &str, prefix: u32) -> Result<Cidr, NetError> {
        let a: Ipv4Addr = addr
            .parse()
            .map_err(|_| invalid("address", addr, "is not an IPv4 address"))?;
        if prefix > 32 {
            return Err(invalid("prefix", prefix.to_string(), "is not 0-32"));
        }
        Ok(Cidr {
            addr: a,
            prefix: prefix as u8,
        })
    }

    /// Parses `10.0.2.0/24`.
    pub fn parse(s: &str) -> Result<Cidr, NetError> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| invalid("destination", s, "is not ADDR/PREFIX or \"default\""))?;
        let prefix: u32 = p
            .parse()
            .map_err(|_| invalid("destination", s, "has a bad prefix"))?;
        Cidr::new(a, prefix)
    }

    pub fn mask(self) -> Ipv4Addr {
        Ipv4Addr::from(if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix as u32)
        })
    }

    /// The network address (host bits cleared).
    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & u32::from(self.mask()))
    }
}

/// A MAC address in its canonical lower-case form, checked.
pub fn parse_mac(s: &str) -> Result<String, NetError> {
    let parts: Vec<&str> = s.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    if !ok {
        return Err(invalid(
            "hw_addr",
            s,
            "is not a MAC address aa:bb:cc:dd:ee:ff",
        ));
    }
    Ok(s.to_ascii_lowercase())
}

/// A route to add, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// `None` is the default route.
    pub dest: Option<Cidr>,
    pub gateway: Option<Ipv4Addr>,
    pub device: String,
}

impl RouteSpec {
    pub fn parse(dest: &str, gateway: &str, device: &str) -> Result<RouteSpec, NetError> {
        let dest = if dest == "default" || dest == "0.0.0.0/0" {
            None
        } else {
            let c = Cidr::parse(dest)?;
            if c.network() != c.addr {
                return Err(invalid("destination", dest, "has host bits set"));
            }
            Some(c)
        };
        let gateway = if gateway.is_empty() {
            None
        } else {
            Some(
                gateway
                    .parse::<Ipv4Addr>()
                    .map_err(|_| invalid("gateway", gateway, "is not an IPv4 address"))?,
            )
        };
        check_ifname(device)?;
        if dest.is_none() && gateway.is_none() {
            return Err(invalid("gateway", "", "is required for the default route"));
        }
        Ok(RouteSpec {
            dest,
            gateway,
            device: device.to_string(),
        })
    }
}

fn check_ifname(name: &str) -> Result<(), NetError> {
    let ok = !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(invalid("device", name, "is not an interface name"))
    }
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in r
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = s as libc::c_char;
    }
    r
}

fn sockaddr(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size on Linux, and the
    // kernel reads the address family to interpret the bytes.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn control_socket(ifname: &str) -> Result<OwnedFd, NetError> {
    // SAFETY: plain socket(2); the result is checked and then owned.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(NetError::Ioctl {
            what: "socket",
            ifname: ifname.into(),
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ioctl<T>(
    sock: &OwnedFd,
    req: libc::Ioctl,
    arg: &mut T,
    what: &'static str,
    ifname: &str,
) -> Result<(), NetError> {
    // SAFETY: every request used here reads or writes exactly one `T` (an
    // ifreq, or the kernel's rtentry layout), which `arg` points to for
    // the duration of the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), req, arg as *mut T) } < 0 {
        return Err(NetError::Ioctl {
            what,
            ifname: ifname.into(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn set_up(sock: &OwnedFd, ifname: &str) -> Result<(), NetError> {
    let mut r = ifreq(ifname);
    ioctl(
        sock,
        libc::SIOCGIFFLAGS,
        &mut r,
        "reading the flags",
        ifname,
    )?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { r.ifr_ifru.ifru_flags };
    r.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    ioctl(sock, libc::SIOCSIFFLAGS, &mut r, "bringing it up", ifname)
}

fn set_addr(sock: &OwnedFd, label: &str, c: Cidr) -> Result<(), NetError> {
    let mut r = ifreq(label);
    r.ifr_ifru.ifru_addr = sockaddr(c.addr);
    ioctl(
        sock,
        libc::SIOCSIFADDR,
        &mut r,
        "setting the address",
        label,
    )?;
    let mut r = ifreq(label);
    r.ifr_ifru.ifru_netmask = sockaddr(c.mask());
    ioctl(
        sock,
        libc::SIOCSIFNETMASK,
        &mut r,
        "setting the netmask",
        label,
    )
}

/// Brings up `lo` (at boot).
pub fn loopback_up() -> Result<(), NetError> {
    let sock = control_socket("lo")?;
    set_up(&sock, "lo")
}

/// The guest interface whose MAC is `mac` (canonical form), from sysfs.
pub fn find_by_mac(sys_class_net: &Path, mac: &str) -> Result<String, NetError> {
    let entries = std::fs::read_dir(sys_class_net).map_err(|source| NetError::Ioctl {
        what: "listing interfaces",
        ifname: sys_class_net.display().to_string(),
        source,
    })?;
    for e in entries.flatten() {
        let addr = std::fs::read_to_string(e.path().join("address")).unwrap_or_default();
        if addr.trim().eq_ignore_ascii_case(mac) {
            return Ok(e.file_name().to_string_lossy().into_owned());
        }
    }
    Err(NetError::NoSuchMac(mac.into()))
}

/// Sets `ifname`'s MTU (unless 0) and addresses (the first on the
/// interface itself, the others as `ifname:N` aliases), and brings it up.
/// The kernel adds the routes to the directly connected subnets.
pub fn configure(ifname: &str, addrs: &[Cidr], mtu: u32) -> Result<(), NetError> {
    check_ifname(ifname)?;
    if addrs.len() > MAX_ADDRESSES {
        return Err(invalid(
            "addresses",
            addrs.len().to_string(),
            "are more than 16",
        ));
    }
    if mtu != 0 && !(68..=65535).contains(&mtu) {
        return Err(invalid("mtu", mtu.to_string(), "is not 68-65535"));
    }
    let sock = control_socket(ifname)?;
    if mtu != 0 {
        let mut r = ifreq(ifname);
        r.ifr_ifru.ifru_mtu = mtu as libc::c_int;
        ioctl(&sock, libc::SIOCSIFMTU, &mut r, "setting the MTU", ifname)?;
    }
    for (i, c) in addrs.iter().enumerate() {
        let label = if i == 0 {
            ifname.to_string()
        } else {
            format!("{ifname}:{i}")
        };
        if label.len() >= libc::IFNAMSIZ {
            return Err(invalid("device", label, "is too long for an alias"));
        }
        set_addr(&sock, &label, *c)?;
    }
    set_up(&sock, ifname)
}

/// The kernel's `struct rtentry` (include/uapi/linux/route.h). The libc
/// crate defines it only for musl and uclibc, not for glibc targets.
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

const RTF_UP: libc::c_ushort = 0x0001;
const RTF_GATEWAY: libc::c_ushort = 0x0002;

/// Adds one route. An identical route that exists already is not an error.
pub fn add_route(r: &RouteSpec) -> Result<(), NetError> {
    let sock = control_socket(&r.device)?;
    let dest = r.dest.unwrap_or(Cidr {
        addr: Ipv4Addr::UNSPECIFIED,
        prefix: 0,
    });
    let mut dev: Vec<libc::c_char> = r
        .device
        .bytes()
        .map(|b| b as libc::c_char)
        .chain(std::iter::once(0))
        .collect();
    let mut flags = RTF_UP;
    if r.gateway.is_some() {
        flags |= RTF_GATEWAY;
    }
    let mut rt = RtEntry {
        rt_pad1: 0,
        rt_dst: sockaddr(dest.network()),
        rt_gateway: sockaddr(r.gateway.unwrap_or(Ipv4Addr::UNSPECIFIED)),
        rt_genmask: sockaddr(dest.mask()),
        rt_flags: flags,
        rt_pad2: 0,
        rt_pad3: 0,
        rt_pad4: std::ptr::null_mut(),
        rt_metric: 0,
        rt_dev: dev.as_mut_ptr(),
        rt_mtu: 0,
        rt_window: 0,
        rt_irtt: 0,
    };
    match ioctl(&sock, libc::SIOCADDRT, &mut rt, "adding a route", &r.device) {
        Err(NetError::Ioctl { source, .. }) if source.raw_os_error() == Some(libc::EEXIST) => {
            Ok(())
        }
        other => other,
    }
}

/// Checks DNS servers: at most 3, each an IP address.
pub fn check_dns(servers: &[String]) -> Result<Vec<std::net::IpAddr>, NetError> {
    if servers.len() > 3 {
        return Err(invalid(
            "dns",
            servers.join(","),
            "lists more than 3 servers",
        ));
    }
    servers
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|_| invalid("dns", s.clone(), "is not an IP address"))
        })
        .collect()
}

/// Writes the guest's own resolver configuration (for its pulls and KBS
/// requests). Every server must be an IP address.
pub fn write_resolv_conf(path: &Path, servers: &[String]) -> Result<(), NetError> {
    let mut text = String::new();
    for ip in check_dns(servers)? {
        text.push_str(&format!("nameserver {ip}\n"));
    }
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(path, text).map_err(|source| NetError::Ioctl {
        what: "writing",
        ifname: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_checked() {
        let c = Cidr::parse("10.0.2.15/24").unwrap();
        assert_eq!(c.addr, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(c.mask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(c.network(), Ipv4Addr::new(10, 0, 2, 0));
        assert_eq!(
            Cidr::new("1.2.3.4", 0).unwrap().mask(),
            Ipv4Addr::UNSPECIFIED
        );
        for bad in [
            "10.0.2.15",
            "10.0.2.15/33",
            "x/24",
            "10.0.2/24",
            "",
            "::1/64",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn macs_are_checked_and_lowercased() {
        assert_eq!(parse_mac("AA:bb:0c:dd:ee:0F").unwrap(), "aa:bb:0c:dd:ee:0f");
        for bad in [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "zz:bb:cc:dd:ee:ff",
            "aabb.ccdd.eeff",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn routes_are_checked() {
        let r = RouteSpec::parse("default", "10.88.0.1", "eth0").unwrap();
        assert_eq!(r.dest, None);
        assert_eq!(r.gateway, Some(Ipv4Addr::new(10, 88, 0, 1)));
        let r = RouteSpec::parse("10.96.0.0/12", "", "eth0").unwrap();
        assert_eq!(r.dest.unwrap().prefix, 12);
        let e = RouteSpec::parse("default", "", "eth0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("default route"), "{e}");
        let e = RouteSpec::parse("10.0.0.5/8", "", "eth0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("host bits"), "{e}");
        assert!(RouteSpec::parse("default", "10.0.0.1", "eth0/../x").is_err());
        assert!(RouteSpec::parse("default", "10.0.0.1", "").is_err());
        assert!(RouteSpec::parse("default", "gw", "eth0").is_err());
    }

    #[test]
    fn interfaces_are_found_by_mac() {
        let d = tempfile::tempdir().unwrap();
        for (n, m) in [("lo", "00:00:00:00:00:00"), ("eth0", "52:54:00:12:34:56")] {
            std::fs::create_dir(d.path().join(n)).unwrap();
            std::fs::write(d.path().join(n).join("address"), format!("{m}\n")).unwrap();
        }
        assert_eq!(find_by_mac(d.path(), "52:54:00:12:34:56").unwrap(), "eth0");
        let e = find_by_mac(d.path(), "52:54:00:00:00:01")
            .unwrap_err()
            .to_string();
        assert!(e.contains("52:54:00:00:00:01"), "{e}");
    }

    #[test]
    fn bad_interface_settings_are_refused_before_any_ioctl() {
        let a = Cidr::parse("10.0.0.2/24").unwrap();
        assert!(configure("eth0", &[a], 20).is_err());
        assert!(configure("eth0", &[a; 17], 0).is_err());
        assert!(configure("a/b", &[a], 0).is_err());
    }

    #[test]
    fn resolv_conf_takes_ip_addresses_only() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("etc/resolv.conf");
        write_resolv_conf(&p, &["10.96.0.10".into()]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "nameserver 10.96.0.10\n"
        );
        assert!(write_resolv_conf(&p, &["evil\nnameserver 1.1.1.1".into()]).is_err());
        assert!(write_resolv_conf(&p, &vec!["1.1.1.1".into(); 4]).is_err());
    }
}
