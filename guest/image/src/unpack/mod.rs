//! Unpacks one layer's tar stream into a directory, safely.
//!
//! The directory is the layer's own tree (one per layer, shared between
//! containers), in overlayfs' format so it can be used as a lowerdir:
//! an OCI whiteout `.wh.NAME` becomes a 0/0 character device `NAME`, and an
//! opaque marker `.wh..wh..opq` becomes the `trusted.overlay.opaque=y`
//! xattr on its directory (`user.overlay.opaque` when not privileged).
//!
//! Safety rules, each tested with a crafted layer:
//! - entry paths with a `..` component are refused (the layer is hostile);
//!   a leading `/` is dropped;
//! - every lookup resolves inside the root (see `fsops`), so a symlink
//!   planted by an earlier entry, absolute or relative, cannot redirect a
//!   later write outside;
//! - the final component is created with `O_EXCL|O_NOFOLLOW` or a `*at`
//!   call that does not follow it; whatever was there is removed first;
//! - hard-link targets are resolved inside the root too and must exist in
//!   this layer;
//! - device nodes are refused unless `allow_devices` is set.
//!
//! Not restored: directory mtimes (later entries change them) and xattrs
//! other than `user.*` and `security.capability`.

pub(crate) mod fsops;

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};

use crate::tar::{Entry, EntryKind, TarError, TarLimits, TarReader};
use fsops::errno;

/// How a layer is unpacked.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Create character and block device nodes (refused by default).
    pub allow_devices: bool,
    /// Apply the tar's uid/gid (needs root; default: when running as root).
    pub preserve_ownership: bool,
    pub limits: TarLimits,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        Self {
            allow_devices: false,
            preserve_ownership: rustix::process::geteuid().is_root(),
            limits: TarLimits::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error(transparent)]
    Tar(#[from] TarError),
    #[error("entry {path:?} escapes the root with a '..' component")]
    PathTraversal { path: String },
    #[error("entry {path:?} has an invalid path: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("entry {path:?} is a device node; devices are refused (allow_devices is off)")]
    DeviceRefused { path: String },
    #[error("hard link {path:?} -> {target:?}: {reason}")]
    HardLink {
        path: String,
        target: String,
        reason: String,
    },
    #[error("entry {path:?} has uid/gid {uid}/{gid}, outside the valid range")]
    BadOwner { path: String, uid: u64, gid: u64 },
    #[error("{op} {path:?}")]
    Fs {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("reading data of {path:?}")]
    Data {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl UnpackError {
    /// The I/O error underneath, if any (used to find integrity failures
    /// reported by the verifying readers further down the stream).
    pub fn io_source(&self) -> Option<&io::Error> {
        match self {
            UnpackError::Tar(TarError::Io(e)) | UnpackError::Data { source: e, .. } => Some(e),
            _ => None,
        }
    }
}

/// What one layer contained.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnpackStats {
    pub entries: u64,
    pub files: u64,
    pub file_bytes: u64,
    pub whiteouts: u64,
    pub opaque_dirs: u64,
}

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// Unpacks all entries of `tar` into `dest` (an existing directory).
/// Does not read past the end-of-archive marker; the caller drains.
pub fn unpack<R: Read>(
    tar: &mut TarReader<R>,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    let root = fsops::open_root(dest).map_err(|source| UnpackError::Fs {
        op: "open unpack root",
        path: dest.display().to_string(),
        source,
    })?;
    let mut u = Unpacker {
        root,
        opts,
        stats: UnpackStats::default(),
        buf: vec![0u8; 128 * 1024],
    };
    while let Some(entry) = tar.next_entry()? {
        u.stats.entries += 1;
        u.apply(tar, &entry)?;
    }
    Ok(u.stats)
}

struct Unpacker<'a> {
    root: OwnedFd,
    opts: &'a UnpackOptions,
    stats: UnpackStats,
    buf: Vec<u8>,
}

/// Splits a tar path into plain components: empty and `.` parts dropped,
/// a leading `/` ignored, `..` refused.
fn components<'p>(raw: &'p [u8], shown: &str) -> Result<Vec<&'p [u8]>, UnpackError> {
    if raw.contains(&0) {
        return Err(UnpackError::InvalidPath {
            path: shown.into(),
            reason: "contains a NUL byte",
        });
    }
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(UnpackError::PathTraversal { path: shown.into() });
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

impl Unpacker<'_> {
    fn fs_err<'p>(op: &'static str, path: &'p str) -> impl FnOnce(io::Error) -> UnpackError + 'p {
        move |source| UnpackError::Fs {
            op,
            path: path.into(),
            source,
        }
    }

    fn apply<R: Read>(&mut self, tar: &mut TarReader<R>, e: &Entry) -> Result<(), UnpackError> {
        let shown = e.path_lossy();
        let comps = components(&e.path, &shown)?;
        let Some((&name, parent)) = comps.split_last() else {
            // The root itself ("./"): only its metadata can change.
            if e.kind == EntryKind::Directory {
                let dir = fsops::reopen_dir(self.root.as_fd())
                    .map_err(Self::fs_err("open root", &shown))?;
                self.set_owner_mode(dir.as_fd(), None, e, &shown)?;
                return Ok(());
            }
            return Err(UnpackError::InvalidPath {
                path: shown,
                reason: "a non-directory entry names the root",
            });
        };

        // Whiteouts and opaque markers.
        if name == OPAQUE_MARKER {
            let dir = fsops::open_dir_in_root(self.root.as_fd(), parent, true)
                .and_then(|d| fsops::reopen_dir(d.as_fd()))
                .map_err(Self::fs_err("open opaque directory", &shown))?;
            fsops::set_opaque(dir.as_fd()).map_err(Self::fs_err("mark opaque", &shown))?;
            self.stats.opaque_dirs += 1;
            return Ok(());
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.starts_with(WHITEOUT_PREFIX) {
                // Other AUFS meta files (.wh..wh.plnk, .wh..wh.aufs): ignore.
                return Ok(());
            }
            if hidden.is_empty() {
                return Err(UnpackError::InvalidPath {
                    path: shown,
                    reason: "whiteout of an empty name",
                });
            }
            let dir = fsops::open_dir_in_root(self.root.as_fd(), parent, true)
                .map_err(Self::fs_err("open whiteout directory", &shown))?;
            fsops::remove_at(dir.as_fd(), hidden).map_err(Self::fs_err("replace", &shown))?;
            fsops::make_whiteout(dir.as_fd(), hidden)
                .map_err(Self::fs_err("create whiteout", &shown))?;
            self.stats.whiteouts += 1;
            return Ok(());
        }

        let dir = fsops::open_dir_in_root(self.root.as_fd(), parent, true)
            .map_err(Self::fs_err("open parent directory of", &shown))?;
        let dir = dir.as_fd();

        if e.kind == EntryKind::Directory {
            match fsops::lstat_at(dir, name).map_err(Self::fs_err("stat", &shown))? {
                Some(st) if fsops::file_type(&st) == FileType::Directory => {}
                existing => {
                    if existing.is_some() {
                        fsops::remove_at(dir, name).map_err(Self::fs_err("replace", &shown))?;
                    }
                    rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700))
                        .map_err(|x| Self::fs_err("mkdir", &shown)(errno(x)))?;
                }
            }
            let sub = fsops::open_subdir(dir, name).map_err(Self::fs_err("open", &shown))?;
            self.set_owner_mode(sub.as_fd(), None, e, &shown)?;
            self.set_xattrs(sub.as_fd(), e);
            return Ok(());
        }

        fsops::remove_at(dir, name).map_err(Self::fs_err("replace", &shown))?;
        match e.kind {
            EntryKind::File => self.write_file(tar, dir, name, e, &shown)?,
            EntryKind::Symlink => {
                if e.link_target.is_empty() || e.link_target.contains(&0) {
                    return Err(UnpackError::InvalidPath {
                        path: shown,
                        reason: "symlink target is empty or has a NUL byte",
                    });
                }
                // The target is stored as is: it is only ever followed by
                // in-root resolution, here and in the container.
                rustix::fs::symlinkat(e.link_target.as_slice(), dir, name)
                    .map_err(|x| Self::fs_err("symlink", &shown)(errno(x)))?;
                self.set_owner_times_nofollow(dir, name, e, &shown)?;
            }
            EntryKind::HardLink => self.hard_link(dir, name, e, &shown)?,
            EntryKind::CharDevice | EntryKind::BlockDevice | EntryKind::Fifo => {
                let ft = match e.kind {
                    EntryKind::CharDevice => FileType::CharacterDevice,
                    EntryKind::BlockDevice => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                if ft != FileType::Fifo && !self.opts.allow_devices {
                    return Err(UnpackError::DeviceRefused { path: shown });
                }
                rustix::fs::mknodat(
                    dir,
                    name,
                    ft,
                    Mode::from_raw_mode(e.mode & 0o777),
                    rustix::fs::makedev(e.dev_major, e.dev_minor),
                )
                .map_err(|x| Self::fs_err("mknod", &shown)(errno(x)))?;
                self.set_owner_times_nofollow(dir, name, e, &shown)?;
                // After chown, and not subject to the umask. `name` is the
                // node just made, not a symlink, so following is moot.
                rustix::fs::chmodat(dir, name, Mode::from_raw_mode(e.mode), AtFlags::empty())
                    .map_err(|x| Self::fs_err("chmod", &shown)(errno(x)))?;
            }
            EntryKind::Directory => unreachable!("handled above"),
        }
        Ok(())
    }

    fn write_file<R: Read>(
        &mut self,
        tar: &mut TarReader<R>,
        dir: BorrowedFd<'_>,
        name: &[u8],
        e: &Entry,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|x| Self::fs_err("create", shown)(errno(x)))?;
        let mut file = std::fs::File::from(fd);
        loop {
            let n = tar
                .read_data(&mut self.buf)
                .map_err(|source| UnpackError::Data {
                    path: shown.into(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            io::Write::write_all(&mut file, &self.buf[..n])
                .map_err(Self::fs_err("write", shown))?;
            self.stats.file_bytes += n as u64;
        }
        self.stats.files += 1;
        self.set_owner_mode(file.as_fd(), Some(e.mtime), e, shown)?;
        self.set_xattrs(file.as_fd(), e);
        Ok(())
    }

    fn hard_link(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        e: &Entry,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let target_shown = String::from_utf8_lossy(&e.link_target).into_owned();
        let err = |reason: String| UnpackError::HardLink {
            path: shown.into(),
            target: target_shown.clone(),
            reason,
        };
        let tcomps = components(&e.link_target, &target_shown)?;
        let Some((&tname, tparent)) = tcomps.split_last() else {
            return Err(err("target is the root directory".into()));
        };
        let tdir = fsops::open_dir_in_root(self.root.as_fd(), tparent, false)
            .map_err(|x| err(format!("target directory not found in this layer: {x}")))?;
        match fsops::lstat_at(tdir.as_fd(), tname) {
            Ok(Some(st)) if fsops::file_type(&st) == FileType::Directory => {
                return Err(err("target is a directory".into()))
            }
            Ok(Some(_)) => {}
            Ok(None) => return Err(err("target does not exist in this layer".into())),
            Err(x) => return Err(err(x.to_string())),
        }
        // Flags 0: a symlink target is linked itself, not followed.
        rustix::fs::linkat(tdir.as_fd(), tname, dir, name, AtFlags::empty())
            .map_err(|x| err(errno(x).to_string()))
    }

    fn owner(&self, e: &Entry, shown: &str) -> Result<Option<(u32, u32)>, UnpackError> {
        if !self.opts.preserve_ownership {
            return Ok(None);
        }
        match (u32::try_from(e.uid), u32::try_from(e.gid)) {
            (Ok(u), Ok(g)) if u != u32::MAX && g != u32::MAX => Ok(Some((u, g))),
            _ => Err(UnpackError::BadOwner {
                path: shown.into(),
                uid: e.uid,
                gid: e.gid,
            }),
        }
    }

    /// chown (first: it clears set-id bits), chmod, and optionally mtime
    /// on an open file or directory.
    fn set_owner_mode(
        &self,
        fd: BorrowedFd<'_>,
        mtime: Option<u64>,
        e: &Entry,
        shown: &str,
    ) -> Result<(), UnpackError> {
        if let Some((u, g)) = self.owner(e, shown)? {
            rustix::fs::fchown(
                fd,
                Some(rustix::fs::Uid::from_raw(u)),
                Some(rustix::fs::Gid::from_raw(g)),
            )
            .map_err(|x| Self::fs_err("chown", shown)(errno(x)))?;
        }
        let mut mode = e.mode & 0o7777;
        if e.kind == EntryKind::Directory && !rustix::process::geteuid().is_root() {
            // Without CAP_DAC_OVERRIDE a read-only directory could not be
            // filled by later entries.
            mode |= 0o700;
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))
            .map_err(|x| Self::fs_err("chmod", shown)(errno(x)))?;
        if let Some(t) = mtime {
            rustix::fs::futimens(fd, &timestamps(t))
                .map_err(|x| Self::fs_err("set mtime", shown)(errno(x)))?;
        }
        Ok(())
    }

    fn set_owner_times_nofollow(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        e: &Entry,
        shown: &str,
    ) -> Result<(), UnpackError> {
        if let Some((u, g)) = self.owner(e, shown)? {
            rustix::fs::chownat(
                dir,
                name,
                Some(rustix::fs::Uid::from_raw(u)),
                Some(rustix::fs::Gid::from_raw(g)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|x| Self::fs_err("chown", shown)(errno(x)))?;
        }
        rustix::fs::utimensat(dir, name, &timestamps(e.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|x| Self::fs_err("set mtime", shown)(errno(x)))?;
        Ok(())
    }

    /// Applies `user.*` and `security.capability` xattrs; failures (a file
    /// system without xattrs) are logged, not fatal.
    fn set_xattrs(&self, fd: BorrowedFd<'_>, e: &Entry) {
        for (name, value) in &e.xattrs {
            let allowed = name.starts_with(b"user.") || name.as_slice() == b"security.capability";
            if !allowed || name.starts_with(b"user.overlay.") {
                tracing::debug!(path = %e.path_lossy(), xattr = %String::from_utf8_lossy(name), "xattr not applied");
                continue;
            }
            if let Err(x) =
                rustix::fs::fsetxattr(fd, name.as_slice(), value, rustix::fs::XattrFlags::empty())
            {
                tracing::debug!(path = %e.path_lossy(), xattr = %String::from_utf8_lossy(name), error = %x, "xattr not applied");
            }
        }
    }
}

#[cfg(test)]
mod tests;

fn timestamps(mtime: u64) -> Timestamps {
    let t = Timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}
