//! gzip and zstd decompression as readers, with zstd's window bounded so
//! that a hostile frame cannot make us allocate a large window.

use std::io::{self, Read};

/// How a layer's tar is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        })
    }
}

/// Wraps `inner` in the decompressor for `c`. gzip: all members (like
/// `gzip -d`), so the whole compressed stream is read to its end. zstd:
/// window up to `2^zstd_window_log_max` bytes (23 = 8 MiB covers levels
/// 1-19; the `--ultra` levels need up to 27).
pub(crate) fn decompressor<'a, R: Read + 'a>(
    inner: R,
    c: Compression,
    zstd_window_log_max: u32,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::None => Box::new(inner),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(inner)),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(inner)?;
            d.window_log_max(zstd_window_log_max)?;
            Box::new(d)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_and_zstd_round_trip() {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::encode_all(&data[..], 3).unwrap();
        for (c, blob) in [
            (Compression::Gzip, gz),
            (Compression::Zstd, zs),
            (Compression::None, data.clone()),
        ] {
            let mut out = Vec::new();
            decompressor(&blob[..], c, 23)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data, "{c}");
        }
    }

    #[test]
    fn zstd_window_above_the_limit_is_refused() {
        // A frame compressed with a 2^25 window (long-distance matching).
        let data = vec![42u8; 1 << 20];
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        enc.window_log(25).unwrap();
        enc.long_distance_matching(true).unwrap();
        enc.write_all(&data).unwrap();
        let blob = enc.finish().unwrap();
        let mut out = Vec::new();
        let err = decompressor(&blob[..], Compression::Zstd, 20)
            .unwrap()
            .read_to_end(&mut out);
        assert!(
            err.is_err(),
            "a 32 MiB window must be refused with a 1 MiB limit"
        );
    }
}
