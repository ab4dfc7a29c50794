//! A minimal bearer-token service for docker-registry's `auth: token`
//! mode: it checks basic credentials and returns a JWT (RS256, with the
//! signing certificate in `x5c`) granting the requested repository scope,
//! as a real token server (e.g. Docker Hub's) does.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub const ISSUER: &str = "cloister-test-issuer";
pub const SERVICE: &str = "cloister-test-registry";

pub struct TokenServer {
    pub port: u16,
    signer: Arc<Signer>,
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Signer {
    key: RsaKeyPair,
    cert_der: Vec<u8>,
    user: String,
    password: String,
}

impl Signer {
    fn token(&self, scope: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut access = Vec::new();
        // scope = repository:<name>:<actions> (possibly several, space-separated)
        for s in scope.split(' ').filter(|s| !s.is_empty()) {
            let parts: Vec<&str> = s.splitn(3, ':').collect();
            if parts.len() == 3 {
                access.push(serde_json::json!({
                    "type": parts[0],
                    "name": parts[1],
                    "actions": parts[2].split(',').collect::<Vec<_>>(),
                }));
            }
        }
        let header = serde_json::json!({
            "typ": "JWT", "alg": "RS256", "x5c": [STANDARD.encode(&self.cert_der)],
        });
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": self.user, "aud": SERVICE,
            "exp": now + 300, "nbf": now - 10, "iat": now,
            "jti": format!("{now}-{}", scope.len()), "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
        );
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .unwrap();
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn authorized(&self, request: &str) -> bool {
        let want = format!(
            "basic {}",
            STANDARD.encode(format!("{}:{}", self.user, self.password))
        );
        request.lines().any(|l| {
            let l = l.trim().to_ascii_lowercase();
            l.strip_prefix("authorization:")
                .is_some_and(|v| v.trim() == want.to_ascii_lowercase())
        })
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let v = u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?');
                out.push(v);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl TokenServer {
    /// Starts the service with a signing key and self-signed certificate
    /// (PEM files) and the one user it accepts.
    pub fn start(key_pem: &Path, cert_pem: &Path, user: &str, password: &str) -> Self {
        let key_der = PrivateKeyDer::from_pem_file(key_pem).unwrap();
        let key = RsaKeyPair::from_pkcs8(key_der.secret_der()).unwrap();
        let cert_der = CertificateDer::from_pem_file(cert_pem).unwrap().to_vec();
        let signer = Arc::new(Signer {
            key,
            cert_der,
            user: user.into(),
            password: password.into(),
        });
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let port = std_listener.local_addr().unwrap().port();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let s = signer.clone();
        // Its own runtime on its own thread, so it also serves while the
        // test blocks on skopeo.
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                loop {
                    let conn = tokio::select! {
                        c = listener.accept() => c,
                        _ = &mut stopped => return,
                    };
                    let Ok((mut stream, _)) = conn else { return };
                    let s = s.clone();
                    tokio::spawn(async move {
                        let mut req = Vec::new();
                        let mut buf = [0u8; 4096];
                        while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 65536 {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => req.extend_from_slice(&buf[..n]),
                            }
                        }
                        let req = String::from_utf8_lossy(&req).into_owned();
                        let target = req.split_whitespace().nth(1).unwrap_or("");
                        let query = target.split_once('?').map(|x| x.1).unwrap_or("");
                        let mut scope = String::new();
                        for kv in query.split('&') {
                            if let Some(v) = kv.strip_prefix("scope=") {
                                if !scope.is_empty() {
                                    scope.push(' ');
                                }
                                scope.push_str(&percent_decode(v));
                            }
                        }
                        let (status, body) = if s.authorized(&req) {
                            let t = s.token(&scope);
                            ("200 OK", serde_json::json!({"token": t, "access_token": t}).to_string())
                        } else {
                            ("401 Unauthorized", r#"{"details":"bad credentials"}"#.to_string())
                        };
                        let resp = format!(
                            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = stream.write_all(resp.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    });
                }
            });
        });
        Self {
            port,
            signer,
            thread: Some(thread),
            stop: Some(stop),
        }
    }

    /// A token for `scope`, as the service would issue it.
    pub fn token_for(&self, scope: &str) -> String {
        self.signer.token(scope)
    }
}
