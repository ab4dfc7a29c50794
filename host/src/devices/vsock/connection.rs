//! One vsock stream between a guest port and a host Unix socket: its state
//! and the credit-based flow control of virtio-vsock in both directions.
//!
//! Credit (virtio spec 5.10.6.3): each side advertises `buf_alloc`, the buffer
//! it has for the peer's data, and `fwd_cnt`, how many bytes it has consumed.
//! A sender may have at most `peer_buf_alloc - (tx_cnt - peer_fwd_cnt)` bytes
//! in flight. All counters wrap at 2^32, as in the spec.
use std::collections::VecDeque;
use std::io::{self, Write};
use std::num::Wrapping;
use std::os::unix::net::UnixStream;

use vm_memory::bitmap::BitmapSlice;
use vm_memory::{ReadVolatile, VolatileMemoryError, VolatileSlice, WriteVolatile};

use super::packet::Header;

/// Buffer the host side offers the guest for each connection.
pub const CONN_BUF_ALLOC: u32 = 256 * 1024;
/// Send an explicit credit update once the guest's view of our free space is
/// this much out of date, so that a one-way guest-to-host stream never stalls.
const CREDIT_UPDATE_THRESHOLD: u32 = CONN_BUF_ALLOC / 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Host-initiated: REQUEST queued or sent to the guest, no answer yet.
    Connecting,
    /// Data flows both ways.
    Established,
    /// The host side hung up: SHUTDOWN sent to the guest, waiting for its RST.
    Closing,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("guest sent {len} bytes with only {free} bytes of credit left")]
    CreditOverrun { len: usize, free: usize },
    #[error("host socket: {0}")]
    Io(#[from] io::Error),
}

pub struct Connection {
    pub stream: UnixStream,
    pub state: State,
    /// Host-side vsock port (our end).
    pub local_port: u32,
    /// Guest-side vsock port.
    pub peer_port: u32,
    /// Bytes of guest data written to the host socket.
    fwd_cnt: Wrapping<u32>,
    /// `fwd_cnt` as last told to the guest.
    last_fwd_cnt_sent: Wrapping<u32>,
    peer_buf_alloc: u32,
    peer_fwd_cnt: Wrapping<u32>,
    /// Bytes sent to the guest.
    rx_cnt: Wrapping<u32>,
    /// Guest data the host socket has not taken yet.
    pending: VecDeque<u8>,
    /// The muxer has a data item for this connection in its RX queue.
    pub rx_queued: bool,
    /// The host side's reads are paused because the guest gave no credit.
    pub rx_paused: bool,
    /// The guest will send no more data (SHUTDOWN with SEND).
    pub guest_done_sending: bool,
}

impl Connection {
    pub fn new(stream: UnixStream, state: State, local_port: u32, peer_port: u32) -> Self {
        Connection {
            stream,
            state,
            local_port,
            peer_port,
            fwd_cnt: Wrapping(0),
            last_fwd_cnt_sent: Wrapping(0),
            peer_buf_alloc: 0,
            peer_fwd_cnt: Wrapping(0),
            rx_cnt: Wrapping(0),
            pending: VecDeque::new(),
            rx_queued: false,
            rx_paused: false,
            guest_done_sending: false,
        }
    }

    /// Records the credit the guest advertises in any packet it sends.
    pub fn update_peer_credit(&mut self, hdr: &Header) {
        self.peer_buf_alloc = hdr.buf_alloc;
        self.peer_fwd_cnt = Wrapping(hdr.fwd_cnt);
    }

    /// How many bytes the guest can take now.
    pub fn peer_credit(&self) -> u32 {
        let in_flight = (self.rx_cnt - self.peer_fwd_cnt).0;
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// Stamps our credit into a header going to the guest.
    pub fn stamp(&mut self, hdr: &mut Header) {
        hdr.buf_alloc = CONN_BUF_ALLOC;
        hdr.fwd_cnt = self.fwd_cnt.0;
        self.last_fwd_cnt_sent = self.fwd_cnt;
    }

    /// Whether the guest's idea of our free buffer is stale enough that an
    /// explicit CREDIT_UPDATE is due.
    pub fn needs_credit_update(&self) -> bool {
        (self.fwd_cnt - self.last_fwd_cnt_sent).0 >= CREDIT_UPDATE_THRESHOLD
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Forwards guest data to the host socket. What the socket does not take
    /// now is buffered; the guest's credit bounds that buffer.
    pub fn send_to_host<B: BitmapSlice>(
        &mut self,
        data: &VolatileSlice<'_, B>,
    ) -> Result<(), ConnError> {
        let len = data.len();
        let free = (CONN_BUF_ALLOC as usize).saturating_sub(self.pending.len());
        if len > free {
            return Err(ConnError::CreditOverrun { len, free });
        }
        let mut written = 0;
        if self.pending.is_empty() {
            written = match self.stream.write_volatile(data) {
                Ok(n) => n,
                Err(VolatileMemoryError::IOError(e)) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(VolatileMemoryError::IOError(e)) => return Err(e.into()),
                Err(e) => return Err(io::Error::other(e).into()),
            };
            self.fwd_cnt += written as u32;
        }
        if written < len {
            let mut rest = vec![0u8; len - written];
            data.subslice(written, len - written)
                .map_err(io::Error::other)?
                .copy_to(&mut rest[..]);
            self.pending.extend(rest);
        }
        Ok(())
    }

    /// Writes buffered guest data to the host socket. Returns true when the
    /// buffer is empty afterwards.
    pub fn flush_pending(&mut self) -> Result<bool, ConnError> {
        while !self.pending.is_empty() {
            let (front, _) = self.pending.as_slices();
            match self.stream.write(front) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                Ok(n) => {
                    self.pending.drain(..n);
                    self.fwd_cnt += n as u32;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }

    /// Reads host data into a guest buffer, as much as the guest's credit
    /// allows. `Ok(0)` means end of stream; `WouldBlock` means nothing to read.
    pub fn read_from_host<B: BitmapSlice>(
        &mut self,
        buf: &VolatileSlice<'_, B>,
    ) -> io::Result<usize> {
        let max = buf.len().min(self.peer_credit() as usize);
        if max == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut window = buf.subslice(0, max).map_err(io::Error::other)?;
        let n = match self.stream.read_volatile(&mut window) {
            Ok(n) => n,
            Err(VolatileMemoryError::IOError(e)) => return Err(e),
            Err(e) => return Err(io::Error::other(e)),
        };
        self.rx_cnt += n as u32;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Connection, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        (Connection::new(a, State::Established, 1, 2), b)
    }

    #[test]
    fn credit_limits_reads_and_recovers_on_update() {
        let (mut c, mut peer) = pair();
        let mut hdr = Header {
            buf_alloc: 4,
            ..Default::default()
        };
        c.update_peer_credit(&hdr);
        peer.write_all(b"abcdefgh").unwrap();
        let mut buf = [0u8; 16];
        let n = c
            .read_from_host(&VolatileSlice::from(&mut buf[..]))
            .unwrap();
        assert_eq!(n, 4, "read is capped by the guest's credit");
        assert_eq!(c.peer_credit(), 0);
        let e = c
            .read_from_host(&VolatileSlice::from(&mut buf[..]))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        hdr.fwd_cnt = 4;
        c.update_peer_credit(&hdr);
        assert_eq!(c.peer_credit(), 4);
        let n = c
            .read_from_host(&VolatileSlice::from(&mut buf[..]))
            .unwrap();
        assert_eq!(&buf[..n], b"efgh");
    }

    #[test]
    fn credit_counters_wrap() {
        let (mut c, _peer) = pair();
        c.rx_cnt = Wrapping(u32::MAX - 1);
        c.update_peer_credit(&Header {
            buf_alloc: 10,
            fwd_cnt: u32::MAX - 1,
            ..Default::default()
        });
        assert_eq!(c.peer_credit(), 10);
        c.rx_cnt += 6; // wraps past zero
        assert_eq!(c.peer_credit(), 4);
    }

    #[test]
    fn guest_overrunning_credit_is_refused() {
        let (mut c, _peer) = pair();
        c.pending
            .extend(std::iter::repeat_n(0u8, CONN_BUF_ALLOC as usize));
        let mut data = [1u8; 8];
        let err = c
            .send_to_host(&VolatileSlice::from(&mut data[..]))
            .unwrap_err();
        assert!(
            matches!(err, ConnError::CreditOverrun { len: 8, free: 0 }),
            "{err}"
        );
    }

    #[test]
    fn full_host_socket_buffers_then_flushes_and_asks_for_credit_update() {
        let (mut c, mut peer) = pair();
        let chunk = vec![7u8; 64 * 1024];
        let mut sent = 0usize;
        // Fill the socket until data has to be buffered.
        while !c.has_pending() {
            let mut d = chunk.clone();
            c.send_to_host(&VolatileSlice::from(&mut d[..])).unwrap();
            sent += d.len();
        }
        peer.set_nonblocking(false).unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = 0usize;
            let mut buf = vec![0u8; 64 * 1024];
            while got < sent {
                got += std::io::Read::read(&mut peer, &mut buf).unwrap();
            }
            got
        });
        while !c.flush_pending().unwrap() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(reader.join().unwrap(), sent);
        assert!(c.needs_credit_update());
        let mut h = Header::default();
        c.stamp(&mut h);
        assert_eq!(h.fwd_cnt as usize, sent);
        assert!(!c.needs_credit_update());
    }
}
