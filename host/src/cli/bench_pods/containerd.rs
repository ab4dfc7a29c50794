//! A containerd 1.6 of the benchmark's own (root, state, socket in a
//! temporary directory), with its CRI plugin, and kubelet's CRI client.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

pub struct Containerd {
    pub dir: PathBuf,
    child: Child,
}

/// What differs between the two nodes the benchmark compares.
pub struct NodeKind<'a> {
    /// The guest-pull snapshotter's socket (cloister's node); none for
    /// the runc node, which unpacks with overlayfs.
    pub snapshotter: Option<&'a Path>,
    /// The cloister node config the shim reads.
    pub cloister_config: Option<&'a Path>,
}

impl Containerd {
    pub fn start(
        dir: &Path,
        kind: NodeKind,
        registry: &str,
        sandbox_image: &str,
        shim_dir: &Path,
    ) -> anyhow::Result<Containerd> {
        std::fs::create_dir_all(dir.join("cni"))?;
        let mut cfg = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\n[grpc]\n  address = \"{sock}\"\n\n",
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            sock = dir.join("containerd.sock").display(),
        );
        if let Some(s) = kind.snapshotter {
            cfg += &format!(
                "[proxy_plugins.cloister]\n  type = \"snapshot\"\n  address = \"{}\"\n\n",
                s.display()
            );
        }
        let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
        // restrict_oom_score_adj: CRI gives sandboxes oom_score_adj -998,
        // which a node that is itself sandboxed (as these machines are)
        // refuses ("write /proc/self/oom_score_adj: I/O error" kills
        // runc's init); it is the same for both runtimes.
        cfg += &format!(
            "[{cri}]\n  sandbox_image = \"{sandbox_image}\"\n  stream_server_address = \"127.0.0.1\"\n  stream_server_port = \"0\"\n\
             \x20 restrict_oom_score_adj = true\n\
             [{cri}.containerd]\n  default_runtime_name = \"runc\"\n{snap}\
             [{cri}.containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n\
             [{cri}.containerd.runtimes.cloister]\n  runtime_type = \"io.containerd.cloister.v2\"\n  pod_annotations = [\"cloister.dev/*\"]\n\
             [{cri}.cni]\n  bin_dir = \"/usr/lib/cni\"\n  conf_dir = \"{cni}\"\n\
             [{cri}.registry.mirrors.\"{registry}\"]\n  endpoint = [\"http://{registry}\"]\n",
            snap = if kind.snapshotter.is_some() {
                "  snapshotter = \"cloister\"\n  disable_snapshot_annotations = false\n"
            } else {
                ""
            },
            cni = dir.join("cni").display(),
        );
        std::fs::write(dir.join("config.toml"), cfg)?;
        let log = std::fs::File::create(dir.join("containerd.log"))?;
        let path = format!(
            "{}:{}",
            shim_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("containerd");
        cmd.arg("--config")
            .arg(dir.join("config.toml"))
            .env("PATH", path)
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(c) = kind.cloister_config {
            cmd.env("CLOISTER_CONFIG", c);
        }
        let child = cmd
            .spawn()
            .context("starting containerd (apt-get install containerd)")?;
        let mut c = Containerd {
            dir: dir.to_path_buf(),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !c.sock().exists() {
            if let Ok(Some(st)) = c.child.try_wait() {
                bail!("containerd exited ({st}):\n{}", c.log_tail(30));
            }
            if Instant::now() > deadline {
                bail!("containerd did not start:\n{}", c.log_tail(30));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(c)
    }

    pub fn sock(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    pub fn log_tail(&self, n: usize) -> String {
        let t = std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// `ctr` against this containerd, in the benchmark's namespace.
    pub fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(self.sock())
            .args(["--namespace", "cloister-bench"])
            .stdin(Stdio::null());
        c
    }

    pub async fn cri(
        &self,
    ) -> anyhow::Result<(RuntimeServiceClient<Channel>, ImageServiceClient<Channel>)> {
        let ch = cloister_host::cri_client::channel(self.sock())
            .await
            .context("connecting to containerd's CRI")?;
        Ok(cloister_host::cri_client::clients(ch))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
