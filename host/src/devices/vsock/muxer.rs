//! The Unix-socket side of the vsock device: it owns every connection,
//! accepts host connections (`CONNECT <port>\n`), forwards guest connections
//! to `<path>_<port>`, and decides what goes to the guest next.
//!
//! All host sockets are non-blocking and registered in one epoll instance of
//! the muxer's own. A transport only has to watch that one fd ([`Muxer::fd`])
//! and call [`Muxer::process_host_events`] when it is readable; this keeps the
//! device independent of the transport's event loop (vhost-user thread or the
//! builtin VMM's).
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use tracing::{debug, info, warn};
use vm_memory::bitmap::BitmapSlice;
use vm_memory::VolatileSlice;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::connection::{Connection, State};
use super::packet::{self, Header};
use super::HOST_CID;

/// Longest `CONNECT <port>\n` line accepted from a host client.
const MAX_CONNECT_LINE: usize = 32;
/// Connections (host- and guest-initiated) the muxer keeps at once.
const MAX_CONNECTIONS: usize = 1024;
/// First host-side port handed to host-initiated connections.
const FIRST_LOCAL_PORT: u32 = 1 << 30;

const TOKEN_LISTENER: u64 = u64::MAX;
const TOKEN_HANDSHAKE: u64 = 1 << 62;

/// (host-side port, guest-side port)
type ConnKey = (u32, u32);

#[derive(Debug)]
enum RxItem {
    /// A control packet for an existing connection.
    Ctrl { key: ConnKey, op: u16, flags: u32 },
    /// A reset for a port pair that has no connection (any more).
    Rst { key: ConnKey },
    /// Data may be waiting on the connection's host socket.
    Data { key: ConnKey },
}

/// A host client that connected but has not finished its `CONNECT` line.
struct Handshake {
    stream: UnixStream,
    line: Vec<u8>,
}

/// Counters a user would ask about.
#[derive(Debug, Default, Clone, Copy)]
pub struct MuxerMetrics {
    pub host_connects: u64,
    pub guest_connects: u64,
    pub resets_to_guest: u64,
    pub bytes_to_guest: u64,
    pub bytes_to_host: u64,
    pub bad_handshakes: u64,
}

pub struct Muxer {
    guest_cid: u64,
    uds_path: PathBuf,
    listener: UnixListener,
    epoll: Epoll,
    conns: HashMap<ConnKey, Connection>,
    by_fd: HashMap<RawFd, ConnKey>,
    handshakes: HashMap<RawFd, Handshake>,
    rxq: VecDeque<RxItem>,
    next_local_port: u32,
    pub metrics: MuxerMetrics,
    /// Every payload byte in both directions, when `CLOISTER_VSOCK_CAPTURE`
    /// names a file: an audit aid (what did the host see?), used by the
    /// trust-boundary test.
    capture: Option<std::fs::File>,
}

/// Names the file that receives a copy of all vsock payloads.
pub const CAPTURE_ENV: &str = "CLOISTER_VSOCK_CAPTURE";

impl Muxer {
    /// Listens on `uds_path` for host connections to guest `guest_cid`.
    pub fn new(guest_cid: u64, uds_path: &Path) -> io::Result<Self> {
        let _ = std::fs::remove_file(uds_path);
        let listener = UnixListener::bind(uds_path)?;
        listener.set_nonblocking(true)?;
        let epoll = Epoll::new()?;
        epoll.ctl(
            ControlOperation::Add,
            listener.as_raw_fd(),
            EpollEvent::new(EventSet::IN, TOKEN_LISTENER),
        )?;
        Ok(Muxer {
            guest_cid,
            uds_path: uds_path.to_path_buf(),
            listener,
            epoll,
            conns: HashMap::new(),
            by_fd: HashMap::new(),
            handshakes: HashMap::new(),
            rxq: VecDeque::new(),
            next_local_port: FIRST_LOCAL_PORT,
            metrics: MuxerMetrics::default(),
            capture: std::env::var_os(CAPTURE_ENV).and_then(|p| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&p)
                    .inspect_err(|e| tracing::warn!(path = ?p, error = %e, "vsock capture file"))
                    .ok()
            }),
        })
    }

    /// The muxer's epoll fd: readable when a host socket needs attention.
    pub fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    pub fn guest_cid(&self) -> u64 {
        self.guest_cid
    }

    /// Whether something is waiting to go to the guest.
    pub fn has_rx(&self) -> bool {
        !self.rxq.is_empty()
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Handles every ready host socket, without blocking.
    pub fn process_host_events(&mut self) {
        let mut events = [EpollEvent::default(); 32];
        loop {
            let n = match self.epoll.wait(0, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!(error = %e, "vsock: epoll_wait failed");
                    return;
                }
            };
            if n == 0 {
                return;
            }
            for ev in &events[..n] {
                let set = ev.event_set();
                match ev.data() {
                    TOKEN_LISTENER => self.accept_host_clients(),
                    t if t & TOKEN_HANDSHAKE != 0 => {
                        self.continue_handshake((t & !TOKEN_HANDSHAKE) as RawFd)
                    }
                    t => self.host_socket_ready(t as RawFd, set),
                }
            }
        }
    }

    fn accept_host_clients(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.conns.len() + self.handshakes.len() >= MAX_CONNECTIONS {
                        warn!("vsock: too many connections, refusing a host client");
                        continue;
                    }
                    if let Err(e) = stream.set_nonblocking(true) {
                        warn!(error = %e, "vsock: set_nonblocking");
                        continue;
                    }
                    let fd = stream.as_raw_fd();
                    let ev = EpollEvent::new(EventSet::IN, TOKEN_HANDSHAKE | fd as u64);
                    if let Err(e) = self.epoll.ctl(ControlOperation::Add, fd, ev) {
                        warn!(error = %e, "vsock: epoll add");
                        continue;
                    }
                    self.handshakes.insert(
                        fd,
                        Handshake {
                            stream,
                            line: Vec::new(),
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!(error = %e, "vsock: accept failed");
                    return;
                }
            }
        }
    }

    /// Reads the `CONNECT <port>\n` line one byte at a time, so that no byte
    /// of the stream after the line is consumed here.
    fn continue_handshake(&mut self, fd: RawFd) {
        let Some(hs) = self.handshakes.get_mut(&fd) else {
            return;
        };
        let mut byte = [0u8; 1];
        let outcome: Result<Option<u32>, String> = loop {
            match hs.stream.read(&mut byte) {
                Ok(0) => break Err("client closed before finishing CONNECT".into()),
                Ok(_) if byte[0] == b'\n' => break parse_connect(&hs.line).map(Some),
                Ok(_) => {
                    hs.line.push(byte[0]);
                    if hs.line.len() > MAX_CONNECT_LINE {
                        break Err(format!("CONNECT line longer than {MAX_CONNECT_LINE} bytes"));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e.to_string()),
            }
        };
        match outcome {
            Ok(None) => {}
            Err(why) => {
                self.metrics.bad_handshakes += 1;
                warn!(%why, "vsock: refusing host client");
                let _ = self
                    .epoll
                    .ctl(ControlOperation::Delete, fd, EpollEvent::default());
                self.handshakes.remove(&fd);
            }
            Ok(Some(peer_port)) => {
                let hs = self.handshakes.remove(&fd).expect("handshake present");
                let local_port = self.allocate_local_port(peer_port);
                let key = (local_port, peer_port);
                let conn = Connection::new(hs.stream, State::Connecting, local_port, peer_port);
                // No interest until the guest answers; hang-ups still arrive.
                let ev = EpollEvent::new(EventSet::empty(), fd as u64);
                if let Err(e) = self.epoll.ctl(ControlOperation::Modify, fd, ev) {
                    warn!(error = %e, "vsock: epoll modify");
                    return;
                }
                debug!(local_port, peer_port, "vsock: host connects to guest port");
                self.metrics.host_connects += 1;
                self.by_fd.insert(fd, key);
                self.conns.insert(key, conn);
                self.rxq.push_back(RxItem::Ctrl {
                    key,
                    op: packet::OP_REQUEST,
                    flags: 0,
                });
            }
        }
    }

    fn allocate_local_port(&mut self, peer_port: u32) -> u32 {
        loop {
            let p = self.next_local_port;
            self.next_local_port = self.next_local_port.wrapping_add(1).max(FIRST_LOCAL_PORT);
            if !self.conns.contains_key(&(p, peer_port)) {
                return p;
            }
        }
    }

    fn host_socket_ready(&mut self, fd: RawFd, set: EventSet) {
        let Some(&key) = self.by_fd.get(&fd) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if set.intersects(EventSet::HANG_UP | EventSet::ERROR) {
            // Level-triggered hang-ups cannot be masked: stop watching the
            // socket, and let the RX path read what is left and the EOF.
            let _ = self
                .epoll
                .ctl(ControlOperation::Delete, fd, EpollEvent::default());
            self.by_fd.remove(&fd);
            if conn.state == State::Connecting {
                self.reset(key);
                return;
            }
            if !conn.rx_queued {
                conn.rx_queued = true;
                self.rxq.push_back(RxItem::Data { key });
            }
            return;
        }
        if set.contains(EventSet::OUT) {
            match conn.flush_pending() {
                Ok(true) => {
                    if conn.needs_credit_update() {
                        self.rxq.push_back(RxItem::Ctrl {
                            key,
                            op: packet::OP_CREDIT_UPDATE,
                            flags: 0,
                        });
                    }
                    if conn.guest_done_sending {
                        let _ = conn.stream.shutdown(std::net::Shutdown::Write);
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    debug!(error = %e, "vsock: host socket write failed");
                    self.reset(key);
                    return;
                }
            }
        }
        if set.contains(EventSet::IN) && !conn.rx_queued {
            conn.rx_queued = true;
            self.rxq.push_back(RxItem::Data { key });
        }
        self.update_interest(key);
    }

    /// Re-arms the epoll interest of a connection from its state: read when
    /// the guest can take data and none is queued, write while data waits.
    fn update_interest(&mut self, key: ConnKey) {
        let Some(conn) = self.conns.get(&key) else {
            return;
        };
        let fd = conn.stream.as_raw_fd();
        if !self.by_fd.contains_key(&fd) {
            return;
        }
        let mut set = EventSet::empty();
        if conn.state == State::Established && !conn.rx_queued && !conn.rx_paused {
            set |= EventSet::IN;
        }
        if conn.has_pending() {
            set |= EventSet::OUT;
        }
        if let Err(e) = self.epoll.ctl(
            ControlOperation::Modify,
            fd,
            EpollEvent::new(set, fd as u64),
        ) {
            warn!(error = %e, "vsock: epoll modify");
        }
    }

    /// Closes a connection and tells the guest.
    fn reset(&mut self, key: ConnKey) {
        self.remove(key);
        self.rxq.push_back(RxItem::Rst { key });
    }

    fn remove(&mut self, key: ConnKey) {
        if let Some(conn) = self.conns.remove(&key) {
            let fd = conn.stream.as_raw_fd();
            if self.by_fd.remove(&fd).is_some() {
                let _ = self
                    .epoll
                    .ctl(ControlOperation::Delete, fd, EpollEvent::default());
            }
        }
        self.rxq.retain(
            |i| !matches!(i, RxItem::Ctrl { key: k, .. } | RxItem::Data { key: k } if *k == key),
        );
    }

    /// Handles one packet the guest sent (TX queue).
    pub fn recv_from_guest<B: BitmapSlice>(
        &mut self,
        hdr: &Header,
        data: Option<&VolatileSlice<'_, B>>,
    ) {
        if hdr.src_cid != self.guest_cid || hdr.dst_cid != HOST_CID {
            warn!(
                src = hdr.src_cid,
                dst = hdr.dst_cid,
                "vsock: dropping packet with wrong CIDs"
            );
            return;
        }
        let key = (hdr.dst_port, hdr.src_port);
        if hdr.type_ != packet::TYPE_STREAM {
            if hdr.op != packet::OP_RST {
                self.rxq.push_back(RxItem::Rst { key });
            }
            return;
        }
        let Some(conn) = self.conns.get_mut(&key) else {
            match hdr.op {
                packet::OP_REQUEST => self.connect_to_host(hdr),
                packet::OP_RST => {}
                _ => self.rxq.push_back(RxItem::Rst { key }),
            }
            return;
        };
        conn.update_peer_credit(hdr);
        if conn.rx_paused && conn.peer_credit() > 0 {
            conn.rx_paused = false;
            if !conn.rx_queued {
                conn.rx_queued = true;
                self.rxq.push_back(RxItem::Data { key });
            }
        }
        match hdr.op {
            packet::OP_RESPONSE if conn.state == State::Connecting => {
                let line = format!("OK {}\n", conn.local_port);
                if let Err(e) = conn.stream.write_all(line.as_bytes()) {
                    debug!(error = %e, "vsock: host client went away before OK");
                    self.reset(key);
                    return;
                }
                conn.state = State::Established;
            }
            packet::OP_RW if conn.state == State::Established => {
                let Some(data) = data else {
                    return;
                };
                let len = (hdr.len as usize).min(data.len());
                let data = match data.subslice(0, len) {
                    Ok(d) => d,
                    Err(_) => return,
                };
                if let Some(f) = self.capture.as_mut() {
                    record(f, "guest->host", key, &data);
                }
                if let Err(e) = conn.send_to_host(&data) {
                    debug!(error = %e, "vsock: forwarding to host failed");
                    self.reset(key);
                    return;
                }
                self.metrics.bytes_to_host += len as u64;
                if conn.needs_credit_update() {
                    self.rxq.push_back(RxItem::Ctrl {
                        key,
                        op: packet::OP_CREDIT_UPDATE,
                        flags: 0,
                    });
                }
            }
            packet::OP_CREDIT_UPDATE => {}
            packet::OP_CREDIT_REQUEST => {
                self.rxq.push_back(RxItem::Ctrl {
                    key,
                    op: packet::OP_CREDIT_UPDATE,
                    flags: 0,
                });
            }
            packet::OP_SHUTDOWN => {
                if hdr.flags & packet::SHUTDOWN_SEND != 0 {
                    conn.guest_done_sending = true;
                    if !conn.has_pending() {
                        let _ = conn.stream.shutdown(std::net::Shutdown::Write);
                    }
                }
                let both = packet::SHUTDOWN_SEND | packet::SHUTDOWN_RCV;
                if hdr.flags & both == both {
                    // Best effort: what the host socket has not taken by now
                    // is lost with the connection, as with a TCP RST.
                    let _ = conn.flush_pending();
                    self.reset(key);
                    return;
                }
            }
            packet::OP_RST => {
                self.remove(key);
                return;
            }
            op => {
                debug!(op = packet::op_name(op), state = ?conn.state, "vsock: unexpected packet");
                self.reset(key);
                return;
            }
        }
        self.update_interest(key);
    }

    /// A guest connection to host port P goes to the Unix socket `<path>_P`.
    fn connect_to_host(&mut self, hdr: &Header) {
        let key = (hdr.dst_port, hdr.src_port);
        let path = format!("{}_{}", self.uds_path.display(), hdr.dst_port);
        if self.conns.len() >= MAX_CONNECTIONS {
            warn!("vsock: too many connections, refusing a guest connection");
            self.rxq.push_back(RxItem::Rst { key });
            return;
        }
        let stream =
            match UnixStream::connect(&path).and_then(|s| s.set_nonblocking(true).map(|_| s)) {
                Ok(s) => s,
                Err(e) => {
                    debug!(%path, error = %e, "vsock: guest connection refused");
                    self.rxq.push_back(RxItem::Rst { key });
                    return;
                }
            };
        let fd = stream.as_raw_fd();
        if let Err(e) = self.epoll.ctl(
            ControlOperation::Add,
            fd,
            EpollEvent::new(EventSet::IN, fd as u64),
        ) {
            warn!(error = %e, "vsock: epoll add");
            self.rxq.push_back(RxItem::Rst { key });
            return;
        }
        info!(
            guest_port = hdr.src_port,
            host_port = hdr.dst_port,
            "vsock: guest connected to host"
        );
        self.metrics.guest_connects += 1;
        let mut conn = Connection::new(stream, State::Established, hdr.dst_port, hdr.src_port);
        conn.update_peer_credit(hdr);
        self.by_fd.insert(fd, key);
        self.conns.insert(key, conn);
        self.rxq.push_back(RxItem::Ctrl {
            key,
            op: packet::OP_RESPONSE,
            flags: 0,
        });
    }

    /// Fills one guest RX buffer: the header into `hdr`, data into `buf`.
    /// Returns the number of data bytes, or `None` when nothing is ready.
    pub fn fill_rx<B: BitmapSlice>(
        &mut self,
        hdr: &mut Header,
        buf: Option<&VolatileSlice<'_, B>>,
    ) -> Option<u32> {
        while let Some(item) = self.rxq.pop_front() {
            let (key, op, flags) = match item {
                RxItem::Rst { key } => {
                    self.metrics.resets_to_guest += 1;
                    *hdr = header(self.guest_cid, key, packet::OP_RST, 0);
                    return Some(0);
                }
                RxItem::Ctrl { key, op, flags } => (key, op, flags),
                RxItem::Data { key } => match self.read_host_data(key, hdr, buf) {
                    Some(n) => return Some(n),
                    None => continue,
                },
            };
            let mut h = header(self.guest_cid, key, op, flags);
            let Some(conn) = self.conns.get_mut(&key) else {
                continue;
            };
            conn.stamp(&mut h);
            *hdr = h;
            return Some(0);
        }
        None
    }

    fn read_host_data<B: BitmapSlice>(
        &mut self,
        key: ConnKey,
        hdr: &mut Header,
        buf: Option<&VolatileSlice<'_, B>>,
    ) -> Option<u32> {
        let conn = self.conns.get_mut(&key)?;
        conn.rx_queued = false;
        let Some(buf) = buf else {
            // A buffer without room for data: try the item again later.
            conn.rx_queued = true;
            self.rxq.push_front(RxItem::Data { key });
            return None;
        };
        match conn.read_from_host(buf) {
            Ok(0) => {
                // The host hung up: tell the guest, wait for its RST.
                conn.state = State::Closing;
                let fd = conn.stream.as_raw_fd();
                let mut h = header(
                    self.guest_cid,
                    key,
                    packet::OP_SHUTDOWN,
                    packet::SHUTDOWN_RCV | packet::SHUTDOWN_SEND,
                );
                let conn = self.conns.get_mut(&key)?;
                conn.stamp(&mut h);
                *hdr = h;
                if self.by_fd.remove(&fd).is_some() {
                    let _ = self
                        .epoll
                        .ctl(ControlOperation::Delete, fd, EpollEvent::default());
                }
                Some(0)
            }
            Ok(n) => {
                if let Some(f) = self.capture.as_mut() {
                    if let Ok(sub) = buf.subslice(0, n) {
                        record(f, "host->guest", key, &sub);
                    }
                }
                let mut h = header(self.guest_cid, key, packet::OP_RW, 0);
                h.len = n as u32;
                conn.stamp(&mut h);
                conn.rx_queued = true;
                *hdr = h;
                self.metrics.bytes_to_guest += n as u64;
                // Keep reading until the socket is drained, in turn with others.
                self.rxq.push_back(RxItem::Data { key });
                Some(n as u32)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if conn.peer_credit() == 0 {
                    conn.rx_paused = true;
                }
                if !self.by_fd.contains_key(&conn.stream.as_raw_fd()) && !conn.rx_paused {
                    // Hung-up socket that is not watched any more but has no
                    // data either: nothing will wake us, so close now.
                    self.reset(key);
                    return None;
                }
                self.update_interest(key);
                None
            }
            Err(e) => {
                debug!(error = %e, "vsock: host socket read failed");
                self.reset(key);
                None
            }
        }
    }
}

/// Appends one payload to the capture file: a header line, then the bytes.
fn record<B: BitmapSlice>(
    f: &mut std::fs::File,
    dir: &str,
    key: ConnKey,
    data: &VolatileSlice<'_, B>,
) {
    use std::io::Write as _;
    let mut bytes = vec![0u8; data.len()];
    data.copy_to(&mut bytes[..]);
    let _ = writeln!(f, "\n=== {dir} {key:?} {} bytes", bytes.len());
    let _ = f.write_all(&bytes);
}

fn header(guest_cid: u64, key: ConnKey, op: u16, flags: u32) -> Header {
    Header {
        src_cid: HOST_CID,
        dst_cid: guest_cid,
        src_port: key.0,
        dst_port: key.1,
        len: 0,
        type_: packet::TYPE_STREAM,
        op,
        flags,
        buf_alloc: 0,
        fwd_cnt: 0,
    }
}

impl Drop for Muxer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.uds_path);
    }
}

/// Parses `CONNECT <port>` (the newline already stripped).
fn parse_connect(line: &[u8]) -> Result<u32, String> {
    let text = std::str::from_utf8(line).map_err(|_| "CONNECT line is not UTF-8".to_string())?;
    let text = text.strip_suffix('\r').unwrap_or(text);
    let port = text
        .strip_prefix("CONNECT ")
        .ok_or_else(|| format!("expected 'CONNECT <port>', got {text:?}"))?;
    port.trim()
        .parse::<u32>()
        .map_err(|_| format!("bad port in CONNECT line: {port:?}"))
}

#[cfg(test)]
mod tests;
