//! What an image spec names, and opening it: a file path, or `s3://BUCKET/PREFIX` (an image
//! in an S3-compatible object store, `folio-object`).
//!
//! Owns: the command-line options of object-store images ([`StoreArgs`], shared by `serve`,
//! `image` and the S3 benchmark), [`open_backend`] (a path or an `s3://` URL to a
//! `PageCacheBackend`), and the cache settings for an object-store backend ([`cache_config`]).
//!
//! Does not own: the NBD server (`serve.rs`), image management commands (`image.rs`).
//!
//! May block: opening an `s3://` image talks to the store (and may wait out a stale lease).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use folio::{CacheConfig, FileBackend, IoMode, PageCacheBackend};
use folio_object::{
    s3_store, Access, LeaseMode, ObjectStoreBackend, OpenOptions, RetryPolicy, S3Location,
    S3Options,
};

type BoxError = Box<dyn std::error::Error>;

/// Options of `s3://` images.
#[derive(clap::Args, Debug, Clone)]
pub struct StoreArgs {
    /// S3 endpoint URL for `s3://` images (e.g. http://127.0.0.1:8333 for SeaweedFS or MinIO);
    /// default: AWS_ENDPOINT_URL, else AWS. Credentials come from AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN); without them requests are anonymous.
    #[arg(long, global = true)]
    pub endpoint: Option<String>,
    /// S3 region (default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Time to live of the single-writer lease of an `s3://` image (renewed every third; at
    /// least three times --store-timeout).
    #[arg(long, global = true, default_value = "30s", value_parser = parse_duration)]
    pub lease_ttl: Duration,
    /// Take over the lease of an `s3://` image at once instead of waiting out its time to live
    /// (only when its writer is known to be gone).
    #[arg(long, global = true)]
    pub break_lease: bool,
    /// Attempts per store request (timeouts, 5xx, connection errors) before an I/O error.
    #[arg(long, global = true, default_value_t = 6)]
    pub store_attempts: u32,
    /// Time limit of one store request (at most a third of --lease-ttl: a writer's requests
    /// must end well inside its lease).
    #[arg(long, global = true, default_value = "10s", value_parser = parse_duration)]
    pub store_timeout: Duration,
}

/// Parses `500ms`, `30s`, `2m` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?}: use ms, s or m")),
    }
}

/// What an image spec names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A file or block device.
    File(PathBuf),
    /// An image in an S3-compatible store.
    S3(S3Location),
}

impl Target {
    /// `s3://BUCKET/PREFIX` or a path.
    pub fn parse(spec: &str) -> Result<Target, BoxError> {
        match S3Location::parse(spec) {
            Some(loc) => Ok(Target::S3(loc?)),
            None => Ok(Target::File(PathBuf::from(spec))),
        }
    }
}

impl StoreArgs {
    /// Open options for `access`.
    pub fn open_options(&self, access: Access) -> OpenOptions {
        let retry = RetryPolicy {
            attempts_max: self.store_attempts.max(1),
            attempt_timeout: self.store_timeout,
            ..RetryPolicy::default()
        };
        OpenOptions {
            access,
            retry,
            // Long enough for a rewrite in flight to end (its deadline follows the retries).
            close_wait: OpenOptions::close_wait_for(&retry),
            lease_ttl: self.lease_ttl,
            lease_mode: if self.break_lease {
                LeaseMode::Break
            } else {
                LeaseMode::Wait
            },
            ..OpenOptions::default()
        }
    }

    /// The store client of `loc`.
    pub fn store(
        &self,
        loc: &S3Location,
    ) -> Result<Arc<dyn folio_object::object_store::ObjectStore>, BoxError> {
        let opts = S3Options {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
        };
        Ok(s3_store(
            loc,
            &opts,
            &self.open_options(Access::ReadOnly).retry,
        )?)
    }

    /// Opens the `s3://` image at `loc`.
    pub fn open_s3(
        &self,
        loc: &S3Location,
        access: Access,
    ) -> Result<ObjectStoreBackend, BoxError> {
        let store = self.store(loc)?;
        Ok(ObjectStoreBackend::open(
            store,
            &loc.prefix,
            &self.open_options(access),
        )?)
    }
}

/// Opens the image `spec` names: a file (buffered positional I/O) or an `s3://` image.
pub fn open_backend(
    spec: &str,
    store: &StoreArgs,
    access: Access,
) -> Result<Arc<dyn PageCacheBackend>, BoxError> {
    match Target::parse(spec)? {
        Target::File(path) => {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(access == Access::ReadWrite)
                .open(&path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            Ok(Arc::new(FileBackend::from_file(file, IoMode::Buffered)?))
        }
        Target::S3(loc) => Ok(Arc::new(store.open_s3(&loc, access)?)),
    }
}

/// True if `spec` names an object-store image.
pub fn is_remote(spec: &str) -> bool {
    S3Location::parse(spec).is_some()
}

/// Cache settings for an image `spec` with a budget of `budget` bytes: 4 KiB pages, and for an
/// object store, readahead windows up to 8 MiB and 16 readahead threads, so a sequential reader
/// keeps several GETs in flight (a GET costs milliseconds; the engine grows the windows in
/// flight while its reader waits, and caps them at 1/16 and 1/8 of the cache).
pub fn cache_config(spec: &str, budget: u64) -> CacheConfig {
    let config = CacheConfig::new(budget).page_size(4096);
    if is_remote(spec) {
        config.readahead_bytes_max(8 << 20).readahead_workers(16)
    } else {
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_and_durations_parse() {
        assert_eq!(
            Target::parse("/tmp/a.img").unwrap(),
            Target::File("/tmp/a.img".into())
        );
        assert!(
            matches!(Target::parse("s3://bkt/a/b").unwrap(), Target::S3(l) if l.prefix == "a/b")
        );
        assert!(Target::parse("s3://x/a").is_err());
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("3h").is_err());
    }
}
