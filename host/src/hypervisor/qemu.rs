//! The QEMU backend: `qemu-system-x86_64 -M microvm` with direct kernel boot,
//! the serial console in a log file, and virtio-vsock through
//! `vhost-user-vsock-device` served by cloister's own vsock device.
//!
//! Three things make vsock work under TCG (see ARCHITECTURE.md):
//! `acpi=off` so QEMU describes the virtio-mmio devices on the kernel command
//! line, guest memory in a shared memfd, and the vhost-user backend.
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tracing::{debug, info, warn};

use super::accel::Accel;
use super::VmConfig;
use crate::devices::vsock::vhost_user::{VhostUserVsock, VhostUserVsockError};

pub const DEFAULT_QEMU: &str = "qemu-system-x86_64";
/// The guest's vsock CID. Each VM has its own device, so it never clashes.
pub const GUEST_CID: u64 = 3;

/// Files of one QEMU VM inside its run directory.
#[derive(Debug, Clone)]
pub struct QemuPaths {
    pub console_log: PathBuf,
    pub qemu_log: PathBuf,
    pub vhost_socket: PathBuf,
    pub vsock_socket: PathBuf,
    /// QEMU's monitor (QMP): for the operator and the fault tests, which
    /// reset the guest through it. It gives nothing the host does not
    /// already have: the host runs QEMU.
    pub qmp_socket: PathBuf,
}

impl QemuPaths {
    pub fn in_dir(dir: &Path) -> Self {
        QemuPaths {
            console_log: dir.join("console.log"),
            qemu_log: dir.join("qemu.log"),
            vhost_socket: dir.join("vhost-vsock.sock"),
            vsock_socket: dir.join("vsock.sock"),
            qmp_socket: dir.join("qmp.sock"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error("{binary} not found or not runnable: {source} (install Debian's qemu-system-x86)")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("creating {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Vsock(#[from] VhostUserVsockError),
}

/// The QEMU arguments for `cfg` with cloister's vsock device, in order.
/// Pure, so it can be tested.
pub fn args(cfg: &VmConfig, accel: Accel, paths: &QemuPaths) -> Vec<OsString> {
    let mut a = machine_args(cfg, accel, &paths.console_log, true);
    a.extend(qmp_args(&paths.qmp_socket));
    a.push("-chardev".into());
    a.push(os_concat("socket,id=vsock,path=", &paths.vhost_socket));
    a.push("-device".into());
    // The guest CID is not a QEMU property here: QEMU reads it from the
    // backend's config space (VsockDevice::config).
    a.push("vhost-user-vsock-device,chardev=vsock".into());
    if let Some(tap) = &cfg.tap {
        // The pod's tap (QEMU runs in the pod's network namespace); the
        // guest NIC carries the MAC of the pod interface the tap mirrors.
        a.push("-netdev".into());
        a.push(
            format!(
                "tap,id=net0,ifname={},script=no,downscript=no,vhost=off",
                tap.tap
            )
            .into(),
        );
        a.push("-device".into());
        a.push(format!("virtio-net-device,netdev=net0,mac={}", tap.mac).into());
    } else if cfg.user_net {
        // The guest reaches the host's loopback as 10.0.2.2 (a registry, a
        // KBS the tenant runs there); IPv6 stays off.
        a.push("-netdev".into());
        a.push("user,id=net0,ipv6=off".into());
        a.push("-device".into());
        a.push(format!("virtio-net-device,netdev=net0,mac={}", super::USER_NET_MAC).into());
    }
    a.extend(boot_args(cfg));
    a
}

/// Plain QEMU: the same machine and kernel, no vsock and no shared memory.
/// The baseline `cloister bench boot` compares against.
pub fn plain_args(cfg: &VmConfig, accel: Accel, console_log: &Path) -> Vec<OsString> {
    let mut a = machine_args(cfg, accel, console_log, false);
    a.extend(boot_args(cfg));
    a
}

fn machine_args(
    cfg: &VmConfig,
    accel: Accel,
    console_log: &Path,
    shared_memory: bool,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &str| a.push(s.into());
    push("-M");
    push("microvm,acpi=off,x-option-roms=off");
    push("-accel");
    push(accel.name());
    push("-cpu");
    push(match accel {
        Accel::Kvm => "host",
        Accel::Tcg => "max",
    });
    push("-smp");
    push(&cfg.vcpus.to_string());
    push("-m");
    push(&format!("{}M", cfg.memory_mib));
    if shared_memory {
        // vhost-user needs the guest memory in a shareable fd.
        push("-object");
        push(&format!(
            "memory-backend-memfd,id=mem,size={}M,share=on",
            cfg.memory_mib
        ));
        push("-machine");
        push("memory-backend=mem");
    }
    push("-nodefaults");
    push("-no-user-config");
    push("-display");
    push("none");
    // A guest reset (reboot=t, panic=-1) ends the VM instead of restarting it.
    push("-no-reboot");
    push("-chardev");
    a.push(os_concat("file,id=console,path=", console_log));
    a.push("-serial".into());
    a.push("chardev:console".into());
    a
}

/// A QMP server on a Unix socket that never waits for a client.
pub fn qmp_args(socket: &Path) -> Vec<OsString> {
    let mut spec = os_concat("unix:", socket);
    spec.push(",server=on,wait=off");
    vec!["-qmp".into(), spec]
}

fn boot_args(cfg: &VmConfig) -> Vec<OsString> {
    vec![
        "-kernel".into(),
        cfg.kernel.clone().into(),
        "-initrd".into(),
        cfg.initrd.clone().into(),
        "-append".into(),
        cfg.cmdline.clone().into(),
    ]
}

/// `prefix` + the path, as a value in a QEMU option list: a comma in the
/// path is doubled, or QEMU would read it as the next option.
fn os_concat(prefix: &str, p: &Path) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut bytes = prefix.as_bytes().to_vec();
    for &b in p.as_os_str().as_bytes() {
        bytes.push(b);
        if b == b',' {
            bytes.push(b',');
        }
    }
    OsString::from_vec(bytes)
}

/// A running QEMU VM with its vsock backend. Dropping it kills QEMU.
pub struct QemuVm {
    child: Option<Child>,
    vsock: Option<VhostUserVsock>,
    pub paths: QemuPaths,
    pub accel: Accel,
    pub launched_at: Instant,
}

impl QemuVm {
    /// Starts the vsock backend, then QEMU. Returns as soon as QEMU runs.
    pub fn launch(
        binary: &str,
        cfg: &VmConfig,
        accel: Accel,
        run_dir: &Path,
    ) -> Result<Self, QemuError> {
        let paths = QemuPaths::in_dir(run_dir);
        let launched_at = Instant::now();
        let vsock = VhostUserVsock::spawn(&paths.vhost_socket, GUEST_CID, &paths.vsock_socket)?;
        let log = File::create(&paths.qemu_log).map_err(|source| QemuError::File {
            path: paths.qemu_log.display().to_string(),
            source,
        })?;
        let log2 = log.try_clone().map_err(|source| QemuError::File {
            path: paths.qemu_log.display().to_string(),
            source,
        })?;
        let args = args(cfg, accel, &paths);
        debug!(?args, "starting QEMU");
        let mut cmd = Command::new(binary);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // QEMU opens the pod's tap inside the pod's network namespace.
        let netns = match &cfg.tap {
            Some(t) => Some(File::open(&t.netns).map_err(|source| QemuError::File {
                path: t.netns.display().to_string(),
                source,
            })?),
            None => None,
        };
        let netns_fd = netns.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
        // If its parent dies without shutting the VM down (SIGKILL, crash),
        // QEMU must not outlive it.
        // SAFETY: the closure runs in the forked child before exec and only
        // calls prctl(2) and setns(2), which are async-signal-safe; the
        // netns fd stays open in the parent until spawn returns.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(fd) = netns_fd {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|source| QemuError::Spawn {
            binary: binary.to_string(),
            source,
        })?;
        drop(netns);
        info!(
            pid = child.id(),
            accel = accel.name(),
            why = accel.reason(),
            "QEMU started"
        );
        Ok(QemuVm {
            child: Some(child),
            vsock: Some(vsock),
            paths,
            accel,
            launched_at,
        })
    }

    /// QEMU's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The hybrid-vsock Unix socket that reaches the guest.
    pub fn vsock_socket(&self) -> &Path {
        &self.paths.vsock_socket
    }

    /// `Some(status)` once QEMU has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Stops QEMU: SIGTERM (QEMU exits cleanly on it), then SIGKILL after
    /// `grace`. Waits for the process and the vsock backend to end.
    pub fn shutdown(&mut self, grace: Duration) -> Option<ExitStatus> {
        let status = self.child.take().map(|mut child| {
            if let Ok(Some(s)) = child.try_wait() {
                return s;
            }
            let pid = Pid::from_raw(child.id() as i32);
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            loop {
                match child.try_wait() {
                    Ok(Some(s)) => return s,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => {
                        warn!("QEMU did not stop on SIGTERM; killing it");
                        let _ = child.kill();
                        return child.wait().unwrap_or_else(|_| ExitStatus::default());
                    }
                }
            }
        });
        if let Some(v) = self.vsock.take() {
            if status.is_some() {
                v.join();
            }
        }
        status
    }

    /// The last `max_lines` lines of QEMU's own output (errors it printed).
    pub fn qemu_log_tail(&self, max_lines: usize) -> String {
        tail_of_file(&self.paths.qemu_log, max_lines)
    }

    /// The last `max_lines` lines of the guest's serial console.
    pub fn console_tail(&self, max_lines: usize) -> String {
        tail_of_file(&self.paths.console_log, max_lines)
    }
}

impl Drop for QemuVm {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(2));
    }
}

/// The last lines of a text file, lossily decoded; empty if unreadable.
pub fn tail_of_file(path: &Path, max_lines: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(max_lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> VmConfig {
        VmConfig {
            kernel: "/k/bzImage".into(),
            initrd: "/k/initrd.cpio".into(),
            cmdline: "console=ttyS0".into(),
            memory_mib: 256,
            vcpus: 2,
            user_net: false,
            tap: None,
        }
    }

    fn joined(accel: Accel) -> String {
        let a = args(&cfg(), accel, &QemuPaths::in_dir(Path::new("/run/vm")));
        a.iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn microvm_without_acpi_and_with_shared_memory() {
        let s = joined(Accel::Tcg);
        assert!(s.contains("-M microvm,acpi=off"), "{s}");
        assert!(s.contains("-object memory-backend-memfd,id=mem,size=256M,share=on -machine memory-backend=mem"), "{s}");
        assert!(
            s.contains("-device vhost-user-vsock-device,chardev=vsock "),
            "{s}"
        );
        assert!(
            s.contains("-chardev socket,id=vsock,path=/run/vm/vhost-vsock.sock"),
            "{s}"
        );
        assert!(
            s.contains("-chardev file,id=console,path=/run/vm/console.log -serial chardev:console"),
            "{s}"
        );
        assert!(
            s.contains("-kernel /k/bzImage -initrd /k/initrd.cpio -append console=ttyS0"),
            "{s}"
        );
        assert!(s.contains("-no-reboot"), "{s}");
        assert!(s.contains("-smp 2 -m 256M"), "{s}");
        assert!(
            s.contains("-qmp unix:/run/vm/qmp.sock,server=on,wait=off"),
            "{s}"
        );
    }

    #[test]
    fn commas_in_socket_and_log_paths_are_escaped() {
        assert_eq!(
            os_concat("file,id=console,path=", Path::new("/run/a,b/c.log")),
            OsString::from("file,id=console,path=/run/a,,b/c.log")
        );
    }

    #[test]
    fn user_networking_only_when_asked() {
        assert!(!joined(Accel::Tcg).contains("-netdev"));
        let mut c = cfg();
        c.user_net = true;
        let s = args(&c, Accel::Tcg, &QemuPaths::in_dir(Path::new("/run/vm")))
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            s.contains("-netdev user,id=net0,ipv6=off -device virtio-net-device,netdev=net0,mac=52:54:00:12:34:56"),
            "{s}"
        );
        c.tap = Some(crate::hypervisor::TapNet {
            netns: "/var/run/netns/cni-1".into(),
            tap: "tap0_cl".into(),
            mac: "aa:bb:cc:dd:ee:ff".into(),
        });
        let s = args(&c, Accel::Tcg, &QemuPaths::in_dir(Path::new("/run/vm")))
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            s.contains("-netdev tap,id=net0,ifname=tap0_cl,script=no,downscript=no,vhost=off -device virtio-net-device,netdev=net0,mac=aa:bb:cc:dd:ee:ff"),
            "{s}"
        );
        assert!(!s.contains("user,id=net0"), "{s}");
    }

    #[test]
    fn plain_qemu_has_no_vsock_and_no_memfd() {
        let a = plain_args(&cfg(), Accel::Tcg, Path::new("/run/vm/c.log"));
        let s = a
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(!s.contains("vhost-user") && !s.contains("memfd"), "{s}");
        assert!(s.contains("-kernel /k/bzImage"), "{s}");
    }

    #[test]
    fn accel_picks_cpu_model() {
        assert!(joined(Accel::Tcg).contains("-accel tcg -cpu max"));
        assert!(joined(Accel::Kvm).contains("-accel kvm -cpu host"));
    }

    #[test]
    fn tail_keeps_last_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        std::fs::write(&p, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail_of_file(&p, 2), "c\nd");
        assert_eq!(tail_of_file(&d.path().join("missing"), 2), "");
    }
}
