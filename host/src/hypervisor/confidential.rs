//! QEMU arguments shared by the confidential launches (SEV-SNP, TDX) on the
//! q35 machine: guest memory in a shareable memfd (the vhost-user vsock
//! backend maps it), the serial console in a file, the agent's vsock on PCI,
//! and the directly booted kernel.
use std::ffi::OsString;
use std::path::Path;

use super::qemu::QemuPaths;

/// The memory backend both launches name in `-machine …,memory-backend=`.
pub const RAM_ID: &str = "ram1";

/// An option value inside a QEMU `key=value,…` list: commas are doubled.
pub fn opt_value(p: &Path) -> OsString {
    let text = p.as_os_str().to_string_lossy();
    OsString::from(text.replace(',', ",,"))
}

fn concat(prefix: &str, value: OsString) -> OsString {
    let mut s = OsString::from(prefix);
    s.push(value);
    s
}

/// `-smp`, `-m` and the memfd RAM (shared, so the vhost-user backend can map
/// the bounce buffers the guest shares; private memory is guest_memfd,
/// which QEMU allocates itself for a confidential guest).
pub fn memory_args(vcpus: u32, memory_mib: u32) -> Vec<OsString> {
    vec![
        "-smp".into(),
        vcpus.to_string().into(),
        "-m".into(),
        format!("{memory_mib}M").into(),
        "-object".into(),
        format!("memory-backend-memfd,id={RAM_ID},size={memory_mib}M,share=true,prealloc=false")
            .into(),
    ]
}

/// The QMP monitor, no defaults, no display, no reboot, the console in a file, and the agent's
/// vsock as a PCI device. `iommu_platform=on` (VIRTIO_F_ACCESS_PLATFORM): an
/// encrypted guest only does DMA through bounce buffers it shares.
pub fn device_args(paths: &QemuPaths) -> Vec<OsString> {
    let mut a = super::qemu::qmp_args(&paths.qmp_socket);
    a.extend([
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-no-reboot".into(),
        "-chardev".into(),
        concat("file,id=console,path=", opt_value(&paths.console_log)),
        "-serial".into(),
        "chardev:console".into(),
        "-chardev".into(),
        concat("socket,id=vsock,path=", opt_value(&paths.vhost_socket)),
        "-device".into(),
        "vhost-user-vsock-pci,chardev=vsock,disable-legacy=on,iommu_platform=on".into(),
    ]);
    a
}

/// `-bios`, `-kernel`, `-initrd`, `-append`: plain arguments, not option lists.
pub fn boot_args(firmware: &Path, kernel: &Path, initrd: &Path, cmdline: &str) -> Vec<OsString> {
    vec![
        "-bios".into(),
        firmware.into(),
        "-kernel".into(),
        kernel.into(),
        "-initrd".into(),
        initrd.into(),
        "-append".into(),
        cmdline.into(),
    ]
}

/// The value following `flag` in `argv` (tests read launches back with it).
#[cfg(test)]
pub fn value_of<'a>(argv: &'a [OsString], flag: &str) -> Option<&'a OsString> {
    argv.iter()
        .position(|a| a == flag)
        .and_then(|i| argv.get(i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_in_paths_are_escaped_in_option_lists_only() {
        let paths = QemuPaths::in_dir(Path::new("/run/a,b"));
        let a = device_args(&paths);
        assert!(a.contains(&OsString::from(
            "file,id=console,path=/run/a,,b/console.log"
        )));
        let b = boot_args(Path::new("/f,w"), Path::new("/k"), Path::new("/i"), "x");
        assert_eq!(value_of(&b, "-bios").unwrap(), "/f,w");
        assert_eq!(value_of(&b, "-append").unwrap(), "x");
        assert_eq!(value_of(&b, "-nope"), None);
    }
}
