//! A hostile registry: an HTTP proxy in front of the real one that passes
//! every request through, except those its [`Fault`] names, which it answers
//! badly itself (an oversized or truncated manifest) or cuts off midway (a
//! layer blob). It counts the requests it spoiled and the bytes it sent for
//! them, so a test can prove what the client retried and where it stopped
//! reading.
//!
//! Only GET and HEAD are understood (what a pull sends). Every request that
//! passes goes upstream on a connection of its own with `Connection: close`,
//! so that each request on a kept-alive client connection is seen here.
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy spoils.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Manifest GETs get a body of `bytes` spaces; with `announce`, a
    /// `Content-Length` says so up front, otherwise the body simply runs
    /// until the connection closes.
    OversizedManifest { bytes: u64, announce: bool },
    /// Manifest GETs get `Content-Length: 1000` and ten bytes, then the
    /// connection closes.
    TruncatedManifest,
    /// GETs of the blob `digest` are passed through but the response is cut
    /// after `after` bytes (headers included).
    CutBlob { digest: String, after: usize },
}

#[derive(Default)]
struct Counters {
    spoiled: AtomicUsize,
    spoiled_bytes: AtomicU64,
}

pub struct HostileRegistry {
    pub port: u16,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HostileRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HostileRegistry {
    pub async fn start(upstream: u16, fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, upstream, fault.clone(), c.clone()));
            }
        });
        HostileRegistry {
            port,
            counters,
            task,
        }
    }

    /// Requests the fault applied to.
    pub fn spoiled_requests(&self) -> usize {
        self.counters.spoiled.load(Ordering::Relaxed)
    }

    /// Bytes sent in answer to those requests (what the client read, or at
    /// most the socket buffers more).
    pub fn spoiled_bytes(&self) -> u64 {
        self.counters.spoiled_bytes.load(Ordering::Relaxed)
    }
}

/// Reads one request head (up to the blank line); None at EOF.
async fn read_head(client: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
        if head.len() > 64 * 1024 {
            return None;
        }
    }
    Some(head)
}

async fn serve(mut client: TcpStream, upstream: u16, fault: Fault, c: Arc<Counters>) {
    while let Some(head) = read_head(&mut client).await {
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut words = text.split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let is_manifest = method == "GET" && path.contains("/manifests/");
        match &fault {
            Fault::OversizedManifest { bytes, announce } if is_manifest => {
                c.spoiled.fetch_add(1, Ordering::Relaxed);
                let length = if *announce {
                    format!("Content-Length: {bytes}\r\n")
                } else {
                    String::new()
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n{length}Connection: close\r\n\r\n"
                );
                if client.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b' '; 64 * 1024];
                let mut sent = 0u64;
                while sent < *bytes {
                    let n = chunk.len().min((*bytes - sent) as usize);
                    if client.write_all(&chunk[..n]).await.is_err() {
                        break;
                    }
                    sent += n as u64;
                    c.spoiled_bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
                return;
            }
            Fault::TruncatedManifest if is_manifest => {
                c.spoiled.fetch_add(1, Ordering::Relaxed);
                let _ = client
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 1000\r\n\r\n{\"schemaVe",
                    )
                    .await;
                c.spoiled_bytes.fetch_add(10, Ordering::Relaxed);
                return;
            }
            _ => {}
        }
        let cut = match &fault {
            Fault::CutBlob { digest, after } if method == "GET" && path.ends_with(digest) => {
                c.spoiled.fetch_add(1, Ordering::Relaxed);
                Some(*after)
            }
            _ => None,
        };
        if !pass(&mut client, upstream, &head, cut, &c).await {
            return;
        }
    }
}

/// Sends one request upstream and its response back; false when the client
/// connection is done for.
async fn pass(
    client: &mut TcpStream,
    upstream: u16,
    head: &[u8],
    cut: Option<usize>,
    c: &Counters,
) -> bool {
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return false;
    };
    let mut request = head[..head.len() - 2].to_vec();
    request.extend_from_slice(b"Connection: close\r\n\r\n");
    if server.write_all(&request).await.is_err() {
        return false;
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0usize;
    loop {
        let n = match server.read(&mut buf).await {
            Ok(0) | Err(_) => return cut.is_none(),
            Ok(n) => n,
        };
        let n = match cut {
            Some(limit) => n.min(limit - sent),
            None => n,
        };
        if client.write_all(&buf[..n]).await.is_err() {
            return false;
        }
        sent += n;
        if cut.is_some() {
            c.spoiled_bytes.fetch_add(n as u64, Ordering::Relaxed);
            if Some(sent) == cut {
                return false;
            }
        }
    }
}
