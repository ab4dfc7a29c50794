//! A tar writer for tests: it writes exactly the headers it is told to,
//! including hostile ones (`..` paths, absurd sizes), which well-behaved
//! writers (the `tar` crate's Builder) refuse to produce.

use super::header::BLOCK;

#[derive(Default)]
pub struct TarBuilder {
    out: Vec<u8>,
}

impl TarBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one ustar header block. `name` may be up to 100 bytes.
    #[allow(clippy::too_many_arguments)]
    pub fn header(
        &mut self,
        name: &[u8],
        typeflag: u8,
        size: u64,
        link: &[u8],
        mode: u32,
        dev: (u32, u32),
    ) -> &mut Self {
        assert!(name.len() <= 100 && link.len() <= 100);
        let mut b = [0u8; BLOCK];
        b[..name.len()].copy_from_slice(name);
        octal(&mut b[100..108], u64::from(mode));
        octal(&mut b[108..116], 0);
        octal(&mut b[116..124], 0);
        octal(&mut b[124..136], size);
        octal(&mut b[136..148], 1_700_000_000);
        b[156] = typeflag;
        b[157..157 + link.len()].copy_from_slice(link);
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        octal(&mut b[329..337], u64::from(dev.0));
        octal(&mut b[337..345], u64::from(dev.1));
        b[148..156].fill(b' ');
        let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
        octal(&mut b[148..155], sum);
        self.out.extend_from_slice(&b);
        self
    }

    fn data(&mut self, data: &[u8]) -> &mut Self {
        self.out.extend_from_slice(data);
        let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
        self.out.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        self.header(path.as_bytes(), b'0', data.len() as u64, b"", 0o644, (0, 0))
            .data(data)
    }

    pub fn file_mode(&mut self, path: &str, data: &[u8], mode: u32) -> &mut Self {
        self.header(path.as_bytes(), b'0', data.len() as u64, b"", mode, (0, 0))
            .data(data)
    }

    pub fn dir(&mut self, path: &str) -> &mut Self {
        self.header(path.as_bytes(), b'5', 0, b"", 0o755, (0, 0))
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.header(path.as_bytes(), b'2', 0, target.as_bytes(), 0o777, (0, 0))
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.header(path.as_bytes(), b'1', 0, target.as_bytes(), 0o644, (0, 0))
    }

    pub fn char_dev(&mut self, path: &str, major: u32, minor: u32) -> &mut Self {
        self.header(path.as_bytes(), b'3', 0, b"", 0o600, (major, minor))
    }

    /// A PAX extended header with these records, for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (k, v) in records {
            let body_len = k.len() + v.len() + 3; // ' ', '=', '\n'
            let mut len = body_len + 1;
            while len.to_string().len() + body_len != len {
                len = len.to_string().len() + body_len;
            }
            data.extend_from_slice(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        self.header(
            b"././@PaxHeader",
            b'x',
            data.len() as u64,
            b"",
            0o644,
            (0, 0),
        )
        .data(&data)
    }

    /// A GNU long-name header for the next entry.
    pub fn gnu_long_name(&mut self, name: &[u8]) -> &mut Self {
        let mut data = name.to_vec();
        data.push(0);
        self.header(
            b"././@LongLink",
            b'L',
            data.len() as u64,
            b"",
            0o644,
            (0, 0),
        )
        .data(&data)
    }

    /// The archive with its end-of-archive marker.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.out);
        out.extend(std::iter::repeat_n(0u8, 2 * BLOCK));
        out
    }
}

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{:0width$o}", v, width = field.len() - 1);
    assert!(s.len() < field.len(), "{v} does not fit");
    field[..s.len()].copy_from_slice(s.as_bytes());
    field[s.len()] = 0;
}
