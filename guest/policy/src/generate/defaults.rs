//! What the cloister runtime puts into every container's OCI spec besides
//! what the pod says: the standard mounts, capabilities, masked paths and
//! device rules. The generated policy allows exactly these.
use serde_json::{json, Value};

/// Where the agent keeps a pod's files (hosts, hostname, resolv.conf,
/// termination logs) and volumes, inside the guest.
pub const SANDBOX_DIR: &str = "/run/cloister/sandbox";

/// containerd's default capability set for unprivileged containers.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// Every capability Linux 6.1 knows, for privileged containers and `add: [ALL]`.
pub const ALL_CAPS: &[&str] = &[
    "CAP_AUDIT_CONTROL",
    "CAP_AUDIT_READ",
    "CAP_AUDIT_WRITE",
    "CAP_BLOCK_SUSPEND",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_KILL",
    "CAP_LEASE",
    "CAP_LINUX_IMMUTABLE",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_MKNOD",
    "CAP_NET_ADMIN",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_RAW",
    "CAP_PERFMON",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYSLOG",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_CHROOT",
    "CAP_SYS_MODULE",
    "CAP_SYS_NICE",
    "CAP_SYS_PACCT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_WAKE_ALARM",
];

pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Environment the runtime adds on its own (anchored regexes). PATH and the
/// image's variables are not here: the agent takes them from the verified
/// image, never from the host.
pub fn runtime_env(service_links: bool, tty: bool) -> Vec<String> {
    let mut v = vec![
        r"^HOSTNAME=[A-Za-z0-9][A-Za-z0-9.-]{0,252}$".to_string(),
        r"^KUBERNETES_(SERVICE_HOST|SERVICE_PORT|SERVICE_PORT_HTTPS|PORT|PORT_443_TCP|PORT_443_TCP_PROTO|PORT_443_TCP_PORT|PORT_443_TCP_ADDR)=[a-z0-9.:/\[\]]{0,64}$".to_string(),
    ];
    if service_links {
        v.push(
            r"^[A-Z][A-Z0-9_]{0,62}_SERVICE_(HOST|PORT|PORT_[A-Z0-9_]{1,32})=[a-f0-9.:\[\]]{0,64}$"
                .to_string(),
        );
        v.push(r"^[A-Z][A-Z0-9_]{0,62}_PORT(_[0-9]{1,5}_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?=[a-z0-9.:/\[\]]{0,64}$".to_string());
    }
    if tty {
        v.push("^TERM=xterm$".to_string());
    }
    v
}

fn mount(dest: &str, typ: &str, source: &str, required: &[&str], forbidden: &[&str]) -> Value {
    json!({
        "destination": dest,
        "type": typ,
        "source": source,
        "required_options": required,
        "forbidden_options": forbidden,
        "required": false,
    })
}

/// The runtime's standard mounts. Unprivileged containers get /sys and the
/// cgroup tree read-only.
pub fn standard_mounts(privileged: bool) -> Vec<Value> {
    let (ro, rw): (&[&str], &[&str]) = if privileged {
        (&[], &[])
    } else {
        (&["ro"], &["rw"])
    };
    let sandbox_file = |f: &str| format!("^{}/{}$", regex_escape(SANDBOX_DIR), regex_escape(f));
    vec![
        mount(
            "/proc",
            "proc",
            "^proc$",
            &["nosuid", "noexec", "nodev"],
            &[],
        ),
        mount("/dev", "tmpfs", "^tmpfs$", &["nosuid"], &[]),
        mount("/dev/pts", "devpts", "^devpts$", &["nosuid", "noexec"], &[]),
        mount(
            "/dev/mqueue",
            "mqueue",
            "^mqueue$",
            &["nosuid", "noexec", "nodev"],
            &[],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "^shm$",
            &["nosuid", "noexec", "nodev"],
            &[],
        ),
        mount(
            "/sys",
            "sysfs",
            "^sysfs$",
            &[&["nosuid", "noexec", "nodev"][..], ro].concat(),
            rw,
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "^cgroup$",
            &[&["nosuid", "noexec", "nodev"][..], ro].concat(),
            rw,
        ),
        mount(
            "/etc/hosts",
            "bind",
            &sandbox_file("hosts"),
            &["rbind"],
            &[],
        ),
        mount(
            "/etc/hostname",
            "bind",
            &sandbox_file("hostname"),
            &["rbind"],
            &[],
        ),
        mount(
            "/etc/resolv.conf",
            "bind",
            &sandbox_file("resolv.conf"),
            &["rbind"],
            &[],
        ),
        mount(
            "/dev/termination-log",
            "bind",
            &format!(
                "^{}/containers/[A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}/termination-log$",
                regex_escape(SANDBOX_DIR)
            ),
            &["rbind"],
            &[],
        ),
    ]
}

/// The service-account token mount Kubernetes adds unless told not to.
pub fn service_account_mount() -> Value {
    mount(
        "/var/run/secrets/kubernetes.io/serviceaccount",
        "bind",
        &format!("^{}/serviceaccount$", regex_escape(SANDBOX_DIR)),
        &["rbind", "ro"],
        &["rw"],
    )
}

/// A pod volume mounted into a container: bound from the agent's copy of
/// the volume, never from an arbitrary guest path.
pub fn volume_mount(dest: &str, volume: &str, sub_path: &str, read_only: bool) -> Value {
    let mut source = format!(
        "^{}/volumes/{}",
        regex_escape(SANDBOX_DIR),
        regex_escape(volume)
    );
    if !sub_path.is_empty() {
        source.push('/');
        source.push_str(&regex_escape(sub_path.trim_start_matches('/')));
    }
    source.push('$');
    let (req, forbid): (&[&str], &[&str]) = if read_only {
        (&["rbind", "ro"], &["rw"])
    } else {
        (&["rbind"], &[])
    };
    let mut m = mount(dest, "bind", &source, req, forbid);
    m["required"] = json!(true);
    m
}

/// Device cgroup rules the runtime allows in unprivileged containers (the
/// usual character devices, and pseudo-terminals).
pub fn device_cgroup_allow() -> Value {
    let c = |major: i64, minor: i64, access: &str| json!({"type": "c", "major": major, "minor": minor, "access": access});
    json!([
        c(1, 3, "rwm"),
        c(1, 5, "rwm"),
        c(1, 7, "rwm"),
        c(1, 8, "rwm"),
        c(1, 9, "rwm"),
        c(5, 0, "rwm"),
        c(5, 1, "rwm"),
        c(5, 2, "rwm"),
        c(136, -1, "rwm"),
        c(10, 200, "rwm"),
    ])
}

/// Escapes regex metacharacters so a path matches only itself.
pub fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if "\\.+*?()|[]{}^$".contains(ch) {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}
