//! The virtio-vsock device: moves packets between the guest's virtqueues and
//! the [`Muxer`]. Transport-independent: the caller hands in guest memory and
//! the queue, and signals the guest when a method returns `true`.
use std::io;
use std::os::fd::RawFd;
use std::path::Path;

use tracing::warn;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use virtio_vsock::packet::VsockPacket;
use vm_memory::GuestMemory;

use super::muxer::Muxer;
use super::packet::Header;

/// Largest data payload in one packet (the Linux driver's maximum).
pub const MAX_PKT_DATA: u32 = 64 * 1024;

pub struct VsockDevice {
    muxer: Muxer,
}

impl VsockDevice {
    pub fn new(guest_cid: u64, uds_path: &Path) -> io::Result<Self> {
        Ok(VsockDevice {
            muxer: Muxer::new(guest_cid, uds_path)?,
        })
    }

    /// The device configuration space: the guest's CID, little-endian u64.
    pub fn config(&self) -> [u8; 8] {
        self.muxer.guest_cid().to_le_bytes()
    }

    /// An fd that is readable when host sockets need attention.
    pub fn backend_fd(&self) -> RawFd {
        self.muxer.fd()
    }

    pub fn muxer(&self) -> &Muxer {
        &self.muxer
    }

    /// Handles host socket events. Call [`Self::process_rx`] afterwards.
    pub fn process_backend(&mut self) {
        self.muxer.process_host_events();
    }

    /// Takes every packet the guest queued on TX. Returns whether the used
    /// ring changed.
    pub fn process_tx<M: GuestMemory>(&mut self, mem: &M, queue: &mut Queue) -> bool {
        let mut used = false;
        while let Some(mut chain) = queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            match VsockPacket::from_tx_virtq_chain(mem, &mut chain, MAX_PKT_DATA) {
                Ok(pkt) => {
                    let hdr = Header::read_from(&pkt);
                    self.muxer.recv_from_guest(&hdr, pkt.data_slice());
                }
                Err(e) => warn!(error = %e, "vsock: malformed TX descriptor chain"),
            }
            if let Err(e) = queue.add_used(mem, head, 0) {
                warn!(error = %e, "vsock: add_used on TX");
            }
            used = true;
        }
        used
    }

    /// Fills guest RX buffers with whatever the muxer has ready. Returns
    /// whether the used ring changed.
    pub fn process_rx<M: GuestMemory>(&mut self, mem: &M, queue: &mut Queue) -> bool {
        let mut used = false;
        while self.muxer.has_rx() {
            let Some(mut chain) = queue.pop_descriptor_chain(mem) else {
                break;
            };
            let head = chain.head_index();
            let len = match VsockPacket::from_rx_virtq_chain(mem, &mut chain, MAX_PKT_DATA) {
                Ok(mut pkt) => {
                    let mut hdr = Header::default();
                    match self.muxer.fill_rx(&mut hdr, pkt.data_slice()) {
                        Some(n) => {
                            hdr.len = n;
                            hdr.write_to(&mut pkt);
                            pkt.header_slice().len() as u32 + n
                        }
                        None => {
                            // Nothing was ready after all: give the buffer back.
                            queue.go_to_previous_position();
                            break;
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, "vsock: malformed RX descriptor chain");
                    0
                }
            };
            if let Err(e) = queue.add_used(mem, head, len) {
                warn!(error = %e, "vsock: add_used on RX");
            }
            used = true;
        }
        used
    }
}

#[cfg(test)]
mod tests;
