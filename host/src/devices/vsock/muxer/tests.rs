//! The muxer driven by a fake guest: headers in, headers out, real host
//! Unix sockets.
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use vm_memory::VolatileSlice;

use super::*;
use crate::devices::vsock::packet::*;

const GUEST_CID: u64 = 3;

fn muxer() -> (tempfile::TempDir, Muxer, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vsock.sock");
    let m = Muxer::new(GUEST_CID, &path).unwrap();
    (dir, m, path)
}

fn guest_hdr(op: u16, guest_port: u32, host_port: u32) -> Header {
    Header {
        src_cid: GUEST_CID,
        dst_cid: HOST_CID,
        src_port: guest_port,
        dst_port: host_port,
        type_: TYPE_STREAM,
        op,
        buf_alloc: 64 * 1024,
        ..Default::default()
    }
}

/// Runs the host-event loop until the muxer has something for the guest.
fn next_rx(m: &mut Muxer, buf: &mut [u8]) -> (Header, Vec<u8>) {
    for _ in 0..200 {
        m.process_host_events();
        let mut h = Header::default();
        let slice = VolatileSlice::from(&mut buf[..]);
        if let Some(n) = m.fill_rx(&mut h, Some(&slice)) {
            return (h, buf[..n as usize].to_vec());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("muxer produced nothing for the guest");
}

fn send(m: &mut Muxer, h: Header, data: &[u8]) {
    let mut d = data.to_vec();
    let mut h = h;
    h.len = d.len() as u32;
    let slice = VolatileSlice::from(&mut d[..]);
    m.recv_from_guest(&h, Some(&slice));
}

fn host_connect(m: &mut Muxer, path: &Path, port: u32) -> (UnixStream, Header) {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    writeln!(s, "CONNECT {port}").unwrap();
    let mut buf = [0u8; 64];
    let (h, _) = next_rx(m, &mut buf);
    (s, h)
}

#[test]
fn host_connect_handshake_and_data_both_ways() {
    let (_d, mut m, path) = muxer();
    let (mut s, req) = host_connect(&mut m, &path, 1024);
    assert_eq!(req.op, OP_REQUEST);
    assert_eq!(
        (req.src_cid, req.dst_cid, req.dst_port),
        (HOST_CID, GUEST_CID, 1024)
    );
    assert!(req.src_port >= FIRST_LOCAL_PORT);
    assert_eq!(req.buf_alloc, super::super::connection::CONN_BUF_ALLOC);

    send(&mut m, guest_hdr(OP_RESPONSE, 1024, req.src_port), &[]);
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    assert_eq!(line, format!("OK {}\n", req.src_port));

    s.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4096];
    let (h, data) = next_rx(&mut m, &mut buf);
    assert_eq!((h.op, h.len, data.as_slice()), (OP_RW, 4, &b"ping"[..]));

    send(&mut m, guest_hdr(OP_RW, 1024, req.src_port), b"pong");
    let mut got = [0u8; 4];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"pong");
    assert_eq!(m.metrics.bytes_to_guest, 4);
    assert_eq!(m.metrics.bytes_to_host, 4);
}

#[test]
fn guest_reset_of_connect_closes_host_socket() {
    let (_d, mut m, path) = muxer();
    let (mut s, req) = host_connect(&mut m, &path, 1025);
    send(&mut m, guest_hdr(OP_RST, 1025, req.src_port), &[]);
    let mut buf = [0u8; 8];
    assert_eq!(s.read(&mut buf).unwrap(), 0, "host sees EOF, never OK");
    assert_eq!(m.connection_count(), 0);
}

#[test]
fn malformed_connect_lines_are_refused() {
    for bad in [
        "HELLO 1024\n",
        "CONNECT x\n",
        "CONNECT 99999999999\n",
        &format!("CONNECT {}\n", "1".repeat(64)),
    ] {
        let (_d, mut m, path) = muxer();
        let mut s = UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(bad.as_bytes()).unwrap();
        for _ in 0..20 {
            m.process_host_events();
        }
        let mut buf = [0u8; 8];
        // Closed: EOF, or a reset when part of the line was left unread.
        match s.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("{bad:?} must be refused, got {other:?}"),
        }
        assert_eq!(m.metrics.bad_handshakes, 1, "{bad:?}");
        assert!(!m.has_rx(), "{bad:?} must not reach the guest");
    }
}

#[test]
fn guest_connects_to_host_listener_and_gets_reset_without_one() {
    let (_d, mut m, path) = muxer();
    let listener = UnixListener::bind(format!("{}_5000", path.display())).unwrap();
    send(&mut m, guest_hdr(OP_REQUEST, 777, 5000), &[]);
    let mut buf = [0u8; 64];
    let (h, _) = next_rx(&mut m, &mut buf);
    assert_eq!((h.op, h.src_port, h.dst_port), (OP_RESPONSE, 5000, 777));
    let (mut host_side, _) = listener.accept().unwrap();
    send(&mut m, guest_hdr(OP_RW, 777, 5000), b"report please");
    let mut got = [0u8; 13];
    host_side.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"report please");

    send(&mut m, guest_hdr(OP_REQUEST, 778, 5001), &[]);
    let (h, _) = next_rx(&mut m, &mut buf);
    assert_eq!((h.op, h.dst_port), (OP_RST, 778));
}

#[test]
fn host_hangup_sends_shutdown_then_guest_rst_removes() {
    let (_d, mut m, path) = muxer();
    let (s, req) = host_connect(&mut m, &path, 1024);
    send(&mut m, guest_hdr(OP_RESPONSE, 1024, req.src_port), &[]);
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    drop(s);
    let mut buf = [0u8; 4096];
    let (h, _) = next_rx(&mut m, &mut buf);
    assert_eq!(h.op, OP_SHUTDOWN);
    assert_eq!(h.flags, SHUTDOWN_RCV | SHUTDOWN_SEND);
    send(&mut m, guest_hdr(OP_RST, 1024, req.src_port), &[]);
    assert_eq!(m.connection_count(), 0);
}

#[test]
fn packets_for_unknown_connections_get_reset_and_wrong_cids_are_dropped() {
    let (_d, mut m, _path) = muxer();
    send(&mut m, guest_hdr(OP_RW, 1, 2), b"stray");
    let mut buf = [0u8; 64];
    let (h, _) = next_rx(&mut m, &mut buf);
    assert_eq!(h.op, OP_RST);
    let mut spoofed = guest_hdr(OP_REQUEST, 1, 2);
    spoofed.src_cid = 99;
    send(&mut m, spoofed, &[]);
    assert!(!m.has_rx());
}

#[test]
fn no_credit_means_no_data_until_the_guest_updates() {
    let (_d, mut m, path) = muxer();
    let (mut s, req) = host_connect(&mut m, &path, 1024);
    let mut resp = guest_hdr(OP_RESPONSE, 1024, req.src_port);
    resp.buf_alloc = 3;
    send(&mut m, resp, &[]);
    let mut line = String::new();
    let mut r = BufReader::new(s.try_clone().unwrap());
    r.read_line(&mut line).unwrap();
    s.write_all(b"abcdef").unwrap();
    let mut buf = [0u8; 4096];
    let (h, data) = next_rx(&mut m, &mut buf);
    assert_eq!((h.op, data.as_slice()), (OP_RW, &b"abc"[..]));
    for _ in 0..10 {
        m.process_host_events();
        let mut h = Header::default();
        let slice = VolatileSlice::from(&mut buf[..]);
        assert!(
            m.fill_rx(&mut h, Some(&slice)).is_none(),
            "no credit, no data"
        );
    }
    let mut upd = guest_hdr(OP_CREDIT_UPDATE, 1024, req.src_port);
    upd.buf_alloc = 3;
    upd.fwd_cnt = 3;
    send(&mut m, upd, &[]);
    let (h, data) = next_rx(&mut m, &mut buf);
    assert_eq!((h.op, data.as_slice()), (OP_RW, &b"def"[..]));
}
