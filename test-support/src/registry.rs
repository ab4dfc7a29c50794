//! Debian's `docker-registry` on 127.0.0.1 with temporary storage and a
//! generated config, and pushes to it with skopeo.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::keys::{self, TestCa};
use crate::layout::Layout;
use crate::run;
use crate::token::{self, TokenServer};
use crate::tools::REGISTRY_BIN;

/// How a client authenticates to the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    Anonymous,
    /// htpasswd basic authentication of one user.
    Htpasswd {
        user: &'static str,
        password: &'static str,
    },
    /// Bearer tokens from a [`TokenServer`], which takes basic credentials
    /// of one user.
    Token {
        user: &'static str,
        password: &'static str,
    },
}

/// How the registry is set up: plain HTTP or TLS, and its authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setup {
    /// TLS with a certificate from a fresh test CA ([`Registry::ca_pem`]).
    pub tls: bool,
    pub auth: Auth,
}

impl Setup {
    pub const HTTP: Setup = Setup {
        tls: false,
        auth: Auth::Anonymous,
    };
    pub const TLS: Setup = Setup {
        tls: true,
        auth: Auth::Anonymous,
    };
    pub const HTPASSWD: Setup = Setup::htpasswd("tester", "s3cret-pass");
    pub const TOKEN: Setup = Setup {
        tls: false,
        auth: Auth::Token {
            user: "tester",
            password: "t0ken-pass",
        },
    };

    /// Plain HTTP with htpasswd basic authentication of `user`.
    pub const fn htpasswd(user: &'static str, password: &'static str) -> Setup {
        Setup {
            tls: false,
            auth: Auth::Htpasswd { user, password },
        }
    }

    /// The same setup over TLS.
    pub const fn with_tls(self) -> Setup {
        Setup { tls: true, ..self }
    }
}

/// A running `docker-registry`, killed on drop.
pub struct Registry {
    pub port: u16,
    /// The registry's files (config, storage, certificates); tests may keep
    /// their own files here too.
    pub dir: tempfile::TempDir,
    pub setup: Setup,
    /// The test CA's certificate (PEM) when the registry serves TLS.
    pub ca_pem: Option<Vec<u8>>,
    /// (user, password) when the registry requires authentication.
    pub creds: Option<(String, String)>,
    pub token_server: Option<TokenServer>,
    /// The image [`Registry::push_busybox`] pushes, built on first use.
    busybox: OnceLock<Layout>,
    child: Child,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago, on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    /// Starts the registry and waits until it listens.
    pub fn start(setup: Setup) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let port = free_port();
        let mut http = format!("http:\n  addr: 127.0.0.1:{port}\n");
        let mut ca_pem = None;
        if setup.tls {
            let ca = TestCa::new(d);
            ca_pem = Some(std::fs::read(&ca.ca_pem).unwrap());
            http.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                ca.server_cert.display(),
                ca.server_key.display()
            ));
        }
        let mut auth = String::new();
        let mut creds = None;
        let mut token_server = None;
        match setup.auth {
            Auth::Anonymous => {}
            Auth::Htpasswd { user, password } => {
                let hash = bcrypt::hash_with_result(password, 4)
                    .unwrap()
                    .format_for_version(bcrypt::Version::TwoY);
                std::fs::write(d.join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
                auth = format!(
                    "auth:\n  htpasswd:\n    realm: cloister-test\n    path: {}/htpasswd\n",
                    d.display()
                );
                creds = Some((user.to_string(), password.to_string()));
            }
            Auth::Token { user, password } => {
                let (key, cert) = keys::rsa_self_signed(d, "token", "/CN=token signer");
                let ts = TokenServer::start(&key, &cert, user, password);
                auth = format!(
                    "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {}\n    \
                     issuer: {}\n    rootcertbundle: {}\n",
                    ts.port,
                    token::SERVICE,
                    token::ISSUER,
                    cert.display()
                );
                token_server = Some(ts);
                creds = Some((user.to_string(), password.to_string()));
            }
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  \
             filesystem:\n    rootdirectory: {}/data\n  delete:\n    enabled: true\n{http}{auth}",
            d.display()
        );
        std::fs::write(d.join("config.yml"), config).unwrap();
        let log = std::fs::File::create(d.join("registry.log")).unwrap();
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let reg = Self {
            port,
            dir,
            setup,
            ca_pem,
            creds,
            token_server,
            busybox: OnceLock::new(),
            child,
        };
        reg.wait_ready();
        reg
    }

    /// Until it accepts connections and, over plain HTTP, answers `/v2/`
    /// (with any status: 401 when it wants credentials).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                if self.setup.tls {
                    // The TLS listener is up; a handshake is the client's job.
                    return;
                }
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.write_all(
                    format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.host()).as_bytes(),
                );
                let mut buf = [0u8; 8];
                if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "docker-registry did not come up on {}:\n{}",
            self.host(),
            std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    /// `127.0.0.1:<port>`, the registry part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// skopeo's TLS and credential arguments for this registry, with
    /// `prefix` `"dest-"` or `""` (`--dest-cert-dir`, `--cert-dir`, ...).
    fn skopeo_args(&self, cmd: &mut Command, prefix: &str) {
        if self.setup.tls {
            cmd.arg(format!("--{prefix}cert-dir"))
                .arg(self.dir.path().join("certs"));
        } else {
            cmd.arg(format!("--{prefix}tls-verify=false"));
        }
        if let Some((u, p)) = &self.creds {
            cmd.arg(format!("--{prefix}creds")).arg(format!("{u}:{p}"));
        }
    }

    /// `skopeo copy oci:<layout>:<tag> docker://<registry>/<dest>` with
    /// extra skopeo arguments (encryption, compression, multi-arch).
    pub fn push(&self, layout: &Path, tag: &str, dest: &str, extra: &[&str]) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet"]);
        self.skopeo_args(&mut cmd, "dest-");
        cmd.args(extra);
        cmd.arg(format!("oci:{}:{tag}", layout.display()));
        cmd.arg(format!("docker://{}/{dest}", self.host()));
        run(&mut cmd);
    }

    /// Pushes a busybox image (built once per registry) as `repo_tag`;
    /// returns its manifest digest as the registry reports it.
    pub fn push_busybox(&self, repo_tag: &str) -> String {
        let layout = self.busybox.get_or_init(|| {
            let l = Layout::new(&self.dir.path().join("busybox"));
            l.busybox("v1", "amd64");
            l
        });
        self.push(&layout.path, "v1", repo_tag, &[]);
        self.digest(repo_tag)
    }

    /// The manifest digest of `repo_tag` in the registry (skopeo inspect).
    pub fn digest(&self, repo_tag: &str) -> String {
        let mut cmd = Command::new("skopeo");
        cmd.args(["inspect", "--format", "{{.Digest}}"]);
        self.skopeo_args(&mut cmd, "");
        let out = run(cmd.arg(format!("docker://{}/{repo_tag}", self.host())));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// A registries.d directory that makes skopeo read and write cosign
    /// signatures for this registry.
    pub fn registries_d(&self) -> PathBuf {
        let d = self.dir.path().join("registries.d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("cloister-test.yaml"),
            format!(
                "docker:\n  {}:\n    use-sigstore-attachments: true\n",
                self.host()
            ),
        )
        .unwrap();
        d
    }

    /// Where the registry keeps a blob's bytes (to tamper with them).
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}
