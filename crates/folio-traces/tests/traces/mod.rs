//! The real traces in `testdata/traces` and libCacheSim's reference rows for them, read from
//! their `reference.md` tables (the published figures; nothing is retyped here). Shared by the
//! trace tests and the `policy_grid` example.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use folio_o3::sim::{self, CacheSize};
use folio_o3::PageKey;

/// The cache sizes of every reference table, in percent of the distinct keys.
pub const PERCENTS: [f64; 5] = [1.0, 5.0, 10.0, 20.0, 50.0];

/// One trace of the repository.
pub struct Trace {
    /// Folder name under `testdata/traces`.
    pub name: &'static str,
    /// The trace file, relative to its folder.
    pub file: &'static str,
    /// The markdown file holding the reference table, relative to `testdata/traces`.
    pub reference: &'static str,
    /// Page size for block traces (csv, vscsi); ignored by the others.
    pub page_size: u64,
}

/// Every trace with a reference table.
pub const TRACES: [Trace; 5] = [
    Trace {
        name: "cloudphysics",
        file: "cloudPhysicsIO.csv.zst",
        reference: "README.md",
        page_size: 4096,
    },
    Trace {
        name: "arc_oltp",
        file: "OLTP.lis.zst",
        reference: "arc_oltp/reference.md",
        page_size: 4096,
    },
    Trace {
        name: "arc_p6",
        file: "P6.lis.zst",
        reference: "arc_p6/reference.md",
        page_size: 4096,
    },
    Trace {
        name: "cloudphysics_w106",
        file: "w106.trace.xz",
        reference: "cloudphysics_w106/reference.md",
        page_size: 4096,
    },
    Trace {
        name: "lirs_multi3",
        file: "multi3.trace.gz",
        reference: "lirs_multi3/reference.md",
        page_size: 4096,
    },
];

/// `testdata/traces` of the repository.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/traces")
}

impl Trace {
    pub fn by_name(name: &str) -> &'static Trace {
        TRACES
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no trace {name}"))
    }

    pub fn path(&self) -> PathBuf {
        dir().join(self.name).join(self.file)
    }

    /// The page accesses.
    pub fn load(&self) -> Vec<PageKey> {
        let (pages, _) = sim::read_trace(&self.path(), None, self.page_size)
            .unwrap_or_else(|e| panic!("{}: {e}", self.name));
        pages
    }

    /// The cache sizes (pages) of the reference table for a trace of `distinct` keys.
    pub fn sizes(distinct: usize) -> [usize; 5] {
        PERCENTS.map(|p| CacheSize::Percent(p).resolve(distinct))
    }

    /// libCacheSim's rows by policy name as the table spells it (first word: `LRU`, `CLOCK`,
    /// `S3-FIFO`, `W-TinyLFU`, `LIRS`, `Belady`, ...). A degenerate cell reads 1.0.
    pub fn reference(&self) -> BTreeMap<String, [f64; 5]> {
        let path = dir().join(self.reference);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut rows = BTreeMap::new();
        let mut in_table = false;
        for line in text.lines() {
            if line.starts_with("| policy (libCacheSim") {
                // The first such table is the one (README.md has the CloudPhysics one first).
                if !rows.is_empty() {
                    break;
                }
                in_table = true;
                continue;
            }
            if !in_table {
                continue;
            }
            if !line.starts_with('|') {
                break;
            }
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            if cells[0].starts_with("---") {
                continue;
            }
            let name = cells[0].split_whitespace().next().unwrap().to_string();
            let mut row = [0.0; 5];
            for (i, cell) in cells[1..6].iter().enumerate() {
                let number = cell
                    .trim_matches('*')
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .trim_matches('*');
                row[i] = number.parse().unwrap_or_else(|_| panic!("{line}"));
            }
            rows.insert(name, row);
        }
        assert!(rows.len() >= 8, "{}: {} rows", path.display(), rows.len());
        rows
    }

    /// The best row other than Belady's at each size.
    pub fn best(&self) -> [f64; 5] {
        let r = self.reference();
        let mut best = [1.0f64; 5];
        for (name, row) in &r {
            if name == "Belady" {
                continue;
            }
            for i in 0..5 {
                best[i] = best[i].min(row[i]);
            }
        }
        best
    }
}
