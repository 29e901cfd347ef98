//! What the object-store tests share: a scriptable store (object_store's in-memory store behind
//! a hook that decides, request by request (kind and key), whether it goes through, fails,
//! hangs, is delayed, is applied late (after the client was told it failed), or loses its
//! answer), and reading objects straight from the store.

#![allow(dead_code)] // each test binary uses its own part

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use folio::backend::{Frame, FrameMut, PageCacheBackend};
use folio_object::object_store::memory::InMemory;
use folio_object::object_store::path::Path;
use folio_object::object_store::{
    CopyOptions, Error, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use folio_object::{
    Layout, Manifest, ObjectError, ObjectStoreBackend, OpenOptions, CHUNK_TRAILER_LEN,
};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
/// The image every test of the hooked store makes.
pub const PREFIX: &str = "images/t";

/// A lease long enough that no renewal happens during the test.
pub fn opts_long_lease() -> OpenOptions {
    OpenOptions {
        lease_ttl: Duration::from_secs(60),
        ..opts()
    }
}

/// Creates the image at [`PREFIX`] behind `h` and opens it.
pub fn create(h: &Arc<Hooked>, size: u64, chunk: u64, o: &OpenOptions) -> ObjectStoreBackend {
    let m = Manifest::new(size, chunk).unwrap();
    ObjectStoreBackend::create(h.clone(), PREFIX, m, o).unwrap()
}

/// The data of chunk `n` in the store (without its trailer), if it has an object.
pub fn data(inner: &InMemory, n: u64) -> Option<Vec<u8>> {
    object(inner, &Layout::new(PREFIX).unwrap().chunk(n)).map(|mut o| {
        o.truncate(o.len() - CHUNK_TRAILER_LEN as usize);
        o
    })
}

pub fn chunk_puts(kind: Kind, key: &str) -> bool {
    kind == Kind::Put && key.contains("/chunks/")
}

pub fn manifest_puts(kind: Kind, key: &str) -> bool {
    kind == Kind::Put && key.ends_with("manifest.json")
}

/// Writes `count` pages of `len` bytes of `byte` from page `idx` and waits.
pub fn write(
    b: &ObjectStoreBackend,
    idx: u64,
    byte: u8,
    count: u64,
    len: usize,
) -> folio::Result<()> {
    b.write_pages(idx, pages(byte, count, len))?.wait()
}

pub fn pages(byte: u8, count: u64, len: usize) -> Vec<Frame> {
    (0..count)
        .map(|_| {
            let mut f = FrameMut::alloc(len).unwrap();
            f.as_mut_slice().fill(byte);
            f.freeze()
        })
        .collect()
}

/// Reads page `idx` (4 KiB) through the backend.
pub fn read_page(b: &ObjectStoreBackend, idx: u64) -> folio::Result<()> {
    b.read_pages(idx, vec![FrameMut::alloc(4096).unwrap()])?
        .wait()
}

pub fn is<T>(r: &Result<T, ObjectError>, what: fn(&ObjectError) -> bool) -> bool {
    r.as_ref().err().is_some_and(what)
}

pub fn object_error(e: &folio::Error) -> &ObjectError {
    ObjectError::find(e).unwrap_or_else(|| panic!("not an ObjectError: {e}"))
}

/// What a request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Put,
    Get,
    Head,
    Delete,
    List,
}

/// What happens to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// Goes through.
    Pass,
    /// Fails at once, not applied (a 503, a refused connection).
    Fail,
    /// Fails after this long, not applied (a slow link that drops the request).
    FailAfter(Duration),
    /// Never answers (the client times out); not applied.
    Hang,
    /// Goes through after this long.
    Delay(Duration),
    /// The client is told it failed at once; the store applies it this much later.
    Late(Duration),
    /// Applied, but the answer is lost (the client sees a failure).
    LoseAnswer,
    /// S3's 409 ConditionalRequestConflict, as object_store reports it; not applied.
    Conflict,
    /// Refused for good (403 Access Denied: a bucket policy that forbids it); not applied.
    Deny,
}

type Hook = dyn Fn(Kind, &str) -> Act + Send + Sync;

/// See the module docs.
pub struct Hooked {
    pub inner: Arc<InMemory>,
    hook: Mutex<Option<Arc<Hook>>>,
}

impl fmt::Debug for Hooked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hooked")
    }
}

impl fmt::Display for Hooked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hooked")
    }
}

/// Retries as the tests want them: quick back-off, 200 ms attempts.
pub fn policy(attempts_max: u32) -> folio_object::RetryPolicy {
    folio_object::RetryPolicy {
        attempts_max,
        backoff_initial: Duration::from_millis(1),
        backoff_max: Duration::from_millis(4),
        attempt_timeout: Duration::from_millis(200),
    }
}

/// Three attempts of 200 ms, a 600 ms lease (renewed every 200 ms).
pub fn opts() -> folio_object::OpenOptions {
    folio_object::OpenOptions {
        retry: policy(3),
        lease_ttl: Duration::from_millis(600),
        ..folio_object::OpenOptions::default()
    }
}

/// Runs `f` to completion on a runtime of its own.
pub fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The object at `key` in `store`, if any.
pub fn object(store: &InMemory, key: &Path) -> Option<Vec<u8>> {
    use folio_object::object_store::ObjectStoreExt;
    match block(store.get(key)) {
        Ok(r) => Some(block(r.bytes()).unwrap().to_vec()),
        Err(Error::NotFound { .. }) => None,
        Err(e) => panic!("{e}"),
    }
}

/// A transient failure (what a 5xx or a dropped connection looks like), retried by the backend.
pub fn transient(why: &'static str) -> Error {
    Error::Generic {
        store: "Hooked",
        source: why.into(),
    }
}

/// Takes one from `n` if it is not zero: true if it did (a one-shot fault armed `n` times).
pub fn take(n: &AtomicU32) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

fn conflict(path: &Path) -> Error {
    Error::AlreadyExists {
        path: path.to_string(),
        source: "Server returned non-2xx status code: 409 Conflict: ConditionalRequestConflict \
                 (injected)"
            .into(),
    }
}

impl Hooked {
    pub fn new() -> Arc<Hooked> {
        Arc::new(Hooked {
            inner: Arc::new(InMemory::new()),
            hook: Mutex::new(None),
        })
    }

    /// Every request from now on goes through `f`.
    pub fn set(&self, f: impl Fn(Kind, &str) -> Act + Send + Sync + 'static) {
        *self.hook.lock().unwrap() = Some(Arc::new(f));
    }

    /// The `n`-th request that `matches` (from 0) gets `acts[n]`, the later ones and all others
    /// go through. Returns the count of matching requests so far.
    pub fn script(
        &self,
        matches: impl Fn(Kind, &str) -> bool + Send + Sync + 'static,
        acts: Vec<Act>,
    ) -> Arc<AtomicU32> {
        let count = Arc::new(AtomicU32::new(0));
        let n = count.clone();
        self.set(move |kind, key| {
            if !matches(kind, key) {
                return Act::Pass;
            }
            let i = n.fetch_add(1, Ordering::SeqCst) as usize;
            acts.get(i).copied().unwrap_or(Act::Pass)
        });
        count
    }

    /// No more faults.
    pub fn clear(&self) {
        *self.hook.lock().unwrap() = None;
    }

    fn act(&self, kind: Kind, key: &Path) -> Act {
        let hook = self.hook.lock().unwrap().clone();
        hook.map_or(Act::Pass, |h| h(kind, key.as_ref()))
    }

    /// Runs `apply` as `act` says.
    async fn run<T: Send + 'static>(
        &self,
        act: Act,
        path: &Path,
        apply: impl std::future::Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        match act {
            Act::Pass => apply.await,
            Act::Fail => Err(transient("503 Service Unavailable (injected)")),
            Act::FailAfter(d) => {
                tokio::time::sleep(d).await;
                Err(transient("503 Service Unavailable (injected, slow)"))
            }
            Act::Hang => std::future::pending().await,
            Act::Delay(d) => {
                tokio::time::sleep(d).await;
                apply.await
            }
            Act::Late(d) => {
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    let _ = apply.await;
                });
                Err(transient("connection reset (injected; applied later)"))
            }
            Act::LoseAnswer => {
                apply.await?;
                Err(transient("connection reset after the request (injected)"))
            }
            Act::Conflict => Err(conflict(path)),
            Act::Deny => Err(Error::PermissionDenied {
                path: path.to_string(),
                source: "403 Access Denied (injected)".into(),
            }),
        }
    }
}

#[async_trait]
impl ObjectStore for Hooked {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let (inner, loc) = (self.inner.clone(), location.clone());
        let act = self.act(Kind::Put, location);
        self.run(act, location, async move {
            inner.put_opts(&loc, payload, opts).await
        })
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let kind = if options.head { Kind::Head } else { Kind::Get };
        let (inner, loc) = (self.inner.clone(), location.clone());
        let act = self.act(kind, location);
        self.run(
            act,
            location,
            async move { inner.get_opts(&loc, options).await },
        )
        .await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let hook = self.hook.lock().unwrap().clone();
        let inner = self.inner.clone();
        locations
            .then(move |loc| {
                let (hook, inner) = (hook.clone(), inner.clone());
                async move {
                    let loc = loc?;
                    let act = hook.map_or(Act::Pass, |h| h(Kind::Delete, loc.as_ref()));
                    let stub = Hooked {
                        inner: inner.clone(),
                        hook: Mutex::new(None),
                    };
                    let l2 = loc.clone();
                    stub.run(act, &loc, async move {
                        use folio_object::object_store::ObjectStoreExt;
                        inner.delete(&l2).await
                    })
                    .await
                    .map(|()| loc)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let key = prefix.cloned().unwrap_or_default();
        match self.act(Kind::List, &key) {
            Act::Pass => self.inner.list(prefix),
            _ => futures_util::stream::once(async { Err(transient("LIST failed (injected)")) })
                .boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
