//! Which TEE the agent runs in, from the devices the guest kernel exposes.
use std::path::Path;

use cloister_protocol::TeeType;

use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tee {
    None,
    Sim,
    Snp,
    Tdx,
}

impl Tee {
    pub fn name(self) -> &'static str {
        match self {
            Tee::None => "none",
            Tee::Sim => "sim (development only, no protection)",
            Tee::Snp => "snp",
            Tee::Tdx => "tdx",
        }
    }

    pub fn to_proto(self) -> TeeType {
        match self {
            Tee::None => TeeType::TEE_TYPE_NONE,
            Tee::Sim => TeeType::TEE_TYPE_SIM,
            Tee::Snp => TeeType::TEE_TYPE_SNP,
            Tee::Tdx => TeeType::TEE_TYPE_TDX,
        }
    }
}

/// Hardware devices win over the command-line hint: a host cannot talk a
/// real TEE guest into the simulated TEE.
pub fn detect(cfg: &Config) -> Tee {
    detect_in(Path::new("/"), cfg.tee_hint.as_deref())
}

fn detect_in(root: &Path, hint: Option<&str>) -> Tee {
    if root.join("dev/sev-guest").exists() {
        Tee::Snp
    } else if root.join("dev/tdx_guest").exists() || root.join("dev/tdx-guest").exists() {
        Tee::Tdx
    } else if hint == Some("sim") {
        Tee::Sim
    } else {
        Tee::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_beats_the_hint() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(detect_in(d.path(), None), Tee::None);
        assert_eq!(detect_in(d.path(), Some("sim")), Tee::Sim);
        assert_eq!(
            detect_in(d.path(), Some("snp")),
            Tee::None,
            "a hint alone never claims hardware"
        );
        std::fs::create_dir(d.path().join("dev")).unwrap();
        std::fs::write(d.path().join("dev/sev-guest"), b"").unwrap();
        assert_eq!(detect_in(d.path(), Some("sim")), Tee::Snp);
    }
}
