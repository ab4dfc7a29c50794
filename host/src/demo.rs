//! The README's demo, as a library (the refusal tests run it with one thing
//! changed): on this machine alone, a tenant's whole set-up around one
//! confidential container.
//!
//! - a local `cloister-kbs` over HTTPS (a self-signed CA), accepting sim
//!   evidence only because it is told to, with reference values computed by
//!   `cloister measure` logic from the very kernel, initramfs, command line
//!   and initdata that will boot;
//! - Debian's `docker-registry` on 127.0.0.1; the guest reaches it and the
//!   KBS only through QEMU user networking (the host's loopback is 10.0.2.2
//!   in the guest);
//! - a busybox demo image built with `umoci`, encrypted with `skopeo`
//!   (JWE, RSA-OAEP), signed with `cloister image sign`, its private key
//!   stored in the KBS;
//! - initdata: the agent policy (policies/default.rego with data listing
//!   exactly this container), a signature policy requiring the demo key, the
//!   registry mirror, the KBS URL and certificate, and the image key.
//!
//! Every process it starts is stopped, and its work directory removed, when
//! the [`Demo`] is dropped.
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::hypervisor::{self, sim_tee, tee::TeeKind, VmConfig};
use crate::run::RunOptions;
use crate::sandbox::BootOptions;

/// The agent policy the demo starts from (policies/default.rego).
pub const DEFAULT_POLICY: &str = include_str!("../../policies/default.rego");

/// What the demo container runs. It proves it can read the decrypted
/// secret without printing it.
pub const DEMO_COMMAND: &[&str] = &[
    "/bin/sh",
    "-c",
    "echo 'hello from a confidential container'; \
     echo \"the secret file has $(wc -c < /demo/secret.txt) bytes, sha256 $(sha256sum /demo/secret.txt | cut -c1-16)…\"",
];

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{tool} is missing: {hint}")]
    Missing { tool: String, hint: String },
    #[error("{what}: {detail}")]
    Step { what: String, detail: String },
}

fn step(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DemoError {
    let what = what.into();
    move |e| DemoError::Step {
        what,
        detail: e.to_string(),
    }
}

/// Runs `cmd`, returning stdout, or an error with its output.
fn run(cmd: &mut Command, what: &str) -> Result<String, DemoError> {
    let out = cmd.output().map_err(step(format!("{what} ({cmd:?})")))?;
    if !out.status.success() {
        return Err(DemoError::Step {
            what: what.into(),
            detail: format!(
                "{} failed ({}): {}{}",
                format!("{cmd:?}").chars().take(200).collect::<String>(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn free_port() -> Result<u16, DemoError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(step("finding a free port"))?;
    Ok(l.local_addr().map_err(step("finding a free port"))?.port())
}

fn wait_port(port: u16, what: &str, child: &mut Child, log: &Path) -> Result<(), DemoError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(st)) = child.try_wait() {
            return Err(DemoError::Step {
                what: format!("starting {what}"),
                detail: format!(
                    "it exited ({st}): {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(DemoError::Step {
        what: format!("starting {what}"),
        detail: format!("nothing listens on 127.0.0.1:{port} after 20 s"),
    })
}

fn require(tool: &str, hint: &str) -> Result<(), DemoError> {
    let found = if tool.contains('/') {
        Path::new(tool).exists()
    } else {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if found {
        Ok(())
    } else {
        Err(DemoError::Missing {
            tool: tool.into(),
            hint: hint.into(),
        })
    }
}

/// What the demo needs from the caller.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// `cloister` and `cloister-kbs` live here.
    pub bin_dir: PathBuf,
    /// The sim chip's CA (shared with the KBS as its sim ARK).
    pub sim_state: PathBuf,
    /// Where everything the demo makes goes (removed afterwards).
    pub work: PathBuf,
    /// The initramfs whose measurement the KBS expects (normally `initrd`;
    /// the tampered-initramfs test boots another one).
    pub reference_initrd: Option<PathBuf>,
    /// List the unsigned image in the agent policy too, so that only the
    /// signature policy stands in its way (the unsigned-image test).
    pub policy_lists_unsigned: bool,
}

/// A prepared demo: registry, KBS, image, keys and initdata.
pub struct Demo {
    cfg: DemoConfig,
    registry: Child,
    kbs: Child,
    pub registry_port: u16,
    pub kbs_port: u16,
    /// The signed, encrypted image, by digest.
    pub image: String,
    /// The same image pushed without a signature.
    pub unsigned_image: String,
    pub initdata: String,
    /// The sim launch digest the KBS expects.
    pub measurement: [u8; 48],
    /// A string inside the image's encrypted layer only.
    pub image_canary: String,
    /// A line of the image's private key: a KBS secret.
    pub kbs_canary: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        for c in [&mut self.registry, &mut self.kbs] {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.cfg.work);
    }
}

fn random_hex(n: usize) -> String {
    use std::io::Read;
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("reading /dev/urandom");
    hex::encode(b)
}

impl Demo {
    /// Sets up everything; `progress` hears each step.
    pub fn prepare(cfg: DemoConfig, progress: &mut dyn FnMut(&str)) -> Result<Demo, DemoError> {
        let apt = "apt-get install docker-registry skopeo umoci openssl busybox-static (scripts/install-deps)";
        for t in [
            "/usr/bin/docker-registry",
            "skopeo",
            "umoci",
            "openssl",
            "/bin/busybox",
        ] {
            require(t, apt)?;
        }
        let kbs_bin = cfg.bin_dir.join("cloister-kbs");
        let cloister_bin = cfg.bin_dir.join("cloister");
        for b in [&kbs_bin, &cloister_bin] {
            require(
                &b.display().to_string(),
                "build the workspace first (cargo build --workspace)",
            )?;
        }
        let w = &cfg.work;
        std::fs::create_dir_all(w).map_err(step("creating the work directory"))?;

        // 1. The registry.
        progress("starting a registry on 127.0.0.1");
        let registry_port = free_port()?;
        let reg_dir = w.join("registry");
        std::fs::create_dir_all(&reg_dir).map_err(step("registry directory"))?;
        std::fs::write(
            reg_dir.join("config.yml"),
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}/data\nhttp:\n  addr: 127.0.0.1:{registry_port}\n",
                reg_dir.display()
            ),
        )
        .map_err(step("registry config"))?;
        let reg_log = reg_dir.join("registry.log");
        let mut registry = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(reg_dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&reg_log).map_err(step("registry log"))?)
            .spawn()
            .map_err(step("starting docker-registry"))?;
        if let Err(e) = wait_port(registry_port, "docker-registry", &mut registry, &reg_log) {
            let _ = registry.kill();
            let _ = registry.wait();
            return Err(e);
        }

        // 2. The KBS (sim evidence accepted only because of --allow-sim).
        progress("starting cloister-kbs (HTTPS, sim evidence allowed explicitly)");
        cloister_sim_chip::SimChip::load_or_create(&cfg.sim_state).map_err(|e| {
            DemoError::Step {
                what: "creating the sim CA".into(),
                detail: e.to_string(),
            }
        })?;
        let kbs_port = free_port()?;
        let admin_port = free_port()?;
        let kbs_dir = w.join("kbs");
        std::fs::create_dir_all(&kbs_dir).map_err(step("KBS directory"))?;
        let token = kbs_dir.join("admin.token");
        std::fs::write(&token, random_hex(24)).map_err(step("KBS admin token"))?;
        let kbs_log = kbs_dir.join("kbs.log");
        let mut kbs = Command::new(&kbs_bin)
            .arg("serve")
            .arg("--state")
            .arg(kbs_dir.join("state"))
            .args(["--listen", &format!("127.0.0.1:{kbs_port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .args(["--tls-self-signed", "--tls-san", "127.0.0.1", "--tls-san"])
            .arg(hypervisor::USER_NET_HOST)
            .arg("--admin-token-file")
            .arg(&token)
            .arg("--allow-sim")
            .arg("--sim-ark")
            .arg(cfg.sim_state.join("ca/ark.pem"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&kbs_log).map_err(step("KBS log"))?)
            .spawn()
            .map_err(step("starting cloister-kbs"))?;
        let started = wait_port(kbs_port, "cloister-kbs", &mut kbs, &kbs_log)
            .and_then(|()| wait_port(admin_port, "cloister-kbs admin", &mut kbs, &kbs_log));
        let mut demo_children = (registry, kbs);
        if let Err(e) = started {
            for c in [&mut demo_children.0, &mut demo_children.1] {
                let _ = c.kill();
                let _ = c.wait();
            }
            return Err(e);
        }
        let (registry, kbs) = demo_children;
        let mut demo = Demo {
            cfg: cfg.clone(),
            registry,
            kbs,
            registry_port,
            kbs_port,
            image: String::new(),
            unsigned_image: String::new(),
            initdata: String::new(),
            measurement: [0; 48],
            image_canary: format!("CLOISTER-CANARY-IMAGE-{}", random_hex(12)),
            kbs_canary: String::new(),
        };
        demo.build_image(progress)?;
        demo.configure_kbs(admin_port, &token, progress)?;
        Ok(demo)
    }

    /// The demo image before encryption, as an OCI layout and tag (for a
    /// runc baseline).
    pub fn plain_layout(&self) -> (PathBuf, &'static str) {
        (self.cfg.work.join("layout"), "demo")
    }

    fn registry_host(&self) -> String {
        format!("127.0.0.1:{}", self.registry_port)
    }

    /// Step 3, the image: busybox and a secret, encrypted, pushed, signed.
    fn build_image(&mut self, progress: &mut dyn FnMut(&str)) -> Result<(), DemoError> {
        progress("building the demo image (umoci), encrypting it (skopeo, JWE) and signing it (cloister image sign)");
        let w = self.cfg.work.clone();
        let layout = w.join("layout");
        run(
            Command::new("umoci")
                .arg("init")
                .arg("--layout")
                .arg(&layout),
            "umoci init",
        )?;
        let img = format!("{}:demo", layout.display());
        run(
            Command::new("umoci").args(["new", "--image", &img]),
            "umoci new",
        )?;
        let bundle = w.join("bundle");
        run(
            Command::new("umoci")
                .args(["unpack", "--image", &img])
                .arg(&bundle),
            "umoci unpack",
        )?;
        let rootfs = bundle.join("rootfs");
        let bin = rootfs.join("bin");
        std::fs::create_dir_all(&bin).map_err(step("rootfs"))?;
        std::fs::copy("/bin/busybox", bin.join("busybox")).map_err(step("copying busybox"))?;
        for t in [
            "sh",
            "echo",
            "cat",
            "wc",
            "sha256sum",
            "cut",
            "ls",
            "id",
            "sleep",
        ] {
            std::os::unix::fs::symlink("busybox", bin.join(t)).map_err(step("busybox links"))?;
        }
        for d in ["proc", "dev", "sys", "tmp", "etc", "demo"] {
            std::fs::create_dir_all(rootfs.join(d)).map_err(step("rootfs"))?;
        }
        std::fs::write(
            rootfs.join("demo/secret.txt"),
            format!("{}\n", self.image_canary),
        )
        .map_err(step("the secret file"))?;
        run(
            Command::new("umoci")
                .args(["repack", "--image", &img])
                .arg(&bundle),
            "umoci repack",
        )?;
        run(
            Command::new("umoci").args([
                "config",
                "--image",
                &img,
                "--os",
                "linux",
                "--architecture",
                "amd64",
            ]),
            "umoci config",
        )?;
        let _ = std::fs::remove_dir_all(&bundle);
        // The image key (RSA; JWE RSA-OAEP).
        let key = w.join("image-key.pem");
        let public = w.join("image-key.pub.pem");
        run(
            Command::new("openssl")
                .args([
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                ])
                .arg(&key),
            "openssl genpkey",
        )?;
        run(
            Command::new("openssl")
                .args(["pkey", "-pubout", "-in"])
                .arg(&key)
                .arg("-out")
                .arg(&public),
            "openssl pkey",
        )?;
        let pem = std::fs::read_to_string(&key).map_err(step("reading the image key"))?;
        self.kbs_canary = pem.lines().nth(2).unwrap_or_default().to_string();
        let host = self.registry_host();
        run(
            Command::new("skopeo")
                .args([
                    "copy",
                    "--quiet",
                    "--dest-tls-verify=false",
                    "--encryption-key",
                ])
                .arg(format!("jwe:{}", public.display()))
                .arg(format!("oci:{img}"))
                .arg(format!("docker://{host}/demo:v1")),
            "skopeo copy --encryption-key (encrypting and pushing)",
        )?;
        run(
            Command::new("skopeo")
                .args(["copy", "--quiet", "--dest-tls-verify=false"])
                .arg(format!("oci:{img}"))
                .arg(format!("docker://{host}/unsigned:v1")),
            "skopeo copy (the unsigned image)",
        )?;
        let digest = run(
            Command::new("skopeo")
                .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
                .arg(format!("docker://{host}/demo:v1")),
            "skopeo inspect",
        )?
        .trim()
        .to_string();
        let cosign = w.join("cosign");
        let bin = self.cfg.bin_dir.join("cloister");
        run(
            Command::new(&bin)
                .args(["image", "keygen", "--output-key-prefix"])
                .arg(&cosign)
                .env("COSIGN_PASSWORD", "demo"),
            "cloister image keygen",
        )?;
        run(
            Command::new(&bin)
                .args(["image", "sign", "--registry-insecure-http", "--key"])
                .arg(cosign.with_extension("key"))
                .arg(format!("{host}/demo:v1"))
                .env("COSIGN_PASSWORD", "demo"),
            "cloister image sign",
        )?;
        self.image = format!("{host}/demo@{digest}");
        self.unsigned_image = format!("{host}/unsigned:v1");
        // The initdata, with everything the guest needs.
        let cosign_pub = std::fs::read(cosign.with_extension("pub")).map_err(step("cosign.pub"))?;
        let ca =
            std::fs::read_to_string(w.join("kbs/state/tls/ca.pem")).map_err(step("the KBS CA"))?;
        let mut listed = vec![self.image.clone()];
        if self.cfg.policy_lists_unsigned {
            listed.push(self.unsigned_image.clone());
        }
        self.initdata = initdata(
            &host,
            self.registry_port,
            &listed,
            &cosign_pub,
            &format!("https://{}:{}", hypervisor::USER_NET_HOST, self.kbs_port),
            &ca,
        );
        Ok(())
    }

    /// Step 4, the KBS: the image key, and reference values computed from
    /// what will boot.
    fn configure_kbs(
        &mut self,
        admin_port: u16,
        token: &Path,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(), DemoError> {
        progress(
            "computing reference values (cloister measure) and storing the image key in the KBS",
        );
        let w = self.cfg.work.clone();
        let reference_initrd = self
            .cfg
            .reference_initrd
            .clone()
            .unwrap_or_else(|| self.cfg.initrd.clone());
        let boot = self.boot_options_for(&reference_initrd);
        let mut vm: VmConfig = boot.vm.clone();
        vm.cmdline = sim_tee::cmdline_with_sim(&vm.cmdline).map_err(|e| DemoError::Step {
            what: "the measured command line".into(),
            detail: e.to_string(),
        })?;
        self.measurement = sim_tee::measurement(&vm).map_err(|e| DemoError::Step {
            what: "measuring the boot".into(),
            detail: e.to_string(),
        })?;
        let host_data = Sha256::digest(self.initdata.as_bytes());
        let refs = w.join("reference-values.json");
        std::fs::write(
            &refs,
            serde_json::json!({
                "measurement": hex::encode(self.measurement),
                "host_data": hex::encode(host_data),
            })
            .to_string(),
        )
        .map_err(step("reference values"))?;
        let admin = |args: &[&str], file: &Path, what: &str| -> Result<String, DemoError> {
            run(
                Command::new(self.cfg.bin_dir.join("cloister-kbs"))
                    .arg("admin")
                    .args(["--url", &format!("https://127.0.0.1:{admin_port}")])
                    .arg("--ca")
                    .arg(w.join("kbs/state/tls/ca.pem"))
                    .arg("--token-file")
                    .arg(token)
                    .args(args)
                    .arg("--file")
                    .arg(file),
                what,
            )
        };
        admin(
            &["set-reference-values"],
            &refs,
            "cloister-kbs admin set-reference-values",
        )?;
        admin(
            &["set-resource", "default/image-key/demo"],
            &w.join("image-key.pem"),
            "cloister-kbs admin set-resource",
        )?;
        Ok(())
    }

    fn boot_options_for(&self, initrd: &Path) -> BootOptions {
        let mut b = BootOptions::new(self.cfg.kernel.clone(), initrd.to_path_buf());
        b.vm.memory_mib = 512;
        b.vm.user_net = true;
        b.tee = TeeKind::Sim;
        b.sim_state = Some(self.cfg.sim_state.clone());
        b.initdata = Some(self.initdata.clone().into_bytes());
        b.agent_timeout = Duration::from_secs(60);
        b
    }

    /// What `cloister run` does for the demo container (`initrd` boots;
    /// normally the configured one).
    pub fn run_options(&self, image: &str, initrd: Option<&Path>) -> RunOptions {
        let mut spec = cloister_protocol::oci::default_spec(DEMO_COMMAND);
        spec["annotations"] = serde_json::json!({"io.kubernetes.cri.container-name": "demo"});
        RunOptions {
            boot: self.boot_options_for(initrd.unwrap_or(&self.cfg.initrd)),
            initdata: self.initdata.clone(),
            image: image.to_string(),
            spec,
            container_id: "demo".into(),
            pull_timeout: Duration::from_secs(600),
            network: crate::pod::network::GuestNetwork::user(),
        }
    }
}

/// The demo's initdata.
fn initdata(
    registry: &str,
    registry_port: u16,
    images: &[String],
    cosign_pub: &[u8],
    kbs_url: &str,
    kbs_ca: &str,
) -> String {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD.encode(cosign_pub);
    let image_policy = serde_json::json!({
        "default": [{"type": "reject"}],
        "transports": {"docker": {registry: [{"type": "sigstoreSigned", "keyData": key}]}}
    });
    let registry_json = serde_json::json!({
        "insecure_http": true,
        "mirrors": {registry: format!("{}:{registry_port}", hypervisor::USER_NET_HOST)}
    });
    // The demo container is "demo"; a second listed image (the tests'
    // unsigned one) is container "unsigned".
    let containers: Vec<_> = images
        .iter()
        .zip(["demo", "unsigned"])
        .map(|(i, name)| serde_json::json!({"name": name, "image": i}))
        .collect();
    let data = serde_json::json!({ "containers": containers });
    format!(
        "version = \"0.1.0\"\nalgorithm = \"sha256\"\n\n[data]\n\
         \"policy.rego\" = '''\n{DEFAULT_POLICY}'''\n\
         \"policy-data.json\" = '''{data}'''\n\
         \"image-policy.json\" = '''{image_policy}'''\n\
         \"registry.json\" = '''{registry_json}'''\n\
         \"kbs-url\" = \"{kbs_url}\"\n\
         \"kbs-cert.pem\" = '''\n{kbs_ca}'''\n\
         \"image-keys\" = '''\nkbs:///default/image-key/demo\n'''\n"
    )
}
