//! Serves [`VsockDevice`] to QEMU's `vhost-user-vsock-device` over a
//! vhost-user socket, so that a QEMU guest gets virtio-vsock without
//! `/dev/vhost-vsock` in the host kernel.
//!
//! QEMU connects to the socket; the vhost-user-backend crate runs the
//! protocol and a worker thread that waits on the queues' kick eventfds and
//! on the muxer's epoll fd, and calls [`VhostUserBackendMut::handle_event`].
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use tracing::{debug, warn};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::vhost_user::Listener;
use vhost_user_backend::{VhostUserBackendMut, VhostUserDaemon, VringRwLock, VringT};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_queue::QueueT;
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use super::device::VsockDevice;
use super::{NUM_QUEUES, QUEUE_SIZE, RX_QUEUE, TX_QUEUE};

/// Event id under which the muxer's epoll fd is registered (ids up to
/// `NUM_QUEUES` are reserved by vhost-user-backend).
const BACKEND_EVENT: u16 = NUM_QUEUES as u16 + 1;

#[derive(Debug, thiserror::Error)]
pub enum VhostUserVsockError {
    #[error("creating the vsock device on {path}: {source}")]
    Device { path: PathBuf, source: io::Error },
    #[error("listening on the vhost-user socket {path}: {source}")]
    Listen {
        path: PathBuf,
        source: vhost::vhost_user::Error,
    },
    #[error("starting the vhost-user daemon: {0}")]
    Daemon(String),
}

struct Backend {
    device: VsockDevice,
    mem: Option<GuestMemoryAtomic<GuestMemoryMmap>>,
}

impl Backend {
    fn run_queues(&mut self, rx: bool, tx: bool, vrings: &[VringRwLock]) -> io::Result<()> {
        let Some(atomic) = &self.mem else {
            return Ok(());
        };
        let mem = atomic.memory();
        if tx && vrings[TX_QUEUE].get_ref().get_queue().ready() {
            let used = self
                .device
                .process_tx(&*mem, vrings[TX_QUEUE].get_mut().get_queue_mut());
            if used {
                vrings[TX_QUEUE].signal_used_queue()?;
            }
        }
        if rx && vrings[RX_QUEUE].get_ref().get_queue().ready() {
            let used = self
                .device
                .process_rx(&*mem, vrings[RX_QUEUE].get_mut().get_queue_mut());
            if used {
                vrings[RX_QUEUE].signal_used_queue()?;
            }
        }
        Ok(())
    }
}

impl VhostUserBackendMut for Backend {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        NUM_QUEUES
    }

    fn max_queue_size(&self) -> usize {
        QUEUE_SIZE as usize
    }

    fn features(&self) -> u64 {
        (1 << VIRTIO_F_VERSION_1) | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::CONFIG
    }

    fn set_event_idx(&mut self, _enabled: bool) {
        // EVENT_IDX is not offered, so the guest never enables it.
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let cfg = self.device.config();
        let start = (offset as usize).min(cfg.len());
        let end = start.saturating_add(size as usize).min(cfg.len());
        cfg[start..end].to_vec()
    }

    fn update_memory(&mut self, mem: GuestMemoryAtomic<GuestMemoryMmap>) -> io::Result<()> {
        self.mem = Some(mem);
        Ok(())
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        new_event_consumer_and_notifier(EventFlag::NONBLOCK).ok()
    }

    fn handle_event(
        &mut self,
        device_event: u16,
        _evset: EventSet,
        vrings: &[VringRwLock],
        _thread_id: usize,
    ) -> io::Result<()> {
        match device_event as usize {
            RX_QUEUE => self.run_queues(true, false, vrings),
            TX_QUEUE => self.run_queues(true, true, vrings),
            e if e == BACKEND_EVENT as usize => {
                self.device.process_backend();
                self.run_queues(true, false, vrings)
            }
            // The event queue: the device never sends transport events.
            _ => Ok(()),
        }
    }
}

/// A running vhost-user vsock backend. Dropping it does not stop it; call
/// [`VhostUserVsock::join`] after the VMM exits.
pub struct VhostUserVsock {
    thread: Option<JoinHandle<()>>,
    socket: PathBuf,
}

impl VhostUserVsock {
    /// Listens on `vhost_socket` for the VMM and serves one VM whose vsock
    /// host side is `uds_path`. Returns once the socket is listening, so the
    /// VMM can be started right after.
    pub fn spawn(
        vhost_socket: &Path,
        guest_cid: u64,
        uds_path: &Path,
    ) -> Result<Self, VhostUserVsockError> {
        let device = VsockDevice::new(guest_cid, uds_path).map_err(|source| {
            VhostUserVsockError::Device {
                path: uds_path.to_path_buf(),
                source,
            }
        })?;
        let backend_fd = device.backend_fd();
        let backend = Arc::new(RwLock::new(Backend { device, mem: None }));
        let mut daemon = VhostUserDaemon::new(
            "cloister-vsock".to_string(),
            backend,
            GuestMemoryAtomic::new(GuestMemoryMmap::default()),
        )
        .map_err(|e| VhostUserVsockError::Daemon(e.to_string()))?;
        let handlers = daemon.get_epoll_handlers();
        handlers[0]
            .register_listener(backend_fd, EventSet::IN, BACKEND_EVENT as u64)
            .map_err(|e| VhostUserVsockError::Daemon(format!("registering the muxer: {e}")))?;
        let mut listener =
            Listener::new(vhost_socket, true).map_err(|source| VhostUserVsockError::Listen {
                path: vhost_socket.to_path_buf(),
                source,
            })?;
        let thread = std::thread::Builder::new()
            .name("vsock-vhost-user".into())
            .spawn(move || {
                if let Err(e) = daemon.start(&mut listener) {
                    warn!(error = %e, "vhost-user vsock: VMM never connected");
                    return;
                }
                match daemon.wait() {
                    Ok(()) => debug!("vhost-user vsock: VMM disconnected"),
                    Err(e) => debug!(error = %e, "vhost-user vsock: session ended"),
                }
                for h in daemon.get_epoll_handlers() {
                    h.send_exit_event();
                }
            })
            .map_err(|e| VhostUserVsockError::Daemon(e.to_string()))?;
        Ok(VhostUserVsock {
            thread: Some(thread),
            socket: vhost_socket.to_path_buf(),
        })
    }

    /// Waits for the session to end (the VMM disconnected). Call it only
    /// after the VMM has exited.
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            // If the VMM died before it connected, the daemon still waits in
            // accept(2): connect and hang up so that it returns.
            if !t.is_finished() {
                let _ = std::os::unix::net::UnixStream::connect(&self.socket);
            }
            let _ = t.join();
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}
