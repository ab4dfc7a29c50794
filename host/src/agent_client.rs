//! The host's ttrpc client for the agent, over the VM's hybrid-vsock Unix
//! socket (`CONNECT <port>\n` → `OK <port>\n`).
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use cloister_protocol::agent_ttrpc::{AgentClient as AgentRpc, HealthClient};
use cloister_protocol::{
    health_check_response::ServingStatus, GetGuestDetailsRequest, GuestDetails, HealthCheckRequest,
};

/// Longest reply line accepted from the vsock device.
const MAX_REPLY: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot reach the VM's vsock socket {path}: {source}")]
    Socket { path: String, source: io::Error },
    #[error("the guest refused vsock port {port}: nothing listens there")]
    Refused { port: u32 },
    #[error("no answer to CONNECT {port} within {waited:?}")]
    Timeout { port: u32, waited: Duration },
    #[error("unexpected reply to CONNECT {port}: {reply:?}")]
    Protocol { port: u32, reply: String },
}

/// Opens a stream to guest vsock `port` through the hybrid-vsock socket.
pub fn connect_vsock(uds: &Path, port: u32, timeout: Duration) -> Result<UnixStream, ConnectError> {
    let sock_err = |source| ConnectError::Socket {
        path: uds.display().to_string(),
        source,
    };
    let mut s = UnixStream::connect(uds).map_err(sock_err)?;
    s.set_read_timeout(Some(timeout)).map_err(sock_err)?;
    s.write_all(format!("CONNECT {port}\n").as_bytes())
        .map_err(sock_err)?;
    let started = Instant::now();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match s.read(&mut byte) {
            Ok(0) => return Err(ConnectError::Refused { port }),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) if line.len() >= MAX_REPLY => {
                return Err(ConnectError::Protocol {
                    port,
                    reply: String::from_utf8_lossy(&line).into_owned(),
                })
            }
            Ok(_) => line.push(byte[0]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ConnectError::Timeout {
                    port,
                    waited: started.elapsed(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(ConnectError::Refused { port })
            }
            Err(e) => return Err(sock_err(e)),
        }
    }
    let reply = String::from_utf8_lossy(&line).into_owned();
    if !reply.starts_with("OK ") {
        return Err(ConnectError::Protocol { port, reply });
    }
    s.set_read_timeout(None).map_err(sock_err)?;
    Ok(s)
}

/// ttrpc clients for the agent's services, sharing one connection.
#[derive(Clone)]
pub struct Agent {
    health: HealthClient,
    agent: AgentRpc,
    timeout: Duration,
}

impl Agent {
    /// Wraps an established stream (vsock or a plain Unix socket).
    pub fn from_stream(stream: UnixStream, timeout: Duration) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        let stream = tokio::net::UnixStream::from_std(stream)?;
        let client =
            ttrpc::asynchronous::Client::new(ttrpc::asynchronous::transport::Socket::from(stream));
        Ok(Agent {
            health: HealthClient::new(client.clone()),
            agent: AgentRpc::new(client),
            timeout,
        })
    }

    fn ctx(&self) -> ttrpc::context::Context {
        ttrpc::context::with_timeout(self.timeout.as_nanos() as i64)
    }

    /// `Ok(true)` when the agent reports SERVING.
    pub async fn health(&self) -> ttrpc::Result<bool> {
        let req = HealthCheckRequest {
            service: "cloister".into(),
            ..Default::default()
        };
        let resp = self.health.check(self.ctx(), &req).await?;
        Ok(resp.status.enum_value() == Ok(ServingStatus::SERVING))
    }

    pub async fn guest_details(&self) -> ttrpc::Result<GuestDetails> {
        self.agent
            .get_guest_details(self.ctx(), &GetGuestDetailsRequest::default())
            .await
    }
}
