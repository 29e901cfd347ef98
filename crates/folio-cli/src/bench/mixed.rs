//! The mixed read/write workload of `folio bench`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use folio::PageCache;
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

use super::{progress, BenchArgs, BoxError, Workload};

/// What a timed run measured.
pub struct Report {
    pub ops: u64,
    pub seconds: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

/// Chooses the slot (in units of `io_size`) of each operation.
pub enum Picker {
    Zipf { dist: Zipf<f64>, slots: u64 },
    Uniform { slots: u64 },
    Seq { next: u64, slots: u64 },
}

impl Picker {
    pub fn new(
        workload: Workload,
        slots: u64,
        theta: f64,
        thread: usize,
        threads: usize,
    ) -> Result<Picker, BoxError> {
        Ok(match workload {
            Workload::Zipf => Picker::Zipf {
                dist: Zipf::new(slots as f64, theta).map_err(|e| format!("zipf: {e}"))?,
                slots,
            },
            Workload::Uniform => Picker::Uniform { slots },
            Workload::Seq => Picker::Seq {
                next: slots / threads as u64 * thread as u64,
                slots,
            },
        })
    }

    pub fn next(&mut self, rng: &mut SmallRng) -> u64 {
        match self {
            Picker::Zipf { dist, slots } => {
                let rank = dist.sample(rng) as u64 - 1;
                // Scatter the hot ranks over the image (an odd multiplier is a bijection mod 2^k
                // and close enough to one otherwise).
                rank.wrapping_mul(0x9E37_79B9_7F4A_7C15) % *slots
            }
            Picker::Uniform { slots } => rng.random_range(0..*slots),
            Picker::Seq { next, slots } => {
                let s = *next;
                *next = (s + 1) % *slots;
                s
            }
        }
    }
}

/// Runs `args.ops` operations over `args.threads` threads.
pub fn run(cache: &PageCache, args: &BenchArgs, len: u64) -> Result<Report, BoxError> {
    let slots = len / args.io_size as u64;
    let done = AtomicU64::new(0);
    let bar = progress(args.ops, "running", args.json);
    let per_thread = args.ops / args.threads as u64;
    // Each worker sends one message when it ends, so the timing stops when the last one does
    // (polling `is_finished` every 100 ms added up to 100 ms to every run).
    let (finished_tx, finished_rx) = std::sync::mpsc::channel::<()>();
    let started = Instant::now();
    let results: Vec<Result<Histogram<u64>, BoxError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..args.threads)
            .map(|t| {
                let done = &done;
                let finished = finished_tx.clone();
                scope.spawn(move || -> Result<Histogram<u64>, BoxError> {
                    // Dropped when the worker ends, however it ends.
                    let _finished = finished;
                    let mut rng = SmallRng::seed_from_u64(args.seed.wrapping_add(t as u64));
                    let mut picker =
                        Picker::new(args.workload, slots, args.zipf_theta, t, args.threads)?;
                    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
                    // Random contents, as fio's write buffers (a device or filesystem that
                    // compresses or skips zeros must not favour either side).
                    let mut buf = vec![0u8; args.io_size];
                    rng.fill(&mut buf[..]);
                    // Its own error cursor: a write-back failure reaches every syncing thread.
                    let syncer = cache.sync_handle();
                    for i in 0..per_thread {
                        let offset = picker.next(&mut rng) * args.io_size as u64;
                        let read = rng.random_bool(args.read_ratio);
                        let t0 = Instant::now();
                        if read {
                            cache.read_exact_at(&mut buf, offset)?;
                        } else {
                            // Each write differs from the last (a read may have left an
                            // image page in `buf`, which is random too).
                            let stamp = (i + 1).to_le_bytes();
                            let n = stamp.len().min(buf.len());
                            buf[..n].copy_from_slice(&stamp[..n]);
                            cache.write_all_at(&buf, offset)?;
                        }
                        if args.sync_every > 0 && (i + 1) % args.sync_every == 0 {
                            syncer.sync()?;
                        }
                        hist.saturating_record(t0.elapsed().as_nanos() as u64);
                        if i % 1024 == 1023 {
                            done.fetch_add(1024, Ordering::Relaxed);
                        }
                    }
                    Ok(hist)
                })
            })
            .collect();
        drop(finished_tx);
        // Disconnected once every worker's sender is dropped.
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            finished_rx.recv_timeout(Duration::from_millis(100))
        {
            bar.set_position(done.load(Ordering::Relaxed));
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a worker thread panicked".into()))
            })
            .collect()
    });
    if args.final_sync {
        cache.sync()?;
    }
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    for r in results {
        hist.add(r?)?;
    }
    Ok(Report {
        ops: per_thread * args.threads as u64,
        seconds,
        p50_us: hist.value_at_quantile(0.5) as f64 / 1000.0,
        p99_us: hist.value_at_quantile(0.99) as f64 / 1000.0,
        max_us: hist.max() as f64 / 1000.0,
    })
}
