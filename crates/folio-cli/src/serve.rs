//! `folio serve`: an NBD server over the page cache.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use folio::{FileBackend, IoMode, PageCache, PageCacheBackend, PolicyKind, UringBackend};
use folio_nbd::{
    check_distinct_images, load_tls, lock_image, BlockDevice, CacheDevice, Export, FileDevice,
    ImageAccess, ImageLockError, Listener, Server, ServerConfig, TlsMode,
};
use folio_object::Access;

/// Serve images over NBD through a Folio page cache.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// The image to export, named by --export-name: a raw file or block device, or
    /// `s3://BUCKET/PREFIX` (an image in an S3-compatible store, made by `folio image create` or
    /// `import`; see --endpoint). Optional when --export is given.
    #[arg(required_unless_present = "export")]
    pub image: Option<PathBuf>,
    /// Another export, NAME=PATH (repeatable; PATH as IMAGE). Each export has its own page cache
    /// of --budget.
    #[arg(long = "export", value_name = "NAME=PATH")]
    pub export: Vec<String>,
    /// Options of `s3://` images.
    #[command(flatten)]
    pub store: crate::target::StoreArgs,
    /// TCP address to listen on.
    #[arg(long, default_value = "127.0.0.1:10809", conflicts_with = "unix")]
    pub listen: String,
    /// Listen on a Unix socket at this path (created with mode 0600) instead of TCP.
    #[arg(long)]
    pub unix: Option<PathBuf>,
    /// Page cache budget per export (e.g. 1GiB, 512MiB, 64k).
    #[arg(long, default_value = "1GiB", value_parser = crate::units::parse_size)]
    pub budget: u64,
    /// Refuse writes (EPERM) and open the images read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Name of the export given as IMAGE (clients asking for the empty name get the first
    /// export).
    #[arg(long, default_value = "folio")]
    pub export_name: String,
    /// Eviction policy of the cache.
    #[arg(long, default_value = "clock")]
    pub policy: PolicyKind,
    /// Worker threads for misses, flushes and zeroing (all connections share them; hits are
    /// answered on each connection's own thread). Default: 16 per core, 32 to 256.
    #[arg(long)]
    pub workers: Option<usize>,
    /// How the image is read and written: `direct` (O_DIRECT through io_uring where the kernel
    /// allows it, so bytes are cached once, by Folio) or `buffered` (through the OS page cache).
    #[arg(long, value_enum, default_value_t = ImageIo::Direct)]
    pub io: ImageIo,
    /// Bypass the page cache and serve the file with plain positional I/O (a baseline).
    #[arg(long)]
    pub no_cache: bool,
    /// Offer TLS (`allow`) or require it (`require`); needs --tls-cert and --tls-key.
    #[arg(long, value_enum, default_value_t = TlsArg::Off)]
    pub tls: TlsArg,
    /// PEM certificate chain (leaf first) for TLS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The whole handshake must finish within this many seconds.
    #[arg(long, default_value_t = 10.0)]
    pub handshake_deadline_s: f64,
    /// Close connections with nothing in flight idle for this many seconds (0: never).
    #[arg(long, default_value_t = 0.0)]
    pub idle_timeout_s: f64,
    /// Connections served at once.
    #[arg(long, default_value_t = 64)]
    pub connections_max: usize,
    /// Connections from one address.
    #[arg(long, default_value_t = 16)]
    pub connections_per_address_max: usize,
    /// Seconds connections get to finish after SIGTERM before they are closed by force.
    #[arg(long, default_value_t = 10.0)]
    pub shutdown_grace_s: f64,
    /// Log every connection at debug level and every request at trace level.
    #[arg(long, short)]
    pub verbose: bool,
}

/// How an image is opened.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageIo {
    /// O_DIRECT through io_uring (positional I/O where io_uring is not allowed).
    Direct,
    /// Through the OS page cache.
    Buffered,
}

/// `--tls`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsArg {
    /// No TLS.
    Off,
    /// TLS offered, plain text allowed.
    Allow,
    /// TLS required before any export is shown.
    Require,
}

fn init_logging(verbose: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if verbose {
        "folio_nbd=trace,folio=debug,info"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_env("FOLIO_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// How `--read-only` opens and locks images.
fn access(read_only: bool) -> ImageAccess {
    if read_only {
        ImageAccess::ReadOnly
    } else {
        ImageAccess::ReadWrite
    }
}

/// Opens an image (file or block device) as a page-cache backend: O_DIRECT through io_uring
/// by default, falling back (with a warning) to positional I/O, and to buffered I/O where the
/// file system refuses O_DIRECT (tmpfs). The one place a cached image is opened; it is locked
/// (`folio_nbd::image_lock`: another server over it is refused) for as long as the backend
/// keeps it open.
fn open_image(
    path: &Path,
    read_only: bool,
    io: ImageIo,
) -> Result<Arc<dyn PageCacheBackend>, Box<dyn std::error::Error>> {
    use rustix::fs::{Mode, OFlags};
    let open = |direct: bool| {
        let mut flags = OFlags::CLOEXEC;
        flags |= if read_only {
            OFlags::RDONLY
        } else {
            OFlags::RDWR
        };
        if direct {
            flags |= OFlags::DIRECT;
        }
        rustix::fs::open(path, flags, Mode::empty()).map(std::fs::File::from)
    };
    let file = match io {
        ImageIo::Direct => match open(true) {
            Ok(f) => Some(f),
            Err(rustix::io::Errno::INVAL) => {
                tracing::warn!(image = %path.display(), "O_DIRECT refused by the file system; using buffered I/O");
                None
            }
            Err(e) => return Err(format!("cannot open {}: {e}", path.display()).into()),
        },
        ImageIo::Buffered => None,
    };
    let Some(file) = file else {
        let file = open(false).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        lock_image(&file, path, access(read_only))?;
        return Ok(Arc::new(FileBackend::from_file(file, IoMode::Buffered)?));
    };
    lock_image(&file, path, access(read_only))?;
    let backend = FileBackend::from_file(file, IoMode::Direct)?;
    match folio::backend::uring_support() {
        Ok(()) => Ok(Arc::new(UringBackend::from_file_backend(backend, 128)?)),
        Err(why) => {
            tracing::warn!(why, "io_uring not available; using positional O_DIRECT I/O");
            Ok(Arc::new(backend))
        }
    }
}

/// The device for one export: a file or block device (see [`open_image`]) or an `s3://` image
/// (`crate::target`), through a page cache of `--budget`.
fn open_device(
    args: &ServeArgs,
    path: &Path,
) -> Result<Arc<dyn BlockDevice>, Box<dyn std::error::Error>> {
    let spec = path.to_string_lossy();
    let remote = crate::target::is_remote(&spec);
    if args.no_cache {
        if remote {
            return Err("--no-cache serves files only".into());
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!args.read_only)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        lock_image(&file, path, access(args.read_only))?;
        return Ok(Arc::new(FileDevice::new(file)?));
    }
    let backend = if remote {
        let access = if args.read_only {
            Access::ReadOnly
        } else {
            Access::ReadWrite
        };
        crate::target::open_backend(&spec, &args.store, access)?
    } else {
        open_image(path, args.read_only, args.io)?
    };
    let config = crate::target::cache_config(&spec, args.budget).policy(args.policy);
    let cache = PageCache::new(backend, config)?;
    tracing::info!(
        image = %path.display(),
        budget = args.budget,
        pages = cache.capacity_pages(),
        policy = cache.policy_name(),
        "page cache ready"
    );
    Ok(Arc::new(CacheDevice::new(Arc::new(cache))))
}

/// The exports: IMAGE as --export-name, then every --export NAME=PATH.
fn exports(args: &ServeArgs) -> Result<Vec<Export>, Box<dyn std::error::Error>> {
    let mut named: Vec<(String, PathBuf)> = Vec::new();
    if let Some(image) = &args.image {
        named.push((args.export_name.clone(), image.clone()));
    }
    for e in &args.export {
        let Some((name, path)) = e.split_once('=') else {
            return Err(format!("--export {e:?}: expected NAME=PATH").into());
        };
        named.push((name.to_string(), PathBuf::from(path)));
    }
    // One image behind two exports would be two caches over one file (the second's lock
    // would refuse it too, but as "in use"; say what is wrong).
    check_distinct_images(named.iter().map(|(n, p)| (n.as_str(), p.as_path())))?;
    for (i, (name, path)) in named.iter().enumerate() {
        let spec = path.to_string_lossy();
        if !crate::target::is_remote(&spec) {
            continue;
        }
        let spec = spec.trim_end_matches('/');
        if let Some((first, _)) = named[..i]
            .iter()
            .find(|(_, p)| p.to_string_lossy().trim_end_matches('/') == spec)
        {
            return Err(ImageLockError::ExportedTwice {
                path: path.clone(),
                first: first.clone(),
                second: name.clone(),
            }
            .into());
        }
    }
    named
        .into_iter()
        .map(|(name, path)| {
            Ok(Export {
                dev: open_device(args, &path)?,
                description: path.display().to_string(),
                name,
                read_only: args.read_only,
            })
        })
        .collect()
}

fn seconds(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, 1e9))
}

/// Runs the server until SIGINT or SIGTERM, then finishes in-flight requests, flushes, syncs
/// and returns `Ok`. A final flush that still fails after its retries (a store or disk that
/// stays down) returns the error naming each export whose acknowledged writes were not written
/// and how many bytes ([`folio_nbd::NotFlushed`]): `folio` exits with status 1 and prints it.
/// A second signal while the server drains or retries exits at once (status 130), unflushed.
pub fn run(args: &ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    init_logging(args.verbose);
    let exports = exports(args)?;
    // Socket activation first: systemd (or a test) hands the listening socket over as fd 3.
    let listener = match Listener::from_systemd()? {
        Some(l) => l,
        None => match &args.unix {
            Some(p) => Listener::unix(p)?,
            None => Listener::tcp(&args.listen)?,
        },
    };
    let defaults = ServerConfig::default();
    let cfg = ServerConfig {
        read_only: args.read_only,
        workers: args.workers.unwrap_or(defaults.workers).max(1),
        handshake_deadline: seconds(args.handshake_deadline_s),
        idle_timeout: (args.idle_timeout_s > 0.0).then(|| seconds(args.idle_timeout_s)),
        connections_max: args.connections_max.max(1),
        connections_per_address_max: args.connections_per_address_max.max(1),
        shutdown_grace: seconds(args.shutdown_grace_s),
        tls: match args.tls {
            TlsArg::Off => TlsMode::Off,
            TlsArg::Allow => TlsMode::Allow,
            TlsArg::Require => TlsMode::Require,
        },
        ..defaults
    };
    let mut server = Server::with_exports(exports, cfg)?;
    match (&args.tls_cert, &args.tls_key, args.tls) {
        (Some(cert), Some(key), _) => server = server.with_tls(load_tls(cert, key)?),
        (_, _, TlsArg::Off) => {}
        _ => return Err("--tls allow|require needs --tls-cert and --tls-key".into()),
    }
    // signal-hook: registering handlers is unsafe in general; signal-hook's iterator does the
    // async-signal-safe part (a self-pipe) and hands signals to an ordinary thread, where
    // starting the shutdown (which takes locks and connects a socket) is allowed.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    let signal_handle = signals.handle();
    let stop = server.shutdown_handle();
    let signal_thread = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if stop.is_stopping() {
                    // A second signal while draining: the user insists.
                    tracing::warn!(signal = sig, "second signal; exiting without a final flush");
                    std::process::exit(130);
                }
                tracing::info!(signal = sig, "signal received; shutting down");
                stop.shutdown();
            }
        })?;
    let served = server.serve(listener);
    signal_handle.close();
    let _ = signal_thread.join();
    served?;
    Ok(())
}
