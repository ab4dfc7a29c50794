//! The sim TEE on the host — development only, NOT A TEE, no security.
//!
//! For a VM booted with the sim TEE, the host:
//! 1. adds `cloister.tee=sim` to the kernel command line (the guest agent's
//!    cue to ask the sim chip), before measuring, so it is measured;
//! 2. computes the sim launch digest over exactly the kernel, initrd,
//!    command line, vCPUs and memory it boots (`cloister measure sim` with
//!    the same values prints the same digest);
//! 3. serves the sim chip on `<vsock.sock>_1025` before QEMU starts: a guest
//!    connection to host vsock port 1025 lands there (hybrid vsock), and each
//!    gets a report over that digest and HOST_DATA = sha256(initdata);
//! 4. stops the chip when the VM is gone.
//!
//! The sim CA (ARK → ASK → VCEK) lives in a state directory, by default
//! `$CLOISTER_CACHE/sim` (else `$XDG_CACHE_HOME/cloister/sim`, else
//! `~/.cache/cloister/sim`), so that a KBS can be configured once with its
//! `ca/ark.pem` (`cloister-kbs --allow-sim --sim-ark <state>/ca/ark.pem`).
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use cloister_measure::cloister_sim::{sim_launch_digest, SimLaunchInputs};
use cloister_sim_chip::{SimChip, SimChipError, SimChipServer, SIM_CHIP_VSOCK_PORT};
use sha2::{Digest, Sha256};
use tracing::info;

use super::VmConfig;

/// What the host adds to the kernel command line for the sim TEE.
pub const CMDLINE_PARAM: &str = "cloister.tee=sim";

/// Each message is complete on its own (the cause is in the text, not a
/// separate `source`, so a `{:#}` chain does not repeat it).
#[derive(Debug, thiserror::Error)]
pub enum SimTeeError {
    #[error("sim TEE: the kernel command line already sets {param:?}, which contradicts --tee sim (it sets cloister.tee=sim itself)")]
    ConflictingCmdline { param: String },
    #[error("sim TEE: reading {what} {path} to measure it: {error}")]
    Read {
        what: &'static str,
        path: String,
        error: io::Error,
    },
    #[error("sim TEE: no sim state directory: set CLOISTER_CACHE or HOME, or pass one explicitly (--sim-state)")]
    NoStateDir,
    #[error("sim TEE: {0}")]
    Chip(SimChipError),
    #[error("sim TEE: serving the sim chip on {path}: {error}")]
    Serve { path: String, error: io::Error },
}

/// The default sim state directory, from the environment.
pub fn default_state_dir() -> Option<PathBuf> {
    let var = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    state_dir_from(var("CLOISTER_CACHE"), var("XDG_CACHE_HOME"), var("HOME"))
}

/// `$CLOISTER_CACHE/sim`, else `$XDG_CACHE_HOME/cloister/sim`, else
/// `$HOME/.cache/cloister/sim`: the cache root kernel-config/build uses.
fn state_dir_from(
    cloister_cache: Option<PathBuf>,
    xdg_cache: Option<PathBuf>,
    home: Option<PathBuf>,
) -> Option<PathBuf> {
    let root = cloister_cache
        .or_else(|| xdg_cache.map(|x| x.join("cloister")))
        .or_else(|| home.map(|h| h.join(".cache").join("cloister")))?;
    Some(root.join("sim"))
}

/// `cmdline` with `cloister.tee=sim`, added once. Another `cloister.tee=`
/// value is refused rather than silently overridden.
pub fn cmdline_with_sim(cmdline: &str) -> Result<String, SimTeeError> {
    let mut has = false;
    for word in cmdline.split_whitespace() {
        if word == CMDLINE_PARAM {
            has = true;
        } else if word.starts_with("cloister.tee=") {
            return Err(SimTeeError::ConflictingCmdline {
                param: word.to_string(),
            });
        }
    }
    if has {
        Ok(cmdline.to_string())
    } else if cmdline.trim().is_empty() {
        Ok(CMDLINE_PARAM.to_string())
    } else {
        Ok(format!("{} {CMDLINE_PARAM}", cmdline.trim_end()))
    }
}

fn sha256_file(path: &Path, what: &'static str) -> Result<[u8; 32], SimTeeError> {
    let err = |error| SimTeeError::Read {
        what,
        path: path.display().to_string(),
        error,
    };
    let mut f = File::open(path).map_err(err)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(err(e)),
        }
    }
    Ok(h.finalize().into())
}

/// The sim launch inputs for booting `cfg` exactly as given (its command
/// line must already carry `cloister.tee=sim`).
pub fn launch_inputs(cfg: &VmConfig) -> Result<SimLaunchInputs, SimTeeError> {
    Ok(SimLaunchInputs {
        kernel_sha256: sha256_file(&cfg.kernel, "kernel")?,
        initrd_sha256: sha256_file(&cfg.initrd, "initrd")?,
        cmdline: cfg.cmdline.clone(),
        vcpus: cfg.vcpus,
        memory_mib: cfg.memory_mib,
    })
}

/// The sim launch digest for booting `cfg`.
pub fn measurement(cfg: &VmConfig) -> Result<[u8; 48], SimTeeError> {
    Ok(sim_launch_digest(&launch_inputs(cfg)?))
}

/// Where the sim chip listens for a VM whose hybrid-vsock socket is `vsock_socket`.
pub fn chip_socket(vsock_socket: &Path) -> PathBuf {
    let mut s = vsock_socket.as_os_str().to_owned();
    s.push(format!("_{SIM_CHIP_VSOCK_PORT}"));
    PathBuf::from(s)
}

/// A running sim chip for one VM. Stops (and removes its socket) when
/// stopped or dropped.
pub struct SimTee {
    server: SimChipServer,
    ark: PathBuf,
    pub measurement: [u8; 48],
    pub host_data: [u8; 32],
}

impl std::fmt::Debug for SimTee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimTee")
            .field("socket", &self.server.path())
            .field("measurement", &hex::encode(self.measurement))
            .field("host_data", &hex::encode(self.host_data))
            .finish()
    }
}

impl SimTee {
    /// Loads (or creates) the sim CA in `state_dir` and serves reports over
    /// `measurement` and `host_data` on [`chip_socket`]`(vsock_socket)`.
    pub fn start(
        state_dir: &Path,
        vsock_socket: &Path,
        measurement: [u8; 48],
        host_data: [u8; 32],
    ) -> Result<SimTee, SimTeeError> {
        let chip = SimChip::load_or_create(state_dir).map_err(SimTeeError::Chip)?;
        let path = chip_socket(vsock_socket);
        let server = chip
            .serve_unix(&path, measurement, host_data)
            .map_err(|error| SimTeeError::Serve {
                path: path.display().to_string(),
                error,
            })?;
        info!(
            measurement = %hex::encode(measurement),
            host_data = %hex::encode(host_data),
            ark = %chip.ca().ark_path().display(),
            "sim TEE for this VM (cloister-sim: NOT A TEE, development only, no security)"
        );
        Ok(SimTee {
            server,
            ark: chip.ca().ark_path(),
            measurement,
            host_data,
        })
    }

    /// The sim ARK certificate a verifier (the KBS) must be configured with.
    pub fn ark_path(&self) -> &Path {
        &self.ark
    }

    /// The chip's Unix socket.
    pub fn socket(&self) -> &Path {
        self.server.path()
    }

    /// Stops serving and removes the socket.
    pub fn stop(self) {
        self.server.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloister_evidence::sim::wire;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn state_dir_precedence() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(
            state_dir_from(p("/c"), p("/x"), p("/h")),
            p("/c/sim"),
            "CLOISTER_CACHE first"
        );
        assert_eq!(state_dir_from(None, p("/x"), p("/h")), p("/x/cloister/sim"));
        assert_eq!(
            state_dir_from(None, None, p("/h")),
            p("/h/.cache/cloister/sim")
        );
        assert_eq!(state_dir_from(None, None, None), None);
    }

    #[test]
    fn sim_param_is_added_once_and_conflicts_refused() {
        assert_eq!(
            cmdline_with_sim("console=ttyS0 quiet").unwrap(),
            "console=ttyS0 quiet cloister.tee=sim"
        );
        assert_eq!(cmdline_with_sim("").unwrap(), "cloister.tee=sim");
        assert_eq!(
            cmdline_with_sim("a cloister.tee=sim b").unwrap(),
            "a cloister.tee=sim b"
        );
        let e = cmdline_with_sim("a cloister.tee=snp").unwrap_err();
        assert!(e.to_string().contains("\"cloister.tee=snp\""), "{e}");
        assert!(cmdline_with_sim("cloister.tee=").is_err());
        // A parameter that merely contains the text is not the parameter.
        assert_eq!(
            cmdline_with_sim("x.cloister.tee=none").unwrap(),
            "x.cloister.tee=none cloister.tee=sim"
        );
    }

    #[test]
    fn measurement_is_the_sim_digest_of_the_files_and_cmdline() {
        let d = tempfile::tempdir().unwrap();
        let (k, i) = (d.path().join("k"), d.path().join("i"));
        std::fs::write(&k, b"kernel").unwrap();
        std::fs::write(&i, b"initrd").unwrap();
        let cfg = VmConfig {
            kernel: k,
            initrd: i.clone(),
            cmdline: "console=ttyS0".into(),
            memory_mib: 256,
            vcpus: 1,
            user_net: false,
            tap: None,
        };
        // The known answer of cloister_measure::cloister_sim for these inputs.
        assert_eq!(
            hex::encode(measurement(&cfg).unwrap()),
            "ad7d09828b7d5a7990c37f0f86f99899abcd8f11752d0c36b8148ed49770d8b80cdd6dae3f4048589c578178b72bddb2"
        );
        let want = SimLaunchInputs::from_contents(b"kernel", b"initrd", "console=ttyS0", 1, 256);
        assert_eq!(launch_inputs(&cfg).unwrap(), want);
        std::fs::remove_file(&i).unwrap();
        let e = measurement(&cfg).unwrap_err();
        assert!(e.to_string().starts_with("sim TEE: reading initrd"), "{e}");
    }

    #[test]
    fn chip_serves_on_the_port_1025_socket_until_stopped() {
        let d = tempfile::tempdir().unwrap();
        let vsock = d.path().join("vsock.sock");
        let sock = chip_socket(&vsock);
        assert_eq!(sock, d.path().join("vsock.sock_1025"));
        let t = SimTee::start(&d.path().join("state"), &vsock, [4; 48], [5; 32]).unwrap();
        assert!(t.ark_path().ends_with("state/ca/ark.pem"));
        assert!(t.ark_path().is_file());
        let mut s = UnixStream::connect(&sock).unwrap();
        s.write_all(&wire::encode_request(&[6; 64])).unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        let r = wire::decode_response(&buf).unwrap();
        assert_eq!(r.report[0x90..0xc0], [4u8; 48]);
        assert_eq!(r.report[0xc0..0xe0], [5u8; 32]);
        assert_eq!(r.report[0x50..0x90], [6u8; 64]);
        t.stop();
        assert!(!sock.exists(), "socket removed");
        assert!(UnixStream::connect(&sock).is_err());
    }
}
