//! A streaming tar reader with hard limits on everything it buffers.
//!
//! Why not the `tar` crate: it reads PAX extended headers and GNU long
//! names whole into memory with no bound on their claimed size, so a layer
//! whose PAX header claims hundreds of MB makes it allocate that much; and
//! its `unpack` follows symlinks created by earlier entries. We only need
//! the parsing half, with limits, and the unpacker (`crate::unpack`) does
//! its own fd-relative file handling. Formats: ustar, GNU (long names
//! `L`/`K`, base-256 numbers) and PAX (`x` and `g`), the union that
//! Docker, BuildKit, umoci and Go's archive/tar write. GNU sparse files
//! are refused.

mod header;

use std::io::{self, Read};

use header::{is_zero_block, parse_block, pax_number, pax_records, BLOCK};

/// Limits on metadata a layer may make us buffer.
#[derive(Debug, Clone)]
pub struct TarLimits {
    /// Largest PAX extended header (`x`/`g`) data accepted, in bytes.
    pub max_extension_size: u64,
    /// Longest path or link target accepted, in bytes (Linux PATH_MAX).
    pub max_path_len: usize,
    /// Most metadata headers (PAX, GNU long name) before one real entry.
    pub max_extension_headers: usize,
}

impl Default for TarLimits {
    fn default() -> Self {
        Self {
            max_extension_size: 1 << 20,
            max_path_len: 4096,
            max_extension_headers: 8,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("reading the tar stream")]
    Io(#[from] io::Error),
    #[error("tar stream ends in the middle of {0}")]
    Truncated(&'static str),
    #[error("tar header checksum mismatch: header says {stored}, block sums to {computed}")]
    BadChecksum { stored: u64, computed: u64 },
    #[error("tar header field {field} is not a valid number: {raw:?}")]
    BadNumber { field: &'static str, raw: String },
    #[error("malformed PAX extended header: {0}")]
    BadPax(String),
    #[error("{kind} header claims {size} bytes, more than the limit of {limit}")]
    ExtensionTooLarge {
        kind: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("{what} is {len} bytes long, more than the limit of {limit}")]
    PathTooLong {
        what: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("more than {0} metadata headers in a row")]
    TooManyExtensions(usize),
    #[error("unsupported tar entry type {typeflag:?} for {path}")]
    Unsupported { typeflag: char, path: String },
}

/// What kind of file an entry creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    HardLink,
    Symlink,
    CharDevice,
    BlockDevice,
    Directory,
    Fifo,
}

/// One tar entry's metadata, with PAX and GNU overrides applied.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: Vec<u8>,
    /// Target of a symlink or hard link (empty for other kinds).
    pub link_target: Vec<u8>,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    /// Bytes of file data that follow (0 for all but regular files).
    pub size: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// Extended attributes from `SCHILY.xattr.*` PAX records.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    pub fn path_lossy(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// Overrides collected from PAX and GNU headers for the next entry.
#[derive(Default, Clone)]
struct Overrides {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<u64>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Reads entries one by one; the caller reads each regular file's data
/// with [`TarReader::read_data`] (or leaves it, and it is skipped).
pub struct TarReader<R> {
    inner: R,
    limits: TarLimits,
    /// Data bytes of the current entry not yet read.
    remaining: u64,
    /// Padding bytes after the current entry's data.
    padding: u64,
    global: Overrides,
    finished: bool,
    scratch: Box<[u8; BLOCK]>,
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R, limits: TarLimits) -> Self {
        Self {
            inner,
            limits,
            remaining: 0,
            padding: 0,
            global: Overrides::default(),
            finished: false,
            scratch: Box::new([0; BLOCK]),
        }
    }

    /// The next entry, or `None` at the end of the archive.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, TarError> {
        if self.finished {
            return Ok(None);
        }
        self.skip_rest_of_entry()?;
        if self.finished {
            return Ok(None);
        }
        let mut local = Overrides::default();
        let mut extensions = 0usize;
        loop {
            let mut block = [0u8; BLOCK];
            if !self.read_block(&mut block)? {
                // EOF exactly at a block boundary without the end marker:
                // tolerated, as GNU tar and Go do.
                self.finished = true;
                return Ok(None);
            }
            if is_zero_block(&block) {
                self.finished = true;
                return Ok(None);
            }
            let raw = parse_block(&block)?;
            let padding_for = |size: u64| (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
            match raw.typeflag {
                b'x' | b'g' | b'L' | b'K' => {
                    extensions += 1;
                    if extensions > self.limits.max_extension_headers {
                        return Err(TarError::TooManyExtensions(
                            self.limits.max_extension_headers,
                        ));
                    }
                    let (kind, limit) = match raw.typeflag {
                        b'x' | b'g' => ("PAX extended", self.limits.max_extension_size),
                        _ => ("GNU long name", self.limits.max_path_len as u64 + 1),
                    };
                    if raw.size > limit {
                        return Err(TarError::ExtensionTooLarge {
                            kind,
                            size: raw.size,
                            limit,
                        });
                    }
                    // Bounded by the check above.
                    let mut data = vec![0u8; raw.size as usize];
                    self.read_exact_or(&mut data, "a metadata header's data")?;
                    self.skip(padding_for(raw.size))?;
                    match raw.typeflag {
                        b'x' => apply_pax(&mut local, &data, &self.limits)?,
                        b'g' => apply_pax(&mut self.global, &data, &self.limits)?,
                        b'L' => local.path = Some(gnu_long(data, "GNU long name", &self.limits)?),
                        _ => local.link = Some(gnu_long(data, "GNU long link", &self.limits)?),
                    }
                }
                typeflag => {
                    let path = local
                        .path
                        .take()
                        .or_else(|| self.global.path.clone())
                        .unwrap_or(raw.name);
                    let link = local
                        .link
                        .take()
                        .or_else(|| self.global.link.clone())
                        .unwrap_or(raw.link);
                    let kind = match typeflag {
                        b'0' | 0 | b'7' if path.ends_with(b"/") => Some(EntryKind::Directory),
                        b'0' | 0 | b'7' => Some(EntryKind::File),
                        b'1' => Some(EntryKind::HardLink),
                        b'2' => Some(EntryKind::Symlink),
                        b'3' => Some(EntryKind::CharDevice),
                        b'4' => Some(EntryKind::BlockDevice),
                        b'5' => Some(EntryKind::Directory),
                        b'6' => Some(EntryKind::Fifo),
                        b'S' => {
                            return Err(TarError::Unsupported {
                                typeflag: 'S',
                                path: String::from_utf8_lossy(&path).into_owned(),
                            })
                        }
                        _ => None,
                    };
                    let size = local.size.or(self.global.size).unwrap_or(raw.size);
                    let Some(kind) = kind else {
                        // Unknown entry types (volume labels, GNU dump dirs,
                        // vendor extensions) carry nothing we create: skip.
                        tracing::debug!(
                            typeflag = %(typeflag as char),
                            path = %String::from_utf8_lossy(&path),
                            "skipping tar entry of unknown type"
                        );
                        self.remaining = size;
                        self.padding = padding_for(size);
                        self.skip_rest_of_entry()?;
                        local = Overrides::default();
                        continue;
                    };
                    check_len(&path, "path", &self.limits)?;
                    check_len(&link, "link target", &self.limits)?;
                    let mut xattrs = self.global.xattrs.clone();
                    xattrs.append(&mut local.xattrs);
                    // Like Go's archive/tar: only regular files carry data;
                    // links, directories and devices are header-only.
                    let data_size = if kind == EntryKind::File { size } else { 0 };
                    self.remaining = data_size;
                    self.padding = padding_for(data_size);
                    return Ok(Some(Entry {
                        link_target: if matches!(kind, EntryKind::Symlink | EntryKind::HardLink) {
                            link
                        } else {
                            Vec::new()
                        },
                        path,
                        kind,
                        mode: raw.mode,
                        uid: local.uid.or(self.global.uid).unwrap_or(raw.uid),
                        gid: local.gid.or(self.global.gid).unwrap_or(raw.gid),
                        mtime: local.mtime.or(self.global.mtime).unwrap_or(raw.mtime),
                        size: data_size,
                        dev_major: raw.dev_major,
                        dev_minor: raw.dev_minor,
                        xattrs,
                    }));
                }
            }
        }
    }

    /// Reads the current entry's data; returns 0 at its end.
    pub fn read_data(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "tar stream ends inside a file's data",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }

    /// Reads everything after the end-of-archive marker, to the end of the
    /// stream, so that every verifying reader below sees its EOF. Returns
    /// the number of bytes discarded.
    pub fn finish(mut self) -> Result<u64, TarError> {
        while self.next_entry()?.is_some() {}
        let mut total = 0u64;
        loop {
            let n = self.inner.read(&mut self.scratch[..])?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
        }
    }

    fn skip_rest_of_entry(&mut self) -> Result<(), TarError> {
        let (data, padding) = (self.remaining, self.padding);
        self.remaining = 0;
        self.padding = 0;
        self.skip(data)?;
        // The stream may end right after the last file's data, without
        // padding or end marker: `umoci insert` (0.4.7) writes such layers.
        // Nothing is lost, and the diff_id covers exactly these bytes.
        let mut left = padding;
        while left > 0 {
            let got = self.inner.read(&mut self.scratch[..left as usize])?;
            if got == 0 {
                if left == padding {
                    self.finished = true;
                    return Ok(());
                }
                return Err(TarError::Truncated("the padding after a file"));
            }
            left -= got as u64;
        }
        Ok(())
    }

    fn skip(&mut self, mut n: u64) -> Result<(), TarError> {
        while n > 0 {
            let chunk = n.min(BLOCK as u64) as usize;
            let got = self.inner.read(&mut self.scratch[..chunk])?;
            if got == 0 {
                return Err(TarError::Truncated("an entry's data"));
            }
            n -= got as u64;
        }
        Ok(())
    }

    /// Reads one block; `false` on a clean EOF before any byte.
    fn read_block(&mut self, block: &mut [u8; BLOCK]) -> Result<bool, TarError> {
        let mut filled = 0;
        while filled < BLOCK {
            let n = self.inner.read(&mut block[filled..])?;
            if n == 0 {
                if filled == 0 {
                    return Ok(false);
                }
                return Err(TarError::Truncated("a header block"));
            }
            filled += n;
        }
        Ok(true)
    }

    fn read_exact_or(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), TarError> {
        self.inner.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                TarError::Truncated(what)
            } else {
                TarError::Io(e)
            }
        })
    }
}

fn check_len(s: &[u8], what: &'static str, limits: &TarLimits) -> Result<(), TarError> {
    if s.len() > limits.max_path_len {
        return Err(TarError::PathTooLong {
            what,
            len: s.len(),
            limit: limits.max_path_len,
        });
    }
    Ok(())
}

fn gnu_long(
    mut data: Vec<u8>,
    what: &'static str,
    limits: &TarLimits,
) -> Result<Vec<u8>, TarError> {
    while data.last() == Some(&0) {
        data.pop();
    }
    check_len(&data, what, limits)?;
    Ok(data)
}

fn apply_pax(o: &mut Overrides, data: &[u8], limits: &TarLimits) -> Result<(), TarError> {
    for r in pax_records(data)? {
        match r.key {
            b"path" => {
                check_len(r.value, "PAX path", limits)?;
                o.path = Some(r.value.to_vec());
            }
            b"linkpath" => {
                check_len(r.value, "PAX linkpath", limits)?;
                o.link = Some(r.value.to_vec());
            }
            b"size" => o.size = Some(pax_number(r.value, "size")?),
            b"uid" => o.uid = Some(pax_number(r.value, "uid")?),
            b"gid" => o.gid = Some(pax_number(r.value, "gid")?),
            b"mtime" => o.mtime = Some(pax_number(r.value, "mtime")?),
            key => {
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    o.xattrs.push((name.to_vec(), r.value.to_vec()));
                } else if key.starts_with(b"GNU.sparse.") {
                    return Err(TarError::Unsupported {
                        typeflag: 'S',
                        path: "(PAX GNU.sparse)".into(),
                    });
                }
                // Other keys (atime, ctime, uname, gname, charset, ...) do
                // not change what we create.
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod builder;

#[cfg(test)]
mod tests {
    use super::builder::TarBuilder;
    use super::*;

    fn entries(tar: &[u8]) -> Result<Vec<(Entry, Vec<u8>)>, TarError> {
        let mut r = TarReader::new(tar, TarLimits::default());
        let mut out = Vec::new();
        while let Some(e) = r.next_entry()? {
            let mut data = Vec::new();
            let mut buf = [0u8; 7]; // odd size on purpose
            loop {
                let n = r.read_data(&mut buf)?;
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
            }
            out.push((e, data));
        }
        Ok(out)
    }

    #[test]
    fn reads_ustar_pax_and_gnu_entries() {
        let long = "d/".repeat(80) + "file";
        let tar = TarBuilder::new()
            .dir("d/")
            .file("d/a", b"hello")
            .symlink("d/s", "/abs/target")
            .hardlink("d/h", "d/a")
            .pax(&[
                ("path", long.as_bytes()),
                ("uid", b"1234"),
                ("SCHILY.xattr.user.k", b"v"),
            ])
            .file("ignored-name", b"pax")
            .gnu_long_name(b"gnu/long/name")
            .file("short", b"gnu")
            .finish();
        let e = entries(&tar).unwrap();
        assert_eq!(e.len(), 6);
        assert_eq!(e[0].0.kind, EntryKind::Directory);
        assert_eq!(
            (e[1].0.path.as_slice(), e[1].1.as_slice()),
            (&b"d/a"[..], &b"hello"[..])
        );
        assert_eq!(e[2].0.kind, EntryKind::Symlink);
        assert_eq!(e[2].0.link_target, b"/abs/target");
        assert_eq!(e[3].0.kind, EntryKind::HardLink);
        assert_eq!(e[4].0.path, long.as_bytes());
        assert_eq!(e[4].0.uid, 1234);
        assert_eq!(e[4].0.xattrs, vec![(b"user.k".to_vec(), b"v".to_vec())]);
        assert_eq!(e[4].1, b"pax");
        assert_eq!(e[5].0.path, b"gnu/long/name");
        assert_eq!(e[5].1, b"gnu");
    }

    #[test]
    fn refuses_a_pax_header_claiming_hundreds_of_megabytes() {
        // The header claims 600 MB; no data follows. The reader must refuse
        // on the claim alone, before reading or allocating anything.
        let tar = TarBuilder::new()
            .header(b"././@PaxHeader", b'x', 600 << 20, b"", 0o644, (0, 0))
            .finish();
        match entries(&tar) {
            Err(TarError::ExtensionTooLarge { size, limit, .. }) => {
                assert_eq!(size, 600 << 20);
                assert_eq!(limit, 1 << 20);
            }
            other => panic!("expected ExtensionTooLarge, got {other:?}"),
        }
    }

    #[test]
    fn refuses_huge_gnu_long_name_and_long_paths() {
        let tar = TarBuilder::new()
            .header(b"././@LongLink", b'L', 100 << 20, b"", 0o644, (0, 0))
            .finish();
        assert!(matches!(
            entries(&tar),
            Err(TarError::ExtensionTooLarge { .. })
        ));

        let long = vec![b'a'; 5000];
        let tar = TarBuilder::new()
            .pax(&[("path", &long)])
            .file("x", b"")
            .finish();
        assert!(matches!(
            entries(&tar),
            Err(TarError::PathTooLong { len: 5000, .. })
        ));
    }

    #[test]
    fn refuses_endless_metadata_headers() {
        let mut b = TarBuilder::new();
        for _ in 0..20 {
            b.pax(&[("uid", b"1")]);
        }
        let tar = b.file("x", b"").finish();
        assert!(matches!(entries(&tar), Err(TarError::TooManyExtensions(8))));
    }

    #[test]
    fn detects_corruption_and_truncation() {
        let mut tar = TarBuilder::new().file("a", b"data").finish();
        tar[0] ^= 1;
        assert!(matches!(entries(&tar), Err(TarError::BadChecksum { .. })));

        let tar = TarBuilder::new().file("a", &[1u8; 2000]).finish();
        let cut = &tar[..1024];
        assert!(entries(cut).is_err());
        let cut = &tar[..300];
        assert!(matches!(entries(cut), Err(TarError::Truncated(_))));
    }

    #[test]
    fn tolerates_a_stream_ending_right_after_file_data() {
        // What `umoci insert` writes: no padding, no end-of-archive marker.
        let tar = TarBuilder::new().file("a", b"abc").finish();
        let cut = &tar[..512 + 3];
        let e = entries(cut).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].1, b"abc");
        // But a stream cut inside the padding is still truncated.
        assert!(matches!(
            entries(&tar[..512 + 100]),
            Err(TarError::Truncated(_))
        ));
    }

    #[test]
    fn finish_reads_to_the_end_of_the_stream() {
        let mut tar = TarBuilder::new().file("a", b"x").finish();
        tar.extend_from_slice(&[0u8; 4096]);
        let total = tar.len();
        let mut r = TarReader::new(&tar[..], TarLimits::default());
        r.next_entry().unwrap().unwrap();
        let rest = r.finish().unwrap();
        assert_eq!(rest, (total - 512 * 2 - 512) as u64);
    }
}
