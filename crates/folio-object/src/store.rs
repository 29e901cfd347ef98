//! Requests to the store: each one retried (`retry.rs`) and counted.
//!
//! Owns: the request vocabulary the backend uses (get a range or a whole object with its
//! version and checksum, conditional put, delete, list), the per-image request and byte
//! counters ([`StoreStats`]), and the CRC32C stored with every chunk.
//!
//! Does not own: what a chunk or a lease means (`chunk.rs`, `lease.rs`).
//!
//! May block: every function is async and awaits the store (on the backend's runtime).

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload, UpdateVersion,
};

use crate::layout::CRC_METADATA_KEY;
use crate::retry::{retry, Failed, RetryPolicy};

/// Requests made to the store and bytes moved, since the backend was opened. Every attempt
/// counts (a retried GET is two requests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// GET requests (ranged or whole).
    pub gets: u64,
    /// Bytes received by GETs.
    pub get_bytes: u64,
    /// PUT requests.
    pub puts: u64,
    /// Bytes sent by PUTs.
    pub put_bytes: u64,
    /// DELETE requests.
    pub deletes: u64,
    /// LIST and HEAD requests.
    pub lists: u64,
}

impl StoreStats {
    /// All requests.
    pub fn requests(&self) -> u64 {
        self.gets + self.puts + self.deletes + self.lists
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    gets: AtomicU64,
    get_bytes: AtomicU64,
    puts: AtomicU64,
    put_bytes: AtomicU64,
    deletes: AtomicU64,
    lists: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> StoreStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StoreStats {
            gets: l(&self.gets),
            get_bytes: l(&self.get_bytes),
            puts: l(&self.puts),
            put_bytes: l(&self.put_bytes),
            deletes: l(&self.deletes),
            lists: l(&self.lists),
        }
    }
}

fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

/// An object's version as the store names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Version {
    /// The ETag, quotes included, as the store returns it.
    pub(crate) e_tag: String,
    /// The version id of a versioned bucket.
    pub(crate) version: Option<String>,
    /// Object length in bytes.
    pub(crate) size: u64,
}

impl Version {
    pub(crate) fn from_meta(meta: &ObjectMeta) -> Option<Version> {
        Some(Version {
            e_tag: meta.e_tag.clone()?,
            version: meta.version.clone(),
            size: meta.size,
        })
    }

    pub(crate) fn update(&self) -> UpdateVersion {
        UpdateVersion {
            e_tag: Some(self.e_tag.clone()),
            version: self.version.clone(),
        }
    }
}

/// The body of a GET with what came with it.
pub(crate) struct Got {
    pub(crate) bytes: Bytes,
    pub(crate) version: Option<Version>,
    /// The CRC32C stored with the object, if any.
    pub(crate) crc: Option<u32>,
}

/// The checksum stored with each chunk (CRC32C, hardware-accelerated).
pub(crate) fn crc32c(bytes: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, bytes) as u32
}

fn stored_crc(attributes: &Attributes) -> Option<u32> {
    let v = attributes.get(&Attribute::Metadata(CRC_METADATA_KEY.into()))?;
    u32::from_str_radix(v.as_ref(), 16).ok()
}

/// A store and the policy and counters its requests go through.
pub(crate) struct Requests {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) policy: RetryPolicy,
    pub(crate) counters: Counters,
}

impl Requests {
    /// GETs `range` of `key` (all of it if `None`), only if its version is still `if_match`.
    pub(crate) async fn get(
        &self,
        key: &Path,
        range: Option<Range<u64>>,
        if_match: Option<&str>,
    ) -> Result<Got, Failed> {
        retry(&self.policy, "GET", key.as_ref(), || async {
            add(&self.counters.gets, 1);
            let opts = GetOptions::new()
                .with_range(range.clone().map(GetRange::Bounded))
                .with_if_match(if_match);
            let r = self.store.get_opts(key, opts).await?;
            let version = Version::from_meta(&r.meta);
            let crc = stored_crc(&r.attributes);
            let bytes = r.bytes().await?;
            add(&self.counters.get_bytes, bytes.len() as u64);
            Ok(Got {
                bytes,
                version,
                crc,
            })
        })
        .await
    }

    /// The version and stored CRC of `key`, without its body.
    pub(crate) async fn head(&self, key: &Path) -> Result<(Option<Version>, Option<u32>), Failed> {
        retry(&self.policy, "HEAD", key.as_ref(), || async {
            add(&self.counters.lists, 1);
            let r = self
                .store
                .get_opts(key, GetOptions::new().with_head(true))
                .await?;
            Ok((Version::from_meta(&r.meta), stored_crc(&r.attributes)))
        })
        .await
    }

    /// PUTs `body` to `key` in `mode`, storing `crc` with it if given. Returns the new version.
    pub(crate) async fn put(
        &self,
        key: &Path,
        body: Bytes,
        mode: PutMode,
        crc: Option<u32>,
    ) -> Result<Version, Failed> {
        let size = body.len() as u64;
        retry(&self.policy, "PUT", key.as_ref(), || async {
            add(&self.counters.puts, 1);
            add(&self.counters.put_bytes, size);
            let mut attributes = Attributes::new();
            if let Some(c) = crc {
                attributes.insert(
                    Attribute::Metadata(CRC_METADATA_KEY.into()),
                    format!("{c:08x}").into(),
                );
            }
            let opts = PutOptions {
                mode: mode.clone(),
                attributes,
                ..PutOptions::default()
            };
            let r = self
                .store
                .put_opts(key, PutPayload::from(body.clone()), opts)
                .await?;
            Ok(Version {
                e_tag: r.e_tag.unwrap_or_default(),
                version: r.version,
                size,
            })
        })
        .await
    }

    /// DELETEs `key` (deleting a missing object succeeds).
    pub(crate) async fn delete(&self, key: &Path) -> Result<(), Failed> {
        let r = retry(&self.policy, "DELETE", key.as_ref(), || async {
            add(&self.counters.deletes, 1);
            self.store.delete(key).await
        })
        .await;
        match r {
            Err(Failed::Answer {
                error: object_store::Error::NotFound { .. },
                ..
            }) => Ok(()),
            r => r,
        }
    }

    /// Every object under `prefix` (the whole listing is retried if a page fails).
    pub(crate) async fn list(&self, prefix: &Path) -> Result<Vec<ObjectMeta>, Failed> {
        retry(&self.policy, "LIST", prefix.as_ref(), || async {
            add(&self.counters.lists, 1);
            let pages = &self.counters.lists;
            let mut out = Vec::new();
            let mut stream = self.store.list(Some(prefix));
            while let Some(meta) = stream.try_next().await? {
                out.push(meta);
                if out.len() % 1000 == 0 {
                    add(pages, 1); // S3 lists 1,000 keys a request
                }
            }
            Ok(out)
        })
        .await
    }
}
