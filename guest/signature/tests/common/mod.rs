//! Real parts for the registry tests: Debian's `docker-registry`
//! (distribution) on 127.0.0.1 with temporary storage, an image built by
//! `umoci` from /bin/busybox and pushed by `skopeo`, and the independent
//! cosign implementation in `cosign_tool.py`.
//!
//! A test whose parts are missing prints why and passes, except under
//! CI=true, where it fails.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
pub const BUSYBOX: &str = "/bin/busybox";

/// Returns why the test cannot run, if it cannot; panics under CI=true.
pub fn skip_reason(needs_registry: bool) -> Option<String> {
    let mut missing = Vec::new();
    if needs_registry {
        if !Path::new(REGISTRY_BIN).exists() {
            missing.push("docker-registry (apt-get install docker-registry)".to_string());
        }
        for tool in ["skopeo", "umoci", "openssl"] {
            if !on_path(tool) {
                missing.push(format!("{tool} (apt-get install {tool})"));
            }
        }
        if !Path::new(BUSYBOX).exists() {
            missing.push("/bin/busybox (apt-get install busybox-static)".into());
        }
    }
    let py = Command::new("python3")
        .args(["-c", "import cryptography, hashlib; hashlib.scrypt"])
        .output();
    if !matches!(py, Ok(ref o) if o.status.success()) {
        missing.push("python3 with `cryptography` (pip install cryptography)".into());
    }
    if missing.is_empty() {
        return None;
    }
    let reason = format!("missing: {}", missing.join(", "));
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and the test cannot run: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    Some(reason)
}

fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// A running `docker-registry` with an OCI layout of a busybox image to push.
pub struct Registry {
    pub addr: String,
    pub dir: tempfile::TempDir,
    /// `USER:PASS` when the registry requires basic auth.
    pub creds: Option<String>,
    /// The CA certificate (PEM) when the registry serves TLS.
    pub ca_pem: Option<Vec<u8>>,
    child: Child,
}

impl Registry {
    /// Plain HTTP, no authentication.
    pub fn start() -> Registry {
        Self::start_with(false, None)
    }

    /// TLS with a certificate from a fresh test CA (made with openssl), and
    /// htpasswd basic authentication if `creds` is given.
    pub fn start_tls(creds: Option<(&str, &str)>) -> Registry {
        Self::start_with(true, creds)
    }

    fn start_with(tls: bool, creds: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.path().join("storage").display()
        );
        let mut ca_pem = None;
        if tls {
            let (cert, key, ca) = make_tls_certificate(dir.path());
            config += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            );
            ca_pem = Some(ca);
        }
        if let Some((user, pass)) = creds {
            let hash = bcrypt::hash(pass, 4).unwrap();
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
            config += &format!(
                "auth:\n  htpasswd:\n    realm: cloister-test\n    path: {}\n",
                htpasswd.display()
            );
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting docker-registry");
        let reg = Registry {
            addr,
            dir,
            creds: creds.map(|(u, p)| format!("{u}:{p}")),
            ca_pem,
            child,
        };
        reg.wait_ready(tls);
        reg.build_image();
        reg
    }

    fn wait_ready(&self, tls: bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(&self.addr) {
                if tls {
                    // The TLS listener is up; a handshake is the client's job.
                    return;
                }
                let _ = s.write_all(
                    format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr).as_bytes(),
                );
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                if buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
        panic!("docker-registry on {} did not come up:\n{log}", self.addr);
    }

    /// An OCI layout `image:v1` holding /bin/busybox, made by umoci.
    fn build_image(&self) {
        let layout = self.dir.path().join("oci");
        let bundle = self.dir.path().join("bundle");
        run(Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout));
        run(Command::new("umoci")
            .args(["new", "--image"])
            .arg(format!("{}:v1", layout.display())));
        run(Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:v1", layout.display()))
            .arg(&bundle));
        let bin = bundle.join("rootfs/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
        run(Command::new("umoci")
            .args(["repack", "--image"])
            .arg(format!("{}:v1", layout.display()))
            .arg(&bundle));
    }

    /// Pushes the busybox image as `repo:tag`; returns its manifest digest
    /// as the registry reports it (through skopeo).
    pub fn push(&self, repo_tag: &str) -> String {
        let layout = self.dir.path().join("oci");
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some(c) = &self.creds {
            cmd.args(["--dest-creds", c]);
        }
        run(cmd
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(format!("docker://{}/{repo_tag}", self.addr)));
        self.digest(repo_tag)
    }

    pub fn digest(&self, repo_tag: &str) -> String {
        let mut cmd = Command::new("skopeo");
        cmd.args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"]);
        if let Some(c) = &self.creds {
            cmd.args(["--creds", c]);
        }
        let out = run(cmd.arg(format!("docker://{}/{repo_tag}", self.addr)));
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
                self.addr
            ),
        )
        .unwrap();
        d
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it, made with the
/// openssl CLI. Returns (server cert, server key, CA cert PEM).
fn make_tls_certificate(dir: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    let p = |n: &str| dir.join(n);
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=cloister test CA",
        ])
        .args(ec)
        .arg("-keyout")
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca.pem"))
        .args([
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ]));
    run(Command::new("openssl")
        .args(["req", "-subj", "/CN=127.0.0.1"])
        .args(ec)
        .arg("-keyout")
        .arg(p("server.key"))
        .arg("-out")
        .arg(p("server.csr")));
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-in"])
        .arg(p("server.csr"))
        .arg("-CA")
        .arg(p("ca.pem"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-CAcreateserial")
        .arg("-extfile")
        .arg(p("ext.cnf"))
        .arg("-out")
        .arg(p("server.pem")));
    (
        p("server.pem"),
        p("server.key"),
        std::fs::read(p("ca.pem")).unwrap(),
    )
}

/// `python3 tests/cosign_tool.py ARGS`.
pub fn cosign_tool() -> Command {
    let mut c = Command::new("python3");
    c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cosign_tool.py"));
    c
}
