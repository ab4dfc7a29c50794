//! The host's ttrpc client for the agent, over the VM's hybrid-vsock Unix
//! socket (`CONNECT <port>\n` → `OK <port>\n`).
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use cloister_protocol::agent_ttrpc::{AgentClient as AgentRpc, HealthClient};
use cloister_protocol::{
    health_check_response::ServingStatus, CreateContainerRequest, CreateContainerResponse,
    CreateSandboxRequest, CreateSandboxResponse, DestroySandboxRequest, ExecProcessRequest,
    GetGuestDetailsRequest, GetMetricsRequest, GuestDetails, HealthCheckRequest, Process,
    ReadStderrRequest, ReadStdoutRequest, RemoveContainerRequest, StartContainerRequest,
    WaitProcessRequest,
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

    /// The generated client, for RPCs without a helper here.
    pub fn rpc(&self) -> &AgentRpc {
        &self.agent
    }

    /// A context with `timeout` instead of the default.
    pub fn ctx_for(&self, timeout: Duration) -> ttrpc::context::Context {
        ttrpc::context::with_timeout(timeout.as_nanos() as i64)
    }

    pub async fn create_sandbox(
        &self,
        sandbox_id: &str,
        hostname: &str,
        initdata: &str,
        dns: &[String],
    ) -> ttrpc::Result<CreateSandboxResponse> {
        let req = CreateSandboxRequest {
            sandbox_id: sandbox_id.into(),
            hostname: hostname.into(),
            initdata: initdata.into(),
            dns: dns.to_vec(),
            ..Default::default()
        };
        self.agent.create_sandbox(self.ctx(), &req).await
    }

    /// CreateContainer: the guest pulls and verifies `image` first, so this
    /// takes `timeout` (minutes for a large image under TCG).
    pub async fn create_container(
        &self,
        id: &str,
        image: &str,
        oci_spec: &[u8],
        timeout: Duration,
    ) -> ttrpc::Result<CreateContainerResponse> {
        let req = CreateContainerRequest {
            container_id: id.into(),
            image: image.into(),
            oci_spec: oci_spec.to_vec(),
            ..Default::default()
        };
        self.agent
            .create_container(self.ctx_for(timeout), &req)
            .await
    }

    /// Starts the container; returns its guest pid.
    pub async fn start_container(&self, id: &str) -> ttrpc::Result<u32> {
        let req = StartContainerRequest {
            container_id: id.into(),
            ..Default::default()
        };
        Ok(self.agent.start_container(self.ctx(), &req).await?.pid)
    }

    /// Runs `args` in the container as exec `exec_id`.
    pub async fn exec(&self, id: &str, exec_id: &str, args: &[&str]) -> ttrpc::Result<()> {
        let req = ExecProcessRequest {
            container_id: id.into(),
            exec_id: exec_id.into(),
            process: Some(Process {
                args: args.iter().map(|a| a.to_string()).collect(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        self.agent.exec_process(self.ctx(), &req).await.map(|_| ())
    }

    /// The next chunk a process wrote to stdout (`stderr` false) or stderr,
    /// and whether the stream has ended. A long poll: the agent answers
    /// when there is output.
    pub async fn read_chunk(
        &self,
        id: &str,
        exec_id: &str,
        stderr: bool,
    ) -> ttrpc::Result<(Vec<u8>, bool)> {
        let ctx = self.ctx_for(Duration::from_secs(3600));
        if stderr {
            let req = ReadStderrRequest {
                container_id: id.into(),
                exec_id: exec_id.into(),
                max_len: 1 << 16,
                ..Default::default()
            };
            let r = self.agent.read_stderr(ctx, &req).await?;
            Ok((r.data, r.eof))
        } else {
            let req = ReadStdoutRequest {
                container_id: id.into(),
                exec_id: exec_id.into(),
                max_len: 1 << 16,
                ..Default::default()
            };
            let r = self.agent.read_stdout(ctx, &req).await?;
            Ok((r.data, r.eof))
        }
    }

    /// Everything a process writes to stdout (`stderr` false) or stderr,
    /// until it closes the stream. `each` sees every chunk as it comes.
    pub async fn read_all(
        &self,
        id: &str,
        exec_id: &str,
        stderr: bool,
        mut each: impl FnMut(&[u8]),
    ) -> ttrpc::Result<Vec<u8>> {
        let mut all = Vec::new();
        loop {
            let (data, eof) = self.read_chunk(id, exec_id, stderr).await?;
            each(&data);
            all.extend_from_slice(&data);
            if eof {
                return Ok(all);
            }
        }
    }

    /// Waits for the process to end; returns its exit code (128+signal when
    /// a signal ended it).
    pub async fn wait(&self, id: &str, exec_id: &str) -> ttrpc::Result<i32> {
        let req = WaitProcessRequest {
            container_id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        Ok(self
            .agent
            .wait_process(self.ctx_for(Duration::from_secs(24 * 3600)), &req)
            .await?
            .status)
    }

    pub async fn remove_container(&self, id: &str, timeout_ms: u32) -> ttrpc::Result<()> {
        let req = RemoveContainerRequest {
            container_id: id.into(),
            timeout_ms,
            ..Default::default()
        };
        self.agent
            .remove_container(self.ctx(), &req)
            .await
            .map(|_| ())
    }

    pub async fn destroy_sandbox(&self) -> ttrpc::Result<()> {
        self.agent
            .destroy_sandbox(self.ctx(), &DestroySandboxRequest::default())
            .await
            .map(|_| ())
    }

    /// The agent's metrics (OpenMetrics text).
    pub async fn metrics(&self) -> ttrpc::Result<String> {
        Ok(self
            .agent
            .get_metrics(self.ctx(), &GetMetricsRequest::default())
            .await?
            .text)
    }
}
