//! The `flush` scenario of `folio bench io`: write-back and `fdatasync` of freshly dirtied
//! pages at several depths, beside fio's 1 MiB writes with an end fsync at the same depths. See
//! `io/mod.rs`.

use std::time::Instant;

use folio::{CacheConfig, PageCache};

use super::harness::{fio, median, open_backend, print_rows, rec, Row};
use super::{IoArgs, PS};
use crate::bench::{drop_os_cache, record, BoxError, Image};

/// Fills `page` with random bytes (xorshift64 from `x`, which moves on).
fn random_page(page: &mut [u8], x: &mut u64) {
    for word in page.chunks_exact_mut(8) {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        word.copy_from_slice(&x.to_le_bytes());
    }
}

pub(super) fn flush(
    image: &Image,
    args: &IoArgs,
    with_fio: bool,
    out: &mut Vec<record::Row>,
) -> Result<(), BoxError> {
    let path = image.path();
    let len = image.len()?;
    let size = args.flush_size.min(len) / PS as u64 * PS as u64;
    if args.flush_depths.is_empty() || args.flush_depths.contains(&0) {
        return Err("--flush-depths must be positive".into());
    }
    for &depth in &args.flush_depths {
        let (mut folio_bw, mut fio_bw) = (vec![], vec![]);
        let mut backend_name = "";
        let depth_args = IoArgs {
            queue_depth: depth,
            ..args.clone()
        };
        let mut x = 0x005E_EDF1_u64 ^ depth as u64;
        for _ in 0..args.runs {
            if with_fio {
                drop_os_cache(path)?;
                let (bw, _) = fio(
                    path,
                    &[
                        "--rw=write",
                        "--bs=1M",
                        &format!("--iodepth={depth}"),
                        "--end_fsync=1",
                        &format!("--size={size}"),
                    ],
                    "write",
                )?;
                fio_bw.push(bw / 1048576.0);
            }
            drop_os_cache(path)?;
            // Room for every dirty page, plus slack; writes of at most 1 MiB, as fio's; one
            // flushing thread, so at most `depth` writes are in flight (with a queue depth of
            // 1 the cache would otherwise split a flush over `writeback_threads` threads).
            let opened = open_backend(path, &depth_args)?;
            backend_name = opened.name;
            let config = CacheConfig::new(size + (16 << 20))
                .readahead_bytes_max(args.readahead_max as usize)
                .io_bytes_max(1 << 20)
                .writeback_threads(1)
                .background_writeback(false);
            let cache = PageCache::new(opened.backend, config)?;
            // Random page contents, as fio's buffers (untimed).
            let mut page = vec![0u8; PS];
            let mut pos = 0u64;
            while pos < size {
                random_page(&mut page, &mut x);
                cache.write_all_at(&page, pos)?;
                pos += PS as u64;
            }
            // The timed sync must write every page: none may have been written back before.
            let before = cache.stats();
            if before.dirty_pages != size / PS as u64 || before.writeback_pages != 0 {
                return Err(format!(
                    "flush: {} of {} pages dirty before the timed sync ({} written back early)",
                    before.dirty_pages,
                    size / PS as u64,
                    before.writeback_pages
                )
                .into());
            }
            let started = Instant::now();
            cache.sync()?;
            let secs = started.elapsed().as_secs_f64();
            let after = cache.stats();
            if after.writeback_pages - before.writeback_pages != size / PS as u64 {
                return Err("flush: the sync did not write every page once".into());
            }
            folio_bw.push(size as f64 / secs / 1048576.0);
        }
        let workload = format!("flush {}MiB, {depth} in flight", size >> 20);
        out.push(
            rec(&workload, "folio", "MiB/s", &folio_bw)
                .extra(serde_json::json!({ "backend": backend_name })),
        );
        let fio_name = "fio write bs=1M + fsync";
        if with_fio {
            out.push(rec(&workload, fio_name, "MiB/s", &fio_bw));
        }
        let mut rows = vec![Row {
            what: format!("folio ({backend_name}) sync()"),
            value: median(folio_bw),
            unit: "MiB/s",
        }];
        if with_fio {
            rows.push(Row {
                what: fio_name.into(),
                value: median(fio_bw),
                unit: "MiB/s",
            });
        }
        let a = rows[0].what.clone();
        print_rows(
            &format!("flush of {} MiB, {depth} writes in flight", size >> 20),
            &rows,
            with_fio.then_some((a.as_str(), fio_name, 0.9)),
            args,
        );
    }
    Ok(())
}
