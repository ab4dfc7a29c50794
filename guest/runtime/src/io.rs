//! A process's stdio as the agent holds it: a stdin writer that never blocks,
//! and stdout/stderr that are drained all the time into bounded buffers.
//!
//! Draining does not depend on anyone reading. When the host may not read
//! (the policy denies ReadStdout) or reads too slowly, the container still
//! never blocks on a full pipe: once a buffer holds [`OUTPUT_LIMIT`] bytes the
//! oldest bytes are dropped and counted. (Kata's agent stops reading when
//! nobody asks, and the container hangs on its next write.)
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::invoke::ChildStdio;

/// Bytes kept per stream before the oldest are dropped.
pub const OUTPUT_LIMIT: usize = 1 << 20;
/// Most bytes one read returns.
pub const MAX_READ: usize = 1 << 20;

#[derive(Default)]
struct Buffer {
    data: VecDeque<u8>,
    eof: bool,
    dropped: u64,
    total: u64,
}

/// One drained output stream.
#[derive(Default)]
pub struct Output {
    buf: Mutex<Buffer>,
    changed: Notify,
}

impl Output {
    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buf.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, bytes: &[u8], limit: usize) {
        let mut b = self.lock();
        b.total += bytes.len() as u64;
        b.data.extend(bytes);
        if b.data.len() > limit {
            let extra = b.data.len() - limit;
            b.data.drain(..extra);
            b.dropped += extra as u64;
        }
        drop(b);
        self.changed.notify_waiters();
    }

    fn finish(&self) {
        self.lock().eof = true;
        self.changed.notify_waiters();
    }

    /// Up to `max` bytes; waits until there is at least one, or the end.
    /// Returns the bytes and whether the stream ended with them.
    pub async fn read(&self, max: usize) -> (Vec<u8>, bool) {
        // 0 asks for no particular limit: up to 64 KiB.
        let max = if max == 0 {
            64 << 10
        } else {
            max.min(MAX_READ)
        };
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut b = self.lock();
                if !b.data.is_empty() {
                    let n = b.data.len().min(max);
                    let out: Vec<u8> = b.data.drain(..n).collect();
                    let eof = b.eof && b.data.is_empty();
                    return (out, eof);
                }
                if b.eof {
                    return (Vec::new(), true);
                }
            }
            notified.await;
        }
    }

    /// The first `max` bytes buffered, without consuming them.
    pub fn peek(&self, max: usize) -> Vec<u8> {
        self.lock().data.iter().take(max).copied().collect()
    }

    /// Bytes dropped because nobody read them in time.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Bytes the process wrote in all.
    pub fn total(&self) -> u64 {
        self.lock().total
    }

    /// True once the writer side closed and the drain saw it.
    pub fn ended(&self) -> bool {
        self.lock().eof
    }
}

/// Drains `fd` into `out` on a thread of its own until EOF (or EIO, which a
/// pty master returns once the last slave is closed).
pub fn drain(fd: OwnedFd, out: Arc<Output>, name: String) -> io::Result<()> {
    std::thread::Builder::new().name(name).spawn(move || {
        let mut f = File::from(fd);
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            match f.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => out.push(&chunk[..n], OUTPUT_LIMIT),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A terminal's master is shared with the non-blocking stdin
                // writer (one open file description): wait for input.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_readable(&f),
                Err(_) => break,
            }
        }
        out.finish();
    })?;
    Ok(())
}

fn wait_readable(f: &File) {
    let mut p = libc::pollfd {
        fd: f.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one pollfd that lives for the call.
    unsafe { libc::poll(&mut p, 1, -1) };
}

/// The agent's end of a process's stdin. Writes never block: what does not
/// fit in the pipe now is not taken, and the caller learns how much was.
pub struct Stdin {
    file: Mutex<Option<File>>,
}

impl Stdin {
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        set_nonblocking(&fd)?;
        Ok(Stdin {
            file: Mutex::new(Some(File::from(fd))),
        })
    }

    /// Writes what fits now; `Ok(0)` when the pipe is full.
    pub fn write(&self, data: &[u8]) -> io::Result<usize> {
        let mut g = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let f = g
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "stdin is closed"))?;
        match f.write(data) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Closes stdin: the process reads EOF.
    pub fn close(&self) {
        self.file.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

pub(crate) fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl flag changes on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if fl < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A process's stdio from the agent's side.
pub struct ProcessIo {
    pub stdin: Stdin,
    pub stdout: Arc<Output>,
    /// Empty and ended at once for a terminal (everything is on stdout).
    pub stderr: Arc<Output>,
    /// The pty master, for window resizes.
    pub tty: Option<OwnedFd>,
}

impl ProcessIo {
    /// Three pipes: the container ends to hand to the runtime, and ours,
    /// already draining.
    pub fn pipes(label: &str) -> io::Result<(ProcessIo, ChildStdio)> {
        let (in_r, in_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let stdout = Arc::new(Output::default());
        let stderr = Arc::new(Output::default());
        drain(out_r, stdout.clone(), format!("out-{label}"))?;
        drain(err_r, stderr.clone(), format!("err-{label}"))?;
        Ok((
            ProcessIo {
                stdin: Stdin::new(in_w)?,
                stdout,
                stderr,
                tty: None,
            },
            ChildStdio {
                stdin: in_r,
                stdout: out_w,
                stderr: err_w,
            },
        ))
    }

    /// A terminal: the pty master the container sent over its console socket.
    pub fn terminal(master: OwnedFd, label: &str) -> io::Result<ProcessIo> {
        let reader = master.try_clone()?;
        let writer = master.try_clone()?;
        let stdout = Arc::new(Output::default());
        let stderr = Arc::new(Output::default());
        stderr.finish();
        drain(reader, stdout.clone(), format!("tty-{label}"))?;
        Ok(ProcessIo {
            stdin: Stdin::new(writer)?,
            stdout,
            stderr,
            tty: Some(master),
        })
    }

    /// TIOCSWINSZ on the terminal.
    pub fn resize(&self, rows: u16, columns: u16) -> io::Result<()> {
        let Some(master) = &self.tty else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the process has no terminal",
            ));
        };
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: columns,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is
        // valid for the call.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_keeps_order_and_reports_the_end() {
        let o = Output::default();
        o.push(b"hello ", OUTPUT_LIMIT);
        o.push(b"world", OUTPUT_LIMIT);
        assert_eq!(o.read(3).await, (b"hel".to_vec(), false));
        o.finish();
        assert_eq!(o.read(100).await, (b"lo world".to_vec(), true));
        assert_eq!(o.read(100).await, (Vec::new(), true));
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_bytes_and_counts_them() {
        let o = Output::default();
        o.push(b"0123456789", 4);
        assert_eq!(o.dropped(), 6);
        assert_eq!(o.total(), 10);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(o.read(100)).0, b"6789");
    }

    #[tokio::test]
    async fn a_reader_waits_for_data() {
        let o = Arc::new(Output::default());
        let o2 = o.clone();
        let t = tokio::spawn(async move { o2.read(10).await });
        tokio::task::yield_now().await;
        o.push(b"x", OUTPUT_LIMIT);
        assert_eq!(t.await.unwrap(), (b"x".to_vec(), false));
    }

    /// The point of draining: a writer that nobody reads never blocks, even
    /// far past the pipe's and the buffer's capacity.
    #[test]
    fn an_unread_writer_never_blocks() {
        let (io, child) = ProcessIo::pipes("t").unwrap();
        let mut w = File::from(child.stdout);
        let chunk = vec![b'a'; 1 << 16];
        for _ in 0..64 {
            w.write_all(&chunk).unwrap(); // 4 MiB: blocks forever without a drain
        }
        drop(w);
        while !io.stdout.ended() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(io.stdout.total(), 4 << 20);
        assert_eq!(io.stdout.dropped(), (4 << 20) - OUTPUT_LIMIT as u64);
    }

    #[test]
    fn stdin_writes_never_block_and_close_gives_eof() {
        let (io, child) = ProcessIo::pipes("s").unwrap();
        let mut total = 0;
        loop {
            let n = io.stdin.write(&[0u8; 4096]).unwrap();
            if n == 0 {
                break; // the pipe is full, and we were told so
            }
            total += n;
        }
        assert!(total >= 4096);
        io.stdin.close();
        assert!(io.stdin.write(b"x").is_err());
        let mut r = File::from(child.stdin);
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), total);
    }
}
