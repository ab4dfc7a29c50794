//! The guest's network: loopback, and the one interface the VMM gives the
//! pod (`cloister.ip=ADDR/PREFIX` on the kernel command line, e.g.
//! `10.0.2.15/24` behind QEMU's user networking). Set with the classic
//! interface ioctls: four calls, where a netlink crate would add a
//! dependency for the same effect.
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cloister.ip={0:?} is not ADDR/PREFIX (IPv4)")]
    Parse(String),
    #[error("{what} on {ifname}: {source}")]
    Ioctl {
        what: &'static str,
        ifname: String,
        source: io::Error,
    },
}

/// Parses `10.0.2.15/24`.
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), NetError> {
    let (a, p) = s.split_once('/').ok_or_else(|| NetError::Parse(s.into()))?;
    let addr: Ipv4Addr = a.parse().map_err(|_| NetError::Parse(s.into()))?;
    let prefix: u8 = p.parse().map_err(|_| NetError::Parse(s.into()))?;
    if prefix > 32 {
        return Err(NetError::Parse(s.into()));
    }
    Ok((addr, prefix))
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

fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked and then owned.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ioctl(
    sock: &OwnedFd,
    req: libc::Ioctl,
    r: &mut libc::ifreq,
    what: &'static str,
    ifname: &str,
) -> Result<(), NetError> {
    // SAFETY: every request used here reads or writes one ifreq, which `r`
    // points to for the duration of the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), req, r as *mut libc::ifreq) } < 0 {
        return Err(NetError::Ioctl {
            what,
            ifname: ifname.into(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Brings `ifname` up, with `addr/prefix` if given (the kernel adds the
/// route to the subnet).
pub fn configure(ifname: &str, addr: Option<(Ipv4Addr, u8)>) -> Result<(), NetError> {
    let sock = control_socket().map_err(|source| NetError::Ioctl {
        what: "socket",
        ifname: ifname.into(),
        source,
    })?;
    if let Some((a, prefix)) = addr {
        let mut r = ifreq(ifname);
        r.ifr_ifru.ifru_addr = sockaddr(a);
        ioctl(
            &sock,
            libc::SIOCSIFADDR,
            &mut r,
            "setting the address",
            ifname,
        )?;
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix as u32)
        };
        let mut r = ifreq(ifname);
        r.ifr_ifru.ifru_netmask = sockaddr(Ipv4Addr::from(mask));
        ioctl(
            &sock,
            libc::SIOCSIFNETMASK,
            &mut r,
            "setting the netmask",
            ifname,
        )?;
    }
    let mut r = ifreq(ifname);
    ioctl(
        &sock,
        libc::SIOCGIFFLAGS,
        &mut r,
        "reading the flags",
        ifname,
    )?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { r.ifr_ifru.ifru_flags };
    r.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    ioctl(&sock, libc::SIOCSIFFLAGS, &mut r, "bringing it up", ifname)?;
    Ok(())
}

/// At boot: loopback always, eth0 when the command line gives an address.
pub fn setup(ip: Option<&str>) -> Result<(), NetError> {
    configure("lo", None)?;
    if let Some(ip) = ip {
        let cidr = parse_cidr(ip)?;
        configure("eth0", Some(cidr))?;
        tracing::info!(ip, "eth0 configured");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_checked() {
        assert_eq!(
            parse_cidr("10.0.2.15/24").unwrap(),
            (Ipv4Addr::new(10, 0, 2, 15), 24)
        );
        for bad in ["10.0.2.15", "10.0.2.15/33", "x/24", "10.0.2/24", ""] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }
}
