//! What a verified TDX quote tells, in serializable form. Byte fields are
//! lower-case hex, in the order they appear in the quote.
use serde::Serialize;

use super::quote::Quote;

/// The quoting enclave that signed the quote (its identity is reported, not yet
/// checked against Intel's QE identity).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QeClaims {
    pub mr_enclave: String,
    pub mr_signer: String,
    pub isv_prod_id: u16,
    pub isv_svn: u16,
    pub vendor_id: String,
}

/// The PCK certificate that certified the quoting enclave.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PckClaims {
    pub subject: String,
    pub issuer: String,
    pub not_after: String,
}

/// The claims of a verified TDX quote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TdxClaims {
    pub version: u16,
    /// `tdx-1.0` or `tdx-1.5`.
    pub body: &'static str,
    pub tee_tcb_svn: String,
    pub mr_seam: String,
    pub mr_signer_seam: String,
    pub seam_attributes: String,
    pub td_attributes: String,
    /// TD_ATTRIBUTES.DEBUG.
    pub debug: bool,
    pub xfam: String,
    pub mr_td: String,
    pub mr_config_id: String,
    pub mr_owner: String,
    pub mr_owner_config: String,
    pub rtmr0: String,
    pub rtmr1: String,
    pub rtmr2: String,
    pub rtmr3: String,
    pub report_data: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tee_tcb_svn2: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mr_servicetd: Option<String>,
    pub user_data: String,
    pub qe: QeClaims,
    pub pck: PckClaims,
}

impl TdxClaims {
    pub(crate) fn new(q: &Quote<'_>, pck: PckClaims) -> TdxClaims {
        let b = &q.body;
        TdxClaims {
            version: q.header.version,
            body: if q.body_type == 3 {
                "tdx-1.5"
            } else {
                "tdx-1.0"
            },
            tee_tcb_svn: hex::encode(b.tee_tcb_svn),
            mr_seam: hex::encode(b.mr_seam),
            mr_signer_seam: hex::encode(b.mr_signer_seam),
            seam_attributes: hex::encode(b.seam_attributes),
            td_attributes: hex::encode(b.td_attributes),
            debug: b.debug(),
            xfam: hex::encode(b.xfam),
            mr_td: hex::encode(b.mr_td),
            mr_config_id: hex::encode(b.mr_config_id),
            mr_owner: hex::encode(b.mr_owner),
            mr_owner_config: hex::encode(b.mr_owner_config),
            rtmr0: hex::encode(b.rtmr[0]),
            rtmr1: hex::encode(b.rtmr[1]),
            rtmr2: hex::encode(b.rtmr[2]),
            rtmr3: hex::encode(b.rtmr[3]),
            report_data: hex::encode(b.report_data),
            tee_tcb_svn2: b.tee_tcb_svn2.map(hex::encode),
            mr_servicetd: b.mr_servicetd.map(hex::encode),
            user_data: hex::encode(q.header.user_data),
            qe: QeClaims {
                mr_enclave: hex::encode(q.qe_report.mr_enclave()),
                mr_signer: hex::encode(q.qe_report.mr_signer()),
                isv_prod_id: q.qe_report.isv_prod_id(),
                isv_svn: q.qe_report.isv_svn(),
                vendor_id: hex::encode(q.header.qe_vendor_id),
            },
            pck,
        }
    }
}
