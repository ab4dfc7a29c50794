//! The layer unpacker into a scratch root, with the check that matters most
//! for a hostile layer: after every input, nothing exists outside the root.
//!
//! Layout (fixed, so that seeds can name it in absolute symlinks and hard
//! links): `$CLOISTER_FUZZ_UNPACK_DIR` (default `/tmp/cloister-fuzz-unpack`)
//! holds `root/` (emptied before each input) and `outside/` (must stay
//! empty), and nothing else.
#![no_main]
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cloister_image::tar::{TarLimits, TarReader};
use cloister_image::unpack::{unpack, UnpackOptions};
use libfuzzer_sys::fuzz_target;

fn base() -> &'static PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let b = std::env::var_os("CLOISTER_FUZZ_UNPACK_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp/cloister-fuzz-unpack"));
        let _ = fs::remove_dir_all(&b);
        fs::create_dir_all(b.join("root")).expect("creating the scratch root");
        fs::create_dir_all(b.join("outside")).expect("creating the sentinel dir");
        b
    })
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fuzz_target!(|data: &[u8]| {
    let base = base();
    let root = base.join("root");
    let _ = fs::remove_dir_all(&root);
    fs::create_dir(&root).expect("recreating the scratch root");
    let opts = UnpackOptions {
        allow_devices: false,
        preserve_ownership: false,
        limits: TarLimits::default(),
    };
    let mut tar = TarReader::new(data, opts.limits.clone());
    let _ = unpack(&mut tar, &root, &opts);
    assert_eq!(
        names(base),
        ["outside", "root"],
        "the layer wrote next to the root"
    );
    assert!(
        names(&base.join("outside")).is_empty(),
        "the layer wrote outside the root"
    );
    let meta = fs::symlink_metadata(&root).expect("the root is still there");
    assert!(meta.is_dir(), "the root was replaced by a non-directory");
});
