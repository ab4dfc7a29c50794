//! Starting the two HTTPS listeners (attestation and admin) on the current tokio
//! runtime, and stopping them.
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;

use axum_server::tls_rustls::RustlsConfig;
use axum_server::Handle;

use crate::tls::{self, CertAndKey};
use crate::{api, Kbs, KbsConfig, KbsError};

/// Where the certificate comes from.
#[derive(Clone, Debug)]
pub enum TlsSource {
    /// PEM files: the chain (server certificate first) and its key.
    Files { cert: PathBuf, key: PathBuf },
    /// Generate a CA and certificate in `<state>/tls/` for these names/addresses.
    SelfSigned { sans: Vec<String> },
}

/// Listening addresses and TLS.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub tls: TlsSource,
}

/// A running KBS.
pub struct KbsServer {
    pub kbs: Arc<Kbs>,
    /// The attestation listener's address (with the real port if 0 was asked for).
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    handle: Handle<SocketAddr>,
    admin_handle: Handle<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

fn bind(addr: SocketAddr) -> Result<TcpListener, KbsError> {
    let l = TcpListener::bind(addr).map_err(|source| KbsError::Listen {
        addr: addr.to_string(),
        source,
    })?;
    l.set_nonblocking(true).map_err(|source| KbsError::Listen {
        addr: addr.to_string(),
        source,
    })?;
    Ok(l)
}

impl KbsServer {
    /// Opens the state, binds both listeners and serves them on the current runtime.
    pub fn start(config: &KbsConfig, server: &ServerConfig) -> Result<KbsServer, KbsError> {
        let kbs = Kbs::open(config)?;
        let ck = match &server.tls {
            TlsSource::Files { cert, key } => CertAndKey {
                chain_pem: std::fs::read(cert)
                    .map_err(|e| KbsError::Tls(format!("{}: {e}", cert.display())))?,
                key_pem: std::fs::read(key)
                    .map_err(|e| KbsError::Tls(format!("{}: {e}", key.display())))?,
            },
            TlsSource::SelfSigned { sans } => tls::self_signed(&config.state_dir, sans)?,
        };
        let rustls = RustlsConfig::from_config(tls::server_config(&ck)?);
        let (listener, admin_listener) = (bind(server.listen)?, bind(server.admin_listen)?);
        let addr = listener.local_addr().map_err(|source| KbsError::Listen {
            addr: server.listen.to_string(),
            source,
        })?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|source| KbsError::Listen {
                addr: server.admin_listen.to_string(),
                source,
            })?;
        let (handle, admin_handle) = (Handle::new(), Handle::new());
        let serve = |l: TcpListener, h: Handle<SocketAddr>, router: axum::Router| {
            let server = axum_server::from_tcp_rustls(l, rustls.clone()).map(|s| s.handle(h));
            tokio::spawn(async move { server?.serve(router.into_make_service()).await })
        };
        let tasks = vec![
            serve(listener, handle.clone(), api::router(kbs.clone())),
            serve(
                admin_listener,
                admin_handle.clone(),
                api::admin::router(kbs.clone()),
            ),
        ];
        tracing::info!(%addr, %admin_addr, state = %config.state_dir.display(), allow_sim = config.allow_sim, "cloister-kbs listening");
        Ok(KbsServer {
            kbs,
            addr,
            admin_addr,
            handle,
            admin_handle,
            tasks,
        })
    }

    /// Stops both listeners and waits for them.
    pub async fn shutdown(self) {
        self.handle.shutdown();
        self.admin_handle.shutdown();
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Runs until a listener fails.
    pub async fn wait(self) -> std::io::Result<()> {
        for t in self.tasks {
            t.await.map_err(std::io::Error::other)??;
        }
        Ok(())
    }
}
