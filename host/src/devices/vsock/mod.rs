//! virtio-vsock, mediated between the guest's AF_VSOCK and host AF_UNIX
//! sockets, without vhost-vsock in the host kernel.
//!
//! Hosts here have no `/dev/vhost-vsock`, and a confidential VM should not
//! depend on host kernel vsock anyway: the host side of every guest port is a
//! Unix socket, following Firecracker's hybrid-vsock convention:
//!
//! * host-initiated: connect to the device's Unix socket, send
//!   `CONNECT <port>\n`, and read `OK <host-port>\n` once the guest accepted;
//!   if nothing listens on that guest port the socket is closed instead;
//! * guest-initiated: a guest connection to host port `P` is forwarded to the
//!   Unix socket `<path>_P`.
//!
//! The parts: [`packet`] the wire header, [`connection`] one stream's state
//! and credit accounting, [`muxer`] the Unix-socket backend that owns all
//! connections, [`device`] the virtqueue processing, and [`vhost_user`] the
//! transport that serves the device to QEMU.
pub mod connection;
pub mod device;
pub mod muxer;
pub mod packet;
pub mod vhost_user;

pub use device::VsockDevice;
pub use muxer::Muxer;

/// The host's CID, as seen from the guest.
pub const HOST_CID: u64 = 2;
/// Queue indexes of a virtio-vsock device.
pub const RX_QUEUE: usize = 0;
pub const TX_QUEUE: usize = 1;
pub const EVENT_QUEUE: usize = 2;
pub const NUM_QUEUES: usize = 3;
/// Largest queue the device accepts.
pub const QUEUE_SIZE: u16 = 1024;
