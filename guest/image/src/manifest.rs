//! Manifests, indexes and configs: which is which, which platform entry to
//! take, and what each layer's media type says about how to read it.
//! Docker v2 (schema 2) and OCI media types are both understood.

use std::collections::BTreeMap;

use oci_client::manifest::{
    ImageIndexEntry, OciDescriptor, OciImageIndex, OciImageManifest,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use serde::Deserialize;

use crate::digest::Sha256Digest;
use crate::stream::decompress::Compression;

/// Media types the registry is asked for.
pub const ACCEPTED_MANIFEST_TYPES: &[&str] = &[
    OCI_IMAGE_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON of the kind its media type says: {0}")]
    Json(String),
    #[error("unsupported manifest media type {0:?}")]
    MediaType(String),
    #[error("unsupported schemaVersion {0} (expected 2)")]
    SchemaVersion(i64),
    #[error("layer media type {0:?} is not an image layer this runtime can unpack")]
    LayerMediaType(String),
    #[error("{what}")]
    Digest {
        what: String,
        #[source]
        source: crate::digest::DigestParseError,
    },
    #[error("descriptor {what} has a negative size {size}")]
    Size { what: String, size: i64 },
}

/// A top-level document fetched for a reference.
pub enum Fetched {
    Index(OciImageIndex),
    Image(Box<OciImageManifest>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<i64>,
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
}

/// Parses a manifest or index. The media type comes from the document
/// (falling back to the Content-Type the registry sent, then to shape).
pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Fetched, ManifestError> {
    let probe: Probe =
        serde_json::from_slice(body).map_err(|e| ManifestError::Json(e.to_string()))?;
    if let Some(v) = probe.schema_version {
        if v != 2 {
            return Err(ManifestError::SchemaVersion(v));
        }
    }
    let media_type = probe
        .media_type
        .clone()
        .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_string()))
        .unwrap_or_default();
    let is_index = match media_type.as_str() {
        OCI_IMAGE_INDEX_MEDIA_TYPE | IMAGE_MANIFEST_LIST_MEDIA_TYPE => true,
        OCI_IMAGE_MEDIA_TYPE | IMAGE_MANIFEST_MEDIA_TYPE => false,
        "" => probe.manifests.is_some(),
        other => return Err(ManifestError::MediaType(other.into())),
    };
    let json = |e: serde_json::Error| ManifestError::Json(e.to_string());
    Ok(if is_index {
        Fetched::Index(serde_json::from_slice(body).map_err(json)?)
    } else {
        Fetched::Image(Box::new(serde_json::from_slice(body).map_err(json)?))
    })
}

/// The platform to select from an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Default for Platform {
    fn default() -> Self {
        Self {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

fn entry_platform(e: &ImageIndexEntry) -> Option<(String, String, Option<String>)> {
    // Arch/Os serialize to their Go names; going through JSON avoids
    // depending on the enum variants oci-client happens to list.
    let p = e.platform.as_ref()?;
    let v = serde_json::to_value(p).ok()?;
    Some((
        v.get("os")?.as_str()?.to_string(),
        v.get("architecture")?.as_str()?.to_string(),
        v.get("variant").and_then(|x| x.as_str()).map(String::from),
    ))
}

/// Picks the index entry for `want` (the variant must match if asked for).
/// Returns the entry, or a description of what the index offers.
pub fn select_platform<'a>(
    index: &'a OciImageIndex,
    want: &Platform,
) -> Result<&'a ImageIndexEntry, String> {
    let mut available = Vec::new();
    for e in &index.manifests {
        let Some((os, arch, variant)) = entry_platform(e) else {
            continue;
        };
        if os == want.os
            && arch == want.architecture
            && (want.variant.is_none() || want.variant == variant)
        {
            return Ok(e);
        }
        available.push(match variant {
            Some(v) => format!("{os}/{arch}/{v}"),
            None => format!("{os}/{arch}"),
        });
    }
    Err(if available.is_empty() {
        "no entries with a platform".into()
    } else {
        available.join(", ")
    })
}

/// How a layer blob is to be read.
#[derive(Debug, Clone)]
pub struct LayerInfo {
    pub index: usize,
    pub digest: Sha256Digest,
    pub size: u64,
    pub media_type: String,
    pub compression: Compression,
    pub encrypted: bool,
    pub annotations: Option<BTreeMap<String, String>>,
    pub urls: Option<Vec<String>>,
}

/// Classifies a layer media type: compression and whether it is
/// ocicrypt-encrypted.
pub fn layer_format(media_type: &str) -> Option<(Compression, bool)> {
    let (base, encrypted) = match media_type.strip_suffix("+encrypted") {
        Some(b) => (b, true),
        None => (media_type, false),
    };
    let c = match base {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Compression::None,
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Compression::Zstd,
        _ => return None,
    };
    Some((c, encrypted))
}

pub fn descriptor_digest(d: &OciDescriptor, what: &str) -> Result<Sha256Digest, ManifestError> {
    Sha256Digest::parse(&d.digest).map_err(|source| ManifestError::Digest {
        what: what.into(),
        source,
    })
}

pub fn descriptor_size(d: &OciDescriptor, what: &str) -> Result<u64, ManifestError> {
    u64::try_from(d.size).map_err(|_| ManifestError::Size {
        what: what.into(),
        size: d.size,
    })
}

pub fn layers(m: &OciImageManifest) -> Result<Vec<LayerInfo>, ManifestError> {
    m.layers
        .iter()
        .enumerate()
        .map(|(index, d)| {
            let what = format!("layer {index}");
            let (compression, encrypted) = layer_format(&d.media_type)
                .ok_or_else(|| ManifestError::LayerMediaType(d.media_type.clone()))?;
            Ok(LayerInfo {
                index,
                digest: descriptor_digest(d, &what)?,
                size: descriptor_size(d, &what)?,
                media_type: d.media_type.clone(),
                compression,
                encrypted,
                annotations: d.annotations.clone(),
                urls: d.urls.clone(),
            })
        })
        .collect()
}

/// The parts of an image config the pipeline needs. Parsed with a small
/// struct of its own so that fields it does not use cannot fail the pull.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageConfig {
    pub architecture: Option<String>,
    pub os: Option<String>,
    pub variant: Option<String>,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

impl ImageConfig {
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let c: ImageConfig = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        if c.rootfs.kind != "layers" {
            return Err(format!(
                "rootfs.type is {:?}, expected \"layers\"",
                c.rootfs.kind
            ));
        }
        Ok(c)
    }

    pub fn diff_ids(&self) -> Result<Vec<Sha256Digest>, String> {
        self.rootfs
            .diff_ids
            .iter()
            .map(|d| Sha256Digest::parse(d).map_err(|e| format!("rootfs.diff_ids: {e}")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_media_types() {
        use Compression::*;
        let cases = [
            (
                "application/vnd.oci.image.layer.v1.tar",
                Some((None, false)),
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Some((Gzip, false)),
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd+encrypted",
                Some((Zstd, true)),
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
                Some((Gzip, true)),
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+encrypted",
                Some((None, true)),
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Some((Gzip, false)),
            ),
            ("application/vnd.wasm.content.layer.v1+wasm", Option::None),
            (
                "application/vnd.oci.image.layer.v1.tar+encrypted+gzip",
                Option::None,
            ),
        ];
        for (mt, want) in cases {
            assert_eq!(layer_format(mt), want, "{mt}");
        }
    }

    #[test]
    fn index_platform_selection() {
        let index = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
          {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","size":1,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}},
          {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","size":1,"platform":{"architecture":"amd64","os":"linux"}}]}"#;
        let Fetched::Index(ix) = parse(index.as_bytes(), None).unwrap() else {
            panic!("not an index")
        };
        let e = select_platform(&ix, &Platform::default()).unwrap();
        assert!(e.digest.ends_with("bbbb"));
        let s390 = Platform {
            architecture: "s390x".into(),
            ..Platform::default()
        };
        let err = select_platform(&ix, &s390).unwrap_err();
        assert!(
            err.contains("linux/arm64/v8") && err.contains("linux/amd64"),
            "{err}"
        );
    }

    #[test]
    fn schema_and_media_type_checks() {
        assert!(matches!(
            parse(br#"{"schemaVersion":1}"#, None),
            Err(ManifestError::SchemaVersion(1))
        ));
        assert!(matches!(
            parse(br#"{"schemaVersion":2,"mediaType":"text/plain"}"#, None),
            Err(ManifestError::MediaType(_))
        ));
    }
}
