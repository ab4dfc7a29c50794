//! Crafted layers against the unpacker: each attack from the threat list
//! gets a layer that tries it, and the test checks that nothing was
//! written outside the root.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;
use crate::tar::builder::TarBuilder;

/// A root to unpack into, with a sibling "outside" directory holding a
/// sentinel file that no layer may touch.
struct Sandbox {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("sentinel"), b"untouched").unwrap();
        Self {
            _dir: dir,
            root,
            outside,
        }
    }

    fn unpack(&self, tar: &[u8]) -> Result<UnpackStats, UnpackError> {
        self.unpack_with(tar, &UnpackOptions::default())
    }

    fn unpack_with(&self, tar: &[u8], opts: &UnpackOptions) -> Result<UnpackStats, UnpackError> {
        let mut r = TarReader::new(tar, opts.limits.clone());
        unpack(&mut r, &self.root, opts)
    }

    /// The outside directory still holds exactly the sentinel, unchanged.
    fn assert_outside_untouched(&self) {
        let names: Vec<_> = std::fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("sentinel")]);
        assert_eq!(
            std::fs::read(self.outside.join("sentinel")).unwrap(),
            b"untouched"
        );
        let parent = self.root.parent().unwrap();
        let mut siblings: Vec<_> = std::fs::read_dir(parent)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        siblings.sort();
        assert_eq!(
            siblings,
            ["outside", "root"],
            "something was created next to the root"
        );
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p)
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn unpacks_files_dirs_links_and_modes() {
    let s = Sandbox::new();
    let tar = TarBuilder::new()
        .dir("./")
        .dir("bin/")
        .file_mode("bin/tool", b"#!/bin/sh\n", 0o4755)
        .file("etc/implicit-parent/conf", b"k=v")
        .symlink("bin/sh", "tool")
        .hardlink("bin/tool2", "bin/tool")
        .finish();
    let stats = s.unpack(&tar).unwrap();
    assert_eq!(stats.entries, 6);
    assert_eq!(stats.files, 2);
    assert_eq!(std::fs::read(s.path("bin/tool")).unwrap(), b"#!/bin/sh\n");
    let m = std::fs::metadata(s.path("bin/tool")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(m.mtime(), 1_700_000_000);
    assert_eq!(m.nlink(), 2);
    assert_eq!(
        std::fs::read_link(s.path("bin/sh")).unwrap(),
        Path::new("tool")
    );
    assert_eq!(
        std::fs::read(s.path("etc/implicit-parent/conf")).unwrap(),
        b"k=v"
    );
    s.assert_outside_untouched();
}

#[test]
fn path_traversal_is_refused() {
    for evil in ["../../etc/x", "a/../../outside/x", "../outside/sentinel"] {
        let s = Sandbox::new();
        let tar = TarBuilder::new().file(evil, b"pwned").finish();
        let err = s.unpack(&tar).unwrap_err();
        assert!(
            matches!(err, UnpackError::PathTraversal { .. }),
            "{evil}: {err}"
        );
        s.assert_outside_untouched();
    }
}

#[test]
fn absolute_paths_stay_inside() {
    let s = Sandbox::new();
    let outside_abs = format!("{}/x", s.outside.display());
    let tar = TarBuilder::new().file(&outside_abs, b"in root").finish();
    s.unpack(&tar).unwrap();
    // The leading '/' is dropped: it lands under the root.
    assert_eq!(
        std::fs::read(s.root.join(outside_abs.trim_start_matches('/'))).unwrap(),
        b"in root"
    );
    s.assert_outside_untouched();
}

#[test]
fn writes_through_absolute_and_relative_symlinks_stay_inside() {
    let s = Sandbox::new();
    let abs = s.outside.display().to_string();
    let tar = TarBuilder::new()
        .dir(&format!("{abs}/"))
        .dir("outside/")
        .symlink("abs", &abs)
        .symlink("rel", "../outside")
        .symlink("dotdot", "../../../../../../..")
        .file("abs/x", b"1")
        .file("rel/y", b"2")
        .file("dotdot/z", b"3")
        .finish();
    s.unpack(&tar).unwrap();
    // In-root resolution: /<outside> inside the root, ../outside clamps to
    // /outside inside the root, and ../../.. is the root itself.
    assert_eq!(
        std::fs::read(s.root.join(abs.trim_start_matches('/')).join("x")).unwrap(),
        b"1"
    );
    assert_eq!(std::fs::read(s.path("outside/y")).unwrap(), b"2");
    assert_eq!(std::fs::read(s.path("z")).unwrap(), b"3");
    s.assert_outside_untouched();
}

#[test]
fn symlink_then_file_replaces_the_symlink() {
    let s = Sandbox::new();
    let sentinel = s.outside.join("sentinel").display().to_string();
    let tar = TarBuilder::new()
        .symlink("f", &sentinel)
        .file("f", b"replaced")
        .symlink("d", &s.outside.display().to_string())
        .dir("d/")
        .file("d/sentinel", b"pwned?")
        .finish();
    s.unpack(&tar).unwrap();
    let m = std::fs::symlink_metadata(s.path("f")).unwrap();
    assert!(m.is_file());
    assert_eq!(std::fs::read(s.path("f")).unwrap(), b"replaced");
    assert!(std::fs::symlink_metadata(s.path("d")).unwrap().is_dir());
    assert_eq!(std::fs::read(s.path("d/sentinel")).unwrap(), b"pwned?");
    s.assert_outside_untouched();
}

#[test]
fn hard_links_out_of_the_tree_are_refused() {
    let s = Sandbox::new();
    let sentinel = s.outside.join("sentinel").display().to_string();
    let before = std::fs::metadata(s.outside.join("sentinel"))
        .unwrap()
        .nlink();

    // Absolute: resolves inside the root, where there is no such file.
    let tar = TarBuilder::new().hardlink("h", &sentinel).finish();
    let err = s.unpack(&tar).unwrap_err();
    assert!(matches!(err, UnpackError::HardLink { .. }), "{err}");

    // With '..': refused outright.
    let tar = TarBuilder::new()
        .hardlink("h", "../outside/sentinel")
        .finish();
    assert!(matches!(
        s.unpack(&tar).unwrap_err(),
        UnpackError::PathTraversal { .. }
    ));

    // Through a symlink planted to point outside.
    let tar = TarBuilder::new()
        .symlink("out", &s.outside.display().to_string())
        .hardlink("h", "out/sentinel")
        .finish();
    let err = s.unpack(&tar).unwrap_err();
    assert!(matches!(err, UnpackError::HardLink { .. }), "{err}");

    assert!(std::fs::symlink_metadata(s.path("h")).is_err());
    assert_eq!(
        std::fs::metadata(s.outside.join("sentinel"))
            .unwrap()
            .nlink(),
        before
    );
    s.assert_outside_untouched();
}

#[test]
fn hard_link_to_a_symlink_links_the_symlink_itself() {
    let s = Sandbox::new();
    let tar = TarBuilder::new()
        .symlink("s", &s.outside.join("sentinel").display().to_string())
        .hardlink("h", "s")
        .finish();
    s.unpack(&tar).unwrap();
    assert!(std::fs::symlink_metadata(s.path("h"))
        .unwrap()
        .file_type()
        .is_symlink());
    s.assert_outside_untouched();
}

#[test]
fn huge_pax_header_fails_the_layer_without_allocating() {
    let s = Sandbox::new();
    let tar = TarBuilder::new()
        .file("before", b"x")
        .header(b"././@PaxHeader", b'x', 700 << 20, b"", 0o644, (0, 0))
        .finish();
    let err = s.unpack(&tar).unwrap_err();
    assert!(
        matches!(err, UnpackError::Tar(TarError::ExtensionTooLarge { .. })),
        "{err}"
    );
}

#[test]
fn devices_are_refused_unless_allowed() {
    let s = Sandbox::new();
    let tar = TarBuilder::new().char_dev("dev/mem", 1, 1).finish();
    let err = s.unpack(&tar).unwrap_err();
    assert!(matches!(err, UnpackError::DeviceRefused { .. }), "{err}");
    assert!(std::fs::symlink_metadata(s.path("dev/mem")).is_err());

    if !is_root() {
        eprintln!("skipping the allowed-device half: needs root to mknod");
        return;
    }
    let opts = UnpackOptions {
        allow_devices: true,
        ..UnpackOptions::default()
    };
    s.unpack_with(&tar, &opts).unwrap();
    let m = std::fs::symlink_metadata(s.path("dev/mem")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), rustix::fs::makedev(1, 1));
}

#[test]
fn whiteouts_and_opaque_dirs_become_overlayfs_markers() {
    let s = Sandbox::new();
    let tar = TarBuilder::new()
        .dir("a/")
        .file("a/.wh.gone", b"")
        .dir("b/")
        .file("b/.wh..wh..opq", b"")
        .file("b/new", b"n")
        .file(".wh..wh.plnk", b"")
        .finish();
    let stats = s.unpack(&tar).unwrap();
    assert_eq!((stats.whiteouts, stats.opaque_dirs), (1, 1));
    let m = std::fs::symlink_metadata(s.path("a/gone")).unwrap();
    assert!(m.file_type().is_char_device() && m.rdev() == 0);
    assert!(std::fs::symlink_metadata(s.path("a/.wh.gone")).is_err());
    assert!(std::fs::symlink_metadata(s.path(".wh..wh.plnk")).is_err());
    let b =
        fsops::open_subdir(rustix::fs::CWD, s.path("b").as_os_str().as_encoded_bytes()).unwrap();
    assert!(fsops::is_opaque(b.as_fd()));
    assert!(std::fs::symlink_metadata(s.path("b/.wh..wh..opq")).is_err());
}

#[test]
fn whiteout_names_cannot_escape() {
    let s = Sandbox::new();
    let tar = TarBuilder::new()
        .file("../outside/.wh.sentinel", b"")
        .finish();
    assert!(matches!(
        s.unpack(&tar).unwrap_err(),
        UnpackError::PathTraversal { .. }
    ));
    let tar = TarBuilder::new()
        .symlink("o", &s.outside.display().to_string())
        .file("o/.wh.sentinel", b"")
        .finish();
    // "o" dangles inside the root: refused, not followed.
    let err = s.unpack(&tar).unwrap_err();
    assert!(matches!(err, UnpackError::Fs { .. }), "{err}");
    let tar = TarBuilder::new()
        .symlink("p", &s.outside.display().to_string())
        .file("p/.wh..wh..opq", b"")
        .finish();
    assert!(s.unpack(&tar).is_err());
    s.assert_outside_untouched();
}

#[test]
fn a_dangling_symlink_parent_is_an_error_not_an_escape() {
    let s = Sandbox::new();
    let tar = TarBuilder::new()
        .symlink("d", &s.outside.display().to_string())
        .file("d/new", b"x")
        .finish();
    let err = s.unpack(&tar).unwrap_err();
    assert!(matches!(err, UnpackError::Fs { .. }), "{err}");
    s.assert_outside_untouched();
}
