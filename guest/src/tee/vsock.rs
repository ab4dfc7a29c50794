//! The guest's stream to a host service over AF_VSOCK: the sim chip on the
//! host (CID 2) at port 1025. On the host that port is the Unix socket
//! `<vsock-uds>_1025` (Firecracker's hybrid-vsock convention), where the
//! sim chip listens.
use std::io;

use async_trait::async_trait;
use cloister_kbs_client::attester::{SimTransport, Stream};
use tokio_vsock::{VsockAddr, VsockStream, VMADDR_CID_HOST};

/// Connects to `port` on the host. `tokio-vsock` builds with our tokio (it is
/// already in the tree through ttrpc), so no hand-rolled AsyncFd socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VsockTransport {
    pub cid: u32,
    pub port: u32,
}

impl VsockTransport {
    /// The host-side sim chip (development only, NOT A TEE).
    pub fn sim_chip() -> Self {
        VsockTransport {
            cid: VMADDR_CID_HOST,
            port: cloister_evidence::sim::wire::SIM_CHIP_VSOCK_PORT,
        }
    }
}

impl std::fmt::Display for VsockTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "vsock cid {} port {}", self.cid, self.port)
    }
}

#[async_trait]
impl SimTransport for VsockTransport {
    async fn connect(&self) -> io::Result<Box<dyn Stream>> {
        let s = VsockStream::connect(VsockAddr::new(self.cid, self.port))
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("{self}: {e}")))?;
        Ok(Box::new(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_chip_is_host_port_1025() {
        let t = VsockTransport::sim_chip();
        assert_eq!((t.cid, t.port), (2, 1025));
        assert_eq!(t.to_string(), "vsock cid 2 port 1025");
    }
}
