//! A reader that hashes what passes through and, at the end of the
//! stream, compares with the digest it was told to expect: the diff_id,
//! for the uncompressed tar.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use sha2::{Digest, Sha256};

use super::IntegrityError;
use crate::digest::Sha256Digest;

pub(crate) struct HashingReader<R> {
    inner: R,
    sha: Sha256,
    expected: Sha256Digest,
    mismatch: fn(Sha256Digest, Sha256Digest) -> IntegrityError,
    /// Bytes passed so far, readable by the layer task.
    count: Rc<Cell<u64>>,
    done: bool,
}

impl<R: Read> HashingReader<R> {
    pub fn new(
        inner: R,
        expected: Sha256Digest,
        mismatch: fn(Sha256Digest, Sha256Digest) -> IntegrityError,
        count: Rc<Cell<u64>>,
    ) -> Self {
        Self {
            inner,
            sha: Sha256::new(),
            expected,
            mismatch,
            count,
            done: false,
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.done = true;
            let actual = Sha256Digest::from_bytes(std::mem::take(&mut self.sha).finalize().into());
            if actual != self.expected {
                return Err((self.mismatch)(self.expected, actual).into_io());
            }
            return Ok(0);
        }
        self.sha.update(&buf[..n]);
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff_id(expected: Sha256Digest, actual: Sha256Digest) -> IntegrityError {
        IntegrityError::DiffId { expected, actual }
    }

    #[test]
    fn counts_and_accepts_matching() {
        let count = Rc::new(Cell::new(0));
        let mut r = HashingReader::new(
            &b"abc"[..],
            Sha256Digest::of(b"abc"),
            diff_id,
            count.clone(),
        );
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc");
        assert_eq!(count.get(), 3);
    }

    #[test]
    fn refuses_mismatch() {
        let count = Rc::new(Cell::new(0));
        let mut r = HashingReader::new(&b"abd"[..], Sha256Digest::of(b"abc"), diff_id, count);
        let err = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(matches!(
            IntegrityError::from_io(&err),
            Some(IntegrityError::DiffId { .. })
        ));
    }
}
