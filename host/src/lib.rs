//! cloister's host side: the pieces the `cloister` CLI (and later the
//! containerd shim) assemble to boot a measured micro-VM and talk to its agent.
//!
//! * [`hypervisor`]: backends that boot kernel + initramfs (QEMU today).
//! * [`devices`]: device models shared by the backends (virtio-vsock).
//! * [`agent_client`]: ttrpc to the agent over the hybrid-vsock Unix socket.
//! * [`sandbox`]: boots a VM and waits for its agent; tears everything down.
//! * [`initrd`]: the deterministic initramfs builder.
//! * [`bench`]: `cloister bench …` measurements.
pub mod agent_client;
pub mod bench;
pub mod cri_client;
pub mod demo;
pub mod devices;
pub mod hypervisor;
pub mod initrd;
pub mod install;
pub mod kernel;
pub mod monitor;
pub mod node_config;
pub mod pod;
pub mod run;
pub mod sandbox;
