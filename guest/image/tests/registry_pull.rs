//! The image pipeline against a real registry (Debian's docker-registry),
//! with images built by umoci and pushed (and encrypted) by skopeo.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cloister_image::{
    assemble_rootfs, AssembleMode, Error, ImagePuller, IntegrityError, KeyRing, LayerError,
    LayerStore, ManifestToVerify, ManifestVerifier, NoSignatureVerification, Platform, Progress,
    PullOptions, PulledImage, RegistryOptions,
};
use cloister_test_support::hostile::{Fault, HostileRegistry};
use cloister_test_support::{keys, tree, Layout, Registry, Setup};

struct Fixture {
    dir: tempfile::TempDir,
    reg: Registry,
}

impl Fixture {
    fn new(setup: Setup) -> Option<Self> {
        if !common::tools_present() {
            return None;
        }
        Some(Self {
            dir: tempfile::tempdir().unwrap(),
            reg: Registry::start(setup),
        })
    }

    fn path(&self, p: &str) -> std::path::PathBuf {
        self.dir.path().join(p)
    }

    fn store(&self) -> LayerStore {
        LayerStore::open(self.path("store")).unwrap()
    }

    fn options(&self, keys: &[&Path]) -> PullOptions {
        let mut ring = KeyRing::new();
        for k in keys {
            ring.add_pem_file(k).unwrap();
        }
        PullOptions {
            registry: common::registry_options(&self.reg),
            keys: Arc::new(ring),
            ..PullOptions::default()
        }
    }

    fn image(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.reg.host())
    }
}

async fn pull_with(
    store: LayerStore,
    options: PullOptions,
    image: &str,
) -> (Result<PulledImage, Error>, Arc<Progress>) {
    let progress = Arc::new(Progress::new());
    let puller = ImagePuller::new(store, options);
    let r = puller
        .pull(image, &NoSignatureVerification, progress.clone())
        .await;
    (r, progress)
}

/// The store holds no layer and nothing half-unpacked.
fn assert_store_empty(store: &LayerStore) {
    assert_eq!(store.list().unwrap(), vec![], "layers left in the store");
    assert_eq!(
        store.pending().unwrap(),
        0,
        "partial layers left in the store"
    );
}

fn assert_busybox_rootfs(rootfs: &Path) {
    assert_eq!(
        std::fs::read(rootfs.join("bin/busybox")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
    assert_eq!(
        std::fs::read_link(rootfs.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
}

fn layer_error(r: Result<PulledImage, Error>) -> LayerError {
    match r {
        Err(Error::Layer { source, .. }) => source,
        other => panic!("expected a layer error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_image_over_http_then_reuse_from_store() {
    let Some(f) = Fixture::new(Setup::HTTP) else {
        return;
    };
    let l = Layout::new(f.dir.path());
    l.busybox("base", "amd64");
    l.change("base", |r| {
        std::fs::write(r.join("hello.txt"), "hello\n").unwrap()
    });
    f.reg.push(&l.path, "base", "plain:1", &[]);

    let (r, progress) = pull_with(f.store(), f.options(&[]), &f.image("plain:1")).await;
    let img = r.unwrap();
    assert_eq!(img.digest.to_string(), l.manifest_digest("base"));
    assert_eq!(img.image_digest, img.digest);
    assert_eq!(img.layers.len(), 2);
    assert!(img
        .layers
        .iter()
        .all(|l| !l.encrypted && !l.reused && l.downloaded == l.size));
    assert_eq!(
        progress.bytes_downloaded.load(Ordering::Relaxed),
        img.layers.iter().map(|l| l.size).sum::<u64>()
    );
    let rootfs = f.path("rootfs");
    assemble_rootfs(&img.layer_dirs(), &rootfs, AssembleMode::Copy).unwrap();
    assert_busybox_rootfs(&rootfs);
    assert_eq!(std::fs::read(rootfs.join("hello.txt")).unwrap(), b"hello\n");
    let lower = img.overlay_lowerdirs();
    assert_eq!(lower.len(), 2);
    assert_eq!(
        lower[0], img.layers[1].path,
        "overlay lowerdirs are top layer first"
    );

    // Same image again: every layer comes from the store.
    let (r, progress) = pull_with(f.store(), f.options(&[]), &f.image("plain:1")).await;
    let again = r.unwrap();
    assert!(again.layers.iter().all(|l| l.reused));
    assert_eq!(progress.bytes_downloaded.load(Ordering::Relaxed), 0);
    assert_eq!(progress.layers_reused.load(Ordering::Relaxed), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_test_ca() {
    let Some(f) = Fixture::new(Setup::TLS) else {
        return;
    };
    let l = Layout::new(f.dir.path());
    l.busybox("base", "amd64");
    f.reg.push(&l.path, "base", "tls:1", &[]);

    let (r, _) = pull_with(f.store(), f.options(&[]), &f.image("tls:1")).await;
    let img = r.unwrap();
    let rootfs = f.path("rootfs");
    assemble_rootfs(&img.layer_dirs(), &rootfs, AssembleMode::Copy).unwrap();
    assert_busybox_rootfs(&rootfs);

    // Without the CA the registry's certificate is not trusted.
    let mut opts = f.options(&[]);
    opts.registry.extra_ca_pem.clear();
    let store = LayerStore::open(f.path("store2")).unwrap();
    let (r, _) = pull_with(store.clone(), opts, &f.image("tls:1")).await;
    let err = r.unwrap_err();
    assert!(matches!(err, Error::Registry(_)), "{err:?}");
    assert_store_empty(&store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_basic_auth() {
    let Some(f) = Fixture::new(Setup::HTPASSWD) else {
        return;
    };
    let l = Layout::new(f.dir.path());
    l.busybox("base", "amd64");
    f.reg.push(&l.path, "base", "private:1", &[]);

    let (r, _) = pull_with(f.store(), f.options(&[]), &f.image("private:1")).await;
    assert_eq!(r.unwrap().layers.len(), 1);

    for auth in [
        cloister_image::Auth::Anonymous,
        cloister_image::Auth::Basic {
            username: "tester".into(),
            password: "wrong".into(),
        },
    ] {
        let mut opts = f.options(&[]);
        opts.registry.auth = auth.clone();
        let store = LayerStore::open(f.path("store-denied")).unwrap();
        let (r, _) = pull_with(store.clone(), opts, &f.image("private:1")).await;
        let err = r.unwrap_err();
        assert!(matches!(err, Error::Registry(_)), "{auth:?}: {err:?}");
        assert_store_empty(&store);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_auth() {
    let Some(f) = Fixture::new(Setup::TOKEN) else {
        return;
    };
    let l = Layout::new(f.dir.path());
    l.busybox("base", "amd64");
    f.reg.push(&l.path, "base", "tokened:1", &[]);

    // Basic credentials, exchanged for a bearer token at the realm.
    let (r, _) = pull_with(f.store(), f.options(&[]), &f.image("tokened:1")).await;
    assert_eq!(r.unwrap().layers.len(), 1);

    // A bearer token the caller already has.
    let token = f
        .reg
        .token_server
        .as_ref()
        .unwrap()
        .token_for("repository:tokened:pull");
    let mut opts = f.options(&[]);
    opts.registry.auth = cloister_image::Auth::Bearer(token);
    let store = LayerStore::open(f.path("store-bearer")).unwrap();
    let (r, _) = pull_with(store, opts, &f.image("tokened:1")).await;
    assert_eq!(r.unwrap().layers.len(), 1);

    // A token for another repository, and no credentials: refused.
    for auth in [
        cloister_image::Auth::Bearer(
            f.reg
                .token_server
                .as_ref()
                .unwrap()
                .token_for("repository:other:pull"),
        ),
        cloister_image::Auth::Anonymous,
    ] {
        let mut opts = f.options(&[]);
        opts.registry.auth = auth.clone();
        let store = LayerStore::open(f.path("store-denied")).unwrap();
        let (r, _) = pull_with(store.clone(), opts, &f.image("tokened:1")).await;
        assert!(r.is_err(), "{auth:?} must be refused");
        assert_store_empty(&store);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_image_rsa_and_ec_keys_zstd_and_refusals() {
    let Some(f) = Fixture::new(Setup::HTTP) else {
        return;
    };
    let l = Layout::new(f.dir.path());
    l.busybox("base", "amd64");
    let (rsa, rsa_pub) = keys::rsa_keypair(f.dir.path(), "rsa");
    let (ec, ec_pub) = keys::ec_keypair(f.dir.path(), "ec");
    let (other, _) = keys::rsa_keypair(f.dir.path(), "other");
    let rsa_arg = format!("jwe:{}", rsa_pub.display());
    let ec_arg = format!("jwe:{}", ec_pub.display());
    f.reg.push(
        &l.path,
        "base",
        "enc:gzip",
        &["--encryption-key", &rsa_arg, "--encryption-key", &ec_arg],
    );
    f.reg.push(
        &l.path,
        "base",
        "enc:zstd",
        &[
            "--encryption-key",
            &rsa_arg,
            "--dest-compress-format",
            "zstd",
        ],
    );

    for (tag, key) in [("enc:gzip", &rsa), ("enc:gzip", &ec), ("enc:zstd", &rsa)] {
        let store = LayerStore::open(f.path(&format!("store-{}", key.display()).replace('/', "_")))
            .unwrap();
        let (r, _) = pull_with(store, f.options(&[key]), &f.image(tag)).await;
        let img = r.unwrap_or_else(|e| {
            panic!(
                "{tag} with {}: {}",
                key.display(),
                cloister_image::error_chain(&e)
            )
        });
        assert!(img.layers[0].encrypted);
        assert!(img.layers[0].media_type.ends_with("+encrypted"));
        let rootfs = f.path(&format!("rootfs-{}", img.layers[0].diff_id.hex()));
        let _ = std::fs::remove_dir_all(&rootfs);
        assemble_rootfs(&img.layer_dirs(), &rootfs, AssembleMode::Copy).unwrap();
        assert_busybox_rootfs(&rootfs);
    }

    // A key that is not a recipient: refused before any layer byte.
    let store = LayerStore::open(f.path("store-wrong")).unwrap();
    let (r, progress) = pull_with(store.clone(), f.options(&[&other]), &f.image("enc:gzip")).await;
    let err = r.unwrap_err();
    assert!(matches!(err, Error::LayerKey { .. }), "{err:?}");
    assert!(err.to_string().contains("layer 0"), "{err}");
    assert!(
        cloister_image::error_chain(&err).contains("none of the 1 decryption key"),
        "{err}"
    );
    assert_eq!(progress.bytes_downloaded.load(Ordering::Relaxed), 0);
    assert_store_empty(&store);

    // No key at all.
    let (r, _) = pull_with(store.clone(), f.options(&[]), &f.image("enc:gzip")).await;
    let err = r.unwrap_err();
    assert!(
        cloister_image::error_chain(&err).contains("no decryption key was given"),
        "{err:?}"
    );
    assert_store_empty(&store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partially_encrypted_multi_layer_image() {
    let Some(f) = Fixture::new(Setup::HTTP) else {
        return;
    };
    let l = Layout::new(f.dir.path());
    l.busybox("base", "amd64");
    l.change("base", |r| {
        std::fs::write(r.join("secret.txt"), "top secret\n").unwrap()
    });
    l.change("base", |r| {
        std::fs::write(r.join("public.txt"), "public\n").unwrap()
    });
    let (key, key_pub) = keys::rsa_keypair(f.dir.path(), "k");
    let arg = format!("jwe:{}", key_pub.display());
    f.reg.push(
        &l.path,
        "base",
        "partial:1",
        &["--encryption-key", &arg, "--encrypt-layer", "1"],
    );

    let (r, _) = pull_with(f.store(), f.options(&[&key]), &f.image("partial:1")).await;
    let img = r.unwrap();
    let flags: Vec<bool> = img.layers.iter().map(|l| l.encrypted).collect();
    assert_eq!(flags, [false, true, false]);
    let rootfs = f.path("rootfs");
    assemble_rootfs(&img.layer_dirs(), &rootfs, AssembleMode::Copy).unwrap();
    assert_eq!(
        std::fs::read(rootfs.join("secret.txt")).unwrap(),
        b"top secret\n"
    );
    assert_eq!(
        std::fs::read(rootfs.join("public.txt")).unwrap(),
        b"public\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whiteouts_and_opaque_dirs_across_layers() {
    let Some(f) = Fixture::new(Setup::HTTP) else {
        return;
    };
    let l = Layout::new(f.dir.path());
    l.busybox("base", "amd64");
    l.change("base", |r| {
        for d in ["a", "b", "c"] {
            std::fs::create_dir(r.join(d)).unwrap();
        }
        for p in ["a/keep", "a/gone", "b/old", "c/file", "top-gone"] {
            std::fs::write(r.join(p), p).unwrap();
        }
    });
    // umoci repack writes whiteouts for what was removed.
    l.change("base", |r| {
        std::fs::remove_file(r.join("a/gone")).unwrap();
        std::fs::remove_file(r.join("top-gone")).unwrap();
        std::fs::remove_dir_all(r.join("c")).unwrap();
    });
    // umoci insert --opaque: b's old content is hidden.
    let newb = f.path("newb");
    std::fs::create_dir(&newb).unwrap();
    std::fs::write(newb.join("new"), "new").unwrap();
    l.insert("base", &newb, "/b", true);
    f.reg.push(&l.path, "base", "wh:1", &[]);

    let (r, _) = pull_with(f.store(), f.options(&[]), &f.image("wh:1")).await;
    let img = r.unwrap();
    assert_eq!(img.layers.len(), 4);
    let stats: Vec<_> = img.layers.iter().map(|l| l.stats.unwrap()).collect();
    assert_eq!(stats[2].whiteouts, 3, "{stats:?}");
    assert_eq!(stats[3].opaque_dirs, 1, "{stats:?}");

    let want = [
        "a/",
        "a/keep",
        "b/",
        "b/new",
        "bin/",
        "bin/busybox",
        "bin/sh",
    ];
    let rootfs = f.path("rootfs");
    assemble_rootfs(&img.layer_dirs(), &rootfs, AssembleMode::Copy).unwrap();
    assert_eq!(tree(&rootfs), want);

    // The layer directories as real overlayfs lowerdirs give the same view.
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping the overlayfs half: needs root to mount");
        return;
    }
    let mnt = f.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let lower: Vec<String> = img
        .overlay_lowerdirs()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let status = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!("lowerdir={}", lower.join(":")))
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(status.success(), "mounting overlayfs over the layer store");
    let seen = tree(&mnt);
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    assert_eq!(seen, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_arch_index_and_digest_pinning() {
    let Some(f) = Fixture::new(Setup::HTTP) else {
        return;
    };
    let l = Layout::new(f.dir.path());
    l.busybox("amd", "amd64");
    l.busybox("arm", "arm64");
    l.change("arm", |r| std::fs::write(r.join("arch"), "arm64").unwrap());
    l.index("multi", &[("arm", "arm64"), ("amd", "amd64")]);
    f.reg
        .push(&l.path, "multi", "multi:1", &["--multi-arch", "all"]);
    let amd = l.manifest_digest("amd");
    let arm = l.manifest_digest("arm");
    let index = l.manifest_digest("multi");

    let (r, _) = pull_with(f.store(), f.options(&[]), &f.image("multi:1")).await;
    let img = r.unwrap();
    assert_eq!(
        img.digest.to_string(),
        index,
        "the reference resolves to the index"
    );
    assert_eq!(img.image_digest.to_string(), amd, "linux/amd64 is selected");
    assert_eq!(img.layers.len(), 1);

    let mut opts = f.options(&[]);
    opts.platform = Platform {
        architecture: "arm64".into(),
        ..Platform::default()
    };
    let (r, _) = pull_with(f.store(), opts, &f.image("multi:1")).await;
    assert_eq!(r.unwrap().image_digest.to_string(), arm);

    let mut opts = f.options(&[]);
    opts.platform.architecture = "riscv64".into();
    let (r, _) = pull_with(f.store(), opts, &f.image("multi:1")).await;
    let err = r.unwrap_err();
    assert!(matches!(err, Error::NoPlatform { .. }), "{err:?}");
    assert!(err.to_string().contains("linux/arm64"), "{err}");

    // Pinned by digest: the index's digest works, a wrong one does not.
    let pinned = format!("{}/multi@{index}", f.reg.host());
    let (r, _) = pull_with(f.store(), f.options(&[]), &pinned).await;
    assert_eq!(r.unwrap().image_digest.to_string(), amd);
    let missing = format!("{}/multi@sha256:{}", f.reg.host(), "0".repeat(64));
    let (r, _) = pull_with(f.store(), f.options(&[]), &missing).await;
    assert!(r.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_layer_is_refused_and_nothing_is_left() {
    let Some(f) = Fixture::new(Setup::HTTP) else {
        return;
    };
    let l = Layout::new(f.dir.path());
    l.busybox("base", "amd64");
    l.change("base", |r| std::fs::write(r.join("x"), "x").unwrap());
    f.reg.push(&l.path, "base", "tamper:1", &[]);
    let digest = l.layer_digests("base")[0].clone();
    let data = f.reg.blob_data(&digest);
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&data, &bytes).unwrap();

    let store = f.store();
    let (r, _) = pull_with(store.clone(), f.options(&[]), &f.image("tamper:1")).await;
    match layer_error(r) {
        LayerError::Integrity(IntegrityError::Digest { expected, actual }) => {
            assert_eq!(expected.to_string(), digest);
            assert_ne!(actual, expected);
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert_eq!(
        store.pending().unwrap(),
        0,
        "the tampered layer's files were removed"
    );
    assert!(
        store.list().unwrap().len() <= 1,
        "only the intact layer may stay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_mismatch_is_refused() {
    let Some(f) = Fixture::new(Setup::HTTP) else {
        return;
    };
    let l = Layout::new(f.dir.path());
    l.busybox("base", "amd64");
    let (key, key_pub) = keys::rsa_keypair(f.dir.path(), "k");
    let arg = format!("jwe:{}", key_pub.display());
    f.reg
        .push(&l.path, "base", "hmac:good", &["--encryption-key", &arg]);

    // Change the HMAC in the pubopts annotation and push that manifest as
    // a new tag: blob digests still match, the HMAC does not.
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let good: oci_client::Reference = f.image("hmac:good").parse().unwrap();
    let auth = oci_client::secrets::RegistryAuth::Anonymous;
    let (raw, _) = client
        .pull_manifest_raw(
            &good,
            &auth,
            &["application/vnd.oci.image.manifest.v1+json"],
        )
        .await
        .unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let ann = &mut m["layers"][0]["annotations"]["org.opencontainers.image.enc.pubopts"];
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut pubopts: serde_json::Value =
        serde_json::from_slice(&b64.decode(ann.as_str().unwrap()).unwrap()).unwrap();
    pubopts["hmac"] = b64.encode([0x42u8; 32]).into();
    *ann = b64.encode(serde_json::to_vec(&pubopts).unwrap()).into();
    let bad: oci_client::Reference = f.image("hmac:bad").parse().unwrap();
    client
        .push_manifest_raw(
            &bad,
            serde_json::to_vec(&m).unwrap(),
            "application/vnd.oci.image.manifest.v1+json"
                .parse()
                .unwrap(),
        )
        .await
        .unwrap();

    let store = f.store();
    let (r, _) = pull_with(store.clone(), f.options(&[&key]), &f.image("hmac:bad")).await;
    assert!(matches!(
        layer_error(r),
        LayerError::Integrity(IntegrityError::Hmac)
    ));
    assert_store_empty(&store);
    let (r, _) = pull_with(store.clone(), f.options(&[&key]), &f.image("hmac:good")).await;
    assert!(r.unwrap().layers[0].encrypted);
}

/// Records what it was shown, and refuses if told to.
struct Recorder {
    refuse: bool,
    seen: Mutex<Vec<(String, String)>>,
}

#[async_trait]
impl ManifestVerifier for Recorder {
    async fn verify(
        &self,
        m: &ManifestToVerify<'_>,
    ) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        assert_eq!(cloister_image::Sha256Digest::of(m.manifest), m.digest);
        assert_eq!(
            cloister_image::Sha256Digest::of(m.image_manifest),
            m.image_digest
        );
        // The registry access a signature verifier gets: tags and blobs of
        // the same repository, with the pull's credentials.
        let accept = cloister_image::manifest::ACCEPTED_MANIFEST_TYPES;
        assert!(m.fetch_tag("sha256-nothing.sig", accept).await?.is_none());
        let (_, by_tag) = m.fetch_tag("1", accept).await?.expect("tag 1 exists");
        assert_eq!(by_tag, m.digest);
        self.seen
            .lock()
            .unwrap()
            .push((m.digest.to_string(), m.image_digest.to_string()));
        if self.refuse {
            return Err("no valid signature (test policy)".into());
        }
        Ok("recorded".into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_hook_runs_before_any_layer() {
    let Some(f) = Fixture::new(Setup::HTTP) else {
        return;
    };
    let l = Layout::new(f.dir.path());
    l.busybox("amd", "amd64");
    l.index("multi", &[("amd", "amd64")]);
    f.reg
        .push(&l.path, "multi", "signed:1", &["--multi-arch", "all"]);

    let store = f.store();
    let refuse = Recorder {
        refuse: true,
        seen: Mutex::new(Vec::new()),
    };
    let progress = Arc::new(Progress::new());
    let puller = ImagePuller::new(store.clone(), f.options(&[]));
    let err = puller
        .pull(&f.image("signed:1"), &refuse, progress.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Refused { .. }), "{err:?}");
    assert!(err.to_string().contains("no valid signature"), "{err}");
    assert_eq!(progress.bytes_downloaded.load(Ordering::Relaxed), 0);
    assert_store_empty(&store);
    let seen = refuse.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [(l.manifest_digest("multi"), l.manifest_digest("amd"))]
    );

    let accept = Recorder {
        refuse: false,
        seen: Mutex::new(Vec::new()),
    };
    let img = puller
        .pull(&f.image("signed:1"), &accept, progress)
        .await
        .unwrap();
    assert_eq!(img.verification, "recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_downloads_resume_with_range_requests() {
    let Some(f) = Fixture::new(Setup::HTTP) else {
        return;
    };
    let l = Layout::new(f.dir.path());
    l.busybox("base", "amd64");
    f.reg.push(&l.path, "base", "flaky:1", &[]);

    // A proxy that closes every connection after 200 KiB of response: the
    // ~1 MiB layer needs several resumed requests.
    let proxy = cloister_test_support::proxy::CuttingProxy::start(f.reg.port, 200 * 1024).await;
    let mut opts: PullOptions = f.options(&[]);
    opts.registry = RegistryOptions {
        retry: cloister_image::RetryPolicy {
            attempts: 20,
            initial_backoff: std::time::Duration::from_millis(10),
            max_backoff: std::time::Duration::from_millis(50),
        },
        ..opts.registry
    };
    let image = format!("127.0.0.1:{}/flaky:1", proxy.port);
    let (r, progress) = pull_with(f.store(), opts, &image).await;
    let img = r.unwrap_or_else(|e| panic!("{}", cloister_image::error_chain(&e)));
    assert!(
        progress.retries.load(Ordering::Relaxed) >= 3,
        "{progress:?}"
    );
    assert_eq!(
        img.layers[0].downloaded, img.layers[0].size,
        "no byte fetched twice"
    );
    assert!(proxy.range_requests() >= 3, "resumed with Range requests");
    let rootfs = f.path("rootfs");
    assemble_rootfs(&img.layer_dirs(), &rootfs, AssembleMode::Copy).unwrap();
    assert_busybox_rootfs(&rootfs);
}

/// Retries that end quickly: the hostile-registry tests count them.
fn quick_retries(opts: &mut PullOptions, attempts: u32) {
    opts.registry.retry = cloister_image::RetryPolicy {
        attempts,
        initial_backoff: std::time::Duration::from_millis(10),
        max_backoff: std::time::Duration::from_millis(20),
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_truncated_manifests_are_refused_before_memory() {
    let Some(f) = Fixture::new(Setup::HTTP) else {
        return;
    };
    let l = Layout::new(f.dir.path());
    l.busybox("base", "amd64");
    f.reg.push(&l.path, "base", "app:1", &[]);
    const LIMIT: u64 = 4 << 20;
    for (fault, expect, tries) in [
        (
            Fault::OversizedManifest {
                bytes: 64 << 20,
                announce: true,
            },
            "the registry announces 67108864 bytes, over the 4194304-byte limit",
            1,
        ),
        (
            Fault::OversizedManifest {
                bytes: 64 << 20,
                announce: false,
            },
            "over the 4194304-byte limit",
            1,
        ),
        (Fault::TruncatedManifest, "fetching manifest", 3),
    ] {
        let hostile = HostileRegistry::start(f.reg.port, fault.clone()).await;
        let store = f.store();
        let mut opts = f.options(&[]);
        quick_retries(&mut opts, 3);
        let image = format!("127.0.0.1:{}/app:1", hostile.port);
        let (r, _) = pull_with(store.clone(), opts, &image).await;
        let e = cloister_image::error_chain(&r.expect_err("a hostile manifest was accepted"));
        assert!(e.contains(expect), "{fault:?}: {e}");
        assert!(e.contains(&format!("127.0.0.1:{}", hostile.port)), "{e}");
        // Oversized: refused at once, not retried. Truncated: a transient
        // failure, retried within the limit, then refused.
        assert_eq!(hostile.spoiled_requests(), tries, "{fault:?}: {e}");
        // The client stopped reading at the cap (the rest, at most, sat in
        // socket buffers): nowhere near the 64 MiB on offer.
        assert!(
            hostile.spoiled_bytes() < LIMIT + (8 << 20),
            "{fault:?}: {} bytes were sent",
            hostile.spoiled_bytes()
        );
        assert_store_empty(&store);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_keeps_dropping_mid_layer_is_refused_after_the_retries() {
    let Some(f) = Fixture::new(Setup::HTTP) else {
        return;
    };
    let l = Layout::new(f.dir.path());
    l.busybox("base", "amd64");
    f.reg.push(&l.path, "base", "drop:1", &[]);
    let digest = l.layer_digests("base")[0].clone();
    // Every response for the layer breaks off after its headers and a few
    // bytes: resuming never gets further.
    let hostile = HostileRegistry::start(
        f.reg.port,
        Fault::CutBlob {
            digest: digest.clone(),
            after: 400,
        },
    )
    .await;
    let store = f.store();
    let mut opts = f.options(&[]);
    quick_retries(&mut opts, 4);
    let (r, progress) = pull_with(
        store.clone(),
        opts,
        &format!("127.0.0.1:{}/drop:1", hostile.port),
    )
    .await;
    let e = cloister_image::error_chain(&r.expect_err("a layer that never arrives was accepted"));
    assert!(e.contains(&digest[7..19]) || e.contains(&digest), "{e}");
    assert!(
        hostile.spoiled_requests() >= 4,
        "{}",
        hostile.spoiled_requests()
    );
    assert!(
        hostile.spoiled_requests() <= 8,
        "retried without bound: {e}"
    );
    assert!(
        progress.retries.load(Ordering::Relaxed) >= 3,
        "{progress:?}"
    );
    // Nothing of the layer stays: no partial rootfs to unpack later.
    assert_store_empty(&store);
}
