//! The node's configuration, `/etc/cloister/config.toml`: what the shim,
//! `cloister install` and `cloister monitor` share. Every field has a
//! default that works on a node set up by the README (`cloister install`
//! puts the kernel, initramfs and default policy where the defaults point).
//!
//! A bad file is refused when it is loaded, naming the file, the line and
//! the key: unknown keys are errors (a typo must not silently fall back to a
//! default), and values are checked after parsing.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where the node configuration lives unless `CLOISTER_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/cloister/config.toml";
/// The directory `cloister install` places the guest kernel and initramfs in.
pub const SHARE_DIR: &str = "/usr/local/share/cloister";
/// Per-pod state (sockets, logs, persisted shim state) lives below this.
pub const DEFAULT_RUN_DIR: &str = "/run/cloister";

/// The annotation prefix cloister owns; every key under it must be known.
pub const ANNOTATION_PREFIX: &str = "cloister.dev/";

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    pub hypervisor: HypervisorSection,
    pub tee: TeeSection,
    pub kbs: KbsSection,
    pub defaults: DefaultsSection,
    pub annotations: AnnotationsSection,
    pub runtime: RuntimeSection,
    pub log: LogSection,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// QEMU `-M microvm` (KVM where the CPU has it, TCG otherwise).
    Qemu,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AccelChoice {
    /// KVM when the CPU has vmx/svm and /dev/kvm exists, else TCG.
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TeeChoice {
    /// No TEE: initdata is not bound (development only).
    None,
    /// The development-only simulated TEE: NOT A TEE.
    Sim,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HypervisorSection {
    pub backend: Backend,
    pub qemu: String,
    pub accel: AccelChoice,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The measured kernel command line: the same for every pod, so one
    /// reference measurement serves them all.
    pub cmdline: String,
    pub memory_mib: u32,
    pub vcpus: u32,
    /// Seconds from launch until the agent must answer Health.
    pub agent_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TeeSection {
    #[serde(rename = "type")]
    pub kind: TeeChoice,
    /// The sim CA's state directory (sim only): its ARK is what a KBS that
    /// accepts sim evidence is configured with.
    pub sim_state: PathBuf,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct KbsSection {
    /// The KBS the default initdata names (pods that bring initdata name
    /// their own).
    pub url: String,
    /// PEM CA certificate file for that KBS.
    pub cert: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DefaultsSection {
    /// The agent policy (Rego) for pods without initdata.
    pub policy: PathBuf,
    /// containers-policy.json for pods without initdata; without it every
    /// pull of such a pod is refused.
    pub image_policy: Option<PathBuf>,
    /// registry.json for pods without initdata.
    pub registry: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AnnotationsSection {
    /// Which `cloister.dev/` overrides pods may set (`memory-mib`, `vcpus`).
    /// `cloister.dev/initdata` is always accepted.
    pub allow: Vec<String>,
    /// Upper bounds for the overrides.
    pub max_memory_mib: u32,
    pub max_vcpus: u32,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSection {
    /// Per-pod state directories go below `<run_dir>/pods/`.
    pub run_dir: PathBuf,
    /// Seconds the guest may take to attest and pull an image.
    pub pull_timeout_secs: u64,
    /// Pod networking: `auto` uses the pod's network namespace when it has
    /// an interface (CNI), QEMU user networking otherwise; `user` always
    /// uses user networking; `none` gives the guest no network.
    pub network: NetworkChoice,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NetworkChoice {
    Auto,
    User,
    None,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// tracing filter for the shim, e.g. `info` or `cloister_shim=debug`.
    pub level: String,
}

impl Default for HypervisorSection {
    fn default() -> Self {
        HypervisorSection {
            backend: Backend::Qemu,
            qemu: crate::hypervisor::qemu::DEFAULT_QEMU.into(),
            accel: AccelChoice::Auto,
            kernel: Path::new(SHARE_DIR).join("vmlinuz"),
            initrd: Path::new(SHARE_DIR).join("initrd.img"),
            cmdline: crate::hypervisor::DEFAULT_CMDLINE.into(),
            memory_mib: 512,
            vcpus: 1,
            agent_timeout_secs: 60,
        }
    }
}

impl Default for TeeSection {
    fn default() -> Self {
        TeeSection {
            kind: TeeChoice::Sim,
            sim_state: PathBuf::from("/var/lib/cloister/sim"),
        }
    }
}

impl Default for DefaultsSection {
    fn default() -> Self {
        DefaultsSection {
            policy: PathBuf::from("/etc/cloister/policy/default.rego"),
            image_policy: None,
            registry: None,
        }
    }
}

impl Default for AnnotationsSection {
    fn default() -> Self {
        AnnotationsSection {
            allow: Vec::new(),
            max_memory_mib: 4096,
            max_vcpus: 4,
        }
    }
}

impl Default for RuntimeSection {
    fn default() -> Self {
        RuntimeSection {
            run_dir: PathBuf::from(DEFAULT_RUN_DIR),
            pull_timeout_secs: 600,
            network: NetworkChoice::Auto,
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: "info".into(),
        }
    }
}

/// The overrides a pod may ask for, when the config allows them.
pub const OVERRIDABLE: &[&str] = &["memory-mib", "vcpus"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// A syntax error, an unknown key or a value of the wrong type, at
    /// the line toml points to (`key` is the text there).
    #[error("{path}:{line}: key `{key}`: {message}")]
    Parse {
        path: String,
        line: usize,
        key: String,
        message: String,
    },
    #[error("{path}:{line}: key `{key}`: {problem}")]
    Invalid {
        path: String,
        line: usize,
        key: String,
        problem: String,
    },
}

impl NodeConfig {
    /// The configuration file to read: `CLOISTER_CONFIG`, else [`DEFAULT_PATH`].
    pub fn path_from_env() -> PathBuf {
        std::env::var_os("CLOISTER_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
    }

    /// Reads and checks `path`. A missing file is the defaults.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(NodeConfig::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Parses and checks a document; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<NodeConfig, ConfigError> {
        let cfg: NodeConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let start = span.start.min(text.len());
            let line = text[..start].matches('\n').count() + 1;
            ConfigError::Parse {
                path: origin.into(),
                line,
                key: key_at(text, line),
                message: e.message().trim_end().to_string(),
            }
        })?;
        cfg.check(text, origin)?;
        Ok(cfg)
    }

    fn check(&self, text: &str, origin: &str) -> Result<(), ConfigError> {
        let bad = |section: &str, key: &str, problem: String| ConfigError::Invalid {
            path: origin.into(),
            line: line_of(text, section, key),
            key: format!("{section}.{key}"),
            problem,
        };
        let h = &self.hypervisor;
        if h.memory_mib < 64 {
            return Err(bad(
                "hypervisor",
                "memory_mib",
                format!(
                    "{} MiB is too little for a guest (at least 64)",
                    h.memory_mib
                ),
            ));
        }
        if h.vcpus == 0 || h.vcpus > 64 {
            return Err(bad(
                "hypervisor",
                "vcpus",
                format!("{} is not between 1 and 64", h.vcpus),
            ));
        }
        if h.agent_timeout_secs == 0 {
            return Err(bad(
                "hypervisor",
                "agent_timeout_secs",
                "must be > 0".into(),
            ));
        }
        if h.cmdline
            .split_whitespace()
            .any(|w| w.starts_with("cloister."))
        {
            return Err(bad(
                "hypervisor",
                "cmdline",
                "cloister.* parameters are set by the runtime, not the config".into(),
            ));
        }
        for (key, p) in [("kernel", &h.kernel), ("initrd", &h.initrd)] {
            if !p.is_absolute() {
                return Err(bad(
                    "hypervisor",
                    key,
                    format!("{} is not an absolute path", p.display()),
                ));
            }
        }
        if !(self.kbs.url.is_empty()
            || self.kbs.url.starts_with("https://")
            || self.kbs.url.starts_with("http://"))
        {
            return Err(bad(
                "kbs",
                "url",
                format!("{:?} is not an http(s) URL", self.kbs.url),
            ));
        }
        let known: BTreeSet<&str> = OVERRIDABLE.iter().copied().collect();
        for a in &self.annotations.allow {
            if !known.contains(a.as_str()) {
                return Err(bad(
                    "annotations",
                    "allow",
                    format!("{a:?} is not an overridable setting (known: {OVERRIDABLE:?})"),
                ));
            }
        }
        if self.runtime.pull_timeout_secs == 0 {
            return Err(bad("runtime", "pull_timeout_secs", "must be > 0".into()));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(bad(
                "log",
                "level",
                format!("{:?} is not a tracing filter", self.log.level),
            ));
        }
        Ok(())
    }

    /// Where pod `id` keeps its state.
    /// `<run_dir>/pods/<name>`: the id itself when short; a long id (CRI's
    /// are 64 hex digits) becomes its first 16 characters and 15 hex digits
    /// of its sha256, so the VM's Unix sockets inside stay under the 108
    /// bytes of `sun_path`.
    pub fn pod_dir(&self, id: &str) -> PathBuf {
        self.runtime.run_dir.join("pods").join(pod_dir_name(id))
    }

    /// The TEE pods boot with.
    pub fn tee(&self) -> crate::hypervisor::tee::TeeKind {
        match self.tee.kind {
            TeeChoice::None => crate::hypervisor::tee::TeeKind::None,
            TeeChoice::Sim => crate::hypervisor::tee::TeeKind::Sim,
        }
    }

    /// The accelerator to force, if the config names one.
    pub fn accel(&self) -> Option<crate::hypervisor::accel::Accel> {
        use crate::hypervisor::accel::Accel;
        match self.hypervisor.accel {
            AccelChoice::Auto => None,
            AccelChoice::Kvm => Some(Accel::Kvm),
            AccelChoice::Tcg => Some(Accel::Tcg),
        }
    }

    /// Checks what must exist on the node before a pod can boot, naming
    /// the key that points at a missing file.
    pub fn check_files(&self, origin: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(origin).unwrap_or_default();
        let missing = |section: &str, key: &str, p: &Path| ConfigError::Invalid {
            path: origin.display().to_string(),
            line: line_of(&text, section, key),
            key: format!("{section}.{key}"),
            problem: format!(
                "{} does not exist (run `cloister install`, or point the key at the file)",
                p.display()
            ),
        };
        let h = &self.hypervisor;
        for (key, p) in [("kernel", &h.kernel), ("initrd", &h.initrd)] {
            if !p.is_file() {
                return Err(missing("hypervisor", key, p));
            }
        }
        if !self.defaults.policy.is_file() {
            return Err(missing("defaults", "policy", &self.defaults.policy));
        }
        for (key, p) in [
            ("image_policy", &self.defaults.image_policy),
            ("registry", &self.defaults.registry),
        ] {
            if let Some(p) = p {
                if !p.is_file() {
                    return Err(missing("defaults", key, p));
                }
            }
        }
        if let Some(c) = &self.kbs.cert {
            if !c.is_file() {
                return Err(missing("kbs", "cert", c));
            }
        }
        Ok(())
    }
}

/// The 1-based line of `key` inside `[section]` (0 when the key is not
/// written in the file, i.e. the default is at fault).
fn pod_dir_name(id: &str) -> String {
    use sha2::Digest;
    if id.len() <= 32 {
        return id.to_string();
    }
    let hash = hex::encode(sha2::Sha256::digest(id.as_bytes()));
    let head: String = id.chars().take(16).collect();
    format!("{head}-{}", &hash[..15])
}

/// `section.key` of line `line` (1-based), as far as the text shows it.
fn key_at(text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let here = lines.get(line.saturating_sub(1)).copied().unwrap_or("");
    let key = here.split('=').next().unwrap_or("").trim();
    let section = lines[..line.saturating_sub(1).min(lines.len())]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
    let key: String = match section {
        Some(sec) if !key.starts_with('[') => format!("{sec}.{key}"),
        _ => key.to_string(),
    };
    key.chars().take(80).collect()
}

fn line_of(text: &str, section: &str, key: &str) -> usize {
    let mut current = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(rest) = line.strip_prefix('[') {
            current = rest.trim_end_matches(']').trim().to_string();
            continue;
        }
        let Some((k, _)) = line.split_once('=') else {
            continue;
        };
        let k = k.trim().trim_matches('"');
        let dotted = format!("{section}.{key}");
        if (current == section && k == key) || (current.is_empty() && k == dotted) {
            return i + 1;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_defaults() {
        let c = NodeConfig::parse("", "x").unwrap();
        assert_eq!(c, NodeConfig::default());
        assert_eq!(c.hypervisor.memory_mib, 512);
        assert_eq!(c.pod_dir("p1"), Path::new("/run/cloister/pods/p1"));
    }

    #[test]
    fn a_full_file_parses() {
        let text = r#"
[hypervisor]
backend = "qemu"
accel = "tcg"
kernel = "/k/bzImage"
initrd = "/k/initrd"
memory_mib = 256
vcpus = 2
[tee]
type = "none"
[kbs]
url = "https://kbs.example:8080"
[annotations]
allow = ["memory-mib"]
max_memory_mib = 1024
[runtime]
network = "user"
[log]
level = "debug"
"#;
        let c = NodeConfig::parse(text, "config.toml").unwrap();
        assert_eq!(c.hypervisor.vcpus, 2);
        assert_eq!(c.tee.kind, TeeChoice::None);
        assert_eq!(c.accel(), Some(crate::hypervisor::accel::Accel::Tcg));
        assert_eq!(c.runtime.network, NetworkChoice::User);
        assert_eq!(c.annotations.allow, vec!["memory-mib".to_string()]);
    }

    #[test]
    fn an_unknown_key_is_refused_with_line_and_key() {
        let e = NodeConfig::parse("[hypervisor]\nvcpus = 1\nmemroy_mib = 3\n", "/etc/c.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/etc/c.toml:3: key `hypervisor.memroy_mib`: unknown field"),
            "{e}"
        );
    }

    #[test]
    fn a_wrong_type_names_the_line() {
        let e = NodeConfig::parse("[tee]\ntype = \"sgx\"\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("c.toml:2: key `tee.type`: unknown variant `sgx`"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_file_line_and_key() {
        let e = NodeConfig::parse("[hypervisor]\n\nmemory_mib = 8\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("c.toml:3: key `hypervisor.memory_mib`"),
            "{e}"
        );
        let e = NodeConfig::parse("[annotations]\nallow = [\"kernel\"]\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.toml:2: key `annotations.allow`"), "{e}");
        let e = NodeConfig::parse(
            "[hypervisor]\ncmdline = \"console=ttyS0 cloister.ip=1.2.3.4/8\"\n",
            "c.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("hypervisor.cmdline"), "{e}");
        let e = NodeConfig::parse("[kbs]\nurl = \"ftp://x\"\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.toml:2: key `kbs.url`"), "{e}");
        let e = NodeConfig::parse("[log]\nlevel = \"[[[\"\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("log.level"), "{e}");
    }

    #[test]
    fn missing_files_are_named_by_key() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.toml");
        std::fs::write(&p, "[hypervisor]\nkernel = \"/nonexistent/k\"\n").unwrap();
        let c = NodeConfig::load(&p).unwrap();
        let e = c.check_files(&p).unwrap_err().to_string();
        assert!(e.contains(":2: key `hypervisor.kernel`"), "{e}");
        assert!(e.contains("/nonexistent/k does not exist"), "{e}");
    }

    #[test]
    fn a_missing_file_is_the_defaults_and_an_unreadable_one_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            NodeConfig::load(&d.path().join("none.toml")).unwrap(),
            NodeConfig::default()
        );
        let e = NodeConfig::load(d.path()).unwrap_err().to_string();
        assert!(e.starts_with("reading "), "{e}");
    }

    #[test]
    fn the_operators_guide_example_parses_as_the_defaults() {
        let guide = include_str!("../../docs/operators.md");
        let start = guide.find("```toml\n[hypervisor]").expect("the example") + 8;
        let end = start + guide[start..].find("```").unwrap();
        let c = NodeConfig::parse(&guide[start..end], "docs/operators.md").unwrap();
        assert_eq!(c, NodeConfig::default(), "the guide shows the defaults");
    }

    #[test]
    fn long_pod_ids_get_short_distinct_directories() {
        let c = NodeConfig::default();
        assert_eq!(c.pod_dir("p1"), Path::new("/run/cloister/pods/p1"));
        let a = format!("{}a", "f".repeat(63));
        let b = format!("{}b", "f".repeat(63));
        let (da, db) = (c.pod_dir(&a), c.pod_dir(&b));
        assert_ne!(da, db);
        assert_eq!(da.file_name().unwrap().len(), 32);
        assert_eq!(da, c.pod_dir(&a), "stable: delete finds the same directory");
    }
}
