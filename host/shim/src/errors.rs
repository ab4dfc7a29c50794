//! The shim's errors, and their ttrpc status codes: containerd turns the
//! codes into its errdefs (NOT_FOUND → ErrNotFound, …), and CRI and ctr
//! act on them, so each failure gets the code that says what it is.
use containerd_shim::protos::ttrpc;

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Exists(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Internal(String),
}

impl ShimError {
    /// An agent RPC's failure, keeping its code and naming the RPC.
    pub fn from_rpc(rpc: &str, e: &::ttrpc::Error) -> ShimError {
        use ::ttrpc::Code;
        match e {
            ::ttrpc::Error::RpcStatus(s) => {
                let msg = format!("{rpc} in the guest: {}", s.message());
                match s.code() {
                    Code::NOT_FOUND => ShimError::NotFound(msg),
                    Code::ALREADY_EXISTS => ShimError::Exists(msg),
                    Code::INVALID_ARGUMENT => ShimError::Invalid(msg),
                    Code::FAILED_PRECONDITION => ShimError::Precondition(msg),
                    Code::PERMISSION_DENIED => ShimError::Denied(msg),
                    Code::UNIMPLEMENTED => ShimError::Unimplemented(msg),
                    _ => ShimError::Internal(msg),
                }
            }
            other => ShimError::Unavailable(format!(
                "{rpc}: the agent did not answer over the VM's vsock (port 1024): {other}"
            )),
        }
    }

    pub fn from_pod(e: &cloister_host::pod::PodError) -> ShimError {
        ShimError::Precondition(e.to_string())
    }
}

impl From<ShimError> for ttrpc::Error {
    fn from(e: ShimError) -> ttrpc::Error {
        let code = match &e {
            ShimError::NotFound(_) => ttrpc::Code::NOT_FOUND,
            ShimError::Exists(_) => ttrpc::Code::ALREADY_EXISTS,
            ShimError::Invalid(_) => ttrpc::Code::INVALID_ARGUMENT,
            ShimError::Precondition(_) => ttrpc::Code::FAILED_PRECONDITION,
            ShimError::Unimplemented(_) => ttrpc::Code::UNIMPLEMENTED,
            ShimError::Unavailable(_) => ttrpc::Code::UNAVAILABLE,
            ShimError::Denied(_) => ttrpc::Code::PERMISSION_DENIED,
            ShimError::Internal(_) => ttrpc::Code::INTERNAL,
        };
        ttrpc::Error::RpcStatus(ttrpc::get_status(code, e.to_string()))
    }
}

/// Task and exec ids become file names and guest ids.
pub fn check_id(id: &str) -> Result<(), ShimError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ShimError::Invalid(format!(
            "id {:?} is not [A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}",
            id.chars().take(80).collect::<String>()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_kind_of_failure() {
        let e: ttrpc::Error = ShimError::NotFound("x".into()).into();
        match e {
            ttrpc::Error::RpcStatus(s) => {
                assert_eq!(s.code(), ttrpc::Code::NOT_FOUND);
                assert_eq!(s.message(), "x");
            }
            _ => panic!(),
        }
        assert!(check_id("../x").is_err());
        assert!(check_id(&"a".repeat(65)).is_err());
        assert!(check_id("abc-1.2_3").is_ok());
    }
}
