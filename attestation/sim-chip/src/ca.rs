//! The sim chip's keys and certificates: a sim ARK (root), a sim ASK and the sim
//! VCEK, all ECDSA P-384, created on first use and kept in a state directory so
//! a KBS can be configured with the sim ARK once (`<state>/ca/ark.pem`).
//!
//! Files under `<state>/ca/`: `ark.pem`, `ask.pem`, `vcek.pem` (certificates) and
//! `ark-key.pem`, `ask-key.pem`, `vcek-key.pem` (PKCS#8, mode 0600). The directory
//! is built aside and renamed into place, so a reader never sees half of it.
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cloister_evidence::sim::layout::{SIM_ARK_CN, SIM_ASK_CN, SIM_ORG, SIM_VCEK_CN};
use p384::pkcs8::DecodePrivateKey;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P384_SHA384,
};

use crate::SimChipError;

/// The sim chain and the VCEK's signing key.
pub struct SimCa {
    dir: PathBuf,
    ark_pem: String,
    ask_pem: String,
    vcek_der: Vec<u8>,
    pub(crate) vcek_key: p384::ecdsa::SigningKey,
}

impl std::fmt::Debug for SimCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimCa")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, SIM_ORG);
    dn
}

fn params(cn: &str, ca: bool) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = name(cn);
    p.not_before = date_time_ymd(2024, 1, 1);
    p.not_after = date_time_ymd(2124, 1, 1);
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    } else {
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    }
    p
}

fn io_err(path: &Path, what: &str) -> impl FnOnce(std::io::Error) -> SimChipError {
    let (path, what) = (path.to_path_buf(), what.to_string());
    move |source| SimChipError::State { path, what, source }
}

fn write_file(dir: &Path, file: &str, body: &[u8], secret: bool) -> Result<(), SimChipError> {
    let path = dir.join(file);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&path)
        .map_err(io_err(&path, "creating"))?;
    f.write_all(body).map_err(io_err(&path, "writing"))?;
    f.sync_all().map_err(io_err(&path, "syncing"))
}

impl SimCa {
    /// Loads the sim CA from `<state>/ca`, creating it first if it does not exist.
    pub fn load_or_create(state: &Path) -> Result<SimCa, SimChipError> {
        let dir = state.join("ca");
        if !dir.join("vcek-key.pem").exists() {
            fs::create_dir_all(state).map_err(io_err(state, "creating state directory"))?;
            let tmp = state.join(format!(".ca-{}", std::process::id()));
            let _ = fs::remove_dir_all(&tmp);
            fs::create_dir(&tmp).map_err(io_err(&tmp, "creating"))?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o700))
                .map_err(io_err(&tmp, "chmod"))?;
            generate(&tmp)?;
            match fs::rename(&tmp, &dir) {
                Ok(()) => {
                    tracing::warn!(dir = %dir.display(), "created a new sim CA (cloister-sim: NOT A TEE)")
                }
                // Another process created it first: use theirs.
                Err(_) if dir.join("vcek-key.pem").exists() => {
                    let _ = fs::remove_dir_all(&tmp);
                }
                Err(e) => return Err(io_err(&dir, "renaming the new sim CA into place")(e)),
            }
        }
        Self::load(&dir)
    }

    fn load(dir: &Path) -> Result<SimCa, SimChipError> {
        let read = |f: &str| {
            let path = dir.join(f);
            fs::read_to_string(&path).map_err(io_err(&path, "reading"))
        };
        let vcek_pem = read("vcek.pem")?;
        let vcek_der = pem_body(&vcek_pem).ok_or_else(|| SimChipError::Corrupt {
            path: dir.join("vcek.pem"),
            detail: "not a PEM certificate".into(),
        })?;
        let key_pem = read("vcek-key.pem")?;
        let vcek_key = p384::ecdsa::SigningKey::from_pkcs8_pem(&key_pem).map_err(|e| {
            SimChipError::Corrupt {
                path: dir.join("vcek-key.pem"),
                detail: format!("not a PKCS#8 P-384 key: {e}"),
            }
        })?;
        Ok(SimCa {
            dir: dir.to_path_buf(),
            ark_pem: read("ark.pem")?,
            ask_pem: read("ask.pem")?,
            vcek_der,
            vcek_key,
        })
    }

    /// The sim ARK certificate, PEM: configure verifiers (the KBS) with it.
    pub fn ark_pem(&self) -> &str {
        &self.ark_pem
    }

    /// Path of the sim ARK certificate.
    pub fn ark_path(&self) -> PathBuf {
        self.dir.join("ark.pem")
    }

    /// The sim ASK and ARK, PEM, as the chip hands them out.
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.ask_pem, self.ark_pem)
    }

    /// The sim VCEK certificate, DER.
    pub fn vcek_der(&self) -> &[u8] {
        &self.vcek_der
    }
}

fn pem_body(text: &str) -> Option<Vec<u8>> {
    pem::parse(text)
        .ok()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| p.contents().to_vec())
}

/// Creates the three keys and certificates in `dir`.
fn generate(dir: &Path) -> Result<(), SimChipError> {
    let cert_err = |e: rcgen::Error| SimChipError::Generate(e.to_string());
    let ark_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(cert_err)?;
    let ask_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(cert_err)?;
    let vcek_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(cert_err)?;

    let ark_params = params(SIM_ARK_CN, true);
    let ark = ark_params.self_signed(&ark_key).map_err(cert_err)?;
    let ark_issuer = Issuer::from_params(&ark_params, &ark_key);
    let ask_params = params(SIM_ASK_CN, true);
    let ask = ask_params
        .signed_by(&ask_key, &ark_issuer)
        .map_err(cert_err)?;
    let ask_issuer = Issuer::from_params(&ask_params, &ask_key);
    let vcek = params(SIM_VCEK_CN, false)
        .signed_by(&vcek_key, &ask_issuer)
        .map_err(cert_err)?;

    write_file(dir, "ark.pem", ark.pem().as_bytes(), false)?;
    write_file(dir, "ask.pem", ask.pem().as_bytes(), false)?;
    write_file(dir, "vcek.pem", vcek.pem().as_bytes(), false)?;
    write_file(dir, "ark-key.pem", ark_key.serialize_pem().as_bytes(), true)?;
    write_file(dir, "ask-key.pem", ask_key.serialize_pem().as_bytes(), true)?;
    write_file(
        dir,
        "vcek-key.pem",
        vcek_key.serialize_pem().as_bytes(),
        true,
    )?;
    Ok(())
}
