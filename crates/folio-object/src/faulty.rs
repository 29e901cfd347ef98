//! [`FaultyStore`]: an object store wrapper that adds latency and failures, for tests of what
//! the backend does when the store is slow, flaky or down (object_store's in-memory store
//! underneath keeps them hermetic).
//!
//! Owns: the injected faults and a count of the requests that reached it. Injected failures are
//! `object_store::Error::Generic` (what a 5xx or a refused connection looks like), so the
//! backend retries them like real ones.
//!
//! Does not own: anything the backend decides.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// A store that delays and fails requests on demand. See the module docs.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    latency_us: AtomicU64,
    down: AtomicBool,
    fail_puts: AtomicU32,
    fail_gets: AtomicU32,
    lose_put_answers: AtomicU32,
    requests: AtomicU64,
    in_flight: AtomicU64,
    in_flight_max: AtomicU64,
}

/// Counts a request in flight while it lives.
struct InFlight<'a>(&'a FaultyStore);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FaultyStore {
    /// Wraps `inner` with no faults.
    pub fn new(inner: Arc<dyn ObjectStore>) -> FaultyStore {
        FaultyStore {
            inner,
            latency_us: AtomicU64::new(0),
            down: AtomicBool::new(false),
            fail_puts: AtomicU32::new(0),
            fail_gets: AtomicU32::new(0),
            lose_put_answers: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            in_flight_max: AtomicU64::new(0),
        }
    }

    /// Every request waits `d` before it reaches the store.
    pub fn set_latency(&self, d: Duration) {
        self.latency_us
            .store(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// While down, every request fails.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The next `n` PUTs fail without reaching the store.
    pub fn fail_next_puts(&self, n: u32) {
        self.fail_puts.store(n, Ordering::SeqCst);
    }

    /// The next `n` GETs fail without reaching the store.
    pub fn fail_next_gets(&self, n: u32) {
        self.fail_gets.store(n, Ordering::SeqCst);
    }

    /// The next `n` PUTs reach the store and take effect, but their answer is lost (the client
    /// sees an error, as when a connection drops after the store committed).
    pub fn lose_next_put_answers(&self, n: u32) {
        self.lose_put_answers.store(n, Ordering::SeqCst);
    }

    /// Requests that reached this wrapper.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Most requests that were in flight at once (GETs and PUTs).
    pub fn in_flight_max(&self) -> u64 {
        self.in_flight_max.load(Ordering::SeqCst)
    }

    fn track(&self) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.in_flight_max.fetch_max(now, Ordering::SeqCst);
        InFlight(self)
    }

    async fn enter(&self, one_shot: Option<&AtomicU32>) -> Result<()> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let us = self.latency_us.load(Ordering::Relaxed);
        if us > 0 {
            tokio::time::sleep(Duration::from_micros(us)).await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(injected("the store is down"));
        }
        if one_shot.is_some_and(take_one) {
            return Err(injected("503 Service Unavailable (injected)"));
        }
        Ok(())
    }
}

fn take_one(n: &AtomicU32) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

fn injected(why: &'static str) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultyStore",
        source: why.into(),
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let _counted = self.track();
        self.enter(Some(&self.fail_puts)).await?;
        let r = self.inner.put_opts(location, payload, opts).await?;
        if take_one(&self.lose_put_answers) {
            return Err(injected("connection reset after the PUT (injected)"));
        }
        Ok(r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.enter(None).await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let _counted = self.track();
        self.enter(Some(&self.fail_gets)).await?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.enter(Some(&self.fail_gets)).await?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if self.down.load(Ordering::SeqCst) {
            return locations
                .map(|_| Err(injected("the store is down")))
                .boxed();
        }
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if self.down.load(Ordering::SeqCst) {
            return futures_util::stream::once(async { Err(injected("the store is down")) })
                .boxed();
        }
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.enter(None).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.enter(None).await?;
        self.inner.copy_opts(from, to, options).await
    }
}
