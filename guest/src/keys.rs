//! Image decryption keys: fetched from the tenant's KBS after attestation,
//! as the initdata's `image-keys` list names them (`kbs:///repo/type/tag`).
//! Never from the host. Fetched once per pod and kept in memory only.
use std::sync::Arc;

use cloister_image::KeyRing;
use cloister_kbs_client::{KbsClient, KbsClientConfig};
use tracing::{info, warn};

use crate::initdata::Initdata;
use crate::rpc::{status, AgentState};

/// The keys, and a line saying how they were obtained (empty: none needed).
pub async fn image_keys(
    s: &AgentState,
    initdata: &Initdata,
) -> ttrpc::Result<(Arc<KeyRing>, String)> {
    if initdata.image_keys.is_empty() {
        return Ok((Arc::new(KeyRing::new()), String::new()));
    }
    let mut cache = s.image_keys_cache.lock().await;
    if let Some(c) = cache.as_ref() {
        return Ok(c.clone());
    }
    let refuse = |msg: String| {
        warn!(error = %msg, "image keys unavailable");
        status(ttrpc::Code::FAILED_PRECONDITION, msg)
    };
    let url = initdata
        .kbs_url
        .as_deref()
        .ok_or_else(|| refuse("initdata lists image-keys but has no kbs-url".into()))?;
    let ca = initdata
        .kbs_cert_pem
        .as_deref()
        .ok_or_else(|| refuse("initdata lists image-keys but has no kbs-cert.pem".into()))?;
    let attester = crate::tee::attester(s.tee).ok_or_else(|| {
        refuse(format!(
            "image keys come from the KBS after attestation, and this guest has no attester (TEE: {})",
            s.tee.name()
        ))
    })?;
    let mut config = KbsClientConfig::new(url, ca.as_bytes().to_vec());
    config.init_data = Some(initdata.raw.clone());
    let mut client = KbsClient::new(config, Box::new(attester))
        .map_err(|e| refuse(format!("KBS client: {e}")))?;
    client
        .attest()
        .await
        .map_err(|e| refuse(format!("attestation to {url} failed: {e}")))?;
    let attestation = format!("attested to {url} (TEE {})", s.tee.name());
    info!(kbs = url, tee = s.tee.name(), "attested to the KBS");
    let mut ring = KeyRing::new();
    for k in &initdata.image_keys {
        let path = k.trim_start_matches("kbs:///");
        let mut parts = path.splitn(3, '/');
        let (Some(repo), Some(kind), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(refuse(format!("{k} is not kbs:///REPOSITORY/TYPE/TAG")));
        };
        let pem = zeroize::Zeroizing::new(
            client
                .get_resource(repo, kind, tag)
                .await
                .map_err(|e| refuse(format!("fetching {k} from the KBS {url}: {e}")))?,
        );
        ring.add_pem(k, &pem)
            .map_err(|e| refuse(format!("{k} from the KBS is not a usable private key: {e}")))?;
        info!(key = k, "image key fetched from the KBS");
    }
    let entry = (Arc::new(ring), attestation);
    *cache = Some(entry.clone());
    Ok(entry)
}
