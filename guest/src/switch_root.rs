//! Moves PID 1 off the initramfs onto a tmpfs root, as `switch_root` does.
//!
//! Why: the kernel refuses `pivot_root` while the root is the initial
//! ramfs, and libcontainer enters every container with `pivot_root` (the
//! alternative, chroot, can be escaped). So the agent copies the initramfs
//! contents into a tmpfs, frees the ramfs copies, moves the tmpfs onto `/`,
//! chroots into it and executes itself again from there.
use std::convert::Infallible;
use std::ffi::CString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context};
use nix::mount::{mount, MsFlags};

/// The argument the agent gets once it runs from the tmpfs root.
pub const SWITCHED: &str = "--switched-root";
const NEW_ROOT: &str = "/.cloister-root";

/// Copies `/` to a tmpfs, makes it the root and execs `/init` there.
pub fn switch_to_tmpfs() -> anyhow::Result<Infallible> {
    let new = Path::new(NEW_ROOT);
    std::fs::create_dir_all(new).context("creating the new root")?;
    mount(
        Some("tmpfs"),
        new,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755"),
    )
    .context("mounting the tmpfs root")?;
    let root_dev = std::fs::metadata("/").context("stat /")?.dev();
    for entry in std::fs::read_dir("/").context("reading /")? {
        let entry = entry?;
        if entry.path() == new {
            continue;
        }
        copy_tree(&entry.path(), &new.join(entry.file_name()), root_dev)?;
    }
    // Free the ramfs copies (they would stay in memory for nothing).
    for entry in std::fs::read_dir("/").context("reading /")? {
        let entry = entry?;
        if entry.path() != new {
            remove_tree(&entry.path(), root_dev);
        }
    }
    std::env::set_current_dir(new).context("chdir to the new root")?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .context("moving the new root onto /")?;
    nix::unistd::chroot(".").context("chroot into the new root")?;
    std::env::set_current_dir("/").context("chdir /")?;
    let init = CString::new("/init").expect("no NUL");
    let arg = CString::new(SWITCHED).expect("no NUL");
    nix::unistd::execv(&init, &[init.clone(), arg]).context("executing /init on the new root")?;
    bail!("execv returned")
}

/// Copies files, directories and symlinks, keeping modes; stays on `dev`.
fn copy_tree(from: &Path, to: &Path, dev: u64) -> anyhow::Result<()> {
    let md = std::fs::symlink_metadata(from).with_context(|| format!("stat {}", from.display()))?;
    if md.dev() != dev {
        return Ok(());
    }
    let ft = md.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(from)?;
        std::os::unix::fs::symlink(target, to)
            .with_context(|| format!("symlink {}", to.display()))?;
    } else if ft.is_dir() {
        std::fs::create_dir(to).with_context(|| format!("mkdir {}", to.display()))?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            copy_tree(&e.path(), &to.join(e.file_name()), dev)?;
        }
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
    } else if ft.is_file() {
        std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
    }
    Ok(())
}

fn remove_tree(p: &Path, dev: u64) {
    let Ok(md) = std::fs::symlink_metadata(p) else {
        return;
    };
    if md.dev() != dev {
        return;
    }
    if md.file_type().is_dir() {
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                remove_tree(&e.path(), dev);
            }
        }
        let _ = std::fs::remove_dir(p);
    } else {
        let _ = std::fs::remove_file(p);
    }
}
