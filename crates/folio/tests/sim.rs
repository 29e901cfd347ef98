//! Crash simulation: thousands of random workloads over a `FaultyBackend`, power cuts at random
//! points, and a check of what a fresh cache reads from the crash image.
//!
//! Invariants checked for every workload:
//! 1. every byte that was synced (a `sync()` returned `Ok` after it was written) reads back the
//!    synced value or a value written later; nothing reads back a value never written there;
//! 2. reads before the crash return exactly the newest bytes (never stale or uninitialised),
//!    whatever errors happened before;
//! 3. every injected write or sync failure was reported to some caller (a flush/sync/close error,
//!    or a write-back error from an eviction) if any flush/sync/close began after it;
//! 4. without a crash, a successful `close()` leaves exactly the newest bytes durable.
//!
//! Replay one case with `FOLIO_SIM_SEED=<seed> cargo test -p folio --test sim`; run more with
//! `FOLIO_SIM_ITERS=<n>` (default 600, a few seconds).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use folio::backend::faulty::{FaultConfig, FaultyBackend};
use folio::{CacheConfig, Error, IoOp, MemoryBackend, PageCache};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PS: usize = 512;
const MAX_PAGES: usize = 16;
const MAXB: usize = PS * MAX_PAGES;
/// Concurrent workloads: each thread owns the stripes `s` with `s % threads == t`.
const STRIPE: usize = 64;

/// Per byte: the values it may hold after a crash (a 256-bit set) and its newest value.
#[derive(Clone)]
struct Model {
    cur: Vec<u8>,
    allowed: Vec<[u64; 4]>,
    len: usize,
}

impl Model {
    fn new(initial: &[u8]) -> Model {
        let mut m = Model {
            cur: vec![0; MAXB],
            allowed: vec![[0; 4]; MAXB],
            len: initial.len(),
        };
        m.cur[..initial.len()].copy_from_slice(initial);
        m.synced(0..MAXB);
        m
    }

    fn set(&mut self, b: usize, v: u8) {
        self.cur[b] = v;
        self.allowed[b][v as usize / 64] |= 1 << (v % 64);
    }

    fn may_hold(&self, b: usize, v: u8) -> bool {
        self.allowed[b][v as usize / 64] & (1 << (v % 64)) != 0
    }

    /// A sync covering `bytes` succeeded: only the newest values remain allowed.
    fn synced(&mut self, bytes: std::ops::Range<usize>) {
        for b in bytes {
            let v = self.cur[b];
            self.allowed[b] = [0; 4];
            self.allowed[b][v as usize / 64] |= 1 << (v % 64);
        }
    }

    fn resize(&mut self, len: usize) {
        for b in len.min(self.len)..MAXB {
            if self.cur[b] != 0 || b >= len {
                self.set(b, 0);
            }
        }
        self.len = len;
    }
}

/// Calls that can report a write-back error, with the backend's op clock around them.
#[derive(Default)]
struct Reports {
    /// (op clock when the call began, op clock when it ended, it reported a write-back error)
    calls: Vec<(u64, u64, bool)>,
}

fn reports_writeback(e: &Error) -> bool {
    match e {
        Error::WritebackFailed { .. } => true,
        Error::Io { op, .. } => matches!(op, IoOp::Write | IoOp::Sync),
        _ => false,
    }
}

struct Case {
    seed: u64,
    threads: usize,
}

fn config(rng: &mut StdRng) -> CacheConfig {
    let pages = rng.random_range(1..=8usize);
    let bg = rng.random_range(10..=60u8);
    CacheConfig::with_budget_pages(pages)
        .page_size(PS)
        .frame_wait_max(Duration::from_millis(50))
        .background_writeback(rng.random_bool(0.6))
        .dirty_background_percent(bg)
        .dirty_percent(rng.random_range(bg..=80))
        .writeback_interval(Duration::from_millis(rng.random_range(1..=5)))
        .dirty_expire(Duration::from_millis(rng.random_range(0..=10)))
        .throttle_wait_max(Duration::from_millis(5))
        .io_bytes_max(PS * rng.random_range(1..=8))
        .writeback_threads(rng.random_range(1..=4))
}

fn faults(rng: &mut StdRng) -> FaultConfig {
    let pick = |rng: &mut StdRng, ps: &[f64]| ps[rng.random_range(0..ps.len())];
    FaultConfig::new(rng.random())
        .fail_writes(pick(rng, &[0.0, 0.02, 0.1]))
        .fail_syncs(pick(rng, &[0.0, 0.05, 0.2]))
        .fail_reads(pick(rng, &[0.0, 0.0, 0.05]))
        .tear_writes(0.5)
        .sticky(rng.random_bool(0.1))
        .crash_tracking(true)
}

/// One thread's workload. `owned(b)` says which bytes it may write and check.
#[allow(clippy::too_many_arguments)]
fn workload(
    rng: &mut StdRng,
    cache: &PageCache,
    backend: &FaultyBackend,
    model: &mut Model,
    reports: &Mutex<Reports>,
    ops: usize,
    owned: &dyn Fn(usize) -> bool,
    single: bool,
    next_value: &AtomicU64,
) -> Result<(), String> {
    let handle = cache.sync_handle();
    for _ in 0..ops {
        let before = backend.op_count();
        let (result, is_check): (Result<(), Error>, bool) = match rng.random_range(0..100) {
            0..=44 => {
                // A write, page by page (so a failure leaves a known prefix written).
                let v = (next_value.fetch_add(1, Ordering::Relaxed) % 254 + 2) as u8;
                let (start, len) = if single {
                    let start = rng.random_range(0..MAXB);
                    (start, rng.random_range(1..=3 * PS).min(MAXB - start))
                } else {
                    let stripes: Vec<usize> =
                        (0..MAXB / STRIPE).filter(|&s| owned(s * STRIPE)).collect();
                    let s = stripes[rng.random_range(0..stripes.len())];
                    let a = rng.random_range(0..STRIPE);
                    (s * STRIPE + a, rng.random_range(1..=STRIPE - a))
                };
                let mut pos = start;
                let mut r = Ok(());
                while pos < start + len {
                    let n = (PS - pos % PS).min(start + len - pos);
                    if let Err(e) = cache.write_all_at(&vec![v; n], pos as u64) {
                        // The cache extends the file before it writes the page, so a failed
                        // write may leave it longer (zeros).
                        let len = cache.len() as usize;
                        if single && len > model.len {
                            model.resize(len);
                        }
                        r = Err(e);
                        break;
                    }
                    if single && pos + n > model.len {
                        model.resize(pos + n);
                    }
                    for b in pos..pos + n {
                        model.set(b, v);
                    }
                    pos += n;
                }
                (r, false)
            }
            45..=69 => {
                let (start, len) = if single {
                    let start = rng.random_range(0..MAXB);
                    (start, rng.random_range(1..=2 * PS).min(MAXB - start))
                } else {
                    (rng.random_range(0..MAXB / STRIPE) * STRIPE, STRIPE)
                };
                let mut buf = vec![0xFFu8; len];
                match cache.read_at(&mut buf, start as u64) {
                    Ok(n) => {
                        let expect_n = if single {
                            model.len.saturating_sub(start).min(len)
                        } else {
                            len
                        };
                        if n != expect_n {
                            return Err(format!("read {n} bytes at {start}, expected {expect_n}"));
                        }
                        for (i, &got) in buf[..n].iter().enumerate() {
                            let b = start + i;
                            if owned(b) && got != model.cur[b] {
                                return Err(format!(
                                    "stale read at byte {b}: got {got}, newest {}",
                                    model.cur[b]
                                ));
                            }
                        }
                        (Ok(()), false)
                    }
                    Err(e) => (Err(e), false),
                }
            }
            70..=79 => {
                let r = handle.flush_range(0..u64::MAX);
                (r, true)
            }
            80..=91 => {
                let r = handle.sync();
                if r.is_ok() {
                    let owned_bytes: Vec<usize> = (0..MAXB).filter(|&b| owned(b)).collect();
                    for b in owned_bytes {
                        model.synced(b..b + 1);
                    }
                }
                (r, true)
            }
            92..=95 if single => {
                let len = rng.random_range(0..=MAXB);
                let r = cache.resize(len as u64);
                if r.is_ok() {
                    model.resize(len);
                }
                (r, false)
            }
            _ => {
                let start = rng.random_range(0..MAXB) as u64;
                let r = cache.evict_range(start..start + rng.random_range(1..4 * PS) as u64);
                // evict_range checks errors like flush_range, but on the cache's own cursor.
                (r, false)
            }
        };
        let after = backend.op_count();
        let reported = result.as_ref().err().is_some_and(reports_writeback);
        if is_check || reported {
            reports
                .lock()
                .unwrap()
                .calls
                .push((before, after, reported));
        }
    }
    Ok(())
}

fn run_case(case: &Case) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(case.seed);
    let single = case.threads == 1;
    let initial_len = if single {
        rng.random_range(0..=MAXB)
    } else {
        MAXB
    };
    let initial = vec![1u8; initial_len];
    let backend = Arc::new(
        FaultyBackend::new(
            Arc::new(MemoryBackend::from_bytes(initial.clone())),
            faults(&mut rng),
        )
        .map_err(|e| e.to_string())?,
    );
    let cache = PageCache::new(backend.clone(), config(&mut rng)).map_err(|e| e.to_string())?;
    let reports = Mutex::new(Reports::default());
    let next_value = AtomicU64::new(0);
    let ops = rng.random_range(10..=120);
    let crash = rng.random_bool(0.8);
    let land = [0.0, 0.5, 1.0][rng.random_range(0..3)];
    let mut model = Model::new(&initial);

    let (image, closed_ok) = if single {
        let crash_at = if crash { rng.random_range(0..ops) } else { ops };
        workload(
            &mut rng,
            &cache,
            &backend,
            &mut model,
            &reports,
            crash_at,
            &|_| true,
            true,
            &next_value,
        )?;
        if crash {
            let image = backend.crash(land).map_err(|e| e.to_string())?;
            drop(cache); // its flush fails: the power is off
            (image, false)
        } else {
            let before = backend.op_count();
            let r = cache.close().map_err(|e| e.into_error());
            let after = backend.op_count();
            let reported = r.as_ref().err().is_some_and(reports_writeback);
            reports
                .lock()
                .unwrap()
                .calls
                .push((before, after, reported));
            let ok = r.is_ok();
            if ok {
                model.synced(0..MAXB);
            }
            (backend.crash(land).map_err(|e| e.to_string())?, ok)
        }
    } else {
        let threads = case.threads;
        let owner = move |b: usize| (b / STRIPE) % threads;
        let mut models: Vec<Model> = (0..threads).map(|_| model.clone()).collect();
        let seeds: Vec<u64> = (0..threads).map(|_| rng.random()).collect();
        let crash_delay = Duration::from_micros(rng.random_range(0..3000));
        let image = std::thread::scope(|s| {
            let hs: Vec<_> = models
                .iter_mut()
                .zip(seeds)
                .enumerate()
                .map(|(t, (m, seed))| {
                    let (cache, backend, reports, next_value) =
                        (&cache, &backend, &reports, &next_value);
                    s.spawn(move || {
                        let mut rng = StdRng::seed_from_u64(seed);
                        workload(
                            &mut rng,
                            cache,
                            backend,
                            m,
                            reports,
                            ops,
                            &move |b| owner(b) == t,
                            false,
                            next_value,
                        )
                    })
                })
                .collect();
            let image = if crash {
                std::thread::sleep(crash_delay);
                Some(backend.crash(land))
            } else {
                None
            };
            for h in hs {
                h.join()
                    .map_err(|_| "a workload thread panicked".to_string())??;
            }
            Ok::<_, String>(image)
        })?;
        for b in 0..MAXB {
            let m = &models[owner(b)];
            model.cur[b] = m.cur[b];
            model.allowed[b] = m.allowed[b];
        }
        match image {
            Some(image) => {
                drop(cache);
                (image.map_err(|e| e.to_string())?, false)
            }
            None => {
                let r = cache.close();
                let ok = r.is_ok();
                if ok {
                    model.synced(0..MAXB);
                }
                (backend.crash(land).map_err(|e| e.to_string())?, ok)
            }
        }
    };

    // Reopen a fresh cache over the crash image and check every byte.
    let reopened = PageCache::new(
        Arc::new(MemoryBackend::from_bytes(image.clone())),
        CacheConfig::with_budget_pages(3).page_size(PS),
    )
    .map_err(|e| e.to_string())?;
    let mut read = vec![0u8; image.len()];
    reopened
        .read_exact_at(&mut read, 0)
        .map_err(|e| e.to_string())?;
    if read != image {
        return Err("the reopened cache reads something else than the image".into());
    }
    for b in 0..MAXB {
        let v = read.get(b).copied().unwrap_or(0);
        if !model.may_hold(b, v) {
            return Err(format!(
                "byte {b} reads {v} after the crash: never written there since the last sync \
                 (newest {})",
                model.cur[b]
            ));
        }
    }
    if closed_ok {
        let want = &model.cur[..model.len.min(read.len())];
        if single && (read.len() != model.len || &read[..] != want) {
            let first = (0..read.len().min(want.len())).find(|&b| read[b] != want[b]);
            return Err(format!(
                "close() succeeded but the durable image is not the newest: len {} (model {}), \
                 first difference at {first:?}: {:?}",
                read.len(),
                model.len,
                first.map(|b| (read[b], want[b]))
            ));
        }
    }
    // Every injected write/sync failure reached a caller, if a check began after it.
    let reports = reports.into_inner().unwrap();
    for fault in backend.injected() {
        if !matches!(fault.op, IoOp::Write | IoOp::Sync) {
            continue;
        }
        let checked_later = reports.calls.iter().any(|&(b, _, _)| b >= fault.seq);
        let reported = reports
            .calls
            .iter()
            .any(|&(_, a, rep)| rep && a >= fault.seq);
        if checked_later && !reported {
            return Err(format!("injected failure {fault:?} was never reported"));
        }
    }
    Ok(())
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn random_workloads_survive_power_cuts() {
    let cases: Vec<u64> = match env_u64("FOLIO_SIM_SEED") {
        Some(seed) => vec![seed],
        None => {
            let base = env_u64("FOLIO_SIM_BASE").unwrap_or(0x5EED);
            let n = env_u64("FOLIO_SIM_ITERS").unwrap_or(600);
            (0..n)
                .map(|i| base.wrapping_mul(1_000_003).wrapping_add(i))
                .collect()
        }
    };
    for seed in cases {
        // One case in eight runs 2-3 threads on one cache.
        let threads = match seed % 8 {
            0 => 2,
            4 => 3,
            _ => 1,
        };
        let case = Case { seed, threads };
        if let Err(msg) = run_case(&case) {
            panic!(
                "simulation case failed: {msg}\n  replay: FOLIO_SIM_SEED={seed} cargo test -p folio --test sim"
            );
        }
    }
}
