//! A container's rootfs: the image's layers from the layer store as
//! overlayfs lowerdirs (shared, never written), with an upper and work
//! directory of the container's own.
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::RuntimeError;

/// Overlayfs takes its options in one page.
const MAX_OPTIONS: usize = 4095;

/// Mounts the overlay at `target` (created if missing). `lowerdirs` is top
/// layer first, as [`cloister_image::PulledImage::overlay_lowerdirs`] gives it.
pub fn mount_overlay(
    lowerdirs: &[PathBuf],
    scratch: &Path,
    target: &Path,
) -> Result<(), RuntimeError> {
    if lowerdirs.is_empty() {
        return Err(RuntimeError::Rootfs("the image has no layers".into()));
    }
    for d in lowerdirs {
        if d.to_string_lossy().contains([',', ':']) {
            return Err(RuntimeError::Rootfs(format!(
                "layer directory {} has a character overlayfs cannot take",
                d.display()
            )));
        }
    }
    let upper = scratch.join("upper");
    let work = scratch.join("work");
    for d in [&upper, &work, &target.to_path_buf()] {
        std::fs::create_dir_all(d).map_err(|source| RuntimeError::Io {
            what: format!("creating {}", d.display()),
            source,
        })?;
    }
    let lower: Vec<String> = lowerdirs.iter().map(|d| d.display().to_string()).collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    if opts.len() > MAX_OPTIONS {
        return Err(RuntimeError::Rootfs(format!(
            "{} layers make {} bytes of overlayfs options, more than one page",
            lowerdirs.len(),
            opts.len()
        )));
    }
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )
    .map_err(|e| RuntimeError::Rootfs(format!("mounting overlayfs at {}: {e}", target.display())))
}

/// Detaches the rootfs mount (lazily: a process that still holds it open
/// does not keep the container from being removed).
pub fn unmount(target: &Path) -> Result<(), RuntimeError> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(RuntimeError::Rootfs(format!(
            "unmounting {}: {e}",
            target.display()
        ))),
    }
}
