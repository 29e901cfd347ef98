//! Trace parsing: block traces split into page accesses, object traces one access per record.
//!
//! Formats (see `testdata/traces/README.md` for the traces in the repository):
//! * [`TraceFormat::Csv`]: text, optional header naming the columns (`version,time,op,size,lbn`);
//!   `size` in bytes, `lbn` in 512-byte sectors. Without a header the columns are taken in that
//!   order.
//! * [`TraceFormat::Vscsi`]: 32-byte little-endian records
//!   `u32 sn, u32 len, u32 nSG, u16 cmd, u16 ver, u64 lbn, u64 ts_us`.
//! * [`TraceFormat::OracleGeneral`]: libCacheSim's 24-byte little-endian records
//!   `u32 time, u64 obj_id, u32 size, i64 next_access_vtime`; one access per record, page `obj_id`.
//! * [`TraceFormat::Lines`]: one decimal page number per line; blank lines, `#` comments and the
//!   LIRS traces' `*` breakpoint lines are skipped.
//! * [`TraceFormat::Lis`]: the ARC traces' text lines `start_block n_blocks x request_no`; each
//!   line is `n_blocks` accesses to blocks `start_block ..= start_block + n_blocks - 1`.
//! * [`TraceFormat::U32`]: a bare array of little-endian `u32` block numbers (the CloudPhysics
//!   traces as republished by the LIRS2 authors), one access per element.
//!
//! A block request of `size` bytes at sector `lbn` (csv, vscsi) touches bytes
//! `lbn*512 ..= lbn*512 + max(size, 1) - 1`, hence pages `first_byte / page_size ..=
//! last_byte / page_size`, reads and writes alike, in trace order. The other formats name their
//! keys directly: the page size does not apply to them.
//!
//! A file whose name ends in `.gz`, `.xz` or `.zst` is decompressed first (pure Rust decoders,
//! the `compressed-traces` feature, on by default), and its format inferred from the rest of the
//! name: `.csv`, `.vscsi`, `.oracleGeneral`/`.bin`, `.txt`/`.lines`, `.lis`, `.u32`; a `.trace`
//! file (both the LIRS text traces and the u32 arrays use that suffix) is text if its first
//! 4 KiB are digits, whitespace and `*`, else u32.
//!
//! Malformed or truncated input gives a [`TraceError`] naming the 1-based record number and the
//! byte offset of the record (in the decompressed stream); nothing here panics on bad input.
//!
//! Its unit tests (each layout, and malformed input) are in `trace/tests.rs`.

use std::path::{Path, PathBuf};

use crate::policy::PageKey;

pub use super::compression::Compression;

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
    /// ARC `.lis` text: `start_block n_blocks x request_no` per line.
    Lis,
    /// Bare little-endian `u32` block numbers.
    U32,
}

impl TraceFormat {
    /// Every format, for help texts.
    pub const ALL: &'static [TraceFormat] = &[
        TraceFormat::Csv,
        TraceFormat::Vscsi,
        TraceFormat::OracleGeneral,
        TraceFormat::Lines,
        TraceFormat::Lis,
        TraceFormat::U32,
    ];

    /// Name accepted by `FromStr`.
    pub fn name(self) -> &'static str {
        match self {
            TraceFormat::Csv => "csv",
            TraceFormat::Vscsi => "vscsi",
            TraceFormat::OracleGeneral => "oracle-general",
            TraceFormat::Lines => "lines",
            TraceFormat::Lis => "lis",
            TraceFormat::U32 => "u32",
        }
    }

    /// Infers the format from a file name (after any compression suffix): `.csv`, `.vscsi`,
    /// `.oracleGeneral[.bin]` or `.bin`, `.txt`/`.lines`, `.lis`, `.u32`. `None` for anything
    /// else, including `.trace`, which needs the content ([`TraceFormat::infer`]).
    pub fn from_path(path: &Path) -> Option<TraceFormat> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let name = Compression::strip(&name).0;
        if name.ends_with(".csv") {
            Some(TraceFormat::Csv)
        } else if name.ends_with(".vscsi") {
            Some(TraceFormat::Vscsi)
        } else if name.contains(".oraclegeneral") || name.ends_with(".bin") {
            Some(TraceFormat::OracleGeneral)
        } else if name.ends_with(".txt") || name.ends_with(".lines") {
            Some(TraceFormat::Lines)
        } else if name.ends_with(".lis") {
            Some(TraceFormat::Lis)
        } else if name.ends_with(".u32") {
            Some(TraceFormat::U32)
        } else {
            None
        }
    }

    /// The format of a file named `path` whose (decompressed) content starts with `head`: by
    /// name as [`from_path`](Self::from_path), else for a `.trace` file by content (text of
    /// digits, whitespace and `*` lines: [`Lines`](Self::Lines); otherwise [`U32`](Self::U32)).
    pub fn infer(path: &Path, head: &[u8]) -> Option<TraceFormat> {
        if let Some(f) = TraceFormat::from_path(path) {
            return Some(f);
        }
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        if !Compression::strip(&name).0.ends_with(".trace") {
            return None;
        }
        let head = &head[..head.len().min(4096)];
        let text = !head.is_empty()
            && head
                .iter()
                .all(|&b| b.is_ascii_digit() || b.is_ascii_whitespace() || b == b'*');
        Some(if text {
            TraceFormat::Lines
        } else {
            TraceFormat::U32
        })
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
    #[error("unknown trace format {0:?}; known: csv, vscsi, oracle-general, lines, lis, u32")]
    UnknownFormat(String),
    /// The format could not be inferred from the file name.
    #[error(
        "cannot infer the trace format of {0}; pass --format csv|vscsi|oracle-general|lines|lis|u32"
    )]
    UnknownExtension(PathBuf),
    /// The file could not be decompressed.
    #[error("cannot decompress trace {path} ({compression:?}): {source}")]
    Decompress {
        /// The trace file.
        path: PathBuf,
        /// Its compression, from its name.
        compression: Compression,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },
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

/// Reads `path` (decompressing it if its name ends in `.gz`, `.xz` or `.zst`) and returns its
/// page accesses in trace order.
pub fn read_pages(
    path: &Path,
    format: TraceFormat,
    page_size: u64,
) -> Result<Vec<PageKey>, TraceError> {
    parse_pages(&read_bytes(path)?, format, page_size)
}

/// As [`read_pages`], with the format inferred ([`TraceFormat::infer`]) unless given; returns
/// the format used too.
pub fn read_trace(
    path: &Path,
    format: Option<TraceFormat>,
    page_size: u64,
) -> Result<(Vec<PageKey>, TraceFormat), TraceError> {
    let bytes = read_bytes(path)?;
    let format = match format {
        Some(f) => f,
        None => TraceFormat::infer(path, &bytes)
            .ok_or_else(|| TraceError::UnknownExtension(path.to_path_buf()))?,
    };
    Ok((parse_pages(&bytes, format, page_size)?, format))
}

/// The bytes of `path`, decompressed as its name says.
fn read_bytes(path: &Path) -> Result<Vec<u8>, TraceError> {
    let bytes = std::fs::read(path).map_err(|source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let compression = Compression::from_path(path);
    compression
        .decode(bytes)
        .map_err(|source| TraceError::Decompress {
            path: path.to_path_buf(),
            compression,
            source,
        })
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
        TraceFormat::Lis => parse_lis(bytes, &mut out)?,
        TraceFormat::U32 => {
            out.reserve(bytes.len() / 4);
            for_records(bytes, 4, |rec, _, _| {
                out.push(u32::from_le_bytes(rec.try_into().unwrap()) as u64);
                Ok(())
            })?;
        }
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
        if text.is_empty() || text.starts_with('#') || text.starts_with('*') {
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

/// Longest run one `.lis` line may name: 2^24 blocks (8 GiB of 512-byte blocks), far past any
/// real request, so that a corrupt line cannot ask for an unbounded allocation.
const LIS_RUN_MAX: u64 = 1 << 24;

fn parse_lis(bytes: &[u8], out: &mut Vec<PageKey>) -> Result<(), TraceError> {
    let mut record = 0u64;
    for (offset, line) in lines(bytes) {
        let text = String::from_utf8_lossy(line);
        let mut fields = text.split_ascii_whitespace();
        let Some(start) = fields.next() else {
            continue;
        };
        record += 1;
        let malformed = |reason: String| TraceError::Malformed {
            record,
            offset,
            reason,
        };
        let start: u64 = start
            .parse()
            .map_err(|_| malformed(format!("bad start block {start:?}")))?;
        let n = fields.next().unwrap_or("");
        let n: u64 = n
            .parse()
            .map_err(|_| malformed(format!("bad block count {n:?}")))?;
        if n > LIS_RUN_MAX {
            return Err(malformed(format!("block count {n} over {LIS_RUN_MAX}")));
        }
        let end = start
            .checked_add(n)
            .ok_or_else(|| malformed(format!("blocks {start} + {n} overflow 64 bits")))?;
        out.extend(start..end);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
