//! The sim TEE in the guest — development only, NOT A TEE, no security.
//!
//! The host's sim chip (cloister-sim-chip) listens on host vsock port 1025
//! and answers with SNP-layout reports whose HOST_DATA is sha256(initdata)
//! and whose MEASUREMENT is the sim launch digest of what the host booted.
//! [`SimHostData`] reads HOST_DATA from such a report, so initdata binding
//! runs the same way as on SEV-SNP; the KBS attester is the kbs-client's
//! `SimAttester` over [`super::vsock::VsockTransport`].
use std::sync::Arc;
use std::time::Duration;

use cloister_kbs_client::{AttesterError, SimAttester};
use tracing::warn;

use super::report::{self, Origin, HOST_DATA_LABEL};
use super::{HostDataSource, TeeError};

/// What every sim log line carries.
pub const SIM_WARNING: &str = "cloister-sim: NOT A TEE, development only, no security";

/// How long one report may take (connect, request, response).
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// HOST_DATA from the sim chip.
pub struct SimHostData {
    attester: Arc<SimAttester>,
    /// Where the chip is, for messages (e.g. `vsock cid 2 port 1025`).
    place: String,
    timeout: Duration,
}

impl SimHostData {
    pub fn new(attester: Arc<SimAttester>, place: impl Into<String>) -> Self {
        SimHostData {
            attester,
            place: place.into(),
            timeout: REPORT_TIMEOUT,
        }
    }

    /// One report from the chip. `HostDataSource` is synchronous (the
    /// CreateSandbox handler calls it on the agent's single-threaded
    /// runtime, where blocking on a future would panic), while the attester
    /// is async; a scoped thread with its own small runtime runs it, so that
    /// HOST_DATA and the KBS evidence go through the same code.
    fn fetch(&self) -> Result<Vec<u8>, TeeError> {
        let unreachable = |message: String| TeeError::Unreachable {
            tee: "sim",
            what: format!("the sim chip on {}", self.place),
            message,
        };
        let outcome = std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .enable_time()
                    .build()
                    .map_err(|e| format!("creating a runtime: {e}"))?;
                rt.block_on(async {
                    tokio::time::timeout(self.timeout, self.attester.report(HOST_DATA_LABEL))
                        .await
                        .map_err(|_| format!("no report within {:?}", self.timeout))
                })
            })
            .join()
        });
        match outcome {
            Err(_) => Err(TeeError::Report {
                tee: "sim",
                message: "the report thread panicked".into(),
            }),
            Ok(Err(message)) => Err(unreachable(message)),
            Ok(Ok(Err(e @ (AttesterError::Connect(_) | AttesterError::Io(_))))) => {
                Err(unreachable(e.to_string()))
            }
            Ok(Ok(Err(e))) => Err(TeeError::Report {
                tee: "sim",
                message: e.to_string(),
            }),
            Ok(Ok(Ok(resp))) => Ok(resp.report),
        }
    }
}

impl HostDataSource for SimHostData {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn host_data(&self) -> Result<Option<Vec<u8>>, TeeError> {
        let raw = self.fetch().inspect_err(|e| {
            warn!(error = %e, sim = SIM_WARNING, "sim TEE: no report from the sim chip");
        })?;
        let view = report::read(&raw, &HOST_DATA_LABEL, Origin::Sim).map_err(|e| {
            warn!(error = %e, sim = SIM_WARNING, "sim TEE: the sim chip's report is refused");
            TeeError::Report {
                tee: "sim",
                message: e.to_string(),
            }
        })?;
        warn!(
            host_data = %hex::encode(view.host_data),
            measurement = %hex::encode(view.measurement),
            report_id = %hex::encode(view.report_id),
            sim = SIM_WARNING,
            "sim TEE report read: HOST_DATA and MEASUREMENT come from the host's sim chip (NOT A TEE)"
        );
        Ok(Some(view.host_data.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tee::report::tests::{real_report, sim_report};
    use cloister_evidence::sim::wire;
    use cloister_kbs_client::UnixTransport;
    use std::io::Write;
    use std::os::unix::net::UnixListener;

    /// A fake chip on a Unix socket answering every connection with `answer`
    /// (given the report_data it was asked for).
    fn fake_chip(
        dir: &std::path::Path,
        answer: impl Fn([u8; 64]) -> Vec<u8> + Send + 'static,
    ) -> std::path::PathBuf {
        let path = dir.join("chip.sock");
        let l = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            for mut s in l.incoming().flatten() {
                let Ok(rd) = wire::read_request(&mut s) else {
                    continue;
                };
                let _ = s.write_all(&answer(rd));
            }
        });
        path
    }

    fn source(path: &std::path::Path) -> SimHostData {
        let a = Arc::new(SimAttester::new(UnixTransport(path.to_path_buf())));
        SimHostData::new(a, path.display().to_string())
    }

    fn ok_response(report: Vec<u8>) -> Vec<u8> {
        wire::encode_response(&wire::SimReportResponse {
            report,
            vcek_der: vec![1, 2, 3],
            chain_pem: b"-----BEGIN CERTIFICATE-----".to_vec(),
        })
        .unwrap()
    }

    #[test]
    fn host_data_comes_from_the_chips_report() {
        let d = tempfile::tempdir().unwrap();
        let hd = [0x5au8; 32];
        let path = fake_chip(d.path(), move |rd| ok_response(sim_report(&rd, &hd)));
        assert_eq!(source(&path).host_data().unwrap().unwrap(), hd.to_vec());
    }

    #[test]
    fn a_report_without_the_sim_marker_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let path = fake_chip(d.path(), |rd| ok_response(real_report(&rd, &[0; 32])));
        let e = source(&path).host_data().unwrap_err();
        assert!(matches!(e, TeeError::Report { tee: "sim", .. }), "{e}");
        assert!(e.to_string().contains("sim marker"), "{e}");
    }

    #[test]
    fn a_report_for_other_report_data_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let path = fake_chip(d.path(), |_| ok_response(sim_report(&[7; 64], &[0; 32])));
        let e = source(&path).host_data().unwrap_err();
        assert!(e.to_string().contains("stale or substituted"), "{e}");
    }

    #[test]
    fn garbage_and_refusals_from_the_chip_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let path = fake_chip(d.path(), |_| vec![0, 0xff, 0xff, 0xff, 0xff, 1, 2]);
        let e = source(&path).host_data().unwrap_err();
        assert!(e.to_string().contains("exceeds the limit"), "{e}");

        let d2 = tempfile::tempdir().unwrap();
        let path = fake_chip(d2.path(), |_| wire::encode_error("no measurement"));
        let e = source(&path).host_data().unwrap_err();
        assert!(
            e.to_string().contains("sim chip refused: no measurement"),
            "{e}"
        );
    }

    #[test]
    fn no_chip_means_initdata_is_refused_not_accepted_unbound() {
        let d = tempfile::tempdir().unwrap();
        let e = source(&d.path().join("absent.sock"))
            .host_data()
            .unwrap_err();
        assert!(matches!(e, TeeError::Unreachable { tee: "sim", .. }), "{e}");
        assert!(
            e.to_string().contains("no HOST_DATA source reachable"),
            "{e}"
        );
    }

    #[test]
    fn a_silent_chip_times_out() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("silent.sock");
        let l = UnixListener::bind(&path).unwrap();
        let keep = std::thread::spawn(move || {
            let conns: Vec<_> = l.incoming().take(1).collect();
            std::thread::sleep(Duration::from_secs(2));
            drop(conns);
        });
        let mut s = source(&path);
        s.timeout = Duration::from_millis(300);
        let e = s.host_data().unwrap_err();
        assert!(e.to_string().contains("no report within"), "{e}");
        keep.join().unwrap();
    }
}
