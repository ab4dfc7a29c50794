//! Real parts for the tests that need an OCI registry: Debian's
//! `docker-registry` on 127.0.0.1 (plain HTTP, TLS from a fresh openssl
//! test CA, htpasswd basic auth or bearer tokens), OCI layouts built with
//! `umoci` from busybox-static, pushes (and ocicrypt encryption) with
//! `skopeo`, and key pairs made with `openssl`.
//!
//! Used, as a dev-dependency, by the registry tests of `cloister-image`
//! (`guest/image/tests/registry_pull.rs`, `memory.rs`), of
//! `cloister-signature` (`guest/signature/tests/registry.rs`) and by the
//! end-to-end tests in `tests/` that pull from a registry
//! (`containerd_shim.rs`, `containers_vm.rs`). What is particular to one
//! crate (its client options, the Python cosign tool) stays in that crate's
//! `tests/common`.
//!
//! A test whose tools are missing prints `SKIPPED:` with the reason and
//! passes, except under CI=true, where it fails ([`tools::skip_reason`]).

pub mod hostile;
pub mod keys;
pub mod layout;
pub mod proxy;
pub mod registry;
pub mod token;
pub mod tools;

pub use layout::{tree, Layout};
pub use registry::{Auth, Registry, Setup};
pub use tools::run;
