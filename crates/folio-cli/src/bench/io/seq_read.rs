//! The `seq-read` scenario of `folio bench io`: one thread reads the whole image in 4 KiB
//! `read_at` calls, beside fio's 1 MiB reads at depth 8 and 4 KiB `pread`s through the OS page
//! cache (with and without `FADV_SEQUENTIAL`). See `io/mod.rs`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use super::harness::{cache, fio, median, print_rows, rec, Row};
use super::{IoArgs, PS};
use crate::bench::{drop_os_cache, record, BoxError, Image};

/// MiB/s of reading `path` whole in 4 KiB `pread`s through the OS page cache, after `advice`.
fn os_sequential(
    path: &Path,
    len: u64,
    advice: Option<rustix::fs::Advice>,
) -> Result<f64, BoxError> {
    let f = File::open(path)?;
    if let Some(advice) = advice {
        rustix::fs::fadvise(&f, 0, None, advice)?;
    }
    let secs = read_whole(len, |buf, pos| f.read_at(buf, pos))?;
    Ok(len as f64 / secs / 1048576.0)
}

/// Seconds to read `len` bytes from offset 0 in 4 KiB `read_at` calls (stopping early at EOF).
fn read_whole<E: Into<BoxError>>(
    len: u64,
    mut read_at: impl FnMut(&mut [u8], u64) -> Result<usize, E>,
) -> Result<f64, BoxError> {
    let mut buf = vec![0u8; PS];
    let started = Instant::now();
    let mut pos = 0u64;
    while pos < len {
        let n = read_at(&mut buf, pos).map_err(Into::into)?;
        if n == 0 {
            break;
        }
        pos += n as u64;
    }
    Ok(started.elapsed().as_secs_f64())
}

const SEQ_WORKLOAD: &str = "seq-read 4KiB reads, 1 thread";

pub(super) fn seq_read(
    image: &Image,
    args: &IoArgs,
    with_fio: bool,
    out: &mut Vec<record::Row>,
) -> Result<(), BoxError> {
    let path = image.path();
    let len = image.len()?;
    let (mut folio_bw, mut os_bw, mut fio_bw, mut overhead) = (vec![], vec![], vec![], vec![]);
    let mut os_seq_bw = vec![];
    let mut backend_name = "";
    for _ in 0..args.runs {
        if with_fio {
            drop_os_cache(path)?;
            let (bw, _) = fio(
                path,
                &[
                    "--rw=read",
                    "--bs=1M",
                    "--iodepth=8",
                    "--readonly",
                    &format!("--size={len}"),
                ],
                "read",
            )?;
            fio_bw.push(bw / 1048576.0);
            drop_os_cache(path)?;
            os_bw.push(os_sequential(path, len, None)?);
            drop_os_cache(path)?;
            os_seq_bw.push(os_sequential(
                path,
                len,
                Some(rustix::fs::Advice::Sequential),
            )?);
        }
        drop_os_cache(path)?;
        let (cache, name) = cache(path, args, args.budget)?;
        backend_name = name;
        let secs = read_whole(len, |buf, pos| cache.read_at(buf, pos))?;
        folio_bw.push(len as f64 / secs / 1048576.0);
        overhead.push(cache.stats().read_bytes as f64 / len as f64);
        drop(cache);
    }
    out.push(
        rec(SEQ_WORKLOAD, "folio", "MiB/s", &folio_bw).extra(serde_json::json!({
            "backend": backend_name,
            "device_bytes_per_byte_returned": overhead.clone(),
        })),
    );
    if with_fio {
        out.push(rec(
            SEQ_WORKLOAD,
            "fio read bs=1M iodepth=8",
            "MiB/s",
            &fio_bw,
        ));
        out.push(rec(
            SEQ_WORKLOAD,
            "OS page cache pread 4KiB",
            "MiB/s",
            &os_bw,
        ));
        out.push(rec(
            SEQ_WORKLOAD,
            "OS page cache pread 4KiB + FADV_SEQUENTIAL",
            "MiB/s",
            &os_seq_bw,
        ));
    }
    let mut rows = vec![Row {
        what: format!("folio ({backend_name}) 4K read_at"),
        value: median(folio_bw),
        unit: "MiB/s",
    }];
    if with_fio {
        rows.push(Row {
            what: "fio read 1M qd8 direct".into(),
            value: median(fio_bw),
            unit: "MiB/s",
        });
        rows.push(Row {
            what: "OS page cache 4K pread".into(),
            value: median(os_bw),
            unit: "MiB/s",
        });
        rows.push(Row {
            what: "OS page cache 4K pread, FADV_SEQ".into(),
            value: median(os_seq_bw),
            unit: "MiB/s",
        });
    }
    rows.push(Row {
        what: "device bytes / bytes returned".into(),
        value: median(overhead),
        unit: "",
    });
    let a = rows[0].what.clone();
    print_rows(
        "seq-read",
        &rows,
        with_fio.then_some((a.as_str(), "fio read 1M qd8 direct", 0.9)),
        args,
    );
    if with_fio && !args.json {
        for (i, what) in [(2, "OS page cache"), (3, "OS page cache, FADV_SEQ")] {
            let f = rows[0].value / rows[i].value;
            println!("  ratio folio / {what}: {f:.2} (target >= 1.00)");
        }
    }
    Ok(())
}
