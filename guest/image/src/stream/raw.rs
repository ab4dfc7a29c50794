//! The first reader of a layer: takes the blob's chunks from the download
//! task and checks, as they pass, the size and sha256 the manifest states
//! and (for an encrypted layer) the HMAC over the ciphertext.
//!
//! The state sits behind an `Rc` so that when a later stage fails (say the
//! gzip stream is corrupt), the layer task can drain the rest of the blob
//! and report the root cause, a digest or HMAC mismatch, instead.

use std::cell::RefCell;
use std::io::{self, Read};
use std::rc::Rc;

use bytes::{Buf, Bytes};
use hmac::Mac;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{DownloadFailed, IntegrityError};
use crate::digest::Sha256Digest;

/// What the download task sends: data, or the reason it stopped.
pub(crate) type Chunk = Result<Bytes, DownloadFailed>;

pub(crate) struct RawState {
    rx: mpsc::Receiver<Chunk>,
    current: Bytes,
    sha: Sha256,
    hmac: Option<(hmac::Hmac<Sha256>, [u8; 32])>,
    expected_digest: Sha256Digest,
    expected_size: u64,
    received: u64,
    /// Set once the end of the stream was reached and checked.
    verdict: Option<Result<(), IntegrityError>>,
    /// Set if the download gave up; every later read fails the same way.
    failed: Option<DownloadFailed>,
}

impl RawState {
    pub fn new(
        rx: mpsc::Receiver<Chunk>,
        expected_digest: Sha256Digest,
        expected_size: u64,
        hmac: Option<(hmac::Hmac<Sha256>, [u8; 32])>,
    ) -> Rc<RefCell<Self>> {
        Rc::new(RefCell::new(Self {
            rx,
            current: Bytes::new(),
            sha: Sha256::new(),
            hmac,
            expected_digest,
            expected_size,
            received: 0,
            verdict: None,
            failed: None,
        }))
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// Takes the next chunk into `current`; `Ok(false)` at the end.
    fn fill(&mut self) -> io::Result<bool> {
        if let Some(f) = &self.failed {
            return Err(io::Error::other(f.clone()));
        }
        if let Some(v) = &self.verdict {
            return match v {
                Ok(()) => Ok(false),
                Err(e) => Err(e.clone().into_io()),
            };
        }
        match self.rx.blocking_recv() {
            Some(Ok(chunk)) => {
                self.received += chunk.len() as u64;
                if self.received > self.expected_size {
                    let e = IntegrityError::Size {
                        expected: self.expected_size,
                        actual: format!("more than {}", self.expected_size),
                    };
                    self.verdict = Some(Err(e.clone()));
                    return Err(e.into_io());
                }
                self.sha.update(&chunk);
                if let Some((mac, _)) = &mut self.hmac {
                    mac.update(&chunk);
                }
                self.current = chunk;
                Ok(true)
            }
            Some(Err(failed)) => {
                self.failed = Some(failed.clone());
                Err(io::Error::other(failed))
            }
            None => {
                let verdict = self.check();
                self.verdict = Some(verdict.clone());
                verdict.map(|()| false).map_err(IntegrityError::into_io)
            }
        }
    }

    fn check(&mut self) -> Result<(), IntegrityError> {
        if self.received != self.expected_size {
            return Err(IntegrityError::Size {
                expected: self.expected_size,
                actual: self.received.to_string(),
            });
        }
        let actual = Sha256Digest::from_bytes(std::mem::take(&mut self.sha).finalize().into());
        if actual != self.expected_digest {
            return Err(IntegrityError::Digest {
                expected: self.expected_digest,
                actual,
            });
        }
        if let Some((mac, expected)) = self.hmac.take() {
            // verify_slice compares in constant time.
            mac.verify_slice(&expected)
                .map_err(|_| IntegrityError::Hmac)?;
        }
        Ok(())
    }

    /// After a failure further up: reads the rest of the blob and returns
    /// the integrity failure, if the blob itself was bad. `None` if the
    /// blob checks out or the download itself failed.
    pub fn drain_verdict(&mut self) -> Option<IntegrityError> {
        loop {
            self.current.clear();
            match self.fill() {
                Ok(true) => continue,
                Ok(false) => return None,
                Err(e) => return IntegrityError::from_io(&e).cloned(),
            }
        }
    }
}

/// `Read` over the shared state.
pub(crate) struct RawReader(pub Rc<RefCell<RawState>>);

impl Read for RawReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self.0.borrow_mut();
        while s.current.is_empty() {
            if !s.fill()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(s.current.len());
        buf[..n].copy_from_slice(&s.current[..n]);
        s.current.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(chunks: Vec<Chunk>) -> mpsc::Receiver<Chunk> {
        let (tx, rx) = mpsc::channel(chunks.len() + 1);
        for c in chunks {
            tx.try_send(c).unwrap();
        }
        rx
    }

    #[test]
    fn passes_bytes_and_checks_digest() {
        let data = b"hello, layer".to_vec();
        let rx = feed(vec![
            Ok(Bytes::from_static(b"hello, ")),
            Ok(Bytes::from_static(b"layer")),
        ]);
        let st = RawState::new(rx, Sha256Digest::of(&data), data.len() as u64, None);
        let mut out = Vec::new();
        RawReader(st.clone()).read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        assert_eq!(st.borrow().received(), data.len() as u64);
    }

    #[test]
    fn digest_mismatch_is_an_integrity_error_at_eof() {
        let rx = feed(vec![Ok(Bytes::from_static(b"tampered"))]);
        let st = RawState::new(rx, Sha256Digest::of(b"original"), 8, None);
        let err = RawReader(st).read_to_end(&mut Vec::new()).unwrap_err();
        assert!(matches!(
            IntegrityError::from_io(&err),
            Some(IntegrityError::Digest { .. })
        ));
    }

    #[test]
    fn oversize_is_refused_before_the_end() {
        let rx = feed(vec![Ok(Bytes::from(vec![0u8; 100]))]);
        let st = RawState::new(rx, Sha256Digest::of(b""), 10, None);
        let err = RawReader(st).read_to_end(&mut Vec::new()).unwrap_err();
        assert!(matches!(
            IntegrityError::from_io(&err),
            Some(IntegrityError::Size { .. })
        ));
    }

    #[test]
    fn hmac_mismatch() {
        let data = b"ciphertext".to_vec();
        let mac = <hmac::Hmac<Sha256>>::new_from_slice(&[7u8; 32]).unwrap();
        let rx = feed(vec![Ok(Bytes::from(data.clone()))]);
        let st = RawState::new(rx, Sha256Digest::of(&data), 10, Some((mac, [0u8; 32])));
        let err = RawReader(st).read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(IntegrityError::from_io(&err), Some(&IntegrityError::Hmac));
    }

    #[test]
    fn download_failure_passes_through() {
        let rx = feed(vec![Err(DownloadFailed("connection reset".into()))]);
        let st = RawState::new(rx, Sha256Digest::of(b""), 0, None);
        let err = RawReader(st.clone())
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(DownloadFailed::from_io(&err).is_some());
        // Not mistaken for a short blob afterwards.
        assert_eq!(st.borrow_mut().drain_verdict(), None);
    }
}
