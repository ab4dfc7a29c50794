//! The monitor's HTTP endpoint (hyper): `GET /metrics` scrapes every pod,
//! anything else is 404. One scrape at a time: a burst of requests cannot
//! make the node's agents answer more than one GetMetrics each at once.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{info, warn};

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `/metrics` for the pods below `run_dir` on `listener` until the
/// task is dropped.
pub async fn serve(listener: TcpListener, run_dir: PathBuf) -> std::io::Result<()> {
    let lock = Arc::new(tokio::sync::Mutex::new(()));
    let run_dir = Arc::new(run_dir);
    loop {
        let (stream, peer) = listener.accept().await?;
        let (lock, run_dir) = (lock.clone(), run_dir.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (lock, run_dir) = (lock.clone(), run_dir.clone());
                async move { Ok::<_, std::convert::Infallible>(answer(req, &lock, &run_dir).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                warn!(%peer, error = %e, "monitor connection");
            }
        });
    }
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    lock: &tokio::sync::Mutex<()>,
    run_dir: &std::path::Path,
) -> Response<Full<Bytes>> {
    let reply = |code: StatusCode, ctype: &str, body: String| {
        Response::builder()
            .status(code)
            .header("content-type", ctype)
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response")
    };
    if req.method() != hyper::Method::GET || req.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "cloister monitor: only GET /metrics\n".into(),
        );
    }
    let _one = lock.lock().await;
    reply(StatusCode::OK, CONTENT_TYPE, super::scrape(run_dir).await)
}

/// Binds `addr` and logs where the endpoint is.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let l = TcpListener::bind(addr).await?;
    info!(addr = %l.local_addr()?, "cloister monitor serving /metrics");
    Ok(l)
}
