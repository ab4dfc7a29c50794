//! The device driven like a guest driver would, descriptor chain by
//! descriptor chain, with virtio-queue's mock split queues in real guest
//! memory and real host Unix sockets.
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::devices::vsock::packet::*;
use crate::devices::vsock::HOST_CID;

const GUEST_CID: u64 = 3;
const VRING_DESC_F_WRITE: u16 = 2;
const HDR: usize = 44;

struct Guest<'a> {
    mem: &'a GuestMemoryMmap,
    rxq: MockSplitQueue<'a, GuestMemoryMmap>,
    txq: MockSplitQueue<'a, GuestMemoryMmap>,
    rx: Queue,
    tx: Queue,
    next_rx_desc: u16,
    next_tx_desc: u16,
}

const RX_BUF: u64 = 0x10_0000;
const TX_BUF: u64 = 0x20_0000;

impl<'a> Guest<'a> {
    fn new(mem: &'a GuestMemoryMmap) -> Self {
        let rxq = MockSplitQueue::create(mem, GuestAddress(0), 16);
        let txq = MockSplitQueue::create(mem, GuestAddress(0x8000), 16);
        let rx = rxq.create_queue::<Queue>().unwrap();
        let tx = txq.create_queue::<Queue>().unwrap();
        Guest {
            mem,
            rxq,
            txq,
            rx,
            tx,
            next_rx_desc: 0,
            next_tx_desc: 0,
        }
    }

    /// Offers one 4 KiB device-writable buffer on RX; returns its address.
    fn offer_rx(&mut self) -> u64 {
        let i = self.next_rx_desc;
        let addr = RX_BUF + u64::from(i) * 0x1000;
        let d = RawDescriptor::from(SplitDescriptor::new(addr, 0x1000, VRING_DESC_F_WRITE, 0));
        self.rxq.add_desc_chains(&[d], i).unwrap();
        self.next_rx_desc += 1;
        addr
    }

    /// Queues a packet on TX as header descriptor + data descriptor.
    fn send(&mut self, op: u16, guest_port: u32, host_port: u32, data: &[u8]) {
        let i = self.next_tx_desc;
        let haddr = TX_BUF + u64::from(i) * 0x1000;
        let daddr = haddr + 0x100;
        let mut h = [0u8; HDR];
        h[0..8].copy_from_slice(&GUEST_CID.to_le_bytes());
        h[8..16].copy_from_slice(&HOST_CID.to_le_bytes());
        h[16..20].copy_from_slice(&guest_port.to_le_bytes());
        h[20..24].copy_from_slice(&host_port.to_le_bytes());
        h[24..28].copy_from_slice(&(data.len() as u32).to_le_bytes());
        h[28..30].copy_from_slice(&TYPE_STREAM.to_le_bytes());
        h[30..32].copy_from_slice(&op.to_le_bytes());
        h[36..40].copy_from_slice(&(64u32 * 1024).to_le_bytes());
        self.mem.write_slice(&h, GuestAddress(haddr)).unwrap();
        self.mem.write_slice(data, GuestAddress(daddr)).unwrap();
        let mut descs = vec![RawDescriptor::from(SplitDescriptor::new(
            haddr,
            HDR as u32,
            1,
            i + 1,
        ))];
        if !data.is_empty() {
            descs.push(RawDescriptor::from(SplitDescriptor::new(
                daddr,
                data.len() as u32,
                0,
                0,
            )));
        } else {
            descs[0] = RawDescriptor::from(SplitDescriptor::new(haddr, HDR as u32, 0, 0));
        }
        self.txq.add_desc_chains(&descs, i).unwrap();
        self.next_tx_desc += descs.len() as u16;
    }

    fn used_idx(q: &MockSplitQueue<'a, GuestMemoryMmap>) -> u16 {
        q.used().idx().load()
    }

    /// Reads a packet the device wrote at `addr`: (op, src_port, dst_port, data).
    fn packet_at(&self, addr: u64) -> (u16, u32, u32, Vec<u8>) {
        let mut h = [0u8; HDR];
        self.mem.read_slice(&mut h, GuestAddress(addr)).unwrap();
        let u32_at = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().unwrap());
        let len = u32_at(24) as usize;
        let mut data = vec![0u8; len];
        self.mem
            .read_slice(&mut data, GuestAddress(addr + HDR as u64))
            .unwrap();
        assert_eq!(
            u64::from_le_bytes(h[8..16].try_into().unwrap()),
            GUEST_CID,
            "dst_cid"
        );
        (
            u16::from_le_bytes([h[30], h[31]]),
            u32_at(16),
            u32_at(20),
            data,
        )
    }
}

fn pump_rx(dev: &mut VsockDevice, g: &mut Guest) -> bool {
    for _ in 0..200 {
        dev.process_backend();
        if dev.process_rx(g.mem, &mut g.rx) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn a_host_connection_through_guest_queues() {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let mut dev = VsockDevice::new(GUEST_CID, &uds).unwrap();
    assert_eq!(dev.config(), 3u64.to_le_bytes());
    let mut g = Guest::new(&mem);

    let mut host = UnixStream::connect(&uds).unwrap();
    host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    host.write_all(b"CONNECT 1024\n").unwrap();

    // No RX buffer yet: the REQUEST waits in the device, not lost.
    dev.process_backend();
    assert!(!dev.process_rx(&mem, &mut g.rx));
    let a = g.offer_rx();
    assert!(pump_rx(&mut dev, &mut g));
    assert_eq!(Guest::used_idx(&g.rxq), 1);
    let (op, local, dst, _) = g.packet_at(a);
    assert_eq!((op, dst), (OP_REQUEST, 1024));

    g.send(OP_RESPONSE, 1024, local, &[]);
    assert!(dev.process_tx(&mem, &mut g.tx));
    assert_eq!(Guest::used_idx(&g.txq), 1);
    let mut line = String::new();
    BufReader::new(host.try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, format!("OK {local}\n"));

    g.send(OP_RW, 1024, local, b"hello from the guest");
    dev.process_tx(&mem, &mut g.tx);
    let mut got = [0u8; 20];
    host.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello from the guest");

    host.write_all(b"hello from the host").unwrap();
    let b = g.offer_rx();
    assert!(pump_rx(&mut dev, &mut g));
    let (op, src, dst, data) = g.packet_at(b);
    assert_eq!((op, src, dst), (OP_RW, local, 1024));
    assert_eq!(data, b"hello from the host");
}

#[test]
fn malformed_tx_chains_are_consumed_not_fatal() {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut dev = VsockDevice::new(GUEST_CID, &dir.path().join("v.sock")).unwrap();
    let mut g = Guest::new(&mem);
    // A header descriptor that is too short, and one that is write-only.
    let short = RawDescriptor::from(SplitDescriptor::new(TX_BUF, 8, 0, 0));
    let wonly = RawDescriptor::from(SplitDescriptor::new(TX_BUF, 44, VRING_DESC_F_WRITE, 0));
    g.txq.add_desc_chains(&[short, wonly], 0).unwrap();
    assert!(dev.process_tx(&mem, &mut g.tx));
    assert_eq!(
        Guest::used_idx(&g.txq),
        2,
        "both chains returned to the guest"
    );
    assert!(!dev.muxer().has_rx());
}
