//! A process's stdio: containerd's fifos on the host, bridged to the
//! agent's streams in the guest. Output is read from the agent (ReadStdout
//! and ReadStderr long-poll) and written into the stdout/stderr fifos;
//! what arrives on the stdin fifo is sent with WriteStdin, and its end
//! with CloseStdin. With a terminal there is only stdout (the pty).
use std::io::Read;
use std::path::PathBuf;

use cloister_host::agent_client::Agent;
use cloister_protocol::{CloseStdinRequest, WriteStdinRequest};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// The bridges of one process; `done()` waits until all output is written.
pub struct Bridges {
    outputs: Vec<JoinHandle<()>>,
    input: Option<JoinHandle<()>>,
}

impl Bridges {
    /// Starts bridging `stdin`/`stdout`/`stderr` (empty: not wanted).
    pub fn start(
        agent: &Agent,
        container: &str,
        exec: &str,
        stdio: &crate::state::Stdio,
    ) -> Bridges {
        let mut outputs = Vec::new();
        if !stdio.stdout.is_empty() {
            outputs.push(output(
                agent.clone(),
                container,
                exec,
                false,
                stdio.stdout.clone().into(),
            ));
        }
        if !stdio.stderr.is_empty() && !stdio.terminal {
            outputs.push(output(
                agent.clone(),
                container,
                exec,
                true,
                stdio.stderr.clone().into(),
            ));
        }
        let input = (!stdio.stdin.is_empty())
            .then(|| input(agent.clone(), container, exec, stdio.stdin.clone().into()));
        Bridges { outputs, input }
    }

    /// Waits (at most `limit`) until the output streams reached their end.
    pub async fn done(&mut self, limit: std::time::Duration) {
        let all = futures_join(std::mem::take(&mut self.outputs));
        if tokio::time::timeout(limit, all).await.is_err() {
            warn!("output not complete after {limit:?}; the exit is reported anyway");
        }
    }

    /// Stops the stdin bridge (CloseIO).
    pub fn close_input(&mut self) {
        if let Some(h) = self.input.take() {
            h.abort();
        }
    }
}

impl Drop for Bridges {
    fn drop(&mut self) {
        for h in &self.outputs {
            h.abort();
        }
        self.close_input();
    }
}

async fn futures_join(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}

fn output(
    agent: Agent,
    container: &str,
    exec: &str,
    stderr: bool,
    fifo: PathBuf,
) -> JoinHandle<()> {
    let (c, e) = (container.to_string(), exec.to_string());
    tokio::spawn(async move {
        // Read-write: opening never blocks waiting for a reader, and the
        // reader sees the end once this last writer closes.
        let mut f = match tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .await
        {
            Ok(f) => f,
            Err(err) => {
                warn!(fifo = %fifo.display(), error = %err, "cannot open the output fifo");
                return;
            }
        };
        loop {
            match agent.read_chunk(&c, &e, stderr).await {
                Ok((data, eof)) => {
                    if !data.is_empty() {
                        if let Err(err) = f.write_all(&data).await {
                            debug!(fifo = %fifo.display(), error = %err, "writing output");
                            return;
                        }
                    }
                    if eof {
                        break;
                    }
                }
                Err(err) => {
                    debug!(container = c, exec = e, error = %err, "output stream ended");
                    break;
                }
            }
        }
        let _ = f.flush().await;
    })
}

fn input(agent: Agent, container: &str, exec: &str, fifo: PathBuf) -> JoinHandle<()> {
    let (c, e) = (container.to_string(), exec.to_string());
    tokio::spawn(async move {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        // Opening for reading blocks until a writer comes, and the end of
        // the writer's stream is the end of stdin: a blocking thread.
        let path = fifo.clone();
        std::thread::spawn(move || {
            let Ok(mut f) = std::fs::File::open(&path) else {
                return;
            };
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match f.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        while let Some(data) = rx.recv().await {
            let mut off = 0;
            while off < data.len() {
                let req = WriteStdinRequest {
                    container_id: c.clone(),
                    exec_id: e.clone(),
                    data: data[off..].to_vec(),
                    ..Default::default()
                };
                match agent
                    .rpc()
                    .write_stdin(agent.ctx_for(std::time::Duration::from_secs(30)), &req)
                    .await
                {
                    Ok(r) if r.len > 0 => off += r.len as usize,
                    Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
                    Err(err) => {
                        debug!(container = c, error = %err, "stdin stream ended");
                        return;
                    }
                }
            }
        }
        close_stdin(&agent, &c, &e).await;
    })
}

/// CloseStdin in the guest (the process sees the end of its input).
pub async fn close_stdin(agent: &Agent, container: &str, exec: &str) {
    let req = CloseStdinRequest {
        container_id: container.into(),
        exec_id: exec.into(),
        ..Default::default()
    };
    if let Err(e) = agent
        .rpc()
        .close_stdin(agent.ctx_for(std::time::Duration::from_secs(10)), &req)
        .await
    {
        debug!(container, exec, error = %e, "CloseStdin");
    }
}
