//! `folio serve`: an NBD server over the page cache.

use std::path::PathBuf;
use std::sync::Arc;

use folio::{PageCache, PolicyKind};
use folio_nbd::{BlockDevice, CacheDevice, FileDevice, Listener, Server, ServerConfig};
use folio_object::Access;

/// Serve an image over NBD through a Folio page cache.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// The image to export: a raw file, or `s3://BUCKET/PREFIX` (an image in an S3-compatible
    /// store, made by `folio image create` or `import`; see --endpoint).
    pub image: PathBuf,
    /// Options of `s3://` images.
    #[command(flatten)]
    pub store: crate::target::StoreArgs,
    /// TCP address to listen on.
    #[arg(long, default_value = "127.0.0.1:10809", conflicts_with = "unix")]
    pub listen: String,
    /// Listen on a Unix socket at this path instead of TCP.
    #[arg(long)]
    pub unix: Option<PathBuf>,
    /// Page cache budget (e.g. 1GiB, 512MiB, 64k).
    #[arg(long, default_value = "1GiB", value_parser = crate::units::parse_size)]
    pub budget: u64,
    /// Refuse writes (EPERM) and open the image read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Name of the export (clients asking for the empty name get it too).
    #[arg(long, default_value = "folio")]
    pub export_name: String,
    /// Eviction policy of the cache.
    #[arg(long, default_value = "clock")]
    pub policy: PolicyKind,
    /// Worker threads executing requests (all connections share them).
    #[arg(long, default_value_t = 16)]
    pub workers: usize,
    /// Bypass the page cache and serve the file with plain positional I/O (a baseline).
    #[arg(long)]
    pub no_cache: bool,
    /// Log every connection at debug level and every request at trace level.
    #[arg(long, short)]
    pub verbose: bool,
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

fn open_device(args: &ServeArgs) -> Result<Arc<dyn BlockDevice>, Box<dyn std::error::Error>> {
    let spec = args.image.to_string_lossy();
    if args.no_cache {
        if crate::target::is_remote(&spec) {
            return Err("--no-cache serves files only".into());
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!args.read_only)
            .open(&args.image)
            .map_err(|e| format!("cannot open {}: {e}", args.image.display()))?;
        return Ok(Arc::new(FileDevice::new(file)?));
    }
    let access = if args.read_only {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    };
    let backend = crate::target::open_backend(&spec, &args.store, access)?;
    let config = crate::target::cache_config(&spec, args.budget).policy(args.policy);
    let cache = PageCache::new(backend, config)?;
    tracing::info!(
        budget = args.budget,
        pages = cache.capacity_pages(),
        policy = cache.policy_name(),
        "page cache ready"
    );
    Ok(Arc::new(CacheDevice::new(Arc::new(cache))))
}

/// Runs the server until SIGINT or SIGTERM, then finishes in-flight requests, flushes, syncs
/// and returns `Ok`.
pub fn run(args: &ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    init_logging(args.verbose);
    let dev = open_device(args)?;
    let listener = match &args.unix {
        Some(p) => Listener::unix(p)?,
        None => Listener::tcp(&args.listen)?,
    };
    let cfg = ServerConfig {
        export_name: args.export_name.clone(),
        read_only: args.read_only,
        workers: args.workers.max(1),
        ..ServerConfig::default()
    };
    let server = Server::new(dev, cfg);
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
