//! Which QEMU a binary is, for the features a launch needs: SEV-SNP guests
//! (`sev-snp-guest`) need QEMU 9.1, TDX guests (`tdx-guest` with
//! `mrconfigid`) need QEMU 10.1. Debian 12 ships QEMU 7.2, which has neither.
use std::fmt;
use std::process::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct QemuVersion {
    pub major: u32,
    pub minor: u32,
    pub micro: u32,
}

impl fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

impl QemuVersion {
    pub const fn new(major: u32, minor: u32, micro: u32) -> Self {
        QemuVersion {
            major,
            minor,
            micro,
        }
    }

    /// From `qemu-system-x86_64 --version` output, e.g. `QEMU emulator
    /// version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)`.
    pub fn parse(version_output: &str) -> Option<QemuVersion> {
        let rest = version_output.lines().next()?.split("version ").nth(1)?;
        let word = rest.split_whitespace().next()?;
        let mut parts = word.split('.').map(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        });
        let major = parts.next()??;
        let minor = parts.next()??;
        let micro = parts.next().flatten().unwrap_or(0);
        Some(QemuVersion::new(major, minor, micro))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QemuVersionError {
    #[error("running {binary} --version: {detail}")]
    Probe { binary: String, detail: String },
    #[error("{binary} is QEMU {got}, which has no {object} object: {what} needs QEMU {min} or later (Debian 12 ships 7.2; see docs/snp-launch.md)")]
    TooOld {
        binary: String,
        got: QemuVersion,
        min: QemuVersion,
        object: &'static str,
        what: &'static str,
    },
}

/// Runs `binary --version`.
pub fn probe(binary: &str) -> Result<QemuVersion, QemuVersionError> {
    let err = |detail: String| QemuVersionError::Probe {
        binary: binary.to_string(),
        detail,
    };
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .map_err(|e| err(e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    QemuVersion::parse(&text).ok_or_else(|| err(format!("unrecognized output {:?}", text.trim())))
}

/// Refuses a QEMU older than `min`.
pub fn require(
    binary: &str,
    got: QemuVersion,
    min: QemuVersion,
    object: &'static str,
    what: &'static str,
) -> Result<(), QemuVersionError> {
    if got >= min {
        Ok(())
    } else {
        Err(QemuVersionError::TooOld {
            binary: binary.to_string(),
            got,
            min,
            object,
            what,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_and_upstream_banners() {
        let debian = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n";
        assert_eq!(QemuVersion::parse(debian), Some(QemuVersion::new(7, 2, 22)));
        assert_eq!(
            QemuVersion::parse("QEMU emulator version 9.1.0\n"),
            Some(QemuVersion::new(9, 1, 0))
        );
        assert_eq!(
            QemuVersion::parse("QEMU emulator version 10.1.50 (v10.1.0-123-gabc)"),
            Some(QemuVersion::new(10, 1, 50))
        );
        assert_eq!(
            QemuVersion::parse("QEMU emulator version 8.2"),
            Some(QemuVersion::new(8, 2, 0))
        );
        for bad in [
            "",
            "hello",
            "QEMU emulator version x.y",
            "QEMU emulator version 9",
        ] {
            assert_eq!(QemuVersion::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn debian_12_is_too_old_for_snp() {
        let e = require(
            "qemu-system-x86_64",
            QemuVersion::new(7, 2, 22),
            QemuVersion::new(9, 1, 0),
            "sev-snp-guest",
            "an SEV-SNP guest",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("QEMU 7.2.22, which has no sev-snp-guest object"),
            "{e}"
        );
        assert!(e.contains("needs QEMU 9.1.0 or later"), "{e}");
        assert!(require(
            "q",
            QemuVersion::new(9, 1, 0),
            QemuVersion::new(9, 1, 0),
            "sev-snp-guest",
            "x"
        )
        .is_ok());
        assert!(QemuVersion::new(10, 0, 0) > QemuVersion::new(9, 2, 3));
    }
}
