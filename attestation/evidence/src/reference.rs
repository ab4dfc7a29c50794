//! Reference values: what the verifier expects the evidence to say, beyond it being
//! genuine. The JSON form is documented on [`ReferenceValues`].
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::check::Checks;
use crate::VerifyError;

/// Bytes written as a hex string in JSON.
#[derive(Clone, PartialEq, Eq)]
pub struct Hex(pub Vec<u8>);

impl fmt::Debug for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hex({})", hex::encode(&self.0))
    }
}

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl FromStr for Hex {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let s = s.strip_prefix("0x").unwrap_or(s);
        hex::decode(s)
            .map(Hex)
            .map_err(|e| format!("invalid hex {s:?}: {e}"))
    }
}

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hex>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Hex),
        Many(Vec<Hex>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(h) => vec![h],
        OneOrMany::Many(v) => v,
    })
}

/// The lowest acceptable SNP TCB, component by component.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MinTcb {
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
    /// Turin only; ignored for Milan and Genoa.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
}

/// What the SNP guest policy may allow. `allow_debug` also governs TDX debug TDs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyRequirement {
    /// Accept guests whose policy allows debugging (SNP policy bit 19, TDX
    /// TD_ATTRIBUTES.DEBUG). Default false.
    pub allow_debug: bool,
    /// Accept guests that may be associated with a migration agent (bit 18). Default false.
    pub allow_migration_agent: bool,
    /// Accept guests that allow SMT on the host (bit 16). Default true.
    pub allow_smt: bool,
    /// Require guests that can only be activated on one socket (bit 20). Default false.
    pub require_single_socket: bool,
}

impl Default for PolicyRequirement {
    fn default() -> Self {
        PolicyRequirement {
            allow_debug: false,
            allow_migration_agent: false,
            allow_smt: true,
            require_single_socket: false,
        }
    }
}

/// Expected claim values and requirements. A tenant writes them as JSON
/// (`cloister attest verify --reference-values RV.json`):
///
/// ```json
/// {
///   "measurement": "7a1e5c26…",
///   "host_data": "00000000…",
///   "report_data": "d447b55d…",
///   "min_tcb": { "bootloader": 3, "tee": 0, "snp": 8, "microcode": 115 },
///   "policy": { "allow_debug": false, "allow_migration_agent": false,
///               "allow_smt": true, "require_single_socket": false },
///   "vmpl": 0
/// }
/// ```
///
/// `measurement` and `host_data` take one hex string or a list (any one may
/// match). Every field is optional; an absent field is not checked, except
/// `policy`, whose defaults forbid debugging and migration agents. `min_tcb`,
/// `vmpl` and all `policy` fields but `allow_debug` apply to SNP only; a TDX quote
/// given `min_tcb` or `vmpl` is rejected rather than silently not checked.
/// Unknown fields are an error.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceValues {
    /// Accepted launch measurements: SNP MEASUREMENT, TDX MRTD. Any one may match.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub measurement: Vec<Hex>,
    /// Accepted SNP HOST_DATA or TDX MRCONFIGID values. A value shorter than the
    /// field matches when the field is that value followed by zero bytes (so one
    /// sha256(initdata) serves both SNP and TDX).
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub host_data: Vec<Hex>,
    /// Exact REPORT_DATA (64 bytes), when the caller knows it (e.g. a nonce binding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_data: Option<Hex>,
    /// Lowest acceptable SNP REPORTED_TCB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tcb: Option<MinTcb>,
    /// What the guest policy may allow.
    #[serde(default)]
    pub policy: PolicyRequirement,
    /// Required SNP VMPL of the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmpl: Option<u32>,
}

/// The reference values file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid reference values: {0}")]
pub struct ReferenceError(String);

impl ReferenceValues {
    /// Parses the JSON form (unknown fields are an error, so typos do not
    /// silently disable a check).
    pub fn from_json(json: &str) -> Result<Self, ReferenceError> {
        serde_json::from_str(json).map_err(|e| ReferenceError(e.to_string()))
    }

    /// Compares measurement, host data and report data with the claims.
    /// `names` say what the TEE calls them, e.g. ("MEASUREMENT", "HOST_DATA").
    pub(crate) fn check_claims(
        &self,
        checks: &mut Checks,
        names: (&str, &str),
        measurement: &[u8],
        host_data: &[u8],
        report_data: &[u8],
    ) -> Result<(), VerifyError> {
        match_any(
            checks,
            "measurement",
            names.0,
            &self.measurement,
            measurement,
            false,
        )?;
        match_any(
            checks,
            "host_data",
            names.1,
            &self.host_data,
            host_data,
            true,
        )?;
        match &self.report_data {
            None => checks.skip("report_data", "no reference value given"),
            Some(want) if want.0 == report_data => {
                checks.pass("report_data", format!("REPORT_DATA = {want}"))
            }
            Some(want) => {
                return Err(VerifyError::ReferenceMismatch {
                    field: "report_data",
                    expected: want.to_string(),
                    got: hex::encode(report_data),
                })
            }
        }
        Ok(())
    }
}

fn matches(want: &[u8], got: &[u8], zero_padded: bool) -> bool {
    if want.len() == got.len() {
        return want == got;
    }
    zero_padded
        && want.len() < got.len()
        && got[..want.len()] == *want
        && got[want.len()..].iter().all(|b| *b == 0)
}

fn match_any(
    checks: &mut Checks,
    field: &'static str,
    tee_name: &str,
    wanted: &[Hex],
    got: &[u8],
    zero_padded: bool,
) -> Result<(), VerifyError> {
    if wanted.is_empty() {
        checks.skip(field, "no reference value given");
        return Ok(());
    }
    if let Some(w) = wanted.iter().find(|w| matches(&w.0, got, zero_padded)) {
        checks.pass(
            field,
            format!("{tee_name} = {w} matches the reference value"),
        );
        return Ok(());
    }
    let expected = match wanted {
        [one] => one.to_string(),
        many => format!(
            "one of [{}]",
            many.iter()
                .map(Hex::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Err(VerifyError::ReferenceMismatch {
        field,
        expected,
        got: hex::encode(got),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_and_defaults() {
        let rv = ReferenceValues::from_json(
            r#"{"measurement": ["aa", "0xBB"], "host_data": "cc", "min_tcb": {"snp": 8}, "vmpl": 0,
                "policy": {"allow_debug": true}}"#,
        )
        .unwrap();
        assert_eq!(rv.measurement, vec![Hex(vec![0xaa]), Hex(vec![0xbb])]);
        assert_eq!(rv.host_data, vec![Hex(vec![0xcc])]);
        assert_eq!(
            rv.min_tcb,
            Some(MinTcb {
                snp: 8,
                ..MinTcb::default()
            })
        );
        assert!(rv.policy.allow_debug && rv.policy.allow_smt && !rv.policy.allow_migration_agent);
        assert_eq!(
            ReferenceValues::from_json("{}").unwrap(),
            ReferenceValues::default()
        );
    }

    #[test]
    fn rejects_typos_and_bad_hex() {
        assert!(ReferenceValues::from_json(r#"{"measurment": "aa"}"#)
            .unwrap_err()
            .to_string()
            .contains("unknown field"));
        assert!(ReferenceValues::from_json(r#"{"measurement": "zz"}"#).is_err());
        assert!(ReferenceValues::from_json(r#"{"policy": {"allow_debugging": true}}"#).is_err());
    }

    #[test]
    fn mismatch_names_field_and_values() {
        let rv = ReferenceValues {
            measurement: vec![Hex(vec![1, 2])],
            ..Default::default()
        };
        let mut checks = Checks::default();
        let e = rv
            .check_claims(
                &mut checks,
                ("MEASUREMENT", "HOST_DATA"),
                &[1, 3],
                &[0; 4],
                &[0; 4],
            )
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "measurement mismatch: expected 0102, got 0103"
        );
    }

    #[test]
    fn short_host_data_matches_zero_padded_only() {
        assert!(matches(&[1, 2], &[1, 2, 0, 0], true));
        assert!(!matches(&[1, 2], &[1, 2, 0, 1], true));
        assert!(!matches(&[1, 2], &[1, 2, 0, 0], false));
        assert!(!matches(&[1, 2, 0], &[1, 2], true));
    }
}
