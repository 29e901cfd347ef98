//! The seeded simulation of the whole cache (issue 13; TigerBeetle's VOPR is the model).
//!
//! One seed fixes everything: the configuration (frames, I/O size, policy, flusher and readahead
//! on or off), the fault plan of a simulated device, the operations of two or three logical
//! threads, and shuttle's schedule of those threads and of the cache's own (flusher, readahead
//! workers). Shuttle owns every thread switch and the device owns every fault, so a seed replays
//! exactly: a failing seed prints the one command that runs it again.
//!
//! The device ([`SimDevice`]) cuts a write at its length when the write is submitted and lands
//! it after a scheduling point (a late write can extend it again, as `pwrite` does); it fails
//! reads, writes and syncs at seeded rates, tears multi-page writes (a prefix lands, then the
//! error), loses the writes since the last good sync when a sync fails, and cuts the power at the
//! end (the durable image plus a random subset of the writes since the last sync).
//!
//! Checked against a model, for every seed:
//! 1. every byte a read returns is a value some linearization of the operations allows: the
//!    value of an operation that overlaps the read, or of one that completed before it and that
//!    no other completed operation certainly followed (per byte; failed operations may or may
//!    not have taken effect; a discard allows any earlier value);
//! 2. after a crash, every byte holds a value allowed at or after the start of the last sync that
//!    returned Ok: what was acknowledged before a successful sync began survives;
//! 3. a write-back failure reaches the next sync of every handle that begins after it, and a
//!    handle that was told is not told again when nothing failed since; once a sync of the
//!    device has failed, no sync that begins afterwards returns Ok. In odd seeds two threads
//!    share one handle (as an NBD connection's workers do): then a sync whose own write-back
//!    failed must fail although the other thread's sync took the report, which check 2 sees;
//! 4. at the end, the whole-cache invariants hold (`PageCache::check_invariants`: no frame lost,
//!    dirty count exact, bytes past the end zero, ...) and no frame is quarantined.
//!
//! `cargo test -p folio-shuttle --lib sim` runs 1,000 seeds; `FOLIO_SIM_SEEDS=N` runs N,
//! `FOLIO_SIM_SEED=S` runs seed S alone.

mod device;
mod model;

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shuttle::thread;

use self::device::{Device, Rates, SimDevice};
use self::model::{cut, whole_pages, Event, Record, SyncRecord};
use crate::backend::faulty::SplitMix64;
use crate::cache::{CacheConfig, PageCache, SyncHandle};
use crate::error::Result;
use crate::policy::PolicyKind;

const PS: usize = 512;
const PSU: u64 = PS as u64;
/// The most pages the file ever has (writes and resizes stay below).
const MAX_PAGES: usize = 10;
const MAXB: usize = PS * MAX_PAGES;
/// The file never shrinks below one page, so guards on page 0 always see a whole page.
const MIN_LEN: u64 = PSU;

/// The logical clock of one run: operations take a tick when they start and when they end;
/// the device stamps its faults with it. Shuttle runs one thread at a time, so the order of
/// ticks is the order of events.
#[derive(Default)]
struct Clock(AtomicU64);

impl Clock {
    fn tick(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// One operation of a logical thread.
#[derive(Clone, Debug)]
enum Op {
    Read(Range<u64>),
    Write(Range<u64>, u8),
    ReadGuard,
    WriteGuard(u8),
    ReadSlices,
    Flush(Range<u64>),
    Sync,
    Evict(Range<u64>),
    Discard(Range<u64>),
    Zero(Range<u64>),
    Resize(u64),
    WillNeed(Range<u64>),
}

/// What one seed runs.
#[derive(Clone)]
struct Plan {
    frames: usize,
    io_pages: usize,
    policy: PolicyKind,
    flusher: bool,
    readahead: usize,
    shared_handle: bool,
    initial: Vec<u8>,
    rates: Rates,
    threads: Vec<Vec<Op>>,
}

impl Plan {
    /// The sync handle thread `t` uses: its own, or, with `shared_handle`, thread 0's for
    /// threads 0 and 1.
    fn handle_of(&self, t: usize) -> usize {
        if self.shared_handle && t == 1 {
            0
        } else {
            t
        }
    }
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("frames", &self.frames)
            .field("io_pages", &self.io_pages)
            .field("policy", &self.policy)
            .field("flusher", &self.flusher)
            .field("readahead", &self.readahead)
            .field("shared_handle", &self.shared_handle)
            .field("initial_pages", &(self.initial.len() / PS))
            .field("rates", &self.rates)
            .field("threads", &self.threads)
            .finish()
    }
}

/// A byte range of up to `max_len` bytes; half of them start in the first four pages, so that
/// operations meet on the same pages often.
fn range(rng: &mut SplitMix64, max_len: u64) -> Range<u64> {
    let span = if rng.below(2) == 0 {
        4 * PSU
    } else {
        MAXB as u64
    };
    let start = rng.below(span);
    let len = 1 + rng.below(max_len);
    start..(start + len).min(MAXB as u64)
}

impl Plan {
    fn new(seed: u64) -> Plan {
        let mut rng = SplitMix64::new(seed ^ 0x5EED_F011_0000_0000);
        // Every shipped policy, so that each one's shared state (hit buffers, the adaptive
        // chooser's shadows) runs under shuttle's schedules.
        let policies = PolicyKind::ALL;
        let rate = |rng: &mut SplitMix64, choices: &[u64]| {
            choices[rng.below(choices.len() as u64) as usize]
        };
        let initial_pages = 1 + rng.below(MAX_PAGES as u64 - 2) as usize;
        let initial = (0..initial_pages * PS)
            .map(|i| 1 + (i / PS) as u8)
            .collect();
        let mut value = 100u8;
        let threads = (0..2 + rng.below(2))
            .map(|_| {
                (0..4 + rng.below(7))
                    .map(|_| {
                        let op = match rng.below(100) {
                            0..=24 => Op::Read(range(&mut rng, 2 * PSU)),
                            25..=49 => {
                                value = value.wrapping_add(1).max(100);
                                Op::Write(range(&mut rng, 2 * PSU), value)
                            }
                            50..=53 => Op::ReadGuard,
                            54..=57 => {
                                value = value.wrapping_add(1).max(100);
                                Op::WriteGuard(value)
                            }
                            58..=60 => Op::ReadSlices,
                            61..=66 => Op::Flush(range(&mut rng, MAXB as u64)),
                            67..=74 => Op::Sync,
                            75..=78 => Op::Evict(range(&mut rng, MAXB as u64)),
                            79..=83 => Op::Discard(range(&mut rng, 3 * PSU)),
                            84..=88 => Op::Zero(range(&mut rng, 3 * PSU)),
                            89..=94 => Op::Resize(MIN_LEN + rng.below(MAXB as u64 - MIN_LEN)),
                            _ => Op::WillNeed(range(&mut rng, 4 * PSU)),
                        };
                        op
                    })
                    .collect()
            })
            .collect();
        Plan {
            frames: 2 + rng.below(5) as usize,
            io_pages: 1 + rng.below(4) as usize,
            policy: policies[rng.below(policies.len() as u64) as usize],
            flusher: rng.below(2) == 0,
            readahead: rng.below(2) as usize,
            // Odd seeds: threads 0 and 1 share one sync handle, as an NBD connection's workers do.
            shared_handle: seed % 2 == 1,
            initial,
            rates: Rates {
                read: rate(&mut rng, &[0, 0, 20]),
                write: rate(&mut rng, &[0, 30, 100]),
                sync: rate(&mut rng, &[0, 0, 50, 150]),
                torn: 500,
            },
            threads,
        }
    }
}

/// Runs one logical thread's operations, recording what it saw.
fn run_thread(
    t: usize,
    ops: &[Op],
    cache: &PageCache,
    (h, handle): (usize, &SyncHandle),
    clock: &Clock,
    record: &std::sync::Mutex<Record>,
) {
    for op in ops {
        let inv = clock.tick();
        let len0 = cache.len();
        let mut events: Vec<(Range<usize>, Option<u8>, bool)> = Vec::new();
        let mut read: Option<(usize, Vec<u8>)> = None;
        let mut sync_ok: Option<bool> = None;
        let mut outcome = String::from("ok");
        let mut note = |r: Result<()>| {
            if let Err(e) = r {
                outcome = e.to_string();
            }
        };
        match op {
            Op::Read(r) => {
                let mut buf = vec![0u8; (r.end - r.start) as usize];
                if let Ok(n) = cache.read_at(&mut buf, r.start) {
                    buf.truncate(n);
                    read = Some((r.start as usize, buf));
                }
            }
            Op::Write(r, v) => {
                let ok = cache
                    .write_all_at(&vec![*v; (r.end - r.start) as usize], r.start)
                    .is_ok();
                events.push((r.start as usize..r.end as usize, Some(*v), ok));
            }
            Op::ReadGuard => {
                if let Ok(g) = cache.read_page(0) {
                    let first = g.to_vec();
                    thread::yield_now();
                    assert_eq!(
                        &g[..],
                        &first[..],
                        "thread {t}: a read guard's bytes changed"
                    );
                    read = Some((0, first));
                }
            }
            Op::WriteGuard(v) => match cache.write_page(0) {
                Ok(mut g) => {
                    g.fill(*v);
                    thread::yield_now();
                    drop(g);
                    events.push((0..PS, Some(*v), true));
                }
                Err(_) => events.push((0..PS, Some(*v), false)),
            },
            Op::ReadSlices => {
                if let Ok(gs) = cache.read_slices(&[(0, 16), (100, 8), (0, 4)]) {
                    let mut page = vec![0u8; 108];
                    page[..16].copy_from_slice(&gs[0]);
                    page[100..108].copy_from_slice(&gs[1]);
                    assert_eq!(
                        &gs[2][..],
                        &gs[0][..4],
                        "thread {t}: two guards of one page differ"
                    );
                    // Bytes 16..100 were not read: check only what was.
                    read = Some((0, page[..16].to_vec()));
                    let rest = page[100..108].to_vec();
                    record
                        .lock()
                        .unwrap()
                        .reads
                        .push((inv, u64::MAX, 100, rest));
                }
            }
            Op::Flush(r) => note(handle.flush_range(r.clone())),
            Op::Sync => {
                let r = handle.sync();
                sync_ok = Some(r.is_ok());
                note(r);
            }
            Op::Evict(r) => note(cache.evict_range(r.clone())),
            Op::Discard(r) => {
                cache.discard_range(r.clone()).expect("discard never fails");
                let len1 = cache.len();
                events.push((whole_pages(r, len0.min(len1)), None, true));
                // Pages the call may have counted in on a length seen before or after.
                events.push((cut(r, len0.max(len1)), None, false));
            }
            Op::Zero(r) => {
                let ok = cache.zero_range(r.clone()).is_ok();
                let len1 = cache.len();
                events.push((cut(r, len0.min(len1)), Some(0), ok));
                events.push((cut(r, len0.max(len1)), Some(0), false));
            }
            Op::Resize(n) => {
                let ok = cache.resize(*n).is_ok();
                events.push((*n as usize..MAXB, Some(0), ok));
            }
            Op::WillNeed(r) => {
                let _ = cache.advise(r.clone(), crate::readahead::Advice::WillNeed);
            }
        }
        let resp = clock.tick();
        let mut rec = record.lock().unwrap();
        rec.log
            .push(format!("{inv}..{resp} thread {t} {op:?} -> {outcome}"));
        for (bytes, value, certain) in events {
            rec.events.push(Event {
                inv,
                resp,
                bytes,
                value,
                certain,
            });
        }
        if let Some((at, bytes)) = read {
            rec.reads.push((inv, resp, at, bytes));
        }
        // ReadSlices' second piece was recorded with an open end: close it.
        for r in rec.reads.iter_mut().filter(|r| r.1 == u64::MAX) {
            r.1 = resp;
        }
        if let Some(ok) = sync_ok {
            rec.syncs.push(SyncRecord {
                handle: h,
                inv,
                resp,
                ok,
            });
        }
    }
}

/// Runs seed `seed` once under shuttle's random scheduler seeded with it; panics on a
/// violation.
fn run_seed(seed: u64) {
    let plan = Plan::new(seed);
    let mut config = shuttle::Config::new();
    config.max_steps = shuttle::MaxSteps::FailAfter(500_000);
    config.failure_persistence = shuttle::FailurePersistence::None;
    let scheduler = shuttle::scheduler::RandomScheduler::new_from_seed(seed, 1);
    let runner = shuttle::Runner::new(scheduler, config);
    runner.run(move || simulate(&plan, seed));
}

fn simulate(plan: &Plan, seed: u64) {
    let clock = Arc::new(Clock::default());
    let device = Arc::new(SimDevice {
        state: std::sync::Mutex::new(Device {
            written: plan.initial.clone(),
            durable: plan.initial.clone(),
            rng: Some(SplitMix64::new(seed)),
            ..Device::default()
        }),
        rates: plan.rates,
        clock: clock.clone(),
    });
    let cache = Arc::new(
        PageCache::new(
            device.clone(),
            CacheConfig::with_budget_pages(plan.frames)
                .page_size(PS)
                .policy(plan.policy)
                .io_bytes_max(plan.io_pages * PS)
                .background_writeback(plan.flusher)
                .throttle_wait_max(Duration::ZERO)
                .readahead_workers(plan.readahead)
                .readahead_bytes_max(4 * PS)
                .frame_wait_max(Duration::from_secs(3600)),
        )
        .expect("cache"),
    );
    let record = Arc::new(std::sync::Mutex::new(Record::default()));
    let initial_len = plan.initial.len();
    {
        let mut rec = record.lock().unwrap();
        for b in 0..MAXB {
            let v = if b < initial_len { plan.initial[b] } else { 0 };
            rec.events.push(Event {
                inv: 0,
                resp: 0,
                bytes: b..b + 1,
                value: Some(v),
                certain: true,
            });
        }
    }
    let sync_handles: Vec<Arc<SyncHandle>> = (0..plan.threads.len())
        .map(|_| Arc::new(cache.sync_handle()))
        .collect();
    let handles: Vec<_> = plan
        .threads
        .iter()
        .cloned()
        .enumerate()
        .map(|(t, ops)| {
            let (cache, clock, record) = (cache.clone(), clock.clone(), record.clone());
            let h = plan.handle_of(t);
            let handle = sync_handles[h].clone();
            thread::spawn(move || run_thread(t, &ops, &cache, (h, &handle), &clock, &record))
        })
        .collect();
    for h in handles {
        h.join().expect("a simulated thread panicked");
    }
    if let Err(e) = cache.check_invariants() {
        panic!("invariants: {e}");
    }
    assert_eq!(
        cache.stats().quarantined_frames,
        0,
        "a frame was quarantined"
    );
    drop(cache);
    let rec = record.lock().unwrap();
    let handle_of: Vec<usize> = (0..plan.threads.len()).map(|t| plan.handle_of(t)).collect();
    model::check(&rec, &device, &handle_of);
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn simulation_seeds() {
    let (first, count) = match env_u64("FOLIO_SIM_SEED") {
        Some(seed) => (seed, 1),
        None => (
            env_u64("FOLIO_SIM_FIRST").unwrap_or(0),
            env_u64("FOLIO_SIM_SEEDS").unwrap_or(1000),
        ),
    };
    let started = std::time::Instant::now();
    for seed in first..first + count {
        let result = std::panic::catch_unwind(|| run_seed(seed));
        if let Err(panic) = result {
            eprintln!(
                "simulation seed {seed} failed ({:?}); replay it with:\n  \
                 FOLIO_SIM_SEED={seed} cargo test -p folio-shuttle --lib sim -- --nocapture",
                Plan::new(seed)
            );
            std::panic::resume_unwind(panic);
        }
    }
    eprintln!(
        "simulation: {count} seeds from {first} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
