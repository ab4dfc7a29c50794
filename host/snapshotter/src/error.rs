//! Errors of the snapshotter, and how they reach containerd.
//!
//! containerd turns the gRPC status code of a proxy snapshotter's answer back
//! into its `errdefs` errors (`errdefs.FromGRPC`), and its callers branch on
//! them: the unpacker on `IsAlreadyExists`, the metadata layer and
//! `rootfs/apply.go` on `IsNotFound`. So every variant here maps to exactly
//! one code, and the message names the snapshot, label or field at fault.

use std::path::PathBuf;

use containerd_snapshots::tonic::{Code, Status};

/// Everything the snapshotter can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No snapshot has this key or name.
    #[error("snapshot {0:?} does not exist")]
    NotFound(String),
    /// A Prepare or View named a parent that does not exist.
    #[error("parent snapshot {0:?} does not exist")]
    ParentNotFound(String),
    /// A snapshot with this key or name exists already. For an unpack
    /// Prepare this is the guest-pull answer: the target snapshot exists.
    #[error("snapshot {0:?} already exists")]
    AlreadyExists(String),
    /// The request is well formed but the snapshot is in the wrong state
    /// (children left, not active, ...).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request itself is malformed (empty key, NUL, oversized labels,
    /// unknown field path, unsupported filter, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// The metadata file or a snapshot directory could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The metadata file exists but is not what this snapshotter wrote.
    #[error("metadata file {} is corrupt: {reason}; refusing to start with it (move it away to start empty, which forgets every snapshot)", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

impl Error {
    /// The gRPC code containerd's `errdefs.FromGRPC` maps to the matching
    /// `errdefs` error.
    pub fn code(&self) -> Code {
        match self {
            Error::NotFound(_) | Error::ParentNotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::Io { .. } | Error::Corrupt { .. } => Code::Internal,
        }
    }

    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        Status::new(err.code(), err.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
