//! The in-process virtio-vsock device as a hostile guest driver sees it:
//! arbitrary descriptor tables and available rings (bad lengths, addresses
//! out of range, loops, write-only where read is expected), and arbitrary
//! packet headers and data, on the TX and RX queues, through the same
//! `VsockDevice` the vhost-user backend and the builtin VMM drive.
//!
//! Input: TX and RX available counts (1 byte each), then for TX and then RX
//! 16 raw descriptors (16 bytes each) and 16 available-ring entries (2 bytes
//! each), then the contents of guest memory from 0x1000.
#![no_main]
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::OnceLock;

use cloister_host::devices::vsock::VsockDevice;
use libfuzzer_sys::fuzz_target;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const QSIZE: u16 = 16;
const MEM: usize = 0x10000;
const DATA: u64 = 0x1000;
/// Where each queue's rings live: (descriptors, available, used).
const TXQ: (u64, u64, u64) = (0x000, 0x100, 0x200);
const RXQ: (u64, u64, u64) = (0x400, 0x500, 0x600);
/// A guest-initiated connection to this port reaches a host listener.
const LISTENING_PORT: u32 = 1234;
const GUEST_CID: u64 = 3;

struct Host {
    uds: PathBuf,
    listener: UnixListener,
}

fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("cloister-fuzz-vsock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let uds = dir.join("v.sock");
        let port = PathBuf::from(format!("{}_{LISTENING_PORT}", uds.display()));
        let _ = std::fs::remove_file(&port);
        let listener = UnixListener::bind(&port).unwrap();
        listener.set_nonblocking(true).unwrap();
        Host { uds, listener }
    })
}

fn queue(mem: &GuestMemoryMmap, rings: (u64, u64, u64), avail: &[u8], count: u8) -> Queue {
    let (desc, avail_at, used) = rings;
    // The available ring: flags 0, idx = count, then the entries.
    let mut ring = vec![0u8; 4 + avail.len()];
    ring[2..4].copy_from_slice(&u16::from(count).to_le_bytes());
    ring[4..].copy_from_slice(avail);
    mem.write_slice(&ring, GuestAddress(avail_at)).unwrap();
    let mut q = Queue::new(QSIZE).unwrap();
    q.set_size(QSIZE);
    q.set_desc_table_address(Some(desc as u32), Some(0));
    q.set_avail_ring_address(Some(avail_at as u32), Some(0));
    q.set_used_ring_address(Some(used as u32), Some(0));
    q.set_ready(true);
    q
}

fuzz_target!(|data: &[u8]| {
    let host = host();
    let mut input = data.to_vec();
    let table = 16 * usize::from(QSIZE);
    let ring = 2 * usize::from(QSIZE);
    let header = 2 + 2 * (table + ring);
    if input.len() < header {
        input.resize(header, 0);
    }
    let (tx_count, rx_count) = (input[0] % (QSIZE as u8 + 1), input[1] % (QSIZE as u8 + 1));
    let mut at = 2;
    let mut take = |n: usize| {
        let s = &input[at..at + n];
        at += n;
        s.to_vec()
    };
    let (tx_desc, tx_avail, rx_desc, rx_avail) = (take(table), take(ring), take(table), take(ring));
    let rest = &input[at..];

    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    mem.write_slice(&tx_desc, GuestAddress(TXQ.0)).unwrap();
    mem.write_slice(&rx_desc, GuestAddress(RXQ.0)).unwrap();
    let n = rest.len().min(MEM - DATA as usize);
    mem.write_slice(&rest[..n], GuestAddress(DATA)).unwrap();
    let mut tx = queue(&mem, TXQ, &tx_avail, tx_count);
    let mut rx = queue(&mem, RXQ, &rx_avail, rx_count);

    let mut dev = VsockDevice::new(GUEST_CID, &host.uds).unwrap();
    dev.process_tx(&mem, &mut tx);
    dev.process_backend();
    dev.process_rx(&mem, &mut rx);
    // A second round: replies the first round queued (RST, RESPONSE,
    // CREDIT_UPDATE) go out on whatever RX buffers are left.
    dev.process_tx(&mem, &mut tx);
    dev.process_rx(&mem, &mut rx);
    drop(dev);
    while let Ok((conn, _)) = host.listener.accept() {
        drop(conn);
    }
});
