//! The model tests: each runs a small concurrent scenario through the real cache many times
//! under shuttle's randomized and PCT schedulers, and checks what must hold in every
//! interleaving. Pages are 512 bytes and caches a few frames, so that every scenario reaches its
//! interesting states (a miss, an eviction, a write-back) within a few hundred steps.
//!
//! Bounded: a few hundred schedules per scheduler and test, a few seconds in all.

use std::sync::Arc;
use std::time::Duration;

use shuttle::thread;

use crate::backend::{Frame, FrameMut, IoWaiter, MemoryBackend, PageCacheBackend};
use crate::cache::{CacheConfig, PageCache};
use crate::error::Result;
use crate::page::PageState;

const PS: usize = 512;
const RANDOM_ITERATIONS: usize = 1000;
const PCT_ITERATIONS: usize = 1000;
const PCT_DEPTH: usize = 3;

/// Every byte of page `p` holds `fill(p, generation)`.
fn fill(p: u64, generation: u8) -> u8 {
    (p as u8)
        .wrapping_mul(31)
        .wrapping_add(generation)
        .wrapping_add(1)
}

fn image(pages: u64) -> Vec<u8> {
    (0..pages)
        .flat_map(|p| std::iter::repeat_n(fill(p, 0), PS))
        .collect()
}

/// A memory backend whose I/O takes scheduling steps: each read or write yields to shuttle's
/// scheduler in the middle, so other threads run while it is "in flight". A write also checks
/// that the bytes it writes do not change while it is in flight (stable pages).
#[derive(Debug)]
struct SlowBackend {
    inner: MemoryBackend,
}

impl SlowBackend {
    fn new(pages: u64) -> Arc<SlowBackend> {
        Arc::new(SlowBackend {
            inner: MemoryBackend::from_bytes(image(pages)),
        })
    }

    fn page(&self, p: u64) -> Vec<u8> {
        self.inner.image()[p as usize * PS..(p as usize + 1) * PS].to_vec()
    }
}

impl PageCacheBackend for SlowBackend {
    fn read_pages(&self, idx: u64, frames: Vec<FrameMut>) -> Result<IoWaiter> {
        thread::yield_now();
        let w = self.inner.read_pages(idx, frames);
        thread::yield_now();
        w
    }

    fn write_pages(&self, idx: u64, frames: Vec<Frame>) -> Result<IoWaiter> {
        let before: Vec<Vec<u8>> = frames.iter().map(|f| f.to_vec()).collect();
        thread::yield_now();
        let after: Vec<Vec<u8>> = frames.iter().map(|f| f.to_vec()).collect();
        assert_eq!(
            before, after,
            "a page changed while it was being written back"
        );
        self.inner.write_pages(idx, frames)
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn set_len(&self, len: u64) -> Result<()> {
        self.inner.set_len(len)
    }

    fn sync(&self) -> Result<()> {
        self.inner.sync()
    }
}

fn cache(backend: &Arc<SlowBackend>, frames: usize) -> Arc<PageCache> {
    cache_over(backend.clone(), frames)
}

fn cache_over(backend: Arc<dyn PageCacheBackend>, frames: usize) -> Arc<PageCache> {
    Arc::new(
        PageCache::new(
            backend,
            // The models check the cache's state machine, not the policy: CLOCK's victim scan
            // is the shortest, which keeps the explored schedules small.
            CacheConfig::with_budget_pages(frames)
                .page_size(PS)
                .policy(crate::policy::PolicyKind::Clock)
                // The flusher is a plain OS thread, outside shuttle's control.
                .background_writeback(false)
                .frame_wait_max(Duration::from_secs(3600)),
        )
        .expect("cache"),
    )
}

fn read_page(cache: &PageCache, p: u64) -> Vec<u8> {
    let mut buf = vec![0u8; PS];
    let n = cache.read_at(&mut buf, p * PS as u64).expect("read");
    buf.truncate(n);
    buf
}

fn assert_page(bytes: &[u8], p: u64, generations: &[u8]) {
    assert_eq!(bytes.len(), PS, "page {p}: short read");
    let first = bytes[0];
    assert!(
        generations.iter().any(|&g| fill(p, g) == first),
        "page {p}: byte {first} is no generation of this page ({generations:?})"
    );
    assert!(
        bytes.iter().all(|&b| b == first),
        "page {p}: torn read (bytes of two versions)"
    );
}

/// Runs `f` under the randomized scheduler, then under PCT.
fn check(f: impl Fn() + Send + Sync + 'static) {
    let f = Arc::new(f);
    let g = f.clone();
    shuttle::check_random(move || g(), RANDOM_ITERATIONS);
    shuttle::check_pct(move || f(), PCT_ITERATIONS, PCT_DEPTH);
}

/// Miss / miss on one page: both readers get the page's bytes, and the backend is read once
/// (the second waits for the first's load instead of loading a duplicate).
#[test]
fn concurrent_misses_on_one_page_read_the_backend_once() {
    check(|| {
        let backend = SlowBackend::new(4);
        let cache = cache(&backend, 4);
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let cache = cache.clone();
                thread::spawn(move || assert_page(&read_page(&cache, 2), 2, &[0]))
            })
            .collect();
        for h in handles {
            h.join().expect("reader");
        }
        let s = cache.stats();
        assert_eq!(s.read_ios, 1, "the page was loaded twice");
        assert_eq!(s.misses + s.hits, 2);
    });
}

/// Hit / eviction with one frame: two readers of different pages keep evicting each other's
/// page. A reader must never get the other page's bytes (a hit that races the eviction and the
/// frame's reuse re-validates the page), nor a torn mix.
#[test]
fn hits_racing_eviction_never_see_another_page() {
    check(|| readers_evicting_each_other(cache(&SlowBackend::new(2), 1)));
}

/// As [`hits_racing_eviction_never_see_another_page`], over a backend whose I/O takes no
/// scheduling step: an evict-and-reload then fits between two steps of an optimistic hit (a
/// backend that yields mid-I/O hands the CPU back to the reader first, and the reader finds the
/// frame busy). The hit must notice that the frame it looked up now holds another page.
#[test]
fn hits_racing_an_instant_eviction_never_see_another_page() {
    check(|| {
        readers_evicting_each_other(cache_over(Arc::new(MemoryBackend::from_bytes(image(2))), 1))
    });
}

/// Two threads each read their own page (0 and 1) twice through `cache`, a one-frame cache of
/// a two-page image, checking every byte.
fn readers_evicting_each_other(cache: Arc<PageCache>) {
    let handles: Vec<_> = (0..2u64)
        .map(|p| {
            let cache = cache.clone();
            thread::spawn(move || {
                for _ in 0..2 {
                    assert_page(&read_page(&cache, p), p, &[0]);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("reader");
    }
    let s = cache.stats();
    assert!(s.resident_pages <= 1);
    assert_eq!(s.hits + s.misses, 4);
}

/// Write / write-back of one page: a write that races a flush of the same page is never lost
/// (the flush clears DIRTY before its I/O, the writer waits for the I/O and re-dirties the
/// page), and the bytes under write-back do not change during the I/O (checked by the backend).
#[test]
fn write_racing_writeback_is_not_lost() {
    check(|| {
        let backend = SlowBackend::new(2);
        let cache = cache(&backend, 2);
        cache.write_all_at(&[fill(0, 1); PS], 0).expect("write 1");
        let writer = {
            let cache = cache.clone();
            thread::spawn(move || cache.write_all_at(&[fill(0, 2); PS], 0).expect("write 2"))
        };
        let flusher = {
            let cache = cache.clone();
            thread::spawn(move || cache.flush_range(0..PS as u64).expect("flush"))
        };
        writer.join().expect("writer");
        flusher.join().expect("flusher");
        // The last write is either already on the backend or still dirty in the cache.
        let on_backend = backend.page(0)[0];
        let state = cache.page_state(0);
        assert!(
            on_backend == fill(0, 2) || state == Some(PageState::Dirty),
            "write 2 lost: backend has generation byte {on_backend}, page is {state:?}"
        );
        assert_eq!(
            cache.stats().dirty_pages,
            u64::from(state == Some(PageState::Dirty))
        );
        cache.sync().expect("sync");
        assert_eq!(backend.page(0), vec![fill(0, 2); PS]);
        assert_eq!(cache.stats().dirty_pages, 0);
    });
}

/// Hit / write of one page: a reader that copies the page while a writer overwrites it (twice)
/// gets one whole generation, never a mix, and never an older one than it saw before. The hit
/// path copies without a hold (an optimistic read), and this build's copy yields half-way, so
/// the writer can run in the middle of it: the sequence check must throw that copy away.
#[test]
fn hits_racing_writes_are_never_torn() {
    check(|| {
        let backend = SlowBackend::new(1);
        let cache = cache(&backend, 1);
        assert_page(&read_page(&cache, 0), 0, &[0]);
        let writer = {
            let cache = cache.clone();
            thread::spawn(move || {
                for g in 1..=2 {
                    cache.write_all_at(&[fill(0, g); PS], 0).expect("write");
                }
            })
        };
        let mut seen = 0;
        for _ in 0..2 {
            let bytes = read_page(&cache, 0);
            assert_page(&bytes, 0, &[0, 1, 2]);
            let g = (0..=2)
                .find(|&g| fill(0, g) == bytes[0])
                .expect("a generation");
            assert!(g >= seen, "read generation {g} after {seen}");
            seen = g;
        }
        writer.join().expect("writer");
        assert_eq!(read_page(&cache, 0), vec![fill(0, 2); PS]);
    });
}

/// Pin / eviction: a pinned page stays resident and keeps its bytes while another thread's
/// misses force evictions through the only other frame; the pinned frame is never claimed.
#[test]
fn pinned_page_is_never_evicted() {
    check(|| {
        let backend = SlowBackend::new(4);
        let cache = cache(&backend, 2);
        let pinner = {
            let cache = cache.clone();
            thread::spawn(move || {
                let pin = cache.pin_page(0).expect("pin");
                for _ in 0..2 {
                    assert_page(&pin.read().expect("read"), 0, &[0]);
                    thread::yield_now();
                }
                assert!(cache.page_state(0).is_some(), "pinned page left the cache");
            })
        };
        let reader = {
            let cache = cache.clone();
            thread::spawn(move || {
                for p in 1..4 {
                    assert_page(&read_page(&cache, p), p, &[0]);
                }
            })
        };
        pinner.join().expect("pinner");
        reader.join().expect("reader");
        assert!(cache.stats().resident_pages <= 2);
    });
}

/// Discard / held reader: a page discarded while a read guard holds it leaves the index at
/// once, the guard keeps reading the old bytes, the frame is freed by the guard's release, and
/// the next read loads the backend's bytes again (unsaved changes are dropped).
#[test]
fn discard_racing_readers_and_guards() {
    check(|| {
        let backend = SlowBackend::new(2);
        let cache = cache(&backend, 2);
        cache
            .write_all_at(&[fill(1, 5); PS], PS as u64)
            .expect("write");
        let holder = {
            let cache = cache.clone();
            thread::spawn(move || {
                let g = cache.read_page(1).expect("guard");
                let first = g[0];
                thread::yield_now();
                assert!(
                    g.iter().all(|&b| b == first),
                    "guard bytes changed under it"
                );
                assert!(first == fill(1, 5) || first == fill(1, 0));
            })
        };
        let discarder = {
            let cache = cache.clone();
            thread::spawn(move || cache.discard_range(0..2 * PS as u64).expect("discard"))
        };
        let reader = {
            let cache = cache.clone();
            thread::spawn(move || assert_page(&read_page(&cache, 1), 1, &[0, 5]))
        };
        holder.join().expect("holder");
        discarder.join().expect("discarder");
        reader.join().expect("reader");
        // After the discard completed, page 1 reads as the backend has it (generation 0),
        // unless the reader loaded it again... from the backend, which is generation 0 too.
        assert_page(&read_page(&cache, 1), 1, &[0]);
        assert!(cache.stats().resident_pages <= 2);
        assert_eq!(cache.stats().dirty_pages, 0);
    });
}

/// Resize (truncate) / readers: a read racing a truncation gets the whole page or nothing
/// (never bytes of a dropped frame reused for another page), and after it the page is gone.
#[test]
fn truncate_racing_readers() {
    check(|| {
        let backend = SlowBackend::new(3);
        let cache = cache(&backend, 2);
        assert_page(&read_page(&cache, 2), 2, &[0]);
        let reader = {
            let cache = cache.clone();
            thread::spawn(move || {
                let bytes = read_page(&cache, 2);
                if !bytes.is_empty() {
                    assert_page(&bytes, 2, &[0]);
                }
            })
        };
        let other = {
            let cache = cache.clone();
            thread::spawn(move || assert_page(&read_page(&cache, 0), 0, &[0]))
        };
        let truncater = {
            let cache = cache.clone();
            thread::spawn(move || cache.resize(2 * PS as u64).expect("resize"))
        };
        reader.join().expect("reader");
        other.join().expect("other");
        truncater.join().expect("truncater");
        assert!(
            read_page(&cache, 2).is_empty(),
            "page past the end still readable"
        );
        // Not asserted: that page 2 is no longer cached. A reader that missed after the
        // truncation's discard loads it again (as zeros, from the shortened backend) and leaves
        // it cached past the end until evicted; harmless to reads (they stop at the end, and
        // zeros are what growing the file again reads) but a wasted frame. See the commit.
    });
}
