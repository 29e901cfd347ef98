//! Durability through the real file backends, beyond what a SIGKILL shows (the OS page cache
//! survives a killed process, so `tests/kill.rs` cannot tell a written page from a synced one):
//!
//! - **What each `fdatasync` covers.** A recording wrapper over `FileBackend` / `UringBackend`
//!   snapshots the file's bytes at the moment the cache asks the backend to sync, before the
//!   `fdatasync` itself: what that sync can make durable is at most that snapshot. After every
//!   `sync()` that returns `Ok`, the snapshot of the backend sync it made must equal everything
//!   acknowledged so far (the model). A write acknowledged but still in the cache, or still in
//!   flight when the cache called `fdatasync`, makes the snapshot differ.
//! - **A failed `fdatasync` is never forgotten.** After one fails (injected), that sync and every
//!   later one report it (`Error::DurabilityLost`: the kernel may have dropped the dirty pages,
//!   so nothing can be promised any more), and the cache still serves every acknowledged byte.
//! - **From the device, not the OS page cache.** After `close()`, the file's pages are dropped
//!   from the OS page cache (`posix_fadvise(DONTNEED)` on clean pages; `mincore` checks that
//!   none is resident any more) and the file is read back through a fresh cache.
//!
//! Dropping the whole machine's caches (`/proc/sys/vm/drop_caches`) would also work as root, but
//! the per-file advice needs no privilege and leaves other users' caches alone.

mod common;

use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::{direct_io_dir, uring_available};
use folio::{
    CacheConfig, Error, FileBackend, Frame, FrameMut, Geometry, IoMode, IoOp, IoWaiter,
    LocalIoWaiter, PageCache, PageCacheBackend, Result, UringBackend,
};
use parking_lot::Mutex;

const PS: usize = 4096;

/// Forwards every call to `inner`; at each `sync`, records what the file holds first.
struct SyncRecorder {
    inner: Arc<dyn PageCacheBackend>,
    /// A buffered descriptor of the same file, to read what the backend has written.
    reader: std::fs::File,
    /// The file's bytes at the entry of each backend sync, in order.
    snapshots: Mutex<Vec<Vec<u8>>>,
    syncs: AtomicU64,
    /// The next sync fails without syncing (an `fdatasync` that returned EIO).
    fail_next_sync: AtomicBool,
}

impl SyncRecorder {
    fn new(inner: Arc<dyn PageCacheBackend>, path: &Path) -> Arc<SyncRecorder> {
        Arc::new(SyncRecorder {
            inner,
            reader: std::fs::File::open(path).unwrap(),
            snapshots: Mutex::new(Vec::new()),
            syncs: AtomicU64::new(0),
            fail_next_sync: AtomicBool::new(false),
        })
    }

    fn file_bytes(&self) -> Vec<u8> {
        let len = self.reader.metadata().unwrap().len() as usize;
        let mut bytes = vec![0u8; len];
        self.reader.read_exact_at(&mut bytes, 0).unwrap();
        bytes
    }

    fn last_snapshot(&self) -> Vec<u8> {
        self.snapshots.lock().last().cloned().expect("a sync")
    }
}

impl PageCacheBackend for SyncRecorder {
    fn read_pages(&self, idx: u64, frames: Vec<FrameMut>) -> Result<IoWaiter> {
        self.inner.read_pages(idx, frames)
    }
    fn start_read_pages(&self, idx: u64, frames: Vec<FrameMut>) -> Result<IoWaiter> {
        self.inner.start_read_pages(idx, frames)
    }
    fn start_read_pages_local(&self, idx: u64, frames: Vec<FrameMut>) -> Result<LocalIoWaiter> {
        self.inner.start_read_pages_local(idx, frames)
    }
    fn start_write_pages_local(&self, idx: u64, frames: Vec<Frame>) -> Result<LocalIoWaiter> {
        self.inner.start_write_pages_local(idx, frames)
    }
    fn unplug(&self) {
        self.inner.unplug()
    }
    fn start_write_pages(&self, idx: u64, frames: Vec<Frame>) -> Result<IoWaiter> {
        self.inner.start_write_pages(idx, frames)
    }
    fn write_pages(&self, idx: u64, frames: Vec<Frame>) -> Result<IoWaiter> {
        self.inner.write_pages(idx, frames)
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> Result<()> {
        self.inner.set_len(len)
    }
    fn sync(&self) -> Result<()> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        if self.fail_next_sync.swap(false, Ordering::SeqCst) {
            return Err(Error::io(
                IoOp::Sync,
                0,
                std::io::Error::other("injected fdatasync failure"),
            ));
        }
        let before = self.file_bytes();
        self.inner.sync()?;
        self.snapshots.lock().push(before);
        Ok(())
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.inner.write_zeroes(offset, len)
    }
    fn geometry(&self) -> Geometry {
        self.inner.geometry()
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    FileBuffered,
    FileDirect,
    UringDirect,
}

fn open(kind: Kind, path: &Path) -> Arc<dyn PageCacheBackend> {
    match kind {
        Kind::FileBuffered => Arc::new(FileBackend::open(path, IoMode::Buffered).unwrap()),
        Kind::FileDirect => Arc::new(FileBackend::open(path, IoMode::Direct).unwrap()),
        Kind::UringDirect => Arc::new(UringBackend::open(path, IoMode::Direct).unwrap()),
    }
}

/// The next value of a 64-bit LCG, high bits first.
fn lcg(x: &mut u64) -> u64 {
    *x = x
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *x >> 33
}

/// Random writes (some crossing pages, some extending the file), truncations, range flushes
/// and syncs through a small cache over `kind`; after each successful sync the bytes that sync
/// covered equal every acknowledged write.
fn every_successful_sync_covers_every_acknowledged_write(kind: Kind, dir: &Path, seed: u64) {
    let path: PathBuf = dir.join(format!("{kind:?}-{seed}.img"));
    std::fs::write(&path, vec![0u8; 16 * PS]).unwrap();
    let recorder = SyncRecorder::new(open(kind, &path), &path);
    let cache = PageCache::new(
        recorder.clone(),
        // Eight frames over up to 48 pages: evictions write back at any time; no background
        // flusher, so every sync is one this test asked for.
        CacheConfig::with_budget_pages(8).background_writeback(false),
    )
    .unwrap();
    let mut model = vec![0u8; 16 * PS];
    let mut x = seed;
    let mut checked = 0;
    for op in 0..400u32 {
        match lcg(&mut x) % 20 {
            0 => {
                let len = (lcg(&mut x) % (48 * PS as u64)) as usize;
                cache.resize(len as u64).unwrap();
                model.resize(len, 0);
            }
            1 => {
                let start = lcg(&mut x) % (48 * PS as u64);
                let range: Range<u64> = start..start + lcg(&mut x) % (8 * PS as u64);
                cache.flush_range(range).unwrap();
            }
            2..=4 => {
                let syncs = recorder.syncs.load(Ordering::SeqCst);
                cache.sync().unwrap();
                assert!(recorder.syncs.load(Ordering::SeqCst) > syncs, "op {op}");
                let covered = recorder.last_snapshot();
                if let Some(at) =
                    (0..model.len().max(covered.len())).find(|&i| covered.get(i) != model.get(i))
                {
                    panic!(
                        "{kind:?}, seed {seed}, op {op}: the fdatasync after sync() covered a \
                         file of {} bytes that differs from the acknowledged {} bytes at byte \
                         {at} (page {})",
                        covered.len(),
                        model.len(),
                        at / PS
                    );
                }
                checked += 1;
            }
            _ => {
                let offset = (lcg(&mut x) % (44 * PS as u64)) as usize;
                let len = 1 + (lcg(&mut x) % (3 * PS as u64)) as usize;
                let byte = (lcg(&mut x) as u8) | 1;
                let data: Vec<u8> = (0..len).map(|i| byte.wrapping_add(i as u8)).collect();
                cache.write_all_at(&data, offset as u64).unwrap();
                if model.len() < offset + len {
                    model.resize(offset + len, 0);
                }
                model[offset..offset + len].copy_from_slice(&data);
            }
        }
    }
    assert!(checked >= 20, "only {checked} syncs checked");
    cache.close().unwrap();
    assert_eq!(
        recorder.last_snapshot(),
        model,
        "{kind:?}: close() covers everything"
    );
    drop(recorder);
    reads_back_from_the_device(kind, &path, &model);
}

/// Drops the file's pages from the OS page cache, checks that none is resident, and reads the
/// file back through a fresh cache.
fn reads_back_from_the_device(kind: Kind, path: &Path, model: &[u8]) {
    let f = std::fs::File::open(path).unwrap();
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    assert_eq!(
        resident_pages(&f),
        0,
        "{kind:?}: the file's pages are still in the OS page cache"
    );
    let cache = PageCache::new(open(kind, path), CacheConfig::with_budget_pages(8)).unwrap();
    let mut back = vec![0u8; model.len()];
    cache.read_exact_at(&mut back, 0).unwrap();
    assert!(back == model, "{kind:?}: the device holds other bytes");
    cache.close().unwrap();
}

/// Pages of `f` in the OS page cache (`mincore` over a mapping of it).
fn resident_pages(f: &std::fs::File) -> usize {
    let len = f.metadata().unwrap().len() as usize;
    if len == 0 {
        return 0;
    }
    // SAFETY: nobody changes the file while it is mapped here, and the mapping is only passed
    // to `mincore`, never read.
    let map = unsafe { memmap2::Mmap::map(f).unwrap() };
    let pages = len.div_ceil(PS);
    let mut vec = vec![0u8; pages];
    // SAFETY: `map` is a live mapping of `len` bytes, and `vec` has one byte per page of it.
    let r = unsafe { libc::mincore(map.as_ptr() as *mut _, len, vec.as_mut_ptr()) };
    assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
    vec.iter().filter(|&&b| b & 1 != 0).count()
}

/// After some synced writes, more writes and an `fdatasync` that fails: that sync and every
/// later one (and `close`) report it, and the cache still reads back every acknowledged byte.
fn a_failed_fdatasync_fails_every_later_sync(kind: Kind, dir: &Path) {
    let path = dir.join(format!("{kind:?}-failed-sync.img"));
    std::fs::write(&path, vec![0u8; 16 * PS]).unwrap();
    let recorder = SyncRecorder::new(open(kind, &path), &path);
    let cache = PageCache::new(
        recorder.clone(),
        CacheConfig::with_budget_pages(64).background_writeback(false),
    )
    .unwrap();
    let mut model = vec![0u8; 16 * PS];
    let mut write = |cache: &PageCache, at: usize, byte: u8| {
        cache.write_all_at(&[byte; 1000], at as u64).unwrap();
        model[at..at + 1000].fill(byte);
    };
    write(&cache, 100, 1);
    cache.sync().unwrap();
    write(&cache, 5 * PS + 7, 2);
    recorder.fail_next_sync.store(true, Ordering::SeqCst);
    assert!(
        cache.sync().is_err(),
        "{kind:?}: a failed fdatasync reached nobody"
    );
    for attempt in 0..3 {
        write(&cache, attempt * PS, 3 + attempt as u8);
        let r = cache.sync();
        assert!(
            matches!(r, Err(Error::DurabilityLost { .. })),
            "{kind:?}: sync {attempt} after the failed one: {r:?}"
        );
    }
    let mut back = vec![0u8; model.len()];
    cache.read_exact_at(&mut back, 0).unwrap();
    assert!(back == model, "{kind:?}: the cache lost acknowledged bytes");
    assert!(
        cache.close().is_err(),
        "{kind:?}: close forgot the failed sync"
    );
}

#[test]
fn a_failed_fdatasync_fails_every_later_sync_through_the_file_backends() {
    let dir = tempfile::tempdir().unwrap();
    a_failed_fdatasync_fails_every_later_sync(Kind::FileBuffered, dir.path());
    if let Some(dir) = direct_io_dir() {
        a_failed_fdatasync_fails_every_later_sync(Kind::FileDirect, dir.path());
        if uring_available() {
            a_failed_fdatasync_fails_every_later_sync(Kind::UringDirect, dir.path());
        }
    }
}

#[test]
fn buffered_file_backend_syncs_cover_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    for seed in [1, 2, 3] {
        every_successful_sync_covers_every_acknowledged_write(Kind::FileBuffered, dir.path(), seed);
    }
}

#[test]
fn direct_file_backend_syncs_cover_every_acknowledged_write() {
    let Some(dir) = direct_io_dir() else { return };
    for seed in [4, 5, 6] {
        every_successful_sync_covers_every_acknowledged_write(Kind::FileDirect, dir.path(), seed);
    }
}

#[test]
fn direct_uring_backend_syncs_cover_every_acknowledged_write() {
    if !uring_available() {
        return;
    }
    let Some(dir) = direct_io_dir() else { return };
    for seed in [7, 8, 9] {
        every_successful_sync_covers_every_acknowledged_write(Kind::UringDirect, dir.path(), seed);
    }
}
