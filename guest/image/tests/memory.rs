//! Peak memory does not grow with image size: a pull of an image with a
//! 96 MiB (encrypted, incompressible) layer must not raise this process's
//! peak RSS much above what a pull of a 2 MiB one did. Alone in its test
//! binary, so no other test's memory is counted.

mod common;

use std::process::Command;
use std::sync::Arc;

use cloister_image::{
    ImagePuller, KeyRing, LayerStore, NoSignatureVerification, Progress, PullOptions,
};
use cloister_test_support::{keys, run, Layout, Registry, Setup};

/// Peak resident set size of this process so far, in KiB.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

fn random_layer_image(dir: &std::path::Path, l: &Layout, tag: &str, mib: usize) {
    let src = dir.join(format!("src-{tag}"));
    std::fs::create_dir_all(src.join("data")).unwrap();
    let mut f = std::fs::File::create(src.join("data/blob")).unwrap();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15 ^ mib as u64;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in buf.chunks_mut(8) {
            // xorshift64*: incompressible enough for gzip.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            chunk.copy_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        std::io::Write::write_all(&mut f, &buf).unwrap();
    }
    drop(f);
    let tar = dir.join(format!("{tag}.tar"));
    run(Command::new("tar")
        .arg("-C")
        .arg(&src)
        .arg("-cf")
        .arg(&tar)
        .arg("data"));
    run(Command::new("umoci").args(["new", "--image", &format!("{}:{tag}", l.path.display())]));
    run(Command::new("umoci")
        .args([
            "raw",
            "add-layer",
            "--image",
            &format!("{}:{tag}", l.path.display()),
        ])
        .arg(&tar));
    run(Command::new("umoci").args([
        "config",
        "--image",
        &format!("{}:{tag}", l.path.display()),
        "--os",
        "linux",
        "--architecture",
        "amd64",
    ]));
    std::fs::remove_dir_all(&src).unwrap();
    std::fs::remove_file(&tar).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_memory_does_not_grow_with_image_size() {
    if !common::tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::start(Setup::HTTP);
    let l = Layout::new(dir.path());
    random_layer_image(dir.path(), &l, "small", 2);
    random_layer_image(dir.path(), &l, "large", 96);
    let (key, key_pub) = keys::rsa_keypair(dir.path(), "k");
    let enc = format!("jwe:{}", key_pub.display());
    reg.push(&l.path, "small", "mem:small", &["--encryption-key", &enc]);
    reg.push(&l.path, "large", "mem:large", &["--encryption-key", &enc]);

    let mut ring = KeyRing::new();
    ring.add_pem_file(&key).unwrap();
    let options = PullOptions {
        registry: common::registry_options(&reg),
        keys: Arc::new(ring),
        ..PullOptions::default()
    };
    let pull = |tag: &'static str, store: &'static str| {
        let puller = ImagePuller::new(
            LayerStore::open(dir.path().join(store)).unwrap(),
            options.clone(),
        );
        let image = format!("{}/mem:{tag}", reg.host());
        async move {
            puller
                .pull(&image, &NoSignatureVerification, Arc::new(Progress::new()))
                .await
                .unwrap()
        }
    };

    let small = pull("small", "store-small").await;
    let after_small = vm_hwm_kib();
    let large = pull("large", "store-large").await;
    let after_large = vm_hwm_kib();
    assert!(large.layers[0].encrypted && large.layers[0].uncompressed.unwrap() > 96 << 20);
    assert!(small.layers[0].uncompressed.unwrap() < 3 << 20);
    let growth = after_large.saturating_sub(after_small);
    eprintln!("peak RSS after 2 MiB pull: {after_small} KiB, after 96 MiB pull: {after_large} KiB");
    assert!(
        growth < 8 * 1024,
        "peak RSS grew by {growth} KiB between a 2 MiB and a 96 MiB layer: something buffers \
         whole layers"
    );
}
