//! CopyFile: the files a runtime gives a pod (hosts, hostname,
//! resolv.conf, termination logs, volume contents), written below the
//! agent's sandbox directory, the only place bind mounts may come from.
//!
//! Containers can write into directories of the sandbox directory that are
//! bind-mounted read-write, so a container could plant a symlink there.
//! Every component is therefore opened relative to its parent with
//! `O_NOFOLLOW`: a symlink anywhere on the path is refused, never followed.
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use cloister_protocol::{CopyFileRequest, Empty};
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{mkdirat, Mode};
use tracing::info;

use super::{status, AgentState};

/// Largest file one CopyFile may carry.
pub const MAX_FILE: usize = 1 << 20;
/// Most bytes a pod may copy in all.
pub const MAX_TOTAL: u64 = 64 << 20;
/// Deepest path accepted.
const MAX_DEPTH: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CopyError {
    #[error("path {0:?}: {1}")]
    Path(String, &'static str),
    #[error("{path}: {size} bytes is more than the {max} bytes one CopyFile may carry")]
    TooLarge {
        path: String,
        size: usize,
        max: usize,
    },
    #[error("mode {0:#o} has bits beyond 0o7777")]
    Mode(u32),
    #[error("{path}: {what}: {errno}")]
    Io {
        path: String,
        what: &'static str,
        errno: nix::errno::Errno,
    },
}

/// The components of a relative path, each `[A-Za-z0-9_.-]+`, not `.`/`..`.
pub fn components(path: &str) -> Result<Vec<&str>, CopyError> {
    let bad = |why| CopyError::Path(path.chars().take(200).collect(), why);
    if path.is_empty() {
        return Err(bad("is empty"));
    }
    if path.starts_with('/') {
        return Err(bad(
            "is absolute; it must be relative to the sandbox directory",
        ));
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() > MAX_DEPTH {
        return Err(bad("is deeper than 16 components"));
    }
    for p in &parts {
        if p.is_empty() || *p == "." || *p == ".." {
            return Err(bad("has an empty, . or .. component"));
        }
        if p.len() > 255
            || !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(bad("has a component outside [A-Za-z0-9_.-]"));
        }
    }
    Ok(parts)
}

fn own(fd: std::os::fd::RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by openat(2) and nobody else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Opens (creating as needed) each directory of `parts` below `root`,
/// refusing symlinks; returns the last one.
fn open_dirs(root: &Path, parts: &[&str], shown: &str) -> Result<OwnedFd, CopyError> {
    let io = |what, errno| CopyError::Io {
        path: shown.into(),
        what,
        errno,
    };
    let dir_flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
    std::fs::create_dir_all(root).map_err(|e| {
        io(
            "creating the sandbox directory",
            nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        )
    })?;
    let mut dir = own(openat(None, root, dir_flags, Mode::empty())
        .map_err(|e| io("opening the sandbox directory", e))?);
    for p in parts {
        match mkdirat(Some(dir.as_raw_fd()), *p, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(io("creating a directory", e)),
        }
        let next = openat(Some(dir.as_raw_fd()), *p, dir_flags, Mode::empty()).map_err(|e| {
            if e == nix::errno::Errno::ELOOP || e == nix::errno::Errno::ENOTDIR {
                CopyError::Path(shown.into(), "crosses a symlink or a file")
            } else {
                io("opening a directory", e)
            }
        })?;
        dir = own(next);
    }
    Ok(dir)
}

/// Writes one file or directory below `root`. Returns the bytes written.
pub fn copy(root: &Path, req: &CopyFileRequest) -> Result<usize, CopyError> {
    let parts = components(&req.path)?;
    if req.mode & !0o7777 != 0 {
        return Err(CopyError::Mode(req.mode));
    }
    if req.directory {
        let mode = if req.mode == 0 { 0o755 } else { req.mode };
        let dir = open_dirs(root, &parts, &req.path)?;
        nix::sys::stat::fchmod(dir.as_raw_fd(), Mode::from_bits_truncate(mode)).map_err(|e| {
            CopyError::Io {
                path: req.path.clone(),
                what: "setting the mode",
                errno: e,
            }
        })?;
        return Ok(0);
    }
    if req.data.len() > MAX_FILE {
        return Err(CopyError::TooLarge {
            path: req.path.clone(),
            size: req.data.len(),
            max: MAX_FILE,
        });
    }
    let (name, dirs) = parts.split_last().expect("components is never empty");
    let dir = open_dirs(root, dirs, &req.path)?;
    let mode = if req.mode == 0 { 0o644 } else { req.mode };
    let fd = openat(
        Some(dir.as_raw_fd()),
        *name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode),
    )
    .map_err(|e| {
        if e == nix::errno::Errno::ELOOP {
            CopyError::Path(req.path.clone(), "is a symlink")
        } else {
            CopyError::Io {
                path: req.path.clone(),
                what: "opening the file",
                errno: e,
            }
        }
    })?;
    let mut f = File::from(own(fd));
    let io = |what| {
        move |e: std::io::Error| CopyError::Io {
            path: req.path.clone(),
            what,
            errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    };
    nix::sys::stat::fchmod(f.as_raw_fd(), Mode::from_bits_truncate(mode)).map_err(|e| {
        CopyError::Io {
            path: req.path.clone(),
            what: "setting the mode",
            errno: e,
        }
    })?;
    f.write_all(&req.data).map_err(io("writing"))?;
    Ok(req.data.len())
}

pub fn copy_file(s: &AgentState, req: CopyFileRequest) -> ttrpc::Result<Empty> {
    let root = s.run_dir.join("sandbox");
    {
        let sb = s.sandbox();
        if sb.copied_bytes + req.data.len() as u64 > MAX_TOTAL {
            return Err(status(
                ttrpc::Code::RESOURCE_EXHAUSTED,
                format!(
                    "{}: the pod has copied {} bytes; at most {MAX_TOTAL} in all",
                    req.path, sb.copied_bytes
                ),
            ));
        }
    }
    let n = copy(&root, &req).map_err(|e| {
        let code = match e {
            CopyError::Io { .. } => ttrpc::Code::INTERNAL,
            _ => ttrpc::Code::INVALID_ARGUMENT,
        };
        status(code, format!("CopyFile: {e}"))
    })?;
    s.sandbox().copied_bytes += n as u64;
    info!(
        path = req.path,
        bytes = n,
        directory = req.directory,
        "file copied into the sandbox"
    );
    Ok(Empty::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, data: &[u8]) -> CopyFileRequest {
        CopyFileRequest {
            path: path.into(),
            data: data.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn paths_are_relative_and_plain() {
        assert_eq!(
            components("volumes/cfg/a.conf").unwrap(),
            vec!["volumes", "cfg", "a.conf"]
        );
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "a/./b",
            "a/b c",
            "a\0b",
            "é",
        ] {
            assert!(components(bad).is_err(), "{bad:?}");
        }
        assert!(components(&["a"; 17].join("/")).is_err());
    }

    #[test]
    fn files_and_directories_are_written_below_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("sandbox");
        assert_eq!(
            copy(&root, &req("hosts", b"127.0.0.1 localhost\n")).unwrap(),
            20
        );
        assert_eq!(
            std::fs::read(root.join("hosts")).unwrap(),
            b"127.0.0.1 localhost\n"
        );
        copy(&root, &req("volumes/cfg/app.conf", b"x=1")).unwrap();
        assert_eq!(
            std::fs::read(root.join("volumes/cfg/app.conf")).unwrap(),
            b"x=1"
        );
        let mut r = req("volumes/empty", b"");
        r.directory = true;
        r.mode = 0o700;
        copy(&root, &r).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(root.join("volumes/empty"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(m & 0o7777, 0o700);
        // Rewriting replaces the contents.
        copy(&root, &req("hosts", b"short")).unwrap();
        assert_eq!(std::fs::read(root.join("hosts")).unwrap(), b"short");
    }

    #[test]
    fn symlinks_are_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("sandbox");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(root.join("volumes")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // A container planted these in a read-write volume.
        std::os::unix::fs::symlink(&outside, root.join("volumes/evil")).unwrap();
        std::os::unix::fs::symlink(outside.join("f"), root.join("link")).unwrap();
        let e = copy(&root, &req("volumes/evil/x", b"pwned")).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        let e = copy(&root, &req("link", b"pwned")).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
    }

    #[test]
    fn oversized_files_and_bad_modes_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let e = copy(d.path(), &req("big", &vec![0; MAX_FILE + 1])).unwrap_err();
        assert!(matches!(e, CopyError::TooLarge { .. }), "{e}");
        let mut r = req("f", b"");
        r.mode = 0o10000;
        assert_eq!(copy(d.path(), &r).unwrap_err(), CopyError::Mode(0o10000));
        assert!(!d.path().join("big").exists());
    }
}
