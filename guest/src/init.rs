//! What PID 1 must do before anything else: mount the pseudo-filesystems,
//! and never leave the VM hanging: a fatal error prints its reason on the
//! console and turns the VM off.
use std::path::Path;

use anyhow::Context;
use nix::mount::{mount, MsFlags};
use nix::sys::reboot::{reboot, RebootMode};

struct Mount {
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    flags: MsFlags,
    data: Option<&'static str>,
}

const fn m(
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    flags: MsFlags,
    data: Option<&'static str>,
) -> Mount {
    Mount {
        source,
        target,
        fstype,
        flags,
        data,
    }
}

fn mounts() -> [Mount; 8] {
    let nosuid_nodev = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);
    let noexec = nosuid_nodev.union(MsFlags::MS_NOEXEC);
    [
        m("proc", "/proc", "proc", noexec, None),
        m("sysfs", "/sys", "sysfs", noexec, None),
        m(
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
        ),
        m(
            "devpts",
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
            Some("newinstance,ptmxmode=0666,mode=0620"),
        ),
        m("shm", "/dev/shm", "tmpfs", nosuid_nodev, Some("mode=1777")),
        m("run", "/run", "tmpfs", nosuid_nodev, Some("mode=0755")),
        m("tmp", "/tmp", "tmpfs", nosuid_nodev, Some("mode=1777")),
        m(
            "cgroup2",
            "/sys/fs/cgroup",
            "cgroup2",
            noexec,
            Some("nsdelegate"),
        ),
    ]
}

/// Mounts /proc, /sys, /dev (+pts, shm), /run, /tmp and the cgroup2 hierarchy.
pub fn setup_filesystems() -> anyhow::Result<()> {
    for mnt in mounts() {
        std::fs::create_dir_all(mnt.target).with_context(|| format!("creating {}", mnt.target))?;
        if is_mountpoint(mnt.target) {
            continue;
        }
        mount(
            Some(mnt.source),
            mnt.target,
            Some(mnt.fstype),
            mnt.flags,
            mnt.data,
        )
        .with_context(|| format!("mounting {} on {}", mnt.fstype, mnt.target))?;
    }
    Ok(())
}

/// The guest's own trust store: Mozilla's roots compiled into the measured
/// agent (the initramfs carries none, and the host must not provide one).
/// Written before the first pull (a no-op once it exists).
/// Registry TLS trusts these plus the initdata's CA (`registry.json`).
pub fn write_trust_store() -> anyhow::Result<()> {
    let path = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if path.exists() {
        return Ok(());
    }
    std::fs::create_dir_all("/etc/ssl/certs").context("creating /etc/ssl/certs")?;
    std::fs::write(path, cloister_image::embedded_roots_pem())
        .with_context(|| format!("writing {}", path.display()))
}

fn is_mountpoint(target: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(t), Ok(parent)) = (
        std::fs::metadata(target),
        std::fs::metadata(Path::new(target).join("..")),
    ) else {
        return false;
    };
    t.dev() != parent.dev()
}

/// Prints the reason on the console and turns the VM off. Never returns.
pub fn fatal(reason: &str) -> ! {
    eprintln!("cloister-agent: FATAL: {reason}");
    eprintln!("cloister-agent: powering off");
    power_off()
}

pub fn power_off() -> ! {
    nix::unistd::sync();
    // Without ACPI (QEMU microvm with acpi=off, the builtin VMM) the guest
    // cannot power off; there the VMM treats a reset as the end of the VM
    // (QEMU -no-reboot, kernel reboot=t), so reboot instead.
    let mode = if Path::new("/sys/firmware/acpi").exists() {
        RebootMode::RB_POWER_OFF
    } else {
        RebootMode::RB_AUTOBOOT
    };
    let _ = reboot(mode);
    // reboot(2) only returns on error; PID 1 exiting panics the kernel,
    // which the guest's panic=-1 turns into a reset as well.
    std::process::exit(1)
}

/// A panic in PID 1 is fatal for the VM: report it and power off rather
/// than leave a guest without its agent.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        fatal(&format!("panic: {info}"));
    }));
}
