//! Compressed trace files: which decoder a file name asks for, and decoding (pure Rust: gzip by
//! flate2's miniz_oxide backend, xz by lzma-rust2, zstd by ruzstd; the `compressed-traces`
//! feature, on by default). Owns nothing else; blocks only on the CPU.

use std::path::Path;

/// How a trace file is compressed, from its name's last suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// Not compressed.
    None,
    /// `.gz`
    Gzip,
    /// `.xz`
    Xz,
    /// `.zst` or `.zstd`
    Zstd,
}

impl Compression {
    /// The name without its compression suffix, and the compression that suffix names.
    pub(crate) fn strip(name: &str) -> (&str, Compression) {
        for (suffix, c) in [
            (".gz", Compression::Gzip),
            (".xz", Compression::Xz),
            (".zst", Compression::Zstd),
            (".zstd", Compression::Zstd),
        ] {
            if let Some(rest) = name.strip_suffix(suffix) {
                return (rest, c);
            }
        }
        (name, Compression::None)
    }

    /// The compression of a file named `path`.
    pub fn from_path(path: &Path) -> Compression {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        Compression::strip(&name).1
    }

    /// Decompresses `bytes`.
    pub fn decode(self, bytes: Vec<u8>) -> Result<Vec<u8>, std::io::Error> {
        match self {
            Compression::None => Ok(bytes),
            #[cfg(feature = "compressed-traces")]
            c => decode(c, &bytes),
            #[cfg(not(feature = "compressed-traces"))]
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "compressed traces need folio's `compressed-traces` feature",
            )),
        }
    }
}

#[cfg(feature = "compressed-traces")]
fn decode(c: Compression, bytes: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    use std::io::Read;
    let mut out = Vec::with_capacity(bytes.len() * 4);
    match c {
        Compression::None => out.extend_from_slice(bytes),
        Compression::Gzip => {
            flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut out)?;
        }
        Compression::Xz => {
            lzma_rust2::XzReader::new(bytes, true).read_to_end(&mut out)?;
        }
        Compression::Zstd => {
            // A file may hold several frames, one after the other.
            let mut rest = bytes;
            while !rest.is_empty() {
                let mut frame = ruzstd::decoding::StreamingDecoder::new(&mut rest)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                frame.read_to_end(&mut out)?;
            }
        }
    }
    Ok(out)
}
