//! `folio image`: create an image, or copy one between a file and an object store.
//!
//! Owns: the `create`, `import` and `export` subcommands. Copies go straight to the backend a
//! whole chunk per I/O (no cache in between), several chunks in flight, all-zero chunks skipped
//! (absent chunks read as zeros; a file is written sparse), with a progress bar.
//!
//! Does not own: the image format or the store client (`folio-object`), opening specs
//! (`target.rs`).
//!
//! May block: on the store and the file, for as long as the copy takes.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use folio::backend::{FrameMut, IoWaiter, PageCacheBackend};
use folio::{CacheConfig, PageCache};
use folio_object::{Access, Manifest, ObjectStoreBackend, CHUNK_SIZE_DEFAULT};

use crate::target::{StoreArgs, Target};

type BoxError = Box<dyn std::error::Error>;

/// Chunk I/Os in flight during a copy (the backend bounds its own requests below this).
const COPY_IN_FLIGHT: usize = 8;

/// Create, import or export images.
#[derive(clap::Args, Debug)]
pub struct ImageArgs {
    #[command(subcommand)]
    command: ImageCommand,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(clap::Subcommand, Debug)]
enum ImageCommand {
    /// Create an all-zero image: `s3://BUCKET/PREFIX` (a manifest, no chunk) or a sparse file.
    Create {
        /// Where: `s3://BUCKET/PREFIX` or a file path.
        spec: String,
        /// Size (e.g. 10GiB).
        #[arg(long, value_parser = crate::units::parse_size)]
        size: u64,
        /// Chunk size of an `s3://` image (a multiple of 4 KiB).
        #[arg(long, default_value_t = CHUNK_SIZE_DEFAULT, value_parser = crate::units::parse_size)]
        chunk_size: u64,
    },
    /// Copy a raw file into a new `s3://` image of the same size.
    Import {
        /// The raw image file.
        file: PathBuf,
        /// The new image: `s3://BUCKET/PREFIX`.
        spec: String,
        /// Chunk size (a multiple of 4 KiB).
        #[arg(long, default_value_t = CHUNK_SIZE_DEFAULT, value_parser = crate::units::parse_size)]
        chunk_size: u64,
    },
    /// Copy an `s3://` image into a raw file (sparse where the image has no chunk).
    Export {
        /// The image: `s3://BUCKET/PREFIX`.
        spec: String,
        /// The file to write (created or truncated).
        file: PathBuf,
    },
}

fn s3(spec: &str) -> Result<folio_object::S3Location, BoxError> {
    match Target::parse(spec)? {
        Target::S3(loc) => Ok(loc),
        Target::File(_) => Err(format!("{spec} is not an s3://BUCKET/PREFIX image").into()),
    }
}

fn create_s3(
    store: &StoreArgs,
    spec: &str,
    size: u64,
    chunk_size: u64,
) -> Result<ObjectStoreBackend, BoxError> {
    let loc = s3(spec)?;
    let manifest = Manifest::new(size, chunk_size)?;
    let opts = store.open_options(Access::ReadWrite);
    Ok(ObjectStoreBackend::create(
        store.store(&loc)?,
        &loc.prefix,
        manifest,
        &opts,
    )?)
}

/// Runs `folio image ...`.
pub fn run(args: &ImageArgs) -> Result<(), BoxError> {
    match &args.command {
        ImageCommand::Create {
            spec,
            size,
            chunk_size,
        } => match Target::parse(spec)? {
            Target::File(path) => {
                let f = File::options().write(true).create_new(true).open(&path)?;
                f.set_len(*size)?;
                eprintln!("created {} ({size} bytes, sparse)", path.display());
                Ok(())
            }
            Target::S3(_) => {
                let b = create_s3(&args.store, spec, *size, *chunk_size)?;
                let m = b.manifest();
                b.close()?;
                eprintln!(
                    "created {spec}: {} bytes in {} chunks of {} bytes",
                    m.size,
                    m.chunks(),
                    m.chunk_size
                );
                Ok(())
            }
        },
        ImageCommand::Import {
            file,
            spec,
            chunk_size,
        } => {
            let src = File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
            let size = src.metadata()?.len();
            let b = create_s3(&args.store, spec, size, *chunk_size)?;
            copy_in(&src, &b)?;
            let stats = b.stats();
            b.close()?;
            eprintln!(
                "imported {size} bytes: {} PUTs ({} bytes), all-zero chunks skipped",
                stats.puts, stats.put_bytes
            );
            Ok(())
        }
        ImageCommand::Export { spec, file } => {
            let b = Arc::new(args.store.open_s3(&s3(spec)?, Access::ReadOnly)?);
            let dst = File::create(file).map_err(|e| format!("{}: {e}", file.display()))?;
            copy_out(b.clone(), &dst)?;
            let stats = b.stats();
            eprintln!(
                "exported {} bytes: {} GETs ({} bytes)",
                b.manifest().size,
                stats.gets,
                stats.get_bytes
            );
            Ok(())
        }
    }
}

fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

/// Waits for the oldest I/O in `window` once it is full (or for all with `drain`).
fn settle(
    window: &mut VecDeque<(IoWaiter, u64)>,
    drain: bool,
    bar: &indicatif::ProgressBar,
) -> folio::Result<()> {
    while window.len() >= COPY_IN_FLIGHT || (drain && !window.is_empty()) {
        let (w, bytes) = window.pop_front().expect("the window is not empty");
        w.wait()?;
        bar.inc(bytes);
    }
    Ok(())
}

/// Copies `src` into the image of `b` (of the same size), chunk by chunk.
fn copy_in(src: &File, b: &ObjectStoreBackend) -> Result<(), BoxError> {
    let m = b.manifest();
    let bar = progress(m.size, "import");
    let mut window = VecDeque::new();
    for n in 0..m.chunks() {
        let len = m.chunk_len(n);
        let mut frame = FrameMut::alloc(m.chunk_size as usize)?;
        src.read_exact_at(&mut frame.as_mut_slice()[..len as usize], n * m.chunk_size)?;
        if frame.as_slice().iter().all(|&b| b == 0) {
            bar.inc(len); // absent chunks read as zeros
            continue;
        }
        window.push_back((b.write_pages(n, vec![frame.freeze()])?, len));
        settle(&mut window, false, &bar)?;
    }
    settle(&mut window, true, &bar)?;
    b.sync()?;
    bar.finish();
    Ok(())
}

/// Copies the image of `b` into `dst` through a small page cache (a backend read hands its
/// buffers to the cache), one chunk per reader thread; zero chunks stay holes.
fn copy_out(b: Arc<ObjectStoreBackend>, dst: &File) -> Result<(), BoxError> {
    let m = b.manifest();
    dst.set_len(0)?;
    dst.set_len(m.size)?;
    let bar = progress(m.size, "export");
    let budget = (2 * COPY_IN_FLIGHT as u64 * m.chunk_size).max(16 << 20);
    let cache = PageCache::new(b.clone(), CacheConfig::new(budget).readahead_bytes_max(0))?;
    let next = AtomicU64::new(0);
    let copy = || -> Result<(), String> {
        let mut buf = vec![0u8; m.chunk_size as usize];
        // Bounded: each pass takes a new chunk number until they run out.
        loop {
            let n = next.fetch_add(1, Ordering::Relaxed);
            if n >= m.chunks() {
                return Ok(());
            }
            let len = m.chunk_len(n) as usize;
            let at = n * m.chunk_size;
            let fail = |e: &dyn std::fmt::Display| format!("chunk {n}: {e}");
            cache
                .read_exact_at(&mut buf[..len], at)
                .map_err(|e| fail(&e))?;
            if buf[..len].iter().any(|&x| x != 0) {
                dst.write_all_at(&buf[..len], at).map_err(|e| fail(&e))?;
            }
            cache
                .evict_range(at..at + len as u64)
                .map_err(|e| fail(&e))?;
            bar.inc(len as u64);
        }
    };
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..COPY_IN_FLIGHT).map(|_| scope.spawn(copy)).collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err("a copy thread panicked".into()))
            })
            .collect::<Result<Vec<()>, String>>()
    })?;
    cache.close()?;
    dst.sync_all()?;
    bar.finish();
    Ok(())
}
