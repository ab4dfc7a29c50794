//! Assembles a container rootfs from unpacked layers by copying (or hard
//! linking) them in order, applying overlayfs-format whiteouts and opaque
//! directories. This is the fallback for when overlayfs cannot be used;
//! with overlayfs, mount the layers as lowerdirs instead and nothing is
//! copied ([`crate::PulledImage::overlay_lowerdirs`]).
//!
//! - [`AssembleMode::Copy`]: independent files; the store stays pristine.
//!   Hard links inside a layer stay hard links in the copy.
//! - [`AssembleMode::Hardlink`]: regular files are hard links into the
//!   store; fast and free, but writing to a file in the rootfs writes the
//!   store's copy. Only for a store that is thrown away afterwards (the
//!   `cloister image pull` CLI uses it with a temporary store).
//!
//! The rootfs is built in a temporary sibling of `dest` and renamed into
//! place at the end, so a failure leaves no partial rootfs.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};

use crate::unpack::fsops::{self, errno};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssembleMode {
    Copy,
    Hardlink,
}

#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error("destination {0} exists and is not an empty directory")]
    DestExists(PathBuf),
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(op: &'static str, path: impl Into<String>) -> impl FnOnce(io::Error) -> AssembleError {
    let path = path.into();
    move |source| AssembleError::Io { op, path, source }
}

/// Builds `dest` from `layers` (bottom first). `dest` must not exist, or
/// be an empty directory (which is replaced).
pub fn assemble_rootfs(
    layers: &[PathBuf],
    dest: &Path,
    mode: AssembleMode,
) -> Result<(), AssembleError> {
    if let Ok(mut rd) = std::fs::read_dir(dest) {
        if rd.next().is_some() {
            return Err(AssembleError::DestExists(dest.into()));
        }
    } else if dest.symlink_metadata().is_ok() {
        return Err(AssembleError::DestExists(dest.into()));
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rootfs".into());
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.assembling."))
        .tempdir_in(&parent)
        .map_err(io_err(
            "create temporary rootfs in",
            parent.display().to_string(),
        ))?;
    let root = fsops::open_subdir(rustix::fs::CWD, tmp.path().as_os_str().as_encoded_bytes())
        .map_err(io_err("open", tmp.path().display().to_string()))?;
    let mut a = Assembler {
        mode,
        root,
        links: HashMap::new(),
        path: Vec::new(),
        buf: vec![0u8; 128 * 1024],
    };
    for layer in layers {
        let shown = layer.display().to_string();
        let src = fsops::open_subdir(rustix::fs::CWD, layer.as_os_str().as_encoded_bytes())
            .map_err(io_err("open layer", shown.clone()))?;
        a.links.clear();
        let root = a.root.try_clone().map_err(io_err("dup", shown.clone()))?;
        a.merge_dir(src.as_fd(), root.as_fd())?;
        let st = rustix::fs::fstat(&src).map_err(|e| io_err("stat", shown.clone())(errno(e)))?;
        a.copy_meta(root.as_fd(), &st, &shown)?;
    }
    if dest.is_dir() {
        std::fs::remove_dir(dest).map_err(io_err("replace empty", dest.display().to_string()))?;
    }
    let tmp_path = tmp.keep();
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        &tmp_path,
        rustix::fs::CWD,
        dest,
        rustix::fs::RenameFlags::NOREPLACE,
    )
    .map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp_path);
        io_err("rename into place", dest.display().to_string())(errno(e))
    })
}

struct Assembler {
    mode: AssembleMode,
    root: OwnedFd,
    /// (dev, ino) of multiply-linked files of the current layer -> the
    /// path of their first copy, to recreate the hard links.
    links: HashMap<(u64, u64), Vec<Vec<u8>>>,
    path: Vec<Vec<u8>>,
    buf: Vec<u8>,
}

impl Assembler {
    fn shown(&self, name: &[u8]) -> String {
        let mut s = String::new();
        for c in self.path.iter().map(|c| c.as_slice()).chain([name]) {
            s.push('/');
            s.push_str(&String::from_utf8_lossy(c));
        }
        s
    }

    fn merge_dir(&mut self, src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> Result<(), AssembleError> {
        let entries = fsops::list_dir(src).map_err(io_err("list", self.shown(b"")))?;
        for (name, _) in entries {
            let shown = self.shown(&name);
            let st = rustix::fs::statat(src, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| io_err("stat", shown.clone())(errno(e)))?;
            if fsops::is_whiteout(&st) {
                fsops::remove_at(dst, &name).map_err(io_err("whiteout", shown))?;
                continue;
            }
            let ft = fsops::file_type(&st);
            if ft == FileType::Directory {
                let sub_src =
                    fsops::open_subdir(src, &name).map_err(io_err("open", shown.clone()))?;
                match fsops::lstat_at(dst, &name).map_err(io_err("stat", shown.clone()))? {
                    Some(d) if fsops::file_type(&d) == FileType::Directory => {
                        if fsops::is_opaque(sub_src.as_fd()) {
                            let sub_dst = fsops::open_subdir(dst, &name)
                                .map_err(io_err("open", shown.clone()))?;
                            fsops::clear_dir(sub_dst.as_fd())
                                .map_err(io_err("clear opaque", shown.clone()))?;
                        }
                    }
                    existing => {
                        if existing.is_some() {
                            fsops::remove_at(dst, &name)
                                .map_err(io_err("replace", shown.clone()))?;
                        }
                        rustix::fs::mkdirat(dst, name.as_slice(), Mode::from_raw_mode(0o700))
                            .map_err(|e| io_err("mkdir", shown.clone())(errno(e)))?;
                    }
                }
                let sub_dst =
                    fsops::open_subdir(dst, &name).map_err(io_err("open", shown.clone()))?;
                self.path.push(name.clone());
                self.merge_dir(sub_src.as_fd(), sub_dst.as_fd())?;
                self.path.pop();
                self.copy_meta(sub_dst.as_fd(), &st, &shown)?;
                continue;
            }
            fsops::remove_at(dst, &name).map_err(io_err("replace", shown.clone()))?;
            match ft {
                FileType::RegularFile => self.copy_file(src, dst, &name, &st, &shown)?,
                FileType::Symlink => {
                    let target = rustix::fs::readlinkat(src, name.as_slice(), Vec::new())
                        .map_err(|e| io_err("readlink", shown.clone())(errno(e)))?;
                    rustix::fs::symlinkat(target.as_c_str(), dst, name.as_slice())
                        .map_err(|e| io_err("symlink", shown.clone())(errno(e)))?;
                    self.owner_times_nofollow(dst, &name, &st, &shown)?;
                }
                _ => {
                    rustix::fs::mknodat(
                        dst,
                        name.as_slice(),
                        ft,
                        Mode::from_raw_mode(st.st_mode & 0o7777),
                        st.st_rdev,
                    )
                    .map_err(|e| io_err("mknod", shown.clone())(errno(e)))?;
                    self.owner_times_nofollow(dst, &name, &st, &shown)?;
                }
            }
        }
        Ok(())
    }

    fn copy_file(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &[u8],
        st: &rustix::fs::Stat,
        shown: &str,
    ) -> Result<(), AssembleError> {
        if self.mode == AssembleMode::Hardlink {
            return rustix::fs::linkat(src, name, dst, name, AtFlags::empty())
                .map_err(|e| io_err("link", shown)(errno(e)));
        }
        let key = (st.st_dev, st.st_ino);
        if st.st_nlink > 1 {
            if let Some(first) = self.links.get(&key) {
                let comps: Vec<&[u8]> = first.iter().map(|c| c.as_slice()).collect();
                if let Some((last, dir)) = comps.split_last() {
                    let d = fsops::open_dir_in_root(self.root.as_fd(), dir, false)
                        .map_err(io_err("open link target dir", shown))?;
                    return rustix::fs::linkat(&d, *last, dst, name, AtFlags::empty())
                        .map_err(|e| io_err("link", shown)(errno(e)));
                }
            }
        }
        let from = rustix::fs::openat(
            src,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err("open", shown)(errno(e)))?;
        let to = rustix::fs::openat(
            dst,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io_err("create", shown)(errno(e)))?;
        let mut from = std::fs::File::from(from);
        let mut to = std::fs::File::from(to);
        loop {
            let n = io::Read::read(&mut from, &mut self.buf).map_err(io_err("read", shown))?;
            if n == 0 {
                break;
            }
            io::Write::write_all(&mut to, &self.buf[..n]).map_err(io_err("write", shown))?;
        }
        if let Ok(n) = rustix::fs::fgetxattr(&from, "security.capability", &mut self.buf[..]) {
            let _ = rustix::fs::fsetxattr(
                &to,
                "security.capability",
                &self.buf[..n],
                rustix::fs::XattrFlags::empty(),
            );
        }
        self.copy_meta(to.as_fd(), st, shown)?;
        if st.st_nlink > 1 {
            let mut p = self.path.clone();
            p.push(name.to_vec());
            self.links.insert(key, p);
        }
        Ok(())
    }

    fn copy_meta(
        &self,
        fd: BorrowedFd<'_>,
        st: &rustix::fs::Stat,
        shown: &str,
    ) -> Result<(), AssembleError> {
        if rustix::process::geteuid().is_root() {
            rustix::fs::fchown(
                fd,
                Some(rustix::fs::Uid::from_raw(st.st_uid)),
                Some(rustix::fs::Gid::from_raw(st.st_gid)),
            )
            .map_err(|e| io_err("chown", shown)(errno(e)))?;
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(st.st_mode & 0o7777))
            .map_err(|e| io_err("chmod", shown)(errno(e)))?;
        rustix::fs::futimens(fd, &times(st)).map_err(|e| io_err("set mtime", shown)(errno(e)))
    }

    fn owner_times_nofollow(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        st: &rustix::fs::Stat,
        shown: &str,
    ) -> Result<(), AssembleError> {
        if rustix::process::geteuid().is_root() {
            rustix::fs::chownat(
                dir,
                name,
                Some(rustix::fs::Uid::from_raw(st.st_uid)),
                Some(rustix::fs::Gid::from_raw(st.st_gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io_err("chown", shown)(errno(e)))?;
        }
        rustix::fs::utimensat(dir, name, &times(st), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err("set mtime", shown)(errno(e)))
    }
}

fn times(st: &rustix::fs::Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}
