//! The sim chip's wire protocol: how a guest asks the host-side sim chip for a
//! report (over vsock port [`SIM_CHIP_VSOCK_PORT`]; on the host that is the Unix
//! socket `<vsock-uds>_1025`). One request and one response per connection:
//!
//! ```text
//! request  = frame(report_data)                 report_data: exactly 64 bytes
//! response = status:u8 ( 0: frame(report) frame(vcek_der) frame(chain_pem)
//!                      | 1: frame(utf-8 error message) )
//! frame    = length:u32 big-endian, then that many bytes (at most 64 KiB)
//! ```
//!
//! The server closes the connection after the response, so a client may read
//! to EOF and decode the whole buffer with [`decode_response`]. Written by hand
//! because it is 4 fields long; every length is checked before it is used.
use std::io::{Read, Write};

/// The guest vsock port of the sim chip (the agent's own API is 1024).
pub const SIM_CHIP_VSOCK_PORT: u32 = 1025;
/// Largest frame either side accepts.
pub const MAX_FRAME: usize = 64 * 1024;
/// Largest whole response (three frames and the status byte).
pub const MAX_RESPONSE: usize = 1 + 3 * (4 + MAX_FRAME);

const STATUS_OK: u8 = 0;
const STATUS_ERROR: u8 = 1;

/// A sim chip's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimReportResponse {
    /// The 1184-byte report.
    pub report: Vec<u8>,
    /// The sim VCEK certificate, DER.
    pub vcek_der: Vec<u8>,
    /// The sim ASK and ARK, PEM.
    pub chain_pem: Vec<u8>,
}

/// A malformed or failed exchange.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("sim chip wire: {0}")]
    Io(#[from] std::io::Error),
    #[error("sim chip wire: {what}: length {got} exceeds the limit of {max} bytes")]
    TooLong {
        what: &'static str,
        got: usize,
        max: usize,
    },
    #[error("sim chip wire: report_data must be 64 bytes, got {0}")]
    ReportDataLength(usize),
    #[error("sim chip wire: response truncated: {0}")]
    Truncated(&'static str),
    #[error("sim chip wire: unknown status byte {0}")]
    Status(u8),
    #[error("sim chip refused: {0}")]
    Refused(String),
}

fn frame(out: &mut Vec<u8>, body: &[u8]) {
    // Bodies are bounded by MAX_FRAME (callers pass report, certificates, short text).
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
}

/// The request bytes for `report_data`.
pub fn encode_request(report_data: &[u8; 64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(68);
    frame(&mut out, report_data);
    out
}

/// Reads one request from a stream.
pub fn read_request(r: &mut impl Read) -> Result<[u8; 64], WireError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len != 64 {
        return Err(WireError::ReportDataLength(len));
    }
    let mut data = [0u8; 64];
    r.read_exact(&mut data)?;
    Ok(data)
}

/// The response bytes for a report.
pub fn encode_response(resp: &SimReportResponse) -> Result<Vec<u8>, WireError> {
    let mut out = vec![STATUS_OK];
    for (what, body) in [
        ("report", &resp.report),
        ("vcek", &resp.vcek_der),
        ("chain", &resp.chain_pem),
    ] {
        if body.len() > MAX_FRAME {
            return Err(WireError::TooLong {
                what,
                got: body.len(),
                max: MAX_FRAME,
            });
        }
        frame(&mut out, body);
    }
    Ok(out)
}

/// The response bytes for a refusal.
pub fn encode_error(message: &str) -> Vec<u8> {
    let mut out = vec![STATUS_ERROR];
    let text = message.as_bytes();
    frame(&mut out, &text[..text.len().min(MAX_FRAME)]);
    out
}

/// Writes a response or a refusal.
pub fn write_response(
    w: &mut impl Write,
    resp: Result<&SimReportResponse, &str>,
) -> Result<(), WireError> {
    let bytes = match resp {
        Ok(r) => encode_response(r)?,
        Err(msg) => encode_error(msg),
    };
    w.write_all(&bytes)?;
    w.flush()?;
    Ok(())
}

fn take_frame<'a>(buf: &mut &'a [u8], what: &'static str) -> Result<&'a [u8], WireError> {
    if buf.len() < 4 {
        return Err(WireError::Truncated(what));
    }
    let (len, rest) = buf.split_at(4);
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if len > MAX_FRAME {
        return Err(WireError::TooLong {
            what,
            got: len,
            max: MAX_FRAME,
        });
    }
    if rest.len() < len {
        return Err(WireError::Truncated(what));
    }
    let (body, rest) = rest.split_at(len);
    *buf = rest;
    Ok(body)
}

/// Decodes a whole response (everything the server sent before closing).
pub fn decode_response(mut buf: &[u8]) -> Result<SimReportResponse, WireError> {
    let (&status, rest) = buf.split_first().ok_or(WireError::Truncated("status"))?;
    buf = rest;
    match status {
        STATUS_OK => Ok(SimReportResponse {
            report: take_frame(&mut buf, "report")?.to_vec(),
            vcek_der: take_frame(&mut buf, "vcek")?.to_vec(),
            chain_pem: take_frame(&mut buf, "chain")?.to_vec(),
        }),
        STATUS_ERROR => Err(WireError::Refused(
            String::from_utf8_lossy(take_frame(&mut buf, "error message")?).into_owned(),
        )),
        other => Err(WireError::Status(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_and_checks_length() {
        let rd = [7u8; 64];
        let bytes = encode_request(&rd);
        assert_eq!(bytes.len(), 68);
        assert_eq!(read_request(&mut bytes.as_slice()).unwrap(), rd);
        let mut bad = bytes.clone();
        bad[3] = 63;
        assert!(matches!(
            read_request(&mut bad.as_slice()),
            Err(WireError::ReportDataLength(63))
        ));
        assert!(read_request(&mut &bytes[..40]).is_err());
    }

    #[test]
    fn response_round_trips_and_rejects_truncation() {
        let r = SimReportResponse {
            report: vec![1; 1184],
            vcek_der: vec![2; 500],
            chain_pem: b"-----BEGIN".to_vec(),
        };
        let bytes = encode_response(&r).unwrap();
        assert_eq!(decode_response(&bytes).unwrap(), r);
        for cut in [0, 1, 5, 1189, bytes.len() - 1] {
            assert!(decode_response(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = vec![0u8, 0xff, 0xff, 0xff, 0xff];
        huge.extend_from_slice(&[0; 16]);
        assert!(matches!(
            decode_response(&huge),
            Err(WireError::TooLong { .. })
        ));
        assert!(matches!(decode_response(&[9]), Err(WireError::Status(9))));
    }

    #[test]
    fn refusal_carries_its_message() {
        let e = decode_response(&encode_error("no measurement")).unwrap_err();
        assert_eq!(e.to_string(), "sim chip refused: no measurement");
    }
}
