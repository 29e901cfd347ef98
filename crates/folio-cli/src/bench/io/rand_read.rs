//! The `rand-read` scenario of `folio bench io`: every page once in random order, from one
//! thread with many reads in flight (beside fio's io_uring job at that depth) and from many
//! blocking threads (beside fio's psync jobs). See `io/mod.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::harness::{cache, fio, median, print_rows, rec, Row};
use super::{IoArgs, PS};
use crate::bench::{drop_os_cache, record, BoxError, Image};

/// A permutation of `0 .. n` (pages), deterministic.
fn shuffled(n: u64, seed: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n).collect();
    let mut x = seed | 1;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let j = (x % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

pub(super) fn rand_read(
    image: &Image,
    args: &IoArgs,
    with_fio: bool,
    out: &mut Vec<record::Row>,
) -> Result<(), BoxError> {
    let path = image.path();
    let len = image.len()?;
    let pages = len / PS as u64;
    let ops = args.ops.unwrap_or(pages).clamp(1, pages);
    let threads = args.threads;
    let depth = args.outstanding.max(1);
    let (mut folio_iops, mut fio_iops, mut ratio) = (vec![], vec![], vec![]);
    let (mut batched_iops, mut fio_psync_iops) = (vec![], vec![]);
    let mut backend_name = "";
    for run in 0..args.runs {
        if with_fio {
            drop_os_cache(path)?;
            let (_, iops) = fio(
                path,
                &[
                    "--rw=randread",
                    "--bs=4k",
                    &format!("--iodepth={depth}"),
                    "--readonly",
                    &format!("--number_ios={ops}"),
                    &format!("--size={len}"),
                ],
                "read",
            )?;
            fio_iops.push(iops);
            if threads > 0 {
                // Blocking reads from `threads` jobs, like Folio's blocking threads: each job
                // reads its own slice of the file, every page of it once in random order.
                let slice = len / threads as u64 / PS as u64 * PS as u64;
                let per_job = (ops / threads as u64).clamp(1, slice / PS as u64);
                drop_os_cache(path)?;
                let (_, iops) = fio(
                    path,
                    &[
                        "--rw=randread",
                        "--bs=4k",
                        "--ioengine=psync",
                        &format!("--numjobs={threads}"),
                        "--thread",
                        "--readonly",
                        &format!("--size={slice}"),
                        &format!("--offset_increment={slice}"),
                        &format!("--number_ios={per_job}"),
                    ],
                    "read",
                )?;
                fio_psync_iops.push(iops);
            }
        }
        drop_os_cache(path)?;
        let order = Arc::new(shuffled(pages, 0x9E37_79B9 + run as u64));
        if threads > 0 {
            let (cache, _) = cache(path, args, args.budget)?;
            let cache = Arc::new(cache);
            let next = Arc::new(AtomicU64::new(0));
            let started = Instant::now();
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let (cache, next, order) = (cache.clone(), next.clone(), order.clone());
                    std::thread::spawn(move || -> Result<(), folio::Error> {
                        let mut buf = vec![0u8; PS];
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= ops {
                                return Ok(());
                            }
                            cache.read_exact_at(&mut buf, order[i as usize] * PS as u64)?;
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().map_err(|_| "a reader panicked")??;
            }
            let secs = started.elapsed().as_secs_f64();
            folio_iops.push(ops as f64 / secs);
            drop(cache);
        }

        drop_os_cache(path)?;
        let batched_args = IoArgs {
            queue_depth: depth,
            ..args.clone()
        };
        let (one, name) = self::cache(path, &batched_args, args.budget)?;
        backend_name = name;
        let mut bufs = vec![vec![0u8; PS]; args.batch_reads.max(1)];
        let started = Instant::now();
        for chunk in order[..ops as usize].chunks(bufs.len()) {
            let mut batch: Vec<(u64, &mut [u8])> = chunk
                .iter()
                .zip(bufs.iter_mut())
                .map(|(&p, b)| (p * PS as u64, &mut b[..]))
                .collect();
            one.read_exact_many(&mut batch)?;
        }
        batched_iops.push(ops as f64 / started.elapsed().as_secs_f64());
        ratio.push(one.stats().read_bytes as f64 / (ops * PS as u64) as f64);
    }
    let one = format!("rand-read 4KiB, 1 thread, {depth} in flight");
    out.push(
        rec(&one, "folio", "IOPS", &batched_iops).extra(serde_json::json!({
            "backend": backend_name,
            "device_bytes_per_byte_returned": ratio.clone(),
            "reads_per_call": args.batch_reads,
        })),
    );
    let many = format!("rand-read 4KiB, {threads} threads blocking");
    if threads > 0 {
        out.push(rec(&many, "folio", "IOPS", &folio_iops));
    }
    if with_fio {
        out.push(rec(
            &one,
            &format!("fio randread io_uring iodepth={depth}"),
            "IOPS",
            &fio_iops,
        ));
        if threads > 0 {
            out.push(rec(
                &many,
                &format!("fio randread psync numjobs={threads}"),
                "IOPS",
                &fio_psync_iops,
            ));
        }
    }
    let mut rows = Vec::new();
    if threads > 0 {
        rows.push(Row {
            what: format!("folio ({backend_name}) {threads} threads"),
            value: median(folio_iops.clone()),
            unit: "IOPS",
        });
    }
    // The target's like-for-like: one thread keeping 32 reads outstanding, as fio's job does.
    let a = format!(
        "folio ({backend_name}) 1 thread, {} in flight",
        args.outstanding.max(1)
    );
    rows.push(Row {
        what: a.clone(),
        value: median(batched_iops.clone()),
        unit: "IOPS",
    });
    if with_fio {
        // Ratios within each run, fio's job just before Folio's, are steadier than the ratio
        // of medians on a host whose device speed drifts between runs.
        let per_run = |folio: &[f64], base: &[f64]| {
            median(folio.iter().zip(base).map(|(f, o)| f / o).collect())
        };
        if threads > 0 {
            rows.push(Row {
                what: format!("{threads} threads / fio psync, per-run ratios"),
                value: per_run(&folio_iops, &fio_psync_iops),
                unit: "",
            });
            rows.push(Row {
                what: format!("fio randread psync {threads} jobs"),
                value: median(fio_psync_iops),
                unit: "IOPS",
            });
        }
        rows.push(Row {
            what: "1 thread / fio, median of per-run ratios".into(),
            value: per_run(&batched_iops, &fio_iops),
            unit: "",
        });
        rows.push(Row {
            what: "fio randread 4k qd32 direct".into(),
            value: median(fio_iops),
            unit: "IOPS",
        });
    }
    rows.push(Row {
        what: "device bytes / bytes returned".into(),
        value: median(ratio),
        unit: "",
    });
    print_rows(
        "rand-read",
        &rows,
        with_fio.then_some((a.as_str(), "fio randread 4k qd32 direct", 0.9)),
        args,
    );
    Ok(())
}
