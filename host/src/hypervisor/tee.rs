//! Which TEE a VM is launched with, and the per-launch value that binds the
//! pod's initdata to it: HOST_DATA (SEV-SNP, sim) = sha256(initdata), or
//! MRCONFIGID (TDX) = the same digest followed by 16 zero bytes (the agent's
//! check, guest/src/initdata.rs, accepts exactly these).
use sha2::{Digest, Sha256};

/// The TEE a VM boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum TeeKind {
    /// No TEE: initdata is not bound (development only).
    #[default]
    None,
    /// The sim TEE: development only, NOT A TEE. A host-side sim chip issues
    /// SNP-layout reports over vsock port 1025.
    Sim,
}

impl TeeKind {
    pub fn name(self) -> &'static str {
        match self {
            TeeKind::None => "none",
            TeeKind::Sim => "sim",
        }
    }
}

/// HOST_DATA for `initdata`: its sha256, or zeros without initdata.
pub fn host_data(initdata: Option<&[u8]>) -> [u8; 32] {
    initdata
        .map(|d| Sha256::digest(d).into())
        .unwrap_or([0; 32])
}

/// TDX MRCONFIGID (48 bytes) for `initdata`: sha256(initdata) then 16 zero
/// bytes, or all zeros without initdata.
pub fn mrconfigid(initdata: Option<&[u8]>) -> [u8; 48] {
    let mut out = [0u8; 48];
    if initdata.is_some() {
        out[..32].copy_from_slice(&host_data(initdata));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_data_is_the_sha256_of_initdata() {
        // sha256("abc")
        let want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(hex::encode(host_data(Some(b"abc"))), want);
        assert_eq!(host_data(None), [0; 32]);
        let m = mrconfigid(Some(b"abc"));
        assert_eq!(hex::encode(&m[..32]), want);
        assert_eq!(m[32..], [0u8; 16]);
        assert_eq!(mrconfigid(None), [0; 48]);
        // Empty initdata is still initdata: its digest, not zeros.
        assert_ne!(host_data(Some(b"")), [0; 32]);
    }
}
