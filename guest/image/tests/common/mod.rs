//! Real parts for the registry tests: Debian's `docker-registry` started
//! on 127.0.0.1 with a generated config (plain HTTP, TLS with a test CA, or
//! htpasswd auth), images built with `umoci` from busybox-static and
//! pushed with `skopeo` (which also encrypts them), keys made with
//! `openssl`.

#![allow(dead_code)]

pub mod proxy;
pub mod token;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cloister_image::{Auth, RegistryOptions, RetryPolicy};

pub const TOOLS: [&str; 4] = ["/usr/bin/docker-registry", "skopeo", "umoci", "openssl"];

/// True if the tools are there. Otherwise prints why the test is skipped,
/// and under CI=true fails instead.
pub fn tools_present() -> bool {
    let missing: Vec<&str> = TOOLS
        .iter()
        .copied()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    let busybox = Path::new("/bin/busybox").exists();
    if missing.is_empty() && busybox {
        cloister_image::install_crypto_provider();
        return true;
    }
    let msg = format!(
        "missing {missing:?}{}: apt-get install docker-registry skopeo umoci openssl busybox-static \
         (scripts/install-deps)",
        if busybox { "" } else { " and /bin/busybox" }
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Http,
    Tls,
    Htpasswd,
    /// Bearer tokens from a token service (`common::token`), which
    /// accepts basic credentials.
    Token,
}

pub struct TestRegistry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub mode: Mode,
    pub ca_pem: Option<Vec<u8>>,
    pub creds: Option<(String, String)>,
    pub token_server: Option<token::TokenServer>,
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestRegistry {
    pub fn start(mode: Mode) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let port = free_port();
        let mut http = format!("http:\n  addr: 127.0.0.1:{port}\n");
        let mut auth = String::new();
        let mut ca_pem = None;
        let mut creds = None;
        let mut token_server = None;
        match mode {
            Mode::Http => {}
            Mode::Tls => {
                make_tls(d);
                ca_pem = Some(std::fs::read(d.join("certs/ca.crt")).unwrap());
                http.push_str(&format!(
                    "  tls:\n    certificate: {0}/srv.crt\n    key: {0}/srv.key\n",
                    d.display()
                ));
            }
            Mode::Htpasswd => {
                let hash = bcrypt::hash_with_result("s3cret-pass", 4)
                    .unwrap()
                    .format_for_version(bcrypt::Version::TwoY);
                std::fs::write(d.join("htpasswd"), format!("tester:{hash}\n")).unwrap();
                auth = format!(
                    "auth:\n  htpasswd:\n    realm: cloister-test\n    path: {}/htpasswd\n",
                    d.display()
                );
                creds = Some(("tester".to_string(), "s3cret-pass".to_string()));
            }
            Mode::Token => {
                let key = d.join("token.key");
                let cert = d.join("token.crt");
                run(Command::new("openssl")
                    .args([
                        "req",
                        "-x509",
                        "-newkey",
                        "rsa:2048",
                        "-nodes",
                        "-days",
                        "2",
                        "-subj",
                        "/CN=token signer",
                    ])
                    .arg("-keyout")
                    .arg(&key)
                    .arg("-out")
                    .arg(&cert));
                let ts = token::TokenServer::start(&key, &cert, "tester", "t0ken-pass");
                auth = format!(
                    "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {}\n    \
                     issuer: {}\n    rootcertbundle: {}\n",
                    ts.port,
                    token::SERVICE,
                    token::ISSUER,
                    cert.display()
                );
                token_server = Some(ts);
                creds = Some(("tester".to_string(), "t0ken-pass".to_string()));
            }
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  \
             filesystem:\n    rootdirectory: {}/data\n  delete:\n    enabled: true\n{http}{auth}",
            d.display()
        );
        std::fs::write(d.join("config.yml"), config).unwrap();
        let log = std::fs::File::create(d.join("registry.log")).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let reg = Self {
            child,
            port,
            dir,
            mode,
            ca_pem,
            creds,
            token_server,
        };
        reg.wait_ready();
        reg
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "docker-registry did not listen on {}: {}",
            self.port,
            std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `skopeo copy oci:<layout>:<tag> docker://<registry>/<dest>` with
    /// extra skopeo arguments (encryption, compression, multi-arch).
    pub fn push(&self, layout: &Path, tag: &str, dest: &str, extra: &[&str]) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet"]);
        match self.mode {
            Mode::Tls => {
                cmd.arg("--dest-cert-dir")
                    .arg(self.dir.path().join("certs"));
            }
            _ => {
                cmd.arg("--dest-tls-verify=false");
            }
        }
        if let Some((u, p)) = &self.creds {
            cmd.arg("--dest-creds").arg(format!("{u}:{p}"));
        }
        cmd.args(extra);
        cmd.arg(format!("oci:{}:{tag}", layout.display()));
        cmd.arg(format!("docker://{}/{dest}", self.host()));
        run(&mut cmd);
    }

    /// Client options matching this registry's setup.
    pub fn options(&self) -> RegistryOptions {
        RegistryOptions {
            auth: match &self.creds {
                Some((u, p)) => Auth::Basic {
                    username: u.clone(),
                    password: p.clone(),
                },
                None => Auth::Anonymous,
            },
            extra_ca_pem: self.ca_pem.iter().cloned().collect(),
            insecure_http: self.mode != Mode::Tls,
            retry: RetryPolicy {
                attempts: 3,
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(200),
            },
            ..RegistryOptions::default()
        }
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

/// A CA and a server certificate for 127.0.0.1 signed by it.
fn make_tls(d: &Path) {
    std::fs::create_dir_all(d.join("certs")).unwrap();
    let ca_key = d.join("ca.key");
    let ca_crt = d.join("certs/ca.crt");
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=cloister test CA",
        ])
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca_crt));
    run(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(d.join("srv.key"))
        .arg("-out")
        .arg(d.join("srv.csr")));
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(d.join("srv.csr"))
        .arg("-CA")
        .arg(&ca_crt)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-out")
        .arg(d.join("srv.crt"))
        .arg("-extfile")
        .arg(d.join("ext.cnf")));
}

/// An RSA key pair: (private PEM path, public PEM path).
pub fn rsa_keypair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    run(Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&private));
    run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public));
    (private, public)
}

/// An EC P-256 key pair (SEC1 private key, as `openssl ecparam` writes).
pub fn ec_keypair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    run(Command::new("openssl")
        .args([
            "ecparam",
            "-genkey",
            "-name",
            "prime256v1",
            "-noout",
            "-out",
        ])
        .arg(&private));
    run(Command::new("openssl")
        .args(["ec", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public));
    (private, public)
}

/// Builds OCI layouts with umoci.
pub struct Layout {
    pub path: PathBuf,
    work: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Self {
        let path = dir.join("layout");
        run(Command::new("umoci").arg("init").arg("--layout").arg(&path));
        let work = dir.join("umoci-work");
        std::fs::create_dir_all(&work).unwrap();
        Self { path, work }
    }

    fn image(&self, tag: &str) -> String {
        format!("{}:{tag}", self.path.display())
    }

    /// A new image `tag` with busybox-static as /bin/busybox (one layer,
    /// made by `umoci repack`).
    pub fn busybox(&self, tag: &str, arch: &str) {
        run(Command::new("umoci").args(["new", "--image", &self.image(tag)]));
        self.change(tag, |rootfs| {
            std::fs::create_dir_all(rootfs.join("bin")).unwrap();
            std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
            std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
        });
        run(Command::new("umoci").args([
            "config",
            "--image",
            &self.image(tag),
            "--os",
            "linux",
            "--architecture",
            arch,
            "--config.cmd",
            "/bin/sh",
        ]));
    }

    /// Adds a layer: unpack, let `f` change the rootfs, repack (umoci
    /// writes whiteouts for what `f` removed).
    pub fn change(&self, tag: &str, f: impl FnOnce(&Path)) {
        let bundle = self.work.join(format!("bundle-{tag}"));
        let _ = std::fs::remove_dir_all(&bundle);
        run(Command::new("umoci")
            .args(["unpack", "--image", &self.image(tag)])
            .arg(&bundle));
        f(&bundle.join("rootfs"));
        run(Command::new("umoci")
            .args(["repack", "--image", &self.image(tag)])
            .arg(&bundle));
        std::fs::remove_dir_all(&bundle).unwrap();
    }

    /// Adds a layer with `umoci insert` (optionally `--opaque`).
    pub fn insert(&self, tag: &str, source: &Path, target: &str, opaque: bool) {
        let mut cmd = Command::new("umoci");
        cmd.args(["insert", "--image", &self.image(tag)]);
        if opaque {
            cmd.arg("--opaque");
        }
        run(cmd.arg(source).arg(target));
    }

    /// Adds a tag `name` for an image index over the given tags, each with
    /// its platform (os linux, architecture as given).
    pub fn index(&self, name: &str, entries: &[(&str, &str)]) {
        let index_path = self.path.join("index.json");
        let mut index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
        let manifests = index["manifests"].as_array().unwrap().clone();
        let mut list = Vec::new();
        for (tag, arch) in entries {
            let m = manifests
                .iter()
                .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == *tag)
                .unwrap_or_else(|| panic!("no tag {tag}"));
            list.push(serde_json::json!({
                "mediaType": m["mediaType"],
                "digest": m["digest"],
                "size": m["size"],
                "platform": {"architecture": arch, "os": "linux"},
            }));
        }
        let body = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": list,
        }))
        .unwrap();
        let digest = cloister_image::Sha256Digest::of(&body);
        std::fs::write(self.path.join("blobs/sha256").join(digest.hex()), &body).unwrap();
        index["manifests"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": digest.to_string(),
                "size": body.len(),
                "annotations": {"org.opencontainers.image.ref.name": name},
            }));
        std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    }

    /// Manifest digest of a tag in the layout.
    pub fn manifest_digest(&self, tag: &str) -> String {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.path.join("index.json")).unwrap()).unwrap();
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// Files (paths relative to the root, sorted) under `dir`, for comparing
/// trees; directories end with '/'.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(base).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                out.push(format!("{rel}/"));
                walk(base, &e.path(), out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
