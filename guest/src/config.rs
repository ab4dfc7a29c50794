//! Agent configuration: command-line flags when run as a process, the kernel
//! command line (`cloister.*` parameters) when run as PID 1.
use anyhow::{bail, Context};

use cloister_protocol::AGENT_VSOCK_PORT;

#[derive(Debug, Clone)]
pub struct Config {
    pub is_init: bool,
    /// ttrpc listen address: `vsock://-1:<port>` or `unix://<path>`.
    pub listen: String,
    /// tracing filter, e.g. `info` or `debug`.
    pub log_level: String,
    /// TEE requested on the kernel command line (`cloister.tee=`), if any.
    pub tee_hint: Option<String>,
    /// Log one JSON object per line (`--log-format json`,
    /// `cloister.log_format=json`) instead of text.
    pub log_json: bool,
    /// Where the agent keeps its state, layers and containers.
    pub run_dir: std::path::PathBuf,
}

const USAGE: &str =
    "usage: cloister-agent [--listen unix://PATH|vsock://CID:PORT] [--log-level LEVEL] [--log-format text|json] [--tee sim] [--run-dir DIR]";

impl Config {
    pub fn load(is_init: bool) -> anyhow::Result<Self> {
        let mut cfg = Config {
            is_init,
            listen: format!("vsock://-1:{AGENT_VSOCK_PORT}"),
            log_level: "info".into(),
            tee_hint: None,
            log_json: false,
            run_dir: "/run/cloister".into(),
        };
        if is_init {
            let cmdline =
                std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
            cfg.apply_kernel_cmdline(&cmdline)?;
        } else {
            // As a process, its state goes in a directory of its own
            // unless --run-dir says otherwise.
            cfg.run_dir =
                std::env::temp_dir().join(format!("cloister-agent.{}", std::process::id()));
            cfg.apply_args(std::env::args().skip(1))?;
        }
        Ok(cfg)
    }

    fn apply_args(&mut self, args: impl Iterator<Item = String>) -> anyhow::Result<()> {
        let mut args = args.peekable();
        while let Some(a) = args.next() {
            let (flag, inline) = match a.split_once('=') {
                Some((f, v)) => (f.to_string(), Some(v.to_string())),
                None => (a.clone(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .with_context(|| format!("{flag} needs a value\n{USAGE}"))
            };
            match flag.as_str() {
                "--listen" => self.listen = value()?,
                "--log-level" => self.log_level = value()?,
                "--tee" => self.tee_hint = Some(value()?),
                "--run-dir" => self.run_dir = value()?.into(),
                "--log-format" => self.log_json = parse_log_format(&value()?)?,
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                _ => bail!("unknown argument {a:?}\n{USAGE}"),
            }
        }
        validate_listen(&self.listen)
    }

    /// Reads `cloister.port=N`, `cloister.log=LEVEL`, `cloister.tee=NAME`.
    fn apply_kernel_cmdline(&mut self, cmdline: &str) -> anyhow::Result<()> {
        for word in cmdline.split_whitespace() {
            let Some((k, v)) = word.split_once('=') else {
                continue;
            };
            match k {
                "cloister.port" => {
                    let port: u32 = v
                        .parse()
                        .with_context(|| format!("bad cloister.port={v:?}"))?;
                    self.listen = format!("vsock://-1:{port}");
                }
                "cloister.log" => self.log_level = v.to_string(),
                "cloister.tee" => self.tee_hint = Some(v.to_string()),
                // The network comes through UpdateInterface/UpdateRoutes,
                // never the measured command line (one measurement serves
                // every pod); an old host that still sends it is told so.
                "cloister.ip" => bail!(
                    "cloister.ip= is no longer read: the host configures the network with UpdateInterface and UpdateRoutes"
                ),
                "cloister.log_format" => self.log_json = parse_log_format(v)?,
                _ => {}
            }
        }
        Ok(())
    }
}

fn parse_log_format(v: &str) -> anyhow::Result<bool> {
    match v {
        "text" => Ok(false),
        "json" => Ok(true),
        _ => bail!("log format must be text or json, got {v:?}"),
    }
}

fn validate_listen(addr: &str) -> anyhow::Result<()> {
    if addr.starts_with("unix://") || addr.starts_with("vsock://") {
        Ok(())
    } else {
        bail!("--listen must be unix://PATH or vsock://CID:PORT, got {addr:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Config {
        Config {
            is_init: true,
            listen: "vsock://-1:1024".into(),
            log_level: "info".into(),
            tee_hint: None,
            log_json: false,
            run_dir: "/run/cloister".into(),
        }
    }

    #[test]
    fn kernel_cmdline_parameters() {
        let mut c = base();
        c.apply_kernel_cmdline(
            "console=ttyS0 cloister.port=2000 cloister.log=debug cloister.tee=sim cloister.log_format=json quiet",
        )
        .unwrap();
        assert!(c
            .clone()
            .apply_kernel_cmdline("cloister.ip=10.0.2.15/24")
            .is_err());
        assert!(c.log_json);
        assert_eq!(c.listen, "vsock://-1:2000");
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.tee_hint.as_deref(), Some("sim"));
    }

    #[test]
    fn bad_port_on_cmdline_is_an_error() {
        let mut c = base();
        let e = c.apply_kernel_cmdline("cloister.port=http").unwrap_err();
        assert!(e.to_string().contains("cloister.port"), "{e}");
    }

    #[test]
    fn args_parse_and_reject_unknown() {
        let mut c = base();
        c.apply_args(
            ["--listen", "unix:///tmp/a.sock", "--log-level=debug"]
                .map(String::from)
                .into_iter(),
        )
        .unwrap();
        assert_eq!(c.listen, "unix:///tmp/a.sock");
        assert_eq!(c.log_level, "debug");
        assert!(c
            .apply_args(["--bogus"].map(String::from).into_iter())
            .is_err());
        assert!(c
            .apply_args(
                ["--listen", "tcp://1.2.3.4:1"]
                    .map(String::from)
                    .into_iter()
            )
            .is_err());
        assert!(c
            .apply_args(["--listen"].map(String::from).into_iter())
            .is_err());
    }
}
