//! KVM or TCG: KVM only where the CPU exposes hardware virtualization.
//!
//! `/dev/kvm` alone is not enough: on these machines it is a software KVM
//! (PVM) on which no stock Linux kernel boots, and there `vmx`/`svm` is
//! missing from /proc/cpuinfo.
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// Why this accelerator was chosen, for the log.
    pub fn reason(self) -> &'static str {
        match self {
            Accel::Kvm => "the CPU has hardware virtualization (vmx/svm) and /dev/kvm exists",
            Accel::Tcg => "no vmx/svm flag in /proc/cpuinfo or no /dev/kvm: software emulation",
        }
    }
}

pub fn detect() -> Accel {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    choose(&cpuinfo, Path::new("/dev/kvm").exists())
}

fn choose(cpuinfo: &str, dev_kvm: bool) -> Accel {
    let hw = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if hw && dev_kvm {
        Accel::Kvm
    } else {
        Accel::Tcg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_needs_both_the_flag_and_the_device() {
        let with = "processor: 0\nflags\t\t: fpu vme svm sse\n";
        let without = "processor: 0\nflags\t\t: fpu vme sse hypervisor\n";
        assert_eq!(choose(with, true), Accel::Kvm);
        assert_eq!(choose(with, false), Accel::Tcg);
        assert_eq!(
            choose(without, true),
            Accel::Tcg,
            "software KVM without vmx/svm is not used"
        );
        assert_eq!(choose("flags: vmxfoo\n", true), Accel::Tcg);
    }
}
