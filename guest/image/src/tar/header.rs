//! Field parsing for one 512-byte tar header block and for PAX records.
//!
//! Numbers come as octal text (ustar) or base-256 (GNU); PAX records as
//! `"<len> <key>=<value>\n"`. Every parse is bounds-checked and refuses
//! what it does not understand instead of guessing.

use super::TarError;

pub const BLOCK: usize = 512;

/// Offsets into the ustar header block.
const NAME: (usize, usize) = (0, 100);
const MODE: (usize, usize) = (100, 8);
const UID: (usize, usize) = (108, 8);
const GID: (usize, usize) = (116, 8);
const SIZE: (usize, usize) = (124, 12);
const MTIME: (usize, usize) = (136, 12);
const CHKSUM: (usize, usize) = (148, 8);
const TYPEFLAG: usize = 156;
const LINKNAME: (usize, usize) = (157, 100);
const MAGIC: (usize, usize) = (257, 8);
const DEVMAJOR: (usize, usize) = (329, 8);
const DEVMINOR: (usize, usize) = (337, 8);
const PREFIX: (usize, usize) = (345, 155);

fn field(block: &[u8; BLOCK], (off, len): (usize, usize)) -> &[u8] {
    &block[off..off + len]
}

/// A NUL-terminated string field (without the NUL and what follows).
fn cstr(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&b| b == 0) {
        Some(n) => &bytes[..n],
        None => bytes,
    }
}

/// Parses a numeric field: octal text padded with spaces/NULs, or GNU
/// base-256 (first byte 0x80) for values that do not fit. Negative base-256
/// values (0xff) are refused.
pub fn parse_number(bytes: &[u8], what: &'static str) -> Result<u64, TarError> {
    let bad = || TarError::BadNumber {
        field: what,
        raw: String::from_utf8_lossy(bytes).into_owned(),
    };
    match bytes.first() {
        Some(0x80) => {
            let mut v: u64 = 0;
            for &b in &bytes[1..] {
                if v > (u64::MAX >> 8) {
                    return Err(bad());
                }
                v = (v << 8) | u64::from(b);
            }
            Ok(v)
        }
        Some(b) if b & 0x80 != 0 => Err(bad()),
        _ => {
            let text = cstr(bytes);
            let text = trim_spaces(text);
            if text.is_empty() {
                return Ok(0);
            }
            let mut v: u64 = 0;
            for &b in text {
                if !(b'0'..=b'7').contains(&b) {
                    return Err(bad());
                }
                v = v
                    .checked_mul(8)
                    .and_then(|v| v.checked_add(u64::from(b - b'0')))
                    .ok_or_else(bad)?;
            }
            Ok(v)
        }
    }
}

fn trim_spaces(mut s: &[u8]) -> &[u8] {
    while let [b' ' | 0, rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | 0] = s {
        s = rest;
    }
    s
}

/// The fields of one header block, before PAX/GNU overrides are applied.
#[derive(Debug, Clone)]
pub struct RawHeader {
    pub name: Vec<u8>,
    pub link: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: u64,
    pub typeflag: u8,
    pub dev_major: u32,
    pub dev_minor: u32,
}

pub fn is_zero_block(block: &[u8; BLOCK]) -> bool {
    block.iter().all(|&b| b == 0)
}

/// Checks the header checksum (unsigned sum, as POSIX says; the historic
/// signed sum is accepted too) and decodes the fields.
pub fn parse_block(block: &[u8; BLOCK]) -> Result<RawHeader, TarError> {
    let stored = parse_number(field(block, CHKSUM), "chksum")?;
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if (CHKSUM.0..CHKSUM.0 + CHKSUM.1).contains(&i) {
            b' '
        } else {
            b
        };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    if stored != unsigned && i64::try_from(stored).ok() != Some(signed) {
        return Err(TarError::BadChecksum {
            stored,
            computed: unsigned,
        });
    }
    let magic = field(block, MAGIC);
    let is_posix_ustar = &magic[..6] == b"ustar\0";
    let name = cstr(field(block, NAME));
    let name = if is_posix_ustar {
        let prefix = cstr(field(block, PREFIX));
        if prefix.is_empty() {
            name.to_vec()
        } else {
            let mut full = prefix.to_vec();
            full.push(b'/');
            full.extend_from_slice(name);
            full
        }
    } else {
        // GNU tar uses the prefix area for other things; v7 has none.
        name.to_vec()
    };
    let mode = parse_number(field(block, MODE), "mode")?;
    let dev = |f, what| -> Result<u32, TarError> {
        let v = parse_number(field(block, f), what)?;
        u32::try_from(v).map_err(|_| TarError::BadNumber {
            field: what,
            raw: v.to_string(),
        })
    };
    Ok(RawHeader {
        name,
        link: cstr(field(block, LINKNAME)).to_vec(),
        mode: (mode & 0o7777) as u32,
        uid: parse_number(field(block, UID), "uid")?,
        gid: parse_number(field(block, GID), "gid")?,
        size: parse_number(field(block, SIZE), "size")?,
        mtime: parse_number(field(block, MTIME), "mtime")?,
        typeflag: block[TYPEFLAG],
        dev_major: dev(DEVMAJOR, "devmajor").unwrap_or(0),
        dev_minor: dev(DEVMINOR, "devminor").unwrap_or(0),
    })
}

/// One `key=value` record of a PAX extended header.
pub struct PaxRecord<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
}

/// Splits PAX extended header data into records. Each record states its own
/// length, which must land exactly on a newline inside the data.
pub fn pax_records(mut data: &[u8]) -> Result<Vec<PaxRecord<'_>>, TarError> {
    let mut out = Vec::new();
    // Trailing NULs are tolerated (some writers pad).
    while let [rest @ .., 0] = data {
        data = rest;
    }
    while !data.is_empty() {
        let sp = data
            .iter()
            .take(20)
            .position(|&b| b == b' ')
            .ok_or_else(|| TarError::BadPax("record length not followed by a space".into()))?;
        let len: usize = std::str::from_utf8(&data[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| TarError::BadPax("record length is not a decimal number".into()))?;
        if len <= sp + 1 || len > data.len() {
            return Err(TarError::BadPax(format!(
                "record length {len} outside the {} bytes left",
                data.len()
            )));
        }
        let record = &data[sp + 1..len];
        let Some((&b'\n', kv)) = record.split_last() else {
            return Err(TarError::BadPax(
                "record does not end with a newline".into(),
            ));
        };
        let eq = kv
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| TarError::BadPax("record has no '='".into()))?;
        out.push(PaxRecord {
            key: &kv[..eq],
            value: &kv[eq + 1..],
        });
        data = &data[len..];
    }
    Ok(out)
}

/// Parses a PAX decimal value; fractional seconds (`mtime=1.5`) keep the
/// integer part. Negative values are refused.
pub fn pax_number(value: &[u8], key: &'static str) -> Result<u64, TarError> {
    let s = std::str::from_utf8(value).map_err(|_| TarError::BadNumber {
        field: key,
        raw: String::from_utf8_lossy(value).into_owned(),
    })?;
    let int = s.split('.').next().unwrap_or("");
    int.parse().map_err(|_| TarError::BadNumber {
        field: key,
        raw: s.chars().take(40).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_number(b"0000644\0", "mode").unwrap(), 0o644);
        assert_eq!(parse_number(b"  17 \0", "x").unwrap(), 0o17);
        assert_eq!(parse_number(b"\0\0\0\0", "x").unwrap(), 0);
        let mut b256 = [0u8; 12];
        b256[0] = 0x80;
        b256[11] = 1;
        b256[10] = 2;
        assert_eq!(parse_number(&b256, "size").unwrap(), 0x0201);
        assert!(parse_number(b"0009", "x").is_err());
        assert!(parse_number(&[0xff; 12], "x").is_err());
        // 22 octal digits overflow u64.
        assert!(parse_number(b"7777777777777777777777", "x").is_err());
    }

    #[test]
    fn pax() {
        let data = b"30 path=a/very/long/name/here\n10 uid=42\n";
        let recs = pax_records(data).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].key, b"path");
        assert_eq!(recs[0].value, b"a/very/long/name/here");
        assert_eq!(pax_number(recs[1].value, "uid").unwrap(), 42);
        assert!(pax_records(b"99 path=x\n").is_err());
        assert!(pax_records(b"5 a=b\n").is_err());
        assert!(pax_records(b"x path=y\n").is_err());
        assert!(pax_records(b"9 path=yz").is_err());
    }
}
