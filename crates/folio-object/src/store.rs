//! Requests to the store: each one retried and gated (`retry.rs`, `fence.rs`) and counted.
//!
//! Owns: the request vocabulary the backend uses (get a range, a suffix or a whole object with
//! its version, conditional put, delete, a streamed list), the per-image request and byte
//! counters ([`StoreStats`]), the CRC32C function, and waiting until every request of ours that
//! changed the store without an answer can no longer take effect ([`Requests::settle`]).
//!
//! Does not own: what a chunk or a lease means (`chunk.rs`, `rewrite.rs`, `lease.rs`).
//!
//! May block: every function is async and awaits the store (on the backend's runtime).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    UpdateVersion,
};

use crate::error::{ObjResult, ObjectError};
use crate::fence::Clock;
use crate::health::Health;
use crate::retry::{transient, Failed, Gate, Retrier, RetryPolicy, Sent};

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
    /// The object's version (its `size` is the whole object's, also for a ranged GET).
    pub(crate) version: Option<Version>,
}

/// What a streamed GET ([`Requests::get_into`]) returns: the body went to its sink.
pub(crate) struct Streamed {
    /// Bytes of body received (by the attempt that succeeded).
    pub(crate) len: u64,
    /// The object's version (its `size` is the whole object's, also for a ranged GET).
    pub(crate) version: Option<Version>,
}

/// The checksum stored with each chunk (CRC32C, hardware-accelerated).
pub(crate) fn crc32c(bytes: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, bytes) as u32
}

/// A store and what its requests go through.
pub(crate) struct Requests {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) policy: RetryPolicy,
    pub(crate) counters: Counters,
    pub(crate) clock: Clock,
    /// Until when (ms on `clock`) a request of ours that changed the store without an answer
    /// may still take effect.
    settle_by_ms: AtomicU64,
    /// Whether the store is known down (`health.rs`).
    pub(crate) health: Health,
}

impl Requests {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, policy: RetryPolicy, clock: Clock) -> Requests {
        Requests {
            store,
            policy,
            counters: Counters::default(),
            clock,
            settle_by_ms: AtomicU64::new(0),
            health: Health::default(),
        }
    }

    fn retrier(&self, mutating: bool) -> Retrier<'_> {
        Retrier {
            policy: &self.policy,
            clock: self.clock,
            settle_by_ms: mutating.then_some(&self.settle_by_ms),
            health: &self.health,
        }
    }

    /// The deadline of a write that starts at `start_ms` (on `clock`; a chunk rewrite starts
    /// when it got its PUT slot): two retry budgets later, so a rewrite may fetch its chunk and
    /// PUT it, each with every retry (`retry.rs`).
    pub(crate) fn deadline_ms(&self, start_ms: u64) -> u64 {
        start_ms.saturating_add(2 * self.policy.budget().as_millis() as u64)
    }

    /// The deadline of a write that starts now.
    pub(crate) fn deadline_from_now_ms(&self) -> u64 {
        self.deadline_ms(self.clock.now_ms())
    }

    /// Waits until no request of ours that changed the store without an answer can still take
    /// effect (at most one attempt timeout).
    pub(crate) async fn settle(&self) {
        let until = self.settle_by_ms.load(Ordering::Acquire);
        let now = self.clock.now_ms();
        if until > now {
            tracing::debug!(
                wait_ms = until - now,
                "waiting for unanswered requests to settle"
            );
            tokio::time::sleep(Duration::from_millis(until - now)).await;
        }
    }

    /// GETs `range` of `key` (all of it if `None`), only if its version is still `if_match`.
    pub(crate) async fn get(
        &self,
        key: &Path,
        range: Option<GetRange>,
        if_match: Option<&str>,
        gate: Gate<'_>,
    ) -> Result<Got, Failed> {
        let r = self.retrier(false);
        let sent = r
            .run(gate, "GET", key.as_ref(), || async {
                let (r, version) = self.start_get(key, range.clone(), if_match).await?;
                let bytes = r.bytes().await?;
                add(&self.counters.get_bytes, bytes.len() as u64);
                Ok(Got { bytes, version })
            })
            .await?;
        Ok(sent.value)
    }

    /// As [`get`](Self::get), but the body goes to `sink` piece by piece as it arrives (each
    /// piece with its offset in the body), never gathered into one buffer: for reads into the
    /// cache's frames, which saves a copy of every byte and a buffer of the whole body per GET
    /// in flight. An attempt that fails part-way is made again from the start, so the sink sees
    /// offset 0 again and must start over; only the attempt that succeeds counts.
    pub(crate) async fn get_into(
        &self,
        key: &Path,
        range: Option<GetRange>,
        if_match: Option<&str>,
        gate: Gate<'_>,
        sink: &(impl Fn(u64, &[u8]) + Sync),
    ) -> Result<Streamed, Failed> {
        let r = self.retrier(false);
        let sent = r
            .run(gate, "GET", key.as_ref(), || async {
                let (r, version) = self.start_get(key, range.clone(), if_match).await?;
                let mut body = r.into_stream();
                let mut len = 0u64;
                // Bounded by the body's length: each piece is a part of it.
                while let Some(piece) = body.next().await {
                    let piece = piece?;
                    sink(len, &piece);
                    len += piece.len() as u64;
                    add(&self.counters.get_bytes, piece.len() as u64);
                }
                Ok(Streamed { len, version })
            })
            .await?;
        Ok(sent.value)
    }

    /// One attempt of a GET, up to its headers: the answer (its body still to come) and the
    /// object's version.
    async fn start_get(
        &self,
        key: &Path,
        range: Option<GetRange>,
        if_match: Option<&str>,
    ) -> object_store::Result<(object_store::GetResult, Option<Version>)> {
        add(&self.counters.gets, 1);
        let opts = GetOptions::new().with_range(range).with_if_match(if_match);
        let r = self.store.get_opts(key, opts).await?;
        let version = Version::from_meta(&r.meta);
        Ok((r, version))
    }

    /// The version of `key`, without its body.
    pub(crate) async fn head(&self, key: &Path) -> Result<Option<Version>, Failed> {
        let sent = self
            .retrier(false)
            .run(Gate::Lease, "HEAD", key.as_ref(), || async {
                add(&self.counters.lists, 1);
                let r = self
                    .store
                    .get_opts(key, GetOptions::new().with_head(true))
                    .await?;
                Ok(Version::from_meta(&r.meta))
            })
            .await?;
        Ok(sent.value)
    }

    /// PUTs `body` to `key` in `mode` through `gate`. Returns the new version (its ETag empty
    /// if the store gave none) and when the attempt that landed started.
    pub(crate) async fn put(
        &self,
        key: &Path,
        body: Bytes,
        mode: PutMode,
        gate: Gate<'_>,
    ) -> Result<Sent<Version>, Failed> {
        let size = body.len() as u64;
        self.retrier(true)
            .run(gate, "PUT", key.as_ref(), || async {
                add(&self.counters.puts, 1);
                add(&self.counters.put_bytes, size);
                let opts = PutOptions {
                    mode: mode.clone(),
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

    /// DELETEs `key` through `gate` (deleting a missing object succeeds).
    pub(crate) async fn delete(&self, key: &Path, gate: Gate<'_>) -> Result<(), Failed> {
        let r = self
            .retrier(true)
            .run(gate, "DELETE", key.as_ref(), || async {
                add(&self.counters.deletes, 1);
                self.store.delete(key).await
            })
            .await;
        match r {
            Ok(_)
            | Err(Failed::Answer {
                error: object_store::Error::NotFound { .. },
                ..
            }) => Ok(()),
            Err(f) => Err(f),
        }
    }

    /// Calls `each` with every object under `prefix`, in key order, streaming the listing (one
    /// request per 1,000 keys). A listing that fails part-way is resumed after the last key
    /// seen, within the retry budget; `each`'s error stops it.
    pub(crate) async fn list(
        &self,
        prefix: &Path,
        mut each: impl FnMut(ObjectMeta) -> ObjResult<()>,
    ) -> ObjResult<()> {
        let attempts_max = self.policy.attempts_max.max(1);
        let mut after: Option<Path> = None;
        let mut backoff = self.policy.backoff_initial;
        let mut failures = 0;
        // Bounded: every pass either ends the listing or counts a failure.
        loop {
            add(&self.counters.lists, 1);
            let mut stream = match &after {
                None => self.store.list(Some(prefix)),
                Some(a) => self.store.list_with_offset(Some(prefix), a),
            };
            let mut seen = 0u64;
            let error = loop {
                let next = tokio::time::timeout(self.policy.attempt_timeout, stream.next()).await;
                match next {
                    Ok(None) => return Ok(()),
                    Ok(Some(Ok(meta))) => {
                        seen += 1;
                        if seen % 1000 == 0 {
                            add(&self.counters.lists, 1); // S3 lists 1,000 keys a request
                        }
                        after = Some(meta.location.clone());
                        each(meta)?;
                    }
                    Ok(Some(Err(e))) if !transient(&e) => {
                        return Err(ObjectError::Store {
                            op: "LIST",
                            key: prefix.to_string(),
                            source: e,
                        })
                    }
                    Ok(Some(Err(e))) => break e.to_string(),
                    Err(_) => break format!("no answer within {:?}", self.policy.attempt_timeout),
                }
            };
            failures += 1;
            tracing::debug!(prefix = %prefix, error = %error, "listing failed");
            if failures >= attempts_max {
                return Err(ObjectError::RetriesExhausted {
                    op: "LIST",
                    key: prefix.to_string(),
                    attempts: failures,
                    last: error,
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.policy.backoff_max);
        }
    }
}
