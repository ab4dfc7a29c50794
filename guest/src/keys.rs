//! Image decryption keys: fetched from the tenant's KBS after attestation,
//! as the initdata's `image-keys` list names them. Never from the host.
use cloister_image::KeyRing;

use crate::initdata::Initdata;
use crate::rpc::{status, AgentState};

pub async fn image_keys(s: &AgentState, initdata: &Initdata) -> ttrpc::Result<KeyRing> {
    let keys = KeyRing::new();
    if initdata.image_keys.is_empty() {
        return Ok(keys);
    }
    Err(status(
        ttrpc::Code::FAILED_PRECONDITION,
        format!(
            "initdata lists {} image key(s) from the KBS, but this agent cannot attest in TEE {:?} yet",
            initdata.image_keys.len(),
            s.tee.name()
        ),
    ))
}
