//! The sim chip as a service on a Unix socket: the host side of the guest's vsock
//! port 1025 (`<vsock-uds>_1025`). Each connection carries one request for a
//! report (protocol: `cloister_evidence::sim::wire`); a thread per connection
//! answers it with a report over the measurement and HOST_DATA fixed at start.
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use cloister_evidence::sim::wire;

use crate::report::ReportFields;
use crate::SimChip;

/// How long a connection may take to send its request.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A running sim chip service. Dropping it (or [`SimChipServer::stop`]) stops
/// accepting and removes the socket.
pub struct SimChipServer {
    path: PathBuf,
    listener: Arc<UnixListener>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SimChipServer {
    pub(crate) fn start(
        chip: SimChip,
        path: &Path,
        measurement: [u8; 48],
        host_data: [u8; 32],
    ) -> io::Result<SimChipServer> {
        let _ = std::fs::remove_file(path);
        let listener = Arc::new(UnixListener::bind(path)?);
        tracing::warn!(
            socket = %path.display(), measurement = %hex::encode(measurement), host_data = %hex::encode(host_data),
            "sim chip serving reports (cloister-sim: NOT A TEE, development only)"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, listener) = (stop.clone(), listener.clone());
            std::thread::Builder::new()
                .name("sim-chip".into())
                .spawn(move || accept_loop(listener, chip, measurement, host_data, stop))?
        };
        Ok(SimChipServer {
            path: path.to_path_buf(),
            listener,
            stop,
            thread: Some(thread),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting connections and removes the socket.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag: shutting the listening socket
        // down makes a blocked accept() return (and works even when the socket
        // file is already gone, unlike connecting to it).
        let _ =
            nix::sys::socket::shutdown(self.listener.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for SimChipServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(
    listener: Arc<UnixListener>,
    chip: SimChip,
    measurement: [u8; 48],
    host_data: [u8; 32],
    stop: Arc<AtomicBool>,
) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "sim chip: accept failed");
                // Do not spin on a persistent error.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let chip = chip.clone();
        let spawned = std::thread::Builder::new()
            .name("sim-chip-conn".into())
            .spawn(move || {
                if let Err(e) = answer(stream, &chip, measurement, host_data) {
                    tracing::warn!(error = %e, "sim chip: request failed");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "sim chip: cannot start a connection thread");
        }
    }
}

fn answer(
    mut stream: UnixStream,
    chip: &SimChip,
    measurement: [u8; 48],
    host_data: [u8; 32],
) -> Result<(), wire::WireError> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let report_data = match wire::read_request(&mut stream) {
        Ok(rd) => rd,
        Err(wire::WireError::ReportDataLength(n)) => {
            // Read what the client sent (bounded), so that closing with unread
            // input does not reset the connection before it reads the refusal.
            let limit = n.min(wire::MAX_FRAME) as u64;
            let _ = std::io::copy(&mut (&mut stream).take(limit), &mut std::io::sink());
            let msg = format!("report_data must be 64 bytes, got {n}");
            wire::write_response(&mut stream, Err(&msg))?;
            return Err(wire::WireError::ReportDataLength(n));
        }
        Err(e) => return Err(e),
    };
    let resp = chip.issue(&ReportFields {
        measurement,
        host_data,
        report_data,
    });
    wire::write_response(&mut stream, Ok(&resp))
}
