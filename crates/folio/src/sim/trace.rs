//! Trace parsing: block traces split into page accesses, object traces one access per record.
//!
//! Formats (see `shared/traces/README.md` for the CloudPhysics files):
//! * [`TraceFormat::Csv`]: text, optional header naming the columns (`version,time,op,size,lbn`);
//!   `size` in bytes, `lbn` in 512-byte sectors. Without a header the columns are taken in that
//!   order.
//! * [`TraceFormat::Vscsi`]: 32-byte little-endian records
//!   `u32 sn, u32 len, u32 nSG, u16 cmd, u16 ver, u64 lbn, u64 ts_us`.
//! * [`TraceFormat::OracleGeneral`]: libCacheSim's 24-byte little-endian records
//!   `u32 time, u64 obj_id, u32 size, i64 next_access_vtime`; one access per record, page `obj_id`.
//! * [`TraceFormat::Lines`]: one decimal page number per line (blank lines and `#` comments
//!   skipped).
//!
//! A block request of `size` bytes at sector `lbn` touches bytes
//! `lbn*512 ..= lbn*512 + max(size, 1) - 1`, hence pages `first_byte / page_size ..=
//! last_byte / page_size`, reads and writes alike, in trace order.
//!
//! Malformed or truncated input gives a [`TraceError`] naming the 1-based record number and the
//! byte offset of the record; nothing here panics on bad input.

use std::path::{Path, PathBuf};

use crate::policy::PageKey;

const SECTOR: u64 = 512;

/// Trace file layouts. See the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceFormat {
    /// CloudPhysics CSV block trace.
    Csv,
    /// VMware vscsi binary block trace.
    Vscsi,
    /// libCacheSim oracleGeneral binary object trace.
    OracleGeneral,
    /// One page number per line.
    Lines,
}

impl TraceFormat {
    /// Every format, for help texts.
    pub const ALL: &'static [TraceFormat] = &[
        TraceFormat::Csv,
        TraceFormat::Vscsi,
        TraceFormat::OracleGeneral,
        TraceFormat::Lines,
    ];

    /// Name accepted by `FromStr`.
    pub fn name(self) -> &'static str {
        match self {
            TraceFormat::Csv => "csv",
            TraceFormat::Vscsi => "vscsi",
            TraceFormat::OracleGeneral => "oracle-general",
            TraceFormat::Lines => "lines",
        }
    }

    /// Infers the format from a file name: `.csv`, `.vscsi`, `.oracleGeneral[.bin]` or `.bin`,
    /// `.txt`/`.lines`.
    pub fn from_path(path: &Path) -> Option<TraceFormat> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        if name.ends_with(".csv") {
            Some(TraceFormat::Csv)
        } else if name.ends_with(".vscsi") {
            Some(TraceFormat::Vscsi)
        } else if name.contains(".oraclegeneral") || name.ends_with(".bin") {
            Some(TraceFormat::OracleGeneral)
        } else if name.ends_with(".txt") || name.ends_with(".lines") {
            Some(TraceFormat::Lines)
        } else {
            None
        }
    }
}

impl std::fmt::Display for TraceFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for TraceFormat {
    type Err = TraceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        TraceFormat::ALL
            .iter()
            .copied()
            .find(|f| {
                f.name() == lower || (lower == "oraclegeneral" && *f == TraceFormat::OracleGeneral)
            })
            .ok_or_else(|| TraceError::UnknownFormat(s.to_string()))
    }
}

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// The file could not be read.
    #[error("cannot read trace {path}: {source}")]
    Io {
        /// The trace file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A format name that is not one of [`TraceFormat::ALL`].
    #[error("unknown trace format {0:?}; known: csv, vscsi, oracle-general, lines")]
    UnknownFormat(String),
    /// The format could not be inferred from the file name.
    #[error("cannot infer the trace format of {0}; pass --format csv|vscsi|oracle-general|lines")]
    UnknownExtension(PathBuf),
    /// The page size is zero.
    #[error("page size must be positive")]
    ZeroPageSize,
    /// A record is malformed.
    #[error("malformed trace record {record} at byte offset {offset}: {reason}")]
    Malformed {
        /// 1-based record number.
        record: u64,
        /// Byte offset of the record's start in the file.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The file ends inside a fixed-size record.
    #[error(
        "truncated trace: record {record} at byte offset {offset} has {got} of {expected} bytes"
    )]
    Truncated {
        /// 1-based record number.
        record: u64,
        /// Byte offset of the record's start in the file.
        offset: u64,
        /// Bytes present.
        got: usize,
        /// Record size of the format.
        expected: usize,
    },
}

/// Reads `path` and returns its page accesses in trace order.
pub fn read_pages(
    path: &Path,
    format: TraceFormat,
    page_size: u64,
) -> Result<Vec<PageKey>, TraceError> {
    let bytes = std::fs::read(path).map_err(|source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_pages(&bytes, format, page_size)
}

/// Parses an in-memory trace into page accesses in trace order.
pub fn parse_pages(
    bytes: &[u8],
    format: TraceFormat,
    page_size: u64,
) -> Result<Vec<PageKey>, TraceError> {
    if page_size == 0 {
        return Err(TraceError::ZeroPageSize);
    }
    let mut out = Vec::new();
    match format {
        TraceFormat::Csv => parse_csv(bytes, page_size, &mut out)?,
        TraceFormat::Vscsi => {
            for_records(bytes, 32, |rec, record, offset| {
                let len = u32::from_le_bytes(rec[4..8].try_into().unwrap()) as u64;
                let lbn = u64::from_le_bytes(rec[16..24].try_into().unwrap());
                push_block(lbn, len, page_size, record, offset, &mut out)
            })?;
        }
        TraceFormat::OracleGeneral => {
            out.reserve(bytes.len() / 24);
            for_records(bytes, 24, |rec, _, _| {
                out.push(u64::from_le_bytes(rec[4..12].try_into().unwrap()));
                Ok(())
            })?;
        }
        TraceFormat::Lines => parse_lines(bytes, &mut out)?,
    }
    Ok(out)
}

fn for_records(
    bytes: &[u8],
    size: usize,
    mut f: impl FnMut(&[u8], u64, u64) -> Result<(), TraceError>,
) -> Result<(), TraceError> {
    let mut chunks = bytes.chunks_exact(size);
    let mut record = 0u64;
    for rec in chunks.by_ref() {
        record += 1;
        f(rec, record, (record - 1) * size as u64)?;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        return Err(TraceError::Truncated {
            record: record + 1,
            offset: record * size as u64,
            got: rest.len(),
            expected: size,
        });
    }
    Ok(())
}

fn push_block(
    lbn: u64,
    size: u64,
    page_size: u64,
    record: u64,
    offset: u64,
    out: &mut Vec<PageKey>,
) -> Result<(), TraceError> {
    let overflow = || TraceError::Malformed {
        record,
        offset,
        reason: format!("byte range of lbn {lbn} size {size} overflows 64 bits"),
    };
    let first = lbn.checked_mul(SECTOR).ok_or_else(overflow)?;
    let last = first.checked_add(size.max(1) - 1).ok_or_else(overflow)?;
    out.extend(first / page_size..=last / page_size);
    Ok(())
}

/// Lines of `bytes` with their byte offsets, without the line terminator.
fn lines(bytes: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    let mut offset = 0usize;
    bytes.split_inclusive(|&b| b == b'\n').map(move |line| {
        let start = offset;
        offset += line.len();
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        (start as u64, line)
    })
}

fn parse_u64(field: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(field).ok()?.trim();
    s.parse().ok()
}

fn parse_csv(bytes: &[u8], page_size: u64, out: &mut Vec<PageKey>) -> Result<(), TraceError> {
    // Column indices of size and lbn; the README's order unless a header says otherwise.
    let (mut size_col, mut lbn_col, mut ncols) = (3usize, 4usize, 5usize);
    let mut record = 0u64;
    let mut first = true;
    for (offset, line) in lines(bytes) {
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let fields: Vec<&[u8]> = line.split(|&b| b == b',').collect();
        if first {
            first = false;
            let names: Vec<String> = fields
                .iter()
                .map(|f| String::from_utf8_lossy(f).trim().to_ascii_lowercase())
                .collect();
            if names.iter().any(|n| n == "lbn") {
                let find = |want: &str| names.iter().position(|n| n == want);
                match (find("size"), find("lbn")) {
                    (Some(s), Some(l)) => {
                        (size_col, lbn_col, ncols) = (s, l, names.len());
                    }
                    _ => {
                        return Err(TraceError::Malformed {
                            record: 0,
                            offset,
                            reason: "CSV header lacks a size or lbn column".into(),
                        })
                    }
                }
                continue;
            }
        }
        record += 1;
        let malformed = |reason: String| TraceError::Malformed {
            record,
            offset,
            reason,
        };
        if fields.len() < ncols {
            return Err(malformed(format!(
                "{} fields, expected {ncols}: {:?}",
                fields.len(),
                String::from_utf8_lossy(line)
            )));
        }
        let size = parse_u64(fields[size_col]).ok_or_else(|| {
            malformed(format!(
                "bad size {:?}",
                String::from_utf8_lossy(fields[size_col])
            ))
        })?;
        let lbn = parse_u64(fields[lbn_col]).ok_or_else(|| {
            malformed(format!(
                "bad lbn {:?}",
                String::from_utf8_lossy(fields[lbn_col])
            ))
        })?;
        push_block(lbn, size, page_size, record, offset, out)?;
    }
    Ok(())
}

fn parse_lines(bytes: &[u8], out: &mut Vec<PageKey>) -> Result<(), TraceError> {
    let mut record = 0u64;
    for (offset, line) in lines(bytes) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        record += 1;
        let page = text.parse::<u64>().map_err(|_| TraceError::Malformed {
            record,
            offset,
            reason: format!("not a page number: {text:?}"),
        })?;
        out.push(page);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_splits_requests_into_pages() {
        let csv = b"version,time,op,size,lbn\n1,1,28,4096,8\n1,2,2a,0,0\n1,3,28,8192,7\n";
        let pages = parse_pages(csv, TraceFormat::Csv, 4096).unwrap();
        // 8*512=4096 .. 8191 -> page 1; size 0 -> 1 byte at 0 -> page 0; 3584 .. 11775 -> 0..=2.
        assert_eq!(pages, vec![1, 0, 0, 1, 2]);
    }

    #[test]
    fn csv_errors_name_record_and_offset() {
        let csv = b"version,time,op,size,lbn\n1,1,28,4096,8\n1,2,28,40";
        let err = parse_pages(csv, TraceFormat::Csv, 4096).unwrap_err();
        match err {
            TraceError::Malformed { record, offset, .. } => assert_eq!((record, offset), (2, 39)),
            e => panic!("{e}"),
        }
        let csv = b"1,1,28,x,8\n";
        assert!(matches!(
            parse_pages(csv, TraceFormat::Csv, 4096),
            Err(TraceError::Malformed {
                record: 1,
                offset: 0,
                ..
            })
        ));
    }

    #[test]
    fn binary_truncation_is_an_error() {
        let mut rec = vec![0u8; 24];
        rec[4..12].copy_from_slice(&77u64.to_le_bytes());
        rec.extend_from_slice(&[1, 2, 3]);
        let err = parse_pages(&rec, TraceFormat::OracleGeneral, 4096).unwrap_err();
        assert!(matches!(
            err,
            TraceError::Truncated {
                record: 2,
                offset: 24,
                got: 3,
                expected: 24
            }
        ));
        let mut v = vec![0u8; 32];
        v[4..8].copy_from_slice(&8192u32.to_le_bytes());
        v[16..24].copy_from_slice(&16u64.to_le_bytes());
        assert_eq!(
            parse_pages(&v, TraceFormat::Vscsi, 4096).unwrap(),
            vec![2, 3]
        );
        let mut v2 = v.clone();
        v2[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            parse_pages(&v2, TraceFormat::Vscsi, 4096),
            Err(TraceError::Malformed { record: 1, .. })
        ));
    }

    #[test]
    fn lines_and_inference() {
        assert_eq!(
            parse_pages(b"1\n\n# c\n 2 \r\n3", TraceFormat::Lines, 1).unwrap(),
            vec![1, 2, 3]
        );
        assert!(matches!(
            parse_pages(b"1\nx\n", TraceFormat::Lines, 1),
            Err(TraceError::Malformed {
                record: 2,
                offset: 2,
                ..
            })
        ));
        let f = |p: &str| TraceFormat::from_path(Path::new(p));
        assert_eq!(f("a/b.csv"), Some(TraceFormat::Csv));
        assert_eq!(f("x.oracleGeneral.bin"), Some(TraceFormat::OracleGeneral));
        assert_eq!(f("x.vscsi"), Some(TraceFormat::Vscsi));
        assert_eq!(f("x.txt"), Some(TraceFormat::Lines));
        assert_eq!(f("x"), None);
        assert_eq!(
            "oracle-general".parse::<TraceFormat>().unwrap(),
            TraceFormat::OracleGeneral
        );
    }
}
