//! `cloister-snapshotter`: a containerd proxy snapshotter in "guest pull"
//! mode, for the `cloister` runtime class.
//!
//! With cloister the image is pulled, verified, decrypted and unpacked inside
//! the guest by the cloister agent; the host must never fetch or unpack the
//! workload's layers (it could not even unpack ocicrypt-encrypted ones).
//! containerd's CRI plugin pulls with unpacking through its snapshotter, so
//! this snapshotter answers the unpack requests in a way that makes
//! containerd skip every layer blob, keeping only the manifest and config,
//! and an image whose snapshot chain exists as empty committed snapshots.
//!
//! # containerd 1.6 behaviour relied on
//!
//! Read in containerd's v1.6 sources (no code copied):
//!
//! * `pkg/cri/server/image_pull.go`: `PullImage` pulls with
//!   `WithPullUnpack` and the configured snapshotter, and (unless
//!   `disable_snapshot_annotations`) wraps the handlers so layer descriptors
//!   carry `containerd.io/snapshot/cri.image-ref` and
//!   `containerd.io/snapshot/cri.layer-digest` annotations.
//! * `unpacker.go`: for each layer, `Stat(chainID)`; if absent, labels are
//!   `snapshots.FilterInheritedLabels(annotations)` plus
//!   `containerd.io/snapshot.ref=<chainID>`, and `Prepare` is called with the
//!   key `extract-<unique> <chainID>` and the parent chain ID. If `Prepare`
//!   fails with `IsAlreadyExists` and `Stat(chainID)` then succeeds, the
//!   layer is skipped (`continue EachLayer`) before its fetch is started; the
//!   blobs are fetched only from the first layer whose Prepare succeeded.
//! * `snapshots/snapshotter.go`: `FilterInheritedLabels` keeps only
//!   `containerd.io/snapshot.ref` and labels prefixed `containerd.io/snapshot/`,
//!   so those are the labels a proxy snapshotter sees; `WithLabels` merges.
//! * `rootfs/apply.go` (`ctr images unpack`, CRI's fallback when an image's
//!   snapshot is missing): Prepares `extract-<unique> <chainID>` without the
//!   ref label, retries AlreadyExists with a new key indefinitely, then
//!   applies the blob on the host. This snapshotter therefore refuses such
//!   extraction keys with FAILED_PRECONDITION (see [`service`]).
//! * `docs/snapshotters/remote-snapshotter.md`: returning `ErrAlreadyExists`
//!   from Prepare is the documented way for a remote snapshotter to accept
//!   the target snapshot.
//! * The metadata layer (`metadata/snapshot.go`) prefixes backend keys with
//!   `<namespace>/<n>/` and, after a remote-snapshot AlreadyExists, looks the
//!   target up with Walk and the filter
//!   `labels."containerd.io/snapshot.ref"==<chainID>,parent==<parent>`
//!   (from memory of v1.6; the indexed copy was older, so the integration
//!   test drives this path through a real containerd 1.6.20). Hence the
//!   committed snapshot keeps the ref label, and Walk honours that filter
//!   subset ([`filter`]). containerd's garbage collector Walks without
//!   filters and removes unreferenced backend snapshots children first.
//! * errdefs (`errdefs/grpc.go`): gRPC NotFound, AlreadyExists,
//!   FailedPrecondition and InvalidArgument map back to the matching
//!   `errdefs` errors ([`error`]).

pub mod error;
pub mod filter;
pub mod server;
pub mod service;
pub mod store;
pub mod validate;

pub use error::Error;
pub use service::GuestPullSnapshotter;
