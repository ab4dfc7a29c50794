//! Serving the snapshots gRPC API on a Unix socket, as containerd's
//! `[proxy_plugins.<name>] type = "snapshot"` expects.
//!
//! The socket path is claimed carefully: a socket nobody answers on is a
//! leftover and is removed; one that answers belongs to a running instance,
//! and anything that is not a socket is never deleted. The socket is made
//! `0600` (containerd runs as root) and removed again on shutdown, unless
//! something else has replaced it meanwhile. On shutdown, requests in flight
//! get [`SHUTDOWN_GRACE`] to finish; connections still open after that
//! (containerd never hangs up on its own) are closed.

use std::future::Future;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use containerd_snapshots::tonic::transport::Server;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::service::GuestPullSnapshotter;

/// How long requests in flight may take to finish after a stop signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("another snapshotter answers on {}; refusing to start a second one", .0.display())]
    InUse(PathBuf),
    #[error("{} exists and is not a socket; refusing to replace it", .0.display())]
    NotASocket(PathBuf),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("gRPC server on {}: {source}", path.display())]
    Transport {
        path: PathBuf,
        #[source]
        source: containerd_snapshots::tonic::transport::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ServeError {
    let path = path.to_path_buf();
    move |source| ServeError::Io { what, path, source }
}

/// A bound socket, ready to serve.
#[derive(Debug)]
pub struct Listener {
    path: PathBuf,
    listener: UnixListener,
    ino: (u64, u64),
}

impl Listener {
    /// Claims `path` (see the module documentation) and binds it.
    pub fn bind(path: &Path) -> Result<Listener, ServeError> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if !meta.file_type().is_socket() => {
                return Err(ServeError::NotASocket(path.to_path_buf()))
            }
            Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(ServeError::InUse(path.to_path_buf())),
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    tracing::info!(path = %path.display(), "removing stale socket");
                    std::fs::remove_file(path).map_err(io("cannot remove stale socket", path))?;
                }
                Err(e) => return Err(io("cannot probe existing socket", path)(e)),
            },
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io("cannot inspect", path)(e)),
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io("cannot create socket directory", dir))?;
        }
        let listener = UnixListener::bind(path).map_err(io("cannot listen on", path))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io("cannot restrict permissions of", path))?;
        let meta = std::fs::metadata(path).map_err(io("cannot inspect", path))?;
        Ok(Listener {
            path: path.to_path_buf(),
            listener,
            ino: (meta.dev(), meta.ino()),
        })
    }

    /// Serves `snapshotter` until `shutdown` completes, then removes the
    /// socket.
    pub async fn serve(
        self,
        snapshotter: GuestPullSnapshotter,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let Listener {
            path,
            listener,
            ino,
        } = self;
        tracing::info!(socket = %path.display(), root = %snapshotter.root().display(), "serving containerd snapshots API (guest pull)");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = Server::builder()
            .add_service(containerd_snapshots::server(Arc::new(snapshotter)))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                let _ = stop_rx.await;
            });
        tokio::pin!(server);
        let result = tokio::select! {
            result = &mut server => result,
            () = shutdown => {
                // Graceful shutdown waits for clients to hang up, and
                // containerd keeps its connection to a proxy open: give
                // requests in flight a moment, then stop regardless.
                let _ = stop_tx.send(());
                match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::info!(grace = ?SHUTDOWN_GRACE, "clients still connected; closing their connections");
                        Ok(())
                    }
                }
            }
        };
        match std::fs::metadata(&path) {
            Ok(meta) if (meta.dev(), meta.ino()) == ino => {
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(socket = %path.display(), error = %e, "cannot remove socket");
                }
            }
            _ => {
                tracing::warn!(socket = %path.display(), "socket was replaced meanwhile; leaving it")
            }
        }
        result.map_err(|source| ServeError::Transport { path, source })
    }
}
