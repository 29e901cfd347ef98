//! The versions of an image's chunk objects, kept compactly: one entry per stored chunk.
//!
//! Owns: [`Versions`], chunk number → the version Folio knows (ETag, version id, object size).
//! An image of 10 TiB in 4 MiB chunks has 2.6 million of them, so an entry is small: the
//! ETags S3 and SeaweedFS give (`"` + 32 hex digits + `"`: the MD5 of the body) and the decimal
//! ones of object_store's in-memory store are packed into 16 bytes, with the object size in 4;
//! any other ETag, a version id (versioned buckets) or a size past 4 GiB goes to a side table
//! as the full [`Version`]. A packed entry is 32 bytes in the hash table (key included), about
//! 37 to 73 bytes per chunk with the table's free slots; [`Versions::heap_bytes`] reports it.
//!
//! Does not own: what a version means (`chunk.rs`, `rewrite.rs`), locking (the caller's mutex).
//! Nothing here blocks.

use std::collections::HashMap;

use crate::store::Version;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `"` + 32 lower-case hex digits + `"`.
    QuotedHex,
    /// 32 lower-case hex digits.
    Hex,
    /// A decimal number (no leading zeros).
    Decimal,
    /// `"` + a decimal number + `"` (object_store's in-memory store).
    QuotedDecimal,
    /// In the side table.
    Spilled,
}

#[derive(Clone, Copy, Debug)]
struct Packed {
    tag: [u8; 16],
    size: u32,
    kind: Kind,
}

/// Chunk number → known version. See the module docs.
#[derive(Default)]
pub(crate) struct Versions {
    packed: HashMap<u64, Packed>,
    spilled: HashMap<u64, Version>,
}

fn pack(v: &Version) -> Option<Packed> {
    if v.version.is_some() {
        return None;
    }
    let size = u32::try_from(v.size).ok()?;
    let e = v.e_tag.as_str();
    let hex = |s: &str| -> Option<[u8; 16]> {
        if s.len() != 32 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(|x| x.to_be_bytes())
    };
    let (tag, kind) = if let Some(t) = e
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .and_then(hex)
    {
        (t, Kind::QuotedHex)
    } else if let Some(t) = hex(e) {
        (t, Kind::Hex)
    } else {
        let (digits, kind) = match e.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            Some(d) => (d, Kind::QuotedDecimal),
            None => (e, Kind::Decimal),
        };
        let x: u128 = digits.parse().ok()?;
        if x.to_string() != digits {
            return None; // leading zeros, a sign...: would not print back the same
        }
        (x.to_be_bytes(), kind)
    };
    Some(Packed { tag, size, kind })
}

fn unpack(p: &Packed) -> Version {
    let x = u128::from_be_bytes(p.tag);
    let e_tag = match p.kind {
        Kind::QuotedHex => format!("\"{x:032x}\""),
        Kind::Hex => format!("{x:032x}"),
        Kind::Decimal => x.to_string(),
        Kind::QuotedDecimal => format!("\"{x}\""),
        Kind::Spilled => unreachable!("spilled entries are not unpacked"),
    };
    Version {
        e_tag,
        version: None,
        size: p.size as u64,
    }
}

impl Versions {
    /// The version of chunk `n`, if it is stored.
    pub(crate) fn get(&self, n: u64) -> Option<Version> {
        match self.packed.get(&n) {
            Some(p) if p.kind == Kind::Spilled => self.spilled.get(&n).cloned(),
            Some(p) => Some(unpack(p)),
            None => None,
        }
    }

    /// Records chunk `n`'s version (`None`: no object).
    pub(crate) fn set(&mut self, n: u64, v: Option<Version>) {
        let Some(v) = v else {
            if let Some(Packed {
                kind: Kind::Spilled,
                ..
            }) = self.packed.remove(&n)
            {
                self.spilled.remove(&n);
            }
            return;
        };
        match pack(&v) {
            Some(p) => {
                if let Some(Packed {
                    kind: Kind::Spilled,
                    ..
                }) = self.packed.insert(n, p)
                {
                    self.spilled.remove(&n);
                }
            }
            None => {
                let size = u32::try_from(v.size).unwrap_or(u32::MAX);
                self.packed.insert(
                    n,
                    Packed {
                        tag: [0; 16],
                        size,
                        kind: Kind::Spilled,
                    },
                );
                self.spilled.insert(n, v);
            }
        }
    }

    /// Chunks with an object, how many.
    pub(crate) fn len(&self) -> usize {
        self.packed.len()
    }

    /// Stored chunks numbered `from` or more whose object size is above `size_min`, in order.
    pub(crate) fn chunks_from(&self, from: u64, size_min: u64) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .packed
            .iter()
            .filter(|(&n, p)| n >= from && (p.size as u64) > size_min)
            .map(|(&n, _)| n)
            .collect();
        v.sort_unstable();
        v
    }

    /// Stored chunks whose object size is exactly `size`, or that are numbered `from` or more.
    pub(crate) fn chunks_sized_or_from(&self, size: u64, from: u64) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .packed
            .iter()
            .filter(|(&n, p)| n >= from || p.size as u64 == size)
            .map(|(&n, _)| n)
            .collect();
        v.sort_unstable();
        v
    }

    /// Heap bytes of the tables (their capacity, the hash tables' control bytes included).
    pub(crate) fn heap_bytes(&self) -> usize {
        let slot = |key_value: usize, cap: usize| {
            // hashbrown: one control byte per bucket, buckets = capacity * 8 / 7 rounded up to
            // a power of two (the capacity the table reports is 7/8 of its buckets).
            let buckets = if cap == 0 {
                0
            } else {
                (cap * 8 / 7).next_power_of_two()
            };
            buckets * (key_value + 1)
        };
        slot(std::mem::size_of::<(u64, Packed)>(), self.packed.capacity())
            + slot(
                std::mem::size_of::<(u64, Version)>(),
                self.spilled.capacity(),
            )
            + self
                .spilled
                .values()
                .map(|v| v.e_tag.capacity() + v.version.as_ref().map_or(0, |s| s.capacity()))
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(e: &str, size: u64) -> Version {
        Version {
            e_tag: e.into(),
            version: None,
            size,
        }
    }

    #[test]
    fn etags_pack_and_print_back_exactly() {
        let mut m = Versions::default();
        let cases = [
            v("\"5d41402abc4b2a76b9719d911017c592\"", 5),
            v("5d41402abc4b2a76b9719d911017c592", 6),
            v("42", 7),
            v("\"42\"", 7),
            v("007", 8),                                  // leading zeros: spilled
            v("\"5D41402ABC4B2A76B9719D911017C592\"", 9), // upper case: spilled
            v("\"abc-3\"", 10),                           // multipart: spilled
            v("1", 5 << 30),                              // past 4 GiB: spilled
            Version {
                e_tag: "1".into(),
                version: Some("v7".into()),
                size: 1,
            },
        ];
        for (n, c) in cases.iter().enumerate() {
            m.set(n as u64, Some(c.clone()));
        }
        for (n, c) in cases.iter().enumerate() {
            assert_eq!(m.get(n as u64).as_ref(), Some(c), "{c:?}");
        }
        assert_eq!(m.spilled.len(), 5);
        assert_eq!(m.len(), cases.len());
        // Replacing a spilled entry by a packed one, and removing, leave no stale side entry.
        m.set(4, Some(v("3", 1)));
        m.set(5, None);
        assert_eq!(m.spilled.len(), 3);
        assert_eq!(m.get(4), Some(v("3", 1)));
        assert_eq!(m.get(5), None);
        assert_eq!(m.chunks_from(6, 0), vec![6, 7, 8]);
        assert_eq!(m.chunks_sized_or_from(6, 8), vec![1, 8]);
    }

    #[test]
    fn an_entry_costs_what_the_docs_say() {
        assert_eq!(std::mem::size_of::<(u64, Packed)>(), 32);
        let mut m = Versions::default();
        for n in 0..100_000u64 {
            m.set(n, Some(v(&format!("\"{:032x}\"", n * 7919), 4 << 20)));
        }
        let per = m.heap_bytes() as f64 / 100_000.0;
        assert!((37.0..=74.0).contains(&per), "{per} bytes per chunk");
    }
}
