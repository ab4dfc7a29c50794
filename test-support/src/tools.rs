//! Whether the outside tools a test needs are there, and running them.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// An outside tool a test may need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// Debian's `/usr/bin/docker-registry` (distribution).
    DockerRegistry,
    Skopeo,
    Umoci,
    Openssl,
    /// `/bin/busybox` from busybox-static, the content of the test images.
    Busybox,
    /// `python3` with the `cryptography` package and `hashlib.scrypt`.
    PythonCryptography,
}

/// What a running [`crate::Registry`] with [`crate::Layout`] images needs.
pub const REGISTRY_TOOLS: [Tool; 5] = [
    Tool::DockerRegistry,
    Tool::Skopeo,
    Tool::Umoci,
    Tool::Openssl,
    Tool::Busybox,
];

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
pub const BUSYBOX: &str = "/bin/busybox";

impl Tool {
    pub fn present(self) -> bool {
        match self {
            Tool::DockerRegistry => Path::new(REGISTRY_BIN).exists(),
            Tool::Skopeo => on_path("skopeo"),
            Tool::Umoci => on_path("umoci"),
            Tool::Openssl => on_path("openssl"),
            Tool::Busybox => Path::new(BUSYBOX).exists(),
            Tool::PythonCryptography => Command::new("python3")
                .args(["-c", "import cryptography, hashlib; hashlib.scrypt"])
                .output()
                .is_ok_and(|o| o.status.success()),
        }
    }

    /// The tool and how to install it.
    fn describe(self) -> &'static str {
        match self {
            Tool::DockerRegistry => "docker-registry (apt-get install docker-registry)",
            Tool::Skopeo => "skopeo (apt-get install skopeo)",
            Tool::Umoci => "umoci (apt-get install umoci)",
            Tool::Openssl => "openssl (apt-get install openssl)",
            Tool::Busybox => "/bin/busybox (apt-get install busybox-static)",
            Tool::PythonCryptography => "python3 with `cryptography` (pip install cryptography)",
        }
    }
}

fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Why the test cannot run, if one of `needs` is missing: prints
/// `SKIPPED: <reason>` and returns it, or under CI=true panics.
pub fn skip_reason(needs: &[Tool]) -> Option<String> {
    let missing: Vec<&str> = needs
        .iter()
        .filter(|t| !t.present())
        .map(|t| t.describe())
        .collect();
    if missing.is_empty() {
        return None;
    }
    let reason = format!(
        "missing: {} (scripts/install-deps installs them)",
        missing.join(", ")
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and the test cannot run: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    Some(reason)
}

/// True if the [`REGISTRY_TOOLS`] are there; otherwise as [`skip_reason`].
pub fn registry_tools_present() -> bool {
    skip_reason(&REGISTRY_TOOLS).is_none()
}

/// Runs `cmd`, panicking with its output if it cannot start or fails.
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
