//! Device models shared by every hypervisor backend.
//!
//! A device model here knows virtio queues and guest memory, nothing about
//! how the queues reach it: the QEMU backend serves it over vhost-user, and
//! the builtin VMM drives the same code in-process.
pub mod vsock;
