//! File-system operations relative to a root directory fd, none of which
//! can reach outside that root.
//!
//! Every path from a layer is resolved with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)`, so symlinks (absolute or with `..`) created by
//! earlier entries resolve as if the root were `/`, never to the host's
//! files. The final component is then created or removed with a `*at`
//! call on the resolved parent fd using a single plain name, which the
//! kernel does not follow (`O_EXCL|O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags};

/// Resolution flags for every lookup inside an unpack root.
pub const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

pub fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// Opens `root` itself as an `O_PATH` directory fd.
pub fn open_root(path: &std::path::Path) -> io::Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)
}

/// Joins plain components with `/` for one `openat2` call.
fn join(components: &[&[u8]]) -> Vec<u8> {
    let mut p = Vec::new();
    for (i, c) in components.iter().enumerate() {
        if i > 0 {
            p.push(b'/');
        }
        p.extend_from_slice(c);
    }
    p
}

/// Opens the directory at `components` (resolved inside `root`) as an
/// `O_PATH` fd. With `create`, missing directories are made (mode 0755),
/// each with `mkdirat` on its already-resolved parent.
pub fn open_dir_in_root(
    root: BorrowedFd<'_>,
    components: &[&[u8]],
    create: bool,
) -> io::Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    if components.is_empty() {
        return rustix::fs::openat(root, c".", flags, Mode::empty()).map_err(errno);
    }
    match rustix::fs::openat2(root, join(components), flags, Mode::empty(), IN_ROOT) {
        Ok(fd) => return Ok(fd),
        Err(rustix::io::Errno::NOENT) if create => {}
        Err(e) => return Err(errno(e)),
    }
    let mut parent = rustix::fs::openat(root, c".", flags, Mode::empty()).map_err(errno)?;
    for i in 1..=components.len() {
        let prefix = join(&components[..i]);
        let fd = match rustix::fs::openat2(root, &prefix, flags, Mode::empty(), IN_ROOT) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => {
                match rustix::fs::mkdirat(&parent, components[i - 1], Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(errno(e)),
                }
                rustix::fs::openat2(root, &prefix, flags, Mode::empty(), IN_ROOT).map_err(errno)?
            }
            Err(e) => return Err(errno(e)),
        };
        parent = fd;
    }
    Ok(parent)
}

/// `lstat` of `name` in `dir`, `None` if it does not exist.
pub fn lstat_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<rustix::fs::Stat>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(errno(e)),
    }
}

pub fn file_type(st: &rustix::fs::Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// Removes `name` in `dir`, recursively if it is a directory. Nothing is
/// followed: subdirectories are opened with `O_NOFOLLOW`.
pub fn remove_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    match lstat_at(dir, name)? {
        None => Ok(()),
        Some(st) if file_type(&st) == FileType::Directory => {
            let sub = rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(errno)?;
            clear_dir(sub.as_fd())?;
            rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(errno)
        }
        Some(_) => rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(errno),
    }
}

/// Removes everything inside the directory open as `dir` (opened for
/// reading, not `O_PATH`).
pub fn clear_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    let names = list_dir(dir)?;
    for (name, _) in names {
        remove_at(dir, &name)?;
    }
    Ok(())
}

/// Names (without `.` and `..`) and types of the entries of `dir`.
/// Collected first, so that the caller may modify the directory.
pub fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<(Vec<u8>, FileType)>> {
    let mut out = Vec::new();
    let iter = Dir::read_from(dir).map_err(errno)?;
    for entry in iter {
        let entry = entry.map_err(errno)?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        out.push((name.to_vec(), entry.file_type()));
    }
    Ok(out)
}

/// Opens a directory entry of `dir` for reading without following a
/// symlink in its place.
pub fn open_subdir(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)
}

/// Reopens an `O_PATH` directory fd for reading (needed for xattrs, fchmod
/// and listing).
pub fn reopen_dir(dir: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)
}

/// The overlayfs xattrs that mark an opaque directory: the privileged
/// `trusted.` one, and the `user.` one overlayfs reads with `userxattr`.
pub const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

/// Marks `dir` (opened for reading) opaque for overlayfs. Tries the
/// trusted xattr first (root in the guest), then the user one.
pub fn set_opaque(dir: BorrowedFd<'_>) -> io::Result<()> {
    let mut last = None;
    for name in OPAQUE_XATTRS {
        match rustix::fs::fsetxattr(dir, name, b"y", rustix::fs::XattrFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(errno(e)),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no opaque xattr could be set")))
}

/// Whether `dir` (opened for reading) carries an overlayfs opaque mark.
pub fn is_opaque(dir: BorrowedFd<'_>) -> bool {
    OPAQUE_XATTRS.iter().any(|name| {
        let mut buf = [0u8; 4];
        matches!(rustix::fs::fgetxattr(dir, *name, &mut buf), Ok(1) if buf[0] == b'y')
    })
}

/// An overlayfs whiteout: a character device with device number 0/0.
pub fn make_whiteout(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    rustix::fs::mknodat(
        dir,
        name,
        FileType::CharacterDevice,
        Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
    .map_err(errno)
}

pub fn is_whiteout(st: &rustix::fs::Stat) -> bool {
    file_type(st) == FileType::CharacterDevice && st.st_rdev == 0
}
