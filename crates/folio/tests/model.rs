//! Model-based property tests: random sequences of operations on a cache with a budget of 1 to 8
//! pages (so eviction happens constantly) against a plain `Vec<u8>`, over the memory and the file
//! backend. Every read must agree with the model; after sync and reopen, the backing store must
//! equal the model. The io_uring backend runs the same sequences, buffered and with O_DIRECT (the
//! recommended configuration: `open_best(path, IoMode::Direct)`), and so does the positional file
//! backend with O_DIRECT; a variant with a budget large enough to turn readahead on covers the
//! readahead paths. Where io_uring or O_DIRECT is missing these skip visibly (once per test), and
//! fail under `FOLIO_REQUIRE_ALL=1` (see `folio-testkit`).

use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use folio::backend::uring_support;
use folio::{
    CacheConfig, Error, FileBackend, IoMode, MemoryBackend, PageCache, PageCacheBackend,
    UringBackend,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Read {
        offset: u64,
        len: usize,
    },
    /// `read_exact_many` of several (possibly overlapping, possibly repeated) ranges.
    ReadMany {
        reads: Vec<(u64, usize)>,
    },
    /// A zero-copy `read_slice` guard.
    ReadSlice {
        offset: u64,
        len: usize,
    },
    /// `read_slices`: guards on several ranges at once, held together.
    ReadSlices {
        slices: Vec<(u64, usize)>,
    },
    Write {
        offset: u64,
        len: usize,
        seed: u8,
    },
    Resize {
        len: u64,
    },
    Flush {
        range: Range<u64>,
    },
    Evict {
        range: Range<u64>,
    },
    Discard {
        range: Range<u64>,
    },
    Zero {
        range: Range<u64>,
    },
    Sync,
    Reopen,
}

/// Sizes are in units of a "span" so small page sizes still cross pages often.
fn op(span: u64) -> impl Strategy<Value = Op> {
    let off = 0..span * 12;
    let len = 0..(span as usize * 3);
    let range = (0..span * 14, 0..span * 4).prop_map(|(s, l)| s..s + l);
    prop_oneof![
        4 => (off.clone(), len.clone()).prop_map(|(offset, len)| Op::Read { offset, len }),
        2 => proptest::collection::vec((off.clone(), len.clone()), 1..6)
            .prop_map(|reads| Op::ReadMany { reads }),
        2 => (off.clone(), 0..span as usize).prop_map(|(offset, len)| Op::ReadSlice { offset, len }),
        2 => proptest::collection::vec((off.clone(), 0..span as usize), 1..5)
            .prop_map(|slices| Op::ReadSlices { slices }),
        4 => (off, len, any::<u8>()).prop_map(|(offset, len, seed)| Op::Write { offset, len, seed }),
        1 => (0..span * 12).prop_map(|len| Op::Resize { len }),
        1 => range.clone().prop_map(|range| Op::Flush { range }),
        1 => range.clone().prop_map(|range| Op::Evict { range }),
        1 => range.clone().prop_map(|range| Op::Discard { range }),
        1 => range.prop_map(|range| Op::Zero { range }),
        1 => Just(Op::Sync),
        1 => Just(Op::Reopen),
    ]
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Memory,
    File,
    /// The file backend with O_DIRECT.
    FileDirect,
    Uring,
    /// io_uring with O_DIRECT: what `open_best(path, IoMode::Direct)` gives.
    UringDirect,
}

impl Kind {
    fn mode(self) -> IoMode {
        match self {
            Kind::FileDirect | Kind::UringDirect => IoMode::Direct,
            _ => IoMode::Buffered,
        }
    }

    /// Whether this process can run the kind: checked once per test binary and kind, a visible
    /// skip (or, under `FOLIO_REQUIRE_ALL=1`, a failure) when it cannot.
    fn available(self) -> bool {
        static URING: OnceLock<bool> = OnceLock::new();
        static DIRECT: OnceLock<bool> = OnceLock::new();
        let uring = || *URING.get_or_init(|| folio_testkit::require("io_uring", uring_support()));
        let direct = || {
            *DIRECT
                .get_or_init(|| folio_testkit::require("O_DIRECT", direct_dir_parent().map(|_| ())))
        };
        match self {
            Kind::Memory | Kind::File => true,
            Kind::FileDirect => direct(),
            Kind::Uring => uring(),
            Kind::UringDirect => uring() && direct(),
        }
    }
}

/// A directory whose filesystem accepts O_DIRECT (the system's temporary directory, or the
/// build's own if that is tmpfs), found once.
fn direct_dir_parent() -> Result<PathBuf, String> {
    static PARENT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PARENT
        .get_or_init(|| {
            let fallback = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
            folio_testkit::direct_io_tempdir(fallback)
                .map(|d| d.path().parent().map(PathBuf::from).unwrap_or_default())
        })
        .clone()
}

struct Harness {
    kind: Kind,
    memory: Option<Arc<MemoryBackend>>,
    path: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
    budget_pages: usize,
    page_size: usize,
}

impl Harness {
    fn new(kind: Kind, budget_pages: usize, page_size: usize) -> Harness {
        match kind {
            Kind::Memory => Harness {
                kind,
                memory: Some(Arc::new(MemoryBackend::new())),
                path: None,
                _dir: None,
                budget_pages,
                page_size,
            },
            Kind::File | Kind::Uring | Kind::FileDirect | Kind::UringDirect => {
                let dir = match kind.mode() {
                    IoMode::Direct => {
                        tempfile::tempdir_in(direct_dir_parent().expect("checked by available"))
                            .unwrap()
                    }
                    _ => tempfile::tempdir().unwrap(),
                };
                let path = dir.path().join("model.img");
                Harness {
                    kind,
                    memory: None,
                    path: Some(path),
                    _dir: Some(dir),
                    budget_pages,
                    page_size,
                }
            }
        }
    }

    fn open(&self) -> PageCache {
        let backend: Arc<dyn PageCacheBackend> = match self.kind {
            Kind::Memory => self.memory.clone().unwrap(),
            Kind::File | Kind::FileDirect => {
                Arc::new(FileBackend::open(self.path.as_ref().unwrap(), self.kind.mode()).unwrap())
            }
            Kind::Uring | Kind::UringDirect => {
                Arc::new(UringBackend::open(self.path.as_ref().unwrap(), self.kind.mode()).unwrap())
            }
        };
        PageCache::new(
            backend,
            CacheConfig::with_budget_pages(self.budget_pages)
                .page_size(self.page_size)
                // The model predicts `discard_range` from a snapshot of the backing store; a
                // background flusher writing pages back meanwhile would make that a race.
                // tests/sim.rs covers the flusher.
                .background_writeback(false),
        )
        .unwrap()
    }

    /// What the backing store holds now (written, not necessarily durable).
    fn backing(&self) -> Vec<u8> {
        match self.kind {
            Kind::Memory => self.memory.as_ref().unwrap().image(),
            _ => std::fs::read(self.path.as_ref().unwrap()).unwrap(),
        }
    }
}

fn run(kind: Kind, budget_pages: usize, page_size: usize, ops: &[Op]) -> Result<(), TestCaseError> {
    let h = Harness::new(kind, budget_pages, page_size);
    let mut cache = h.open();
    let mut model: Vec<u8> = Vec::new();
    let ps = page_size as u64;
    for (i, op) in ops.iter().enumerate() {
        match op.clone() {
            Op::ReadMany { reads } => {
                let mut bufs: Vec<Vec<u8>> =
                    reads.iter().map(|&(_, len)| vec![0xEEu8; len]).collect();
                let mut batch: Vec<(u64, &mut [u8])> = reads
                    .iter()
                    .zip(bufs.iter_mut())
                    .map(|(&(offset, _), b)| (offset, &mut b[..]))
                    .collect();
                let r = cache.read_exact_many(&mut batch);
                let past_end = reads
                    .iter()
                    .find(|&&(o, l)| o + l as u64 > model.len() as u64);
                match past_end {
                    Some(_) => prop_assert!(
                        matches!(r, Err(Error::OutOfRange { .. })),
                        "op {}: {:?} gave {:?}",
                        i,
                        op,
                        r
                    ),
                    None => {
                        prop_assert!(r.is_ok(), "op {}: {:?} gave {:?}", i, op, r);
                        for (&(offset, len), b) in reads.iter().zip(&bufs) {
                            let o = offset as usize;
                            prop_assert!(
                                *b == model[o..o + len],
                                "op {}: {:?} read differs",
                                i,
                                op
                            );
                        }
                    }
                }
            }
            Op::ReadSlice { offset, len } => {
                let ps = cache.page_size() as u64;
                let r = cache.read_slice(offset, len);
                if (offset % ps) + len as u64 > ps {
                    prop_assert!(
                        matches!(r, Err(Error::CrossesPage { .. })),
                        "op {}: {:?} gave {:?}",
                        i,
                        op,
                        r.map(|g| g.len())
                    );
                } else if offset + len as u64 > model.len() as u64 {
                    prop_assert!(
                        matches!(r, Err(Error::OutOfRange { .. })),
                        "op {}: {:?} gave {:?}",
                        i,
                        op,
                        r.map(|g| g.len())
                    );
                } else {
                    let g = r.unwrap();
                    let o = offset as usize;
                    prop_assert!(*g == model[o..o + len], "op {}: {:?} read differs", i, op);
                }
            }
            Op::ReadSlices { slices } => {
                let r = cache.read_slices(&slices);
                // The first bad range decides the error; then the frames.
                let bad = slices.iter().find_map(|&(offset, len)| {
                    if (offset % ps) + len as u64 > ps {
                        Some("crosses")
                    } else if offset + len as u64 > model.len() as u64 {
                        Some("out of range")
                    } else {
                        None
                    }
                });
                let mut pages: Vec<u64> = slices.iter().map(|&(o, _)| o / ps).collect();
                pages.sort_unstable();
                pages.dedup();
                match (bad, r) {
                    (Some("crosses"), Err(Error::CrossesPage { .. })) => {}
                    (Some("out of range"), Err(Error::OutOfRange { .. })) => {}
                    (None, Err(Error::NoFreeFrame { .. })) if pages.len() > budget_pages => {}
                    (None, Ok(guards)) => {
                        prop_assert_eq!(guards.len(), slices.len(), "op {}: {:?}", i, op);
                        for (g, &(offset, len)) in guards.iter().zip(&slices) {
                            let o = offset as usize;
                            prop_assert!(
                                **g == model[o..o + len],
                                "op {}: {:?} read differs",
                                i,
                                op
                            );
                        }
                    }
                    (bad, r) => prop_assert!(
                        false,
                        "op {}: {:?} ({:?}) gave {:?}",
                        i,
                        op,
                        bad,
                        r.map(|g| g.len())
                    ),
                }
            }
            Op::Read { offset, len } => {
                let mut buf = vec![0xEEu8; len];
                let n = cache.read_at(&mut buf, offset).unwrap();
                let expect_n = (model.len() as u64).saturating_sub(offset).min(len as u64) as usize;
                prop_assert_eq!(n, expect_n, "op {}: {:?}", i, op);
                let o = offset as usize;
                prop_assert!(
                    buf[..n] == model[o.min(model.len())..o.min(model.len()) + n],
                    "op {}: {:?} read differs",
                    i,
                    op
                );
            }
            Op::Write { offset, len, seed } => {
                let data = bytes(len, seed);
                cache.write_all_at(&data, offset).unwrap();
                // A zero-length write changes nothing, like pwrite.
                if len > 0 {
                    let end = offset as usize + len;
                    if model.len() < end {
                        model.resize(end, 0);
                    }
                    model[offset as usize..end].copy_from_slice(&data);
                }
            }
            Op::Resize { len } => {
                cache.resize(len).unwrap();
                model.resize(len as usize, 0);
            }
            Op::Flush { range } => cache.flush_range(range).unwrap(),
            Op::Evict { range } => cache.evict_range(range).unwrap(),
            Op::Discard { range } => {
                // Pages wholly inside the range (or, if it reaches the end, up to the end)
                // revert to what the backing store holds.
                let backing = h.backing();
                let len = model.len() as u64;
                let first = range.start.div_ceil(ps);
                let end_page = if range.end >= len {
                    len.div_ceil(ps)
                } else {
                    range.end / ps
                };
                cache.discard_range(range.clone()).unwrap();
                for p in first..end_page.max(first) {
                    let s = (p * ps) as usize;
                    let e = ((p + 1) * ps).min(len) as usize;
                    if s < e {
                        model[s..e].copy_from_slice(&backing[s..e]);
                    }
                }
            }
            Op::Zero { range } => {
                cache.zero_range(range.clone()).unwrap();
                let e = (range.end as usize).min(model.len());
                let s = (range.start as usize).min(e);
                model[s..e].fill(0);
            }
            Op::Sync => cache.sync().unwrap(),
            Op::Reopen => {
                drop(cache);
                cache = h.open();
            }
        }
        prop_assert_eq!(cache.len(), model.len() as u64, "op {}: {:?}", i, op);
        let st = cache.stats();
        prop_assert!(st.resident_pages <= budget_pages as u64);
        prop_assert!(st.dirty_pages <= st.resident_pages);
    }
    cache.sync().unwrap();
    prop_assert_eq!(cache.stats().dirty_pages, 0);
    drop(cache);
    prop_assert!(
        h.backing() == model,
        "backing store differs from the model after sync"
    );
    let cache = h.open();
    let mut all = vec![0u8; model.len()];
    cache.read_exact_at(&mut all, 0).unwrap();
    prop_assert!(all == model, "reopened cache differs from the model");
    Ok(())
}

/// One case of the 1-to-8-page proptests over `kind`: 512- or 4096-byte pages.
fn small(kind: Kind, budget: usize, small_pages: bool, ops: &[Op]) -> Result<(), TestCaseError> {
    if !kind.available() {
        return Ok(());
    }
    run(kind, budget, if small_pages { 512 } else { 4096 }, ops)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn memory_backend_agrees_with_model(
        budget in 1usize..=8,
        small_pages in any::<bool>(),
        ops in prop::collection::vec(op(700), 1..40),
    ) {
        small(Kind::Memory, budget, small_pages, &ops)?;
    }

    #[test]
    fn file_backend_agrees_with_model(
        budget in 1usize..=8,
        small_pages in any::<bool>(),
        ops in prop::collection::vec(op(700), 1..40),
    ) {
        small(Kind::File, budget, small_pages, &ops)?;
    }

    #[test]
    fn uring_backend_agrees_with_model(
        budget in 1usize..=8,
        small_pages in any::<bool>(),
        ops in prop::collection::vec(op(700), 1..40),
    ) {
        small(Kind::Uring, budget, small_pages, &ops)?;
    }

    /// The recommended configuration: io_uring over an O_DIRECT file (page sizes are multiples
    /// of the 512-byte direct I/O alignment).
    #[test]
    fn direct_uring_backend_agrees_with_model(
        budget in 1usize..=8,
        small_pages in any::<bool>(),
        ops in prop::collection::vec(op(700), 1..40),
    ) {
        small(Kind::UringDirect, budget, small_pages, &ops)?;
    }

    /// Positional I/O over an O_DIRECT file (the fallback of `open_best` without io_uring).
    #[test]
    fn direct_file_backend_agrees_with_model(
        budget in 1usize..=8,
        small_pages in any::<bool>(),
        ops in prop::collection::vec(op(700), 1..40),
    ) {
        small(Kind::FileDirect, budget, small_pages, &ops)?;
    }

    /// 32 to 64 pages of 512 bytes: the budget holds the whole file and readahead is on (its
    /// window is capped at 1/16 of the cache), so sequential reads load ahead asynchronously.
    #[test]
    fn readahead_agrees_with_model(
        budget in 32usize..=64,
        kind in prop_oneof![Just(Kind::File), Just(Kind::Uring), Just(Kind::UringDirect)],
        ops in prop::collection::vec(op(700), 1..40),
    ) {
        if !kind.available() {
            return Ok(());
        }
        run(kind, budget, 512, &ops)?;
    }
}
