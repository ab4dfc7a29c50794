//! Checks that a file is a bootable x86 Linux kernel before a VMM is started
//! with it, so a wrong path or a garbage file gets a clear error instead of a
//! VM that dies silently.
use std::io::Read;
use std::path::Path;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelError {
    #[error("kernel {path} does not exist")]
    Missing { path: String },
    #[error("kernel {path} cannot be read: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("kernel {path} is not an x86 Linux kernel: {reason}")]
    Invalid { path: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// A bzImage (boot protocol header "HdrS").
    BzImage { protocol: u16 },
    /// An uncompressed ELF vmlinux (PVH entry).
    Elf,
}

/// Reads the first bytes of `path` and tells which kernel format it is.
pub fn inspect(path: &Path) -> Result<KernelFormat, KernelError> {
    let p = path.display().to_string();
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KernelError::Missing { path: p })
        }
        Err(e) => {
            return Err(KernelError::Unreadable {
                path: p,
                reason: e.to_string(),
            })
        }
    };
    let mut head = vec![0u8; 0x260];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => {
                return Err(KernelError::Unreadable {
                    path: p,
                    reason: e.to_string(),
                })
            }
        }
    }
    head.truncate(n);
    classify(&head).map_err(|reason| KernelError::Invalid { path: p, reason })
}

fn classify(head: &[u8]) -> Result<KernelFormat, String> {
    if head.len() >= 4 && &head[..4] == b"\x7fELF" {
        if head.len() < 20 || head[4] != 2 || u16::from_le_bytes([head[18], head[19]]) != 0x3e {
            return Err("ELF file, but not x86-64".into());
        }
        return Ok(KernelFormat::Elf);
    }
    if head.len() < 0x208 {
        return Err(format!(
            "only {} bytes, too short for a bzImage header",
            head.len()
        ));
    }
    if head[0x1fe..0x200] != [0x55, 0xaa] {
        return Err("no boot sector signature 0x55aa at offset 0x1fe".into());
    }
    if &head[0x202..0x206] != b"HdrS" {
        return Err("no 'HdrS' boot protocol magic at offset 0x202".into());
    }
    let protocol = u16::from_le_bytes([head[0x206], head[0x207]]);
    if protocol < 0x020c {
        return Err(format!(
            "boot protocol {}.{} is older than 2.12",
            protocol >> 8,
            protocol & 0xff
        ));
    }
    Ok(KernelFormat::BzImage { protocol })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bz(protocol: u16) -> Vec<u8> {
        let mut h = vec![0u8; 0x260];
        h[0x1fe] = 0x55;
        h[0x1ff] = 0xaa;
        h[0x202..0x206].copy_from_slice(b"HdrS");
        h[0x206..0x208].copy_from_slice(&protocol.to_le_bytes());
        h
    }

    #[test]
    fn accepts_bzimage_and_elf() {
        assert_eq!(
            classify(&bz(0x020f)),
            Ok(KernelFormat::BzImage { protocol: 0x020f })
        );
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[18] = 0x3e;
        assert_eq!(classify(&elf), Ok(KernelFormat::Elf));
    }

    #[test]
    fn refuses_garbage_with_a_reason() {
        assert!(classify(b"hello").unwrap_err().contains("too short"));
        let mut g = bz(0x020f);
        g[0x202] = b'X';
        assert!(classify(&g).unwrap_err().contains("HdrS"));
        assert!(classify(&bz(0x0200)).unwrap_err().contains("older"));
        let mut arm = vec![0u8; 64];
        arm[..4].copy_from_slice(b"\x7fELF");
        arm[4] = 2;
        arm[18] = 0xb7;
        assert!(classify(&arm).unwrap_err().contains("x86-64"));
    }

    #[test]
    fn missing_file_is_named() {
        let e = inspect(Path::new("/nonexistent/bzImage")).unwrap_err();
        assert_eq!(e.to_string(), "kernel /nonexistent/bzImage does not exist");
    }
}
