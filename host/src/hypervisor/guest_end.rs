//! Why a VM ended, in words: QEMU's exit status, and the guest's last words
//! on its serial console when it left any (the agent's `FATAL:` line, or
//! the kernel's panic). A guest reset or power-off ends QEMU with status 0
//! (`-no-reboot`), which alone does not say whether the host reset the VM,
//! the agent gave up, or PID 1 died.

use std::process::ExitStatus;

/// What the agent prints before it powers the VM off (`init::fatal`).
const AGENT_FATAL: &str = "cloister-agent: FATAL: ";
/// What the kernel prints when it panics (PID 1 exiting is one such panic).
const KERNEL_PANIC: &str = "Kernel panic - not syncing: ";

/// QEMU's exit in words: 0 is the guest's own end (a power-off, a reset,
/// a kernel panic with `panic=-1`); anything else is QEMU's failure or a
/// signal, with QEMU's last output when it left any.
pub fn describe_exit(status: ExitStatus, qemu_tail: &str) -> String {
    if status.success() {
        return "the guest powered off or reset".to_string();
    }
    let tail = qemu_tail.trim();
    if tail.is_empty() {
        format!("QEMU ended ({status})")
    } else {
        format!("QEMU ended ({status}): {tail}")
    }
}

/// The guest's last words on its console: the last agent `FATAL:` line,
/// else the kernel's panic line. `None` when it left none (the host reset
/// or killed it).
pub fn last_words(console: &str) -> Option<String> {
    let after = |marker: &str| {
        console
            .lines()
            .rev()
            .find_map(|l| {
                l.find(marker)
                    .map(|i| l[i + marker.len()..].trim().to_string())
            })
            .filter(|s| !s.is_empty())
    };
    if let Some(reason) = after(AGENT_FATAL) {
        return Some(format!("the agent stopped: {reason}"));
    }
    after(KERNEL_PANIC).map(|reason| format!("the guest kernel panicked: {reason}"))
}

/// `why`, followed by the guest's last words when it left any.
pub fn with_last_words(why: String, console: &str) -> String {
    match last_words(console) {
        Some(words) if !why.contains(&words) => format!("{why}; {words}"),
        _ => why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn the_agents_fatal_line_is_the_reason() {
        let console = "[    0.5] Run /init as init process\n\
            cloister-agent: FATAL: log format must be text or json, got \"bogus\"\n\
            cloister-agent: powering off\n\
            [    0.9] reboot: Restarting system\n";
        assert_eq!(
            last_words(console).as_deref(),
            Some("the agent stopped: log format must be text or json, got \"bogus\"")
        );
    }

    #[test]
    fn a_kernel_panic_is_the_reason_when_the_agent_said_nothing() {
        // What the 6.1 guest kernel prints when PID 1 exits.
        let console =
            "[    1.2] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\n\
            [    1.2] Kernel Offset: disabled\n\
            [    1.2] Rebooting in 1 seconds..\n";
        assert_eq!(
            last_words(console).as_deref(),
            Some("the guest kernel panicked: Attempted to kill init! exitcode=0x00000100")
        );
    }

    #[test]
    fn a_guest_that_left_no_words_gets_none() {
        assert_eq!(last_words(""), None);
        assert_eq!(
            last_words("cloister-agent starting\nrule=CreateContainerRequest\n"),
            None
        );
        assert_eq!(with_last_words("x".into(), ""), "x");
    }

    #[test]
    fn exits_are_described() {
        let ok = ExitStatus::from_raw(0);
        let killed = ExitStatus::from_raw(9);
        let failed = ExitStatus::from_raw(1 << 8);
        assert_eq!(
            describe_exit(ok, "ignored"),
            "the guest powered off or reset"
        );
        assert_eq!(
            describe_exit(killed, ""),
            "QEMU ended (signal: 9 (SIGKILL))"
        );
        assert_eq!(
            describe_exit(failed, "qemu: could not load kernel\n"),
            "QEMU ended (exit status: 1): qemu: could not load kernel"
        );
        assert_eq!(
            with_last_words(
                describe_exit(ok, ""),
                "cloister-agent: FATAL: the agent's server stopped\n"
            ),
            "the guest powered off or reset; the agent stopped: the agent's server stopped"
        );
    }
}
