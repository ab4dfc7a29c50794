//! A deterministic initramfs builder (cpio "newc", uncompressed).
//!
//! The initramfs is part of the launch measurement, so identical inputs must
//! give identical bytes: entries are sorted by path, inode numbers are
//! assigned in that order, and every mtime, uid, gid and mode is fixed. The
//! format is written here rather than with a cpio crate because every header
//! field has to be under our control for that guarantee (see
//! `Documentation/driver-api/early-userspace/buffer-format.rst`).
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum InitrdError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a static executable: {reason}")]
    NotStatic { path: String, reason: String },
    #[error("invalid initramfs path {0:?}")]
    BadPath(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir { mode: u32 },
    File { mode: u32, data: Vec<u8> },
    CharDev { mode: u32, major: u32, minor: u32 },
    Symlink { target: String },
}

/// An initramfs under construction. Paths are relative, without a leading
/// slash ("init", "dev/console").
#[derive(Debug, Default, Clone)]
pub struct Initramfs {
    entries: BTreeMap<String, Entry>,
}

impl Initramfs {
    pub fn new() -> Self {
        Self::default()
    }

    fn insert(&mut self, path: &str, e: Entry) -> Result<&mut Self, InitrdError> {
        if path.is_empty()
            || path.starts_with('/')
            || path
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(InitrdError::BadPath(path.to_string()));
        }
        // Parent directories are implied, as in `mkdir -p`.
        let mut prefix = String::new();
        for comp in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map(|(_, p)| p)
            .unwrap_or(&[])
        {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(comp);
            self.entries
                .entry(prefix.clone())
                .or_insert(Entry::Dir { mode: 0o755 });
        }
        self.entries.insert(path.to_string(), e);
        Ok(self)
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> Result<&mut Self, InitrdError> {
        self.insert(path, Entry::Dir { mode })
    }

    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) -> Result<&mut Self, InitrdError> {
        self.insert(path, Entry::File { mode, data })
    }

    pub fn char_dev(
        &mut self,
        path: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<&mut Self, InitrdError> {
        self.insert(path, Entry::CharDev { mode, major, minor })
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<&mut Self, InitrdError> {
        self.insert(
            path,
            Entry::Symlink {
                target: target.to_string(),
            },
        )
    }

    /// The archive bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (ino, (path, e)) in self.entries.iter().enumerate() {
            let ino = ino as u32 + 1;
            match e {
                Entry::Dir { mode } => {
                    write_entry(&mut out, path, ino, 0o040000 | mode, 2, 0, 0, &[])
                }
                Entry::File { mode, data } => {
                    write_entry(&mut out, path, ino, 0o100000 | mode, 1, 0, 0, data)
                }
                Entry::CharDev { mode, major, minor } => {
                    write_entry(&mut out, path, ino, 0o020000 | mode, 1, *major, *minor, &[])
                }
                Entry::Symlink { target } => {
                    write_entry(&mut out, path, ino, 0o120777, 1, 0, 0, target.as_bytes())
                }
            }
        }
        write_entry(&mut out, "TRAILER!!!", 0, 0, 1, 0, 0, &[]);
        out
    }

    /// Writes the archive atomically and returns its sha256.
    pub fn write_to(&self, out: &Path) -> Result<[u8; 32], InitrdError> {
        let bytes = self.to_bytes();
        let tmp = out.with_extension("tmp");
        let werr = |source| InitrdError::Write {
            path: out.display().to_string(),
            source,
        };
        let mut f = std::fs::File::create(&tmp).map_err(werr)?;
        f.write_all(&bytes).map_err(werr)?;
        f.sync_all().map_err(werr)?;
        std::fs::rename(&tmp, out).map_err(werr)?;
        Ok(Sha256::digest(&bytes).into())
    }
}

#[allow(clippy::too_many_arguments)]
fn write_entry(
    out: &mut Vec<u8>,
    name: &str,
    ino: u32,
    mode: u32,
    nlink: u32,
    rmajor: u32,
    rminor: u32,
    data: &[u8],
) {
    let namesize = name.len() + 1;
    // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
    // rdevmajor, rdevminor, namesize, check
    let header = format!(
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{:08x}{:08x}{:08x}{rmajor:08x}{rminor:08x}{namesize:08x}{:08x}",
        0, 0, 0, data.len(), 0, 0, 0
    );
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// The skeleton every cloister guest gets: mount points, and the console
/// device node the kernel needs before devtmpfs is mounted.
fn skeleton() -> Initramfs {
    let mut fs = Initramfs::new();
    for (d, mode) in [
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("etc", 0o755),
    ] {
        fs.dir(d, mode).expect("static path");
    }
    fs.char_dev("dev/console", 0o600, 5, 1)
        .expect("static path");
    fs.char_dev("dev/null", 0o666, 1, 3).expect("static path");
    // glibc's resolver reads nsswitch.conf even in a static binary.
    fs.file("etc/nsswitch.conf", 0o644, b"hosts: files dns\n".to_vec())
        .expect("static path");
    fs
}

/// The agent's initramfs: the static agent binary as `/init`, nothing else
/// it does not need.
pub fn agent_initramfs(agent: &Path) -> Result<Initramfs, InitrdError> {
    let data = std::fs::read(agent).map_err(|source| InitrdError::Read {
        path: agent.display().to_string(),
        source,
    })?;
    check_static(&data).map_err(|reason| InitrdError::NotStatic {
        path: agent.display().to_string(),
        reason,
    })?;
    let mut fs = skeleton();
    fs.file("init", 0o755, data)?;
    Ok(fs)
}

/// A busybox-only initramfs whose `/init` runs `script` (the boot baseline,
/// and a guest without an agent for tests).
pub fn busybox_initramfs(busybox: &Path, script: &str) -> Result<Initramfs, InitrdError> {
    let data = std::fs::read(busybox).map_err(|source| InitrdError::Read {
        path: busybox.display().to_string(),
        source,
    })?;
    check_static(&data).map_err(|reason| InitrdError::NotStatic {
        path: busybox.display().to_string(),
        reason,
    })?;
    let mut fs = skeleton();
    fs.file("bin/busybox", 0o755, data)?;
    fs.symlink("bin/sh", "busybox")?;
    fs.file(
        "init",
        0o755,
        format!("#!/bin/busybox sh\n{script}\n").into_bytes(),
    )?;
    Ok(fs)
}

/// A dynamically linked /init cannot run in an initramfs without its loader
/// and libraries: refuse it here rather than as a kernel panic at boot.
pub fn check_static(elf: &[u8]) -> Result<(), String> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if elf[4] != 2 || elf[5] != 1 {
        return Err("not a 64-bit little-endian ELF".into());
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let off = phoff
            .checked_add(i.checked_mul(phentsize).ok_or("bad program headers")?)
            .ok_or("bad program headers")?;
        if off + 4 > elf.len() {
            return Err("program headers run past the end of the file".into());
        }
        let p_type = u32::from_le_bytes(elf[off..off + 4].try_into().expect("4 bytes"));
        if p_type == 3 {
            return Err(
                "it has a PT_INTERP program header (dynamically linked); build it with +crt-static"
                    .into(),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_static_elf(tag: u8) -> Vec<u8> {
        let mut e = vec![0u8; 128];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[0x20] = 64; // phoff
        e[0x36] = 56; // phentsize
        e[0x38] = 0; // no program headers
        e[100] = tag;
        e
    }

    #[test]
    fn identical_inputs_give_identical_bytes() {
        let d = tempfile::tempdir().unwrap();
        let agent = d.path().join("agent");
        std::fs::write(&agent, fake_static_elf(1)).unwrap();
        let a = agent_initramfs(&agent)
            .unwrap()
            .write_to(&d.path().join("a.cpio"))
            .unwrap();
        // A different mtime and permission on the input must not matter.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&agent, fake_static_elf(1)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o700)).unwrap();
        let b = agent_initramfs(&agent)
            .unwrap()
            .write_to(&d.path().join("b.cpio"))
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(
            std::fs::read(d.path().join("a.cpio")).unwrap(),
            std::fs::read(d.path().join("b.cpio")).unwrap()
        );
        // And a different agent gives a different archive.
        std::fs::write(&agent, fake_static_elf(2)).unwrap();
        let c = agent_initramfs(&agent)
            .unwrap()
            .write_to(&d.path().join("c.cpio"))
            .unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn insertion_order_does_not_matter() {
        let mut x = Initramfs::new();
        x.file("b/f", 0o644, b"1".to_vec())
            .unwrap()
            .dir("a", 0o755)
            .unwrap();
        let mut y = Initramfs::new();
        y.dir("a", 0o755)
            .unwrap()
            .file("b/f", 0o644, b"1".to_vec())
            .unwrap();
        assert_eq!(x.to_bytes(), y.to_bytes());
    }

    #[test]
    fn newc_layout_is_what_the_kernel_expects() {
        let mut fs = Initramfs::new();
        fs.file("init", 0o755, b"abc".to_vec()).unwrap();
        let b = fs.to_bytes();
        assert_eq!(&b[..6], b"070701");
        // mode field: regular file 0755
        assert_eq!(&b[14..22], b"000081ed");
        // mtime field is zero
        assert_eq!(&b[46..54], b"00000000");
        // filesize 3
        assert_eq!(&b[54..62], b"00000003");
        // name "init\0" at 110, padded to 116, then data
        assert_eq!(&b[110..115], b"init\0");
        assert_eq!(&b[116..119], b"abc");
        assert_eq!(b.len() % 4, 0);
        assert!(String::from_utf8_lossy(&b).contains("TRAILER!!!"));
    }

    #[test]
    fn refuses_bad_paths_and_dynamic_binaries() {
        let mut fs = Initramfs::new();
        for p in ["/abs", "a/../b", "", "a//b", "./x"] {
            assert!(fs.file(p, 0o644, vec![]).is_err(), "{p:?}");
        }
        let mut dynamic = fake_static_elf(0);
        dynamic[0x38] = 1; // one program header at 64
        dynamic[64] = 3; // PT_INTERP
        assert!(check_static(&dynamic).unwrap_err().contains("PT_INTERP"));
        assert!(check_static(b"#!/bin/sh\n").is_err());
        let mut truncated = fake_static_elf(0);
        truncated[0x38] = 10;
        assert!(check_static(&truncated)
            .unwrap_err()
            .contains("past the end"));
    }

    #[test]
    fn parents_are_created() {
        let mut fs = Initramfs::new();
        fs.file("a/b/c", 0o644, vec![]).unwrap();
        let s = String::from_utf8_lossy(&fs.to_bytes()).into_owned();
        let (a, ab) = (s.find("a\0").unwrap(), s.find("a/b\0").unwrap());
        assert!(a < ab && ab < s.find("a/b/c\0").unwrap());
    }
}
