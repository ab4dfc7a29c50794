//! A TCP proxy in front of the registry that closes each connection after
//! a set number of response bytes, to make downloads break off midway.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct CuttingProxy {
    pub port: u16,
    ranges: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CuttingProxy {
    pub async fn start(upstream: u16, cut_after: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let ranges = Arc::new(AtomicUsize::new(0));
        let counter = ranges.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = tokio::spawn(async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                            counter.fetch_add(
                                text.matches("\r\nrange: bytes=").count(),
                                Ordering::Relaxed,
                            );
                            if sw.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                    let mut sent = 0usize;
                    let mut buf = vec![0u8; 16 * 1024];
                    while sent < cut_after {
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n.min(cut_after - sent),
                        };
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        sent += n;
                    }
                    up.abort();
                    let _ = cw.shutdown().await;
                });
            }
        });
        Self { port, ranges, task }
    }

    /// Requests seen with a `Range: bytes=` header.
    pub fn range_requests(&self) -> usize {
        self.ranges.load(Ordering::Relaxed)
    }
}
