//! Review 6 of the streamed chunk GET (merge 9179473: a GET's body goes piece by piece into the
//! cache's frames). A store that streams every GET body in small pieces, the way an HTTP body
//! (or object_store's local-file store, 8 KiB at a time) arrives, where the tests' in-memory
//! store hands the whole body over in one piece.

mod common;

use common::{object, opts, take, transient, KIB};

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use folio::backend::{FrameMut, PageCacheBackend};
use folio::{CacheConfig, PageCache};
use folio_object::object_store::memory::InMemory;
use folio_object::object_store::path::Path;
use folio_object::object_store::{
    CopyOptions, Extensions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, Result as OsResult,
};
use folio_object::{Layout, Manifest, ObjectError, ObjectStoreBackend, CHUNK_TRAILER_LEN};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;

const PREFIX: &str = "images/t";
const PIECE_BYTES: usize = 4096;
const CHUNK: u64 = 64 * KIB;

/// Streams every GET body in pieces of [`PIECE_BYTES`]. Armed, it can also ignore `If-Match`
/// on GETs (a store that does not implement it) and cut the next chunk GETs off part-way, after
/// a half-body of garbage (a connection reset mid-body).
#[derive(Debug)]
struct Pieces {
    inner: Arc<InMemory>,
    ignore_if_match: AtomicBool,
    cut_gets: AtomicU32,
}

fn in_pieces(body: &Bytes) -> impl Iterator<Item = OsResult<Bytes>> + '_ {
    (0..body.len())
        .step_by(PIECE_BYTES)
        .map(move |at| Ok(body.slice(at..(at + PIECE_BYTES).min(body.len()))))
}

impl fmt::Display for Pieces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pieces")
    }
}

#[async_trait]
impl ObjectStore for Pieces {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> OsResult<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> OsResult<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(&self, location: &Path, mut options: GetOptions) -> OsResult<GetResult> {
        if options.head {
            return self.inner.get_opts(location, options).await;
        }
        if self.ignore_if_match.load(Ordering::SeqCst) {
            options.if_match = None;
        }
        let r = self.inner.get_opts(location, options).await?;
        let (meta, range, attributes) = (r.meta.clone(), r.range.clone(), r.attributes.clone());
        let body = r.bytes().await?;
        let pieces: Vec<OsResult<Bytes>> =
            if location.as_ref().contains("/chunks/") && take(&self.cut_gets) {
                let garbage = Bytes::from(vec![0xee; body.len() / 2]);
                let mut p: Vec<_> = in_pieces(&garbage).collect();
                p.push(Err(transient("connection reset mid-body (injected)")));
                p
            } else {
                in_pieces(&body).collect()
            };
        Ok(GetResult {
            payload: GetResultPayload::Stream(futures_util::stream::iter(pieces).boxed()),
            meta,
            range,
            attributes,
            extensions: Extensions::default(),
        })
    }
    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> OsResult<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, OsResult<Path>>,
    ) -> BoxStream<'static, OsResult<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, OsResult<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> OsResult<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> OsResult<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn store() -> Arc<Pieces> {
    Arc::new(Pieces {
        inner: Arc::new(InMemory::new()),
        ignore_if_match: AtomicBool::new(false),
        cut_gets: AtomicU32::new(0),
    })
}

fn chunk_key(n: u64) -> Path {
    Layout::new(PREFIX).unwrap().chunk(n)
}

/// `count` frames of 4 KiB, each filled with `byte` (garbage a read must overwrite).
fn frames(count: u64, byte: u8) -> Vec<FrameMut> {
    (0..count)
        .map(|_| {
            let mut f = FrameMut::alloc(4096).unwrap();
            f.as_mut_slice().fill(byte);
            f
        })
        .collect()
}

/// Finding 1: a whole-chunk GET whose body is longer than the chunk object Folio knows (a store
/// that does not honour `If-Match` on GET, and the chunk replaced behind Folio's back by a
/// longer object), arriving in several pieces past the known object's end. The sink indexes its
/// 32-byte trailer buffer at the piece's offset past the data and panics on the read task (the
/// cache gets "the backend abandoned the I/O"), where the read must fail with a typed
/// `ChunkChanged` (as before the merge, which compared the version first).
#[test]
fn a_whole_chunk_body_longer_than_the_known_object_is_refused_not_a_panic() {
    let s = store();
    let m = Manifest::new(4 * CHUNK, CHUNK).unwrap();
    let b = ObjectStoreBackend::create(s.clone(), PREFIX, m, &opts()).unwrap();
    common::write(&b, 0, 7, CHUNK / 4096, 4096).unwrap();
    b.sync().unwrap();
    // Chunk 0 grows behind Folio's back by 8 KiB (two pieces past the old object's end).
    let mut longer = object(&s.inner, &chunk_key(0)).unwrap();
    assert_eq!(longer.len() as u64, CHUNK + CHUNK_TRAILER_LEN);
    longer.extend_from_slice(&[1u8; 8192]);
    common::block(s.inner.put(&chunk_key(0), longer.into())).unwrap();
    s.ignore_if_match.store(true, Ordering::SeqCst);
    let e = b
        .read_pages(0, frames(CHUNK / 4096, 0))
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(
        matches!(
            ObjectError::find(&e),
            Some(ObjectError::ChunkChanged { chunk: 0, .. })
        ),
        "{e}"
    );
}

/// Checked, holds on main: a chunk GET cut off part-way, after half a body of garbage went into
/// the frames, is made again from offset 0 and the read returns the chunk's bytes, with zeros
/// past its data (trailing zeros are cut from the stored object), for a whole-chunk GET and a
/// ranged one; the frames were used before (by another chunk's bytes).
#[test]
fn a_get_cut_off_mid_body_is_made_again_and_reads_the_data_and_zeros_past_it() {
    let s = store();
    let m = Manifest::new(4 * CHUNK, CHUNK).unwrap();
    let b = ObjectStoreBackend::create(s.clone(), PREFIX, m, &opts()).unwrap();
    let c = PageCache::new(Arc::new(b), CacheConfig::new(CHUNK)).unwrap();
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8 | 1).collect();
    c.write_all_at(&data, 0).unwrap();
    c.write_all_at(&vec![0x55u8; CHUNK as usize], CHUNK)
        .unwrap();
    c.sync().unwrap();
    assert_eq!(
        object(&s.inner, &chunk_key(0)).unwrap().len(),
        data.len() + CHUNK_TRAILER_LEN as usize,
        "trailing zeros cut"
    );
    let mut want = data.clone();
    want.resize(CHUNK as usize, 0);
    for (from, len) in [(0, CHUNK as usize), (4096, 8192)] {
        c.evict_range(0..4 * CHUNK).unwrap();
        // The cache's frames hold another chunk's bytes before the read.
        let mut other = vec![0u8; CHUNK as usize];
        c.read_exact_at(&mut other, CHUNK).unwrap();
        assert!(other.iter().all(|&x| x == 0x55));
        c.evict_range(0..4 * CHUNK).unwrap();
        s.cut_gets.store(1, Ordering::SeqCst);
        let mut buf = vec![0u8; len];
        c.read_exact_at(&mut buf, from).unwrap();
        assert_eq!(s.cut_gets.load(Ordering::SeqCst), 0, "the GET was cut");
        assert!(
            buf == want[from as usize..from as usize + len],
            "bytes of {from}+{len}"
        );
    }
}
