//! The storage an export serves: the [`BlockDevice`] trait, a memory device for tests and a
//! plain-file device (the no-cache baseline). The page cache's device is in `cache_device.rs`.
//!
//! Owns: what the server may ask of storage (bytes, durability, zeroing, allocation status,
//! prefetch, zero-copy access to resident bytes) and each connection's own write-back error
//! cursor ([`SyncCursor`]). Does not own: the protocol (`proto.rs`) or threads. May block:
//! every method except [`BlockDevice::read_resident`], which must never wait.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use folio::backend::{Allocation, Extent};
use parking_lot::RwLock;

/// Bytes lent straight from a device's memory (e.g. page-cache read guards), in order. While
/// it lives, the bytes stay as they are: the server sends them to the socket without a copy.
pub trait Resident {
    /// Part `i` of the bytes, or `None` past the last part.
    fn part(&self, i: usize) -> Option<&[u8]>;
}

impl Resident for Vec<folio::PageReadGuard<'_>> {
    fn part(&self, i: usize) -> Option<&[u8]> {
        self.get(i).map(|g| &**g)
    }
}

/// A connection's view of durability: its own write-back error cursor, so that a failed
/// write-back is reported to every connection that flushes after it, once each (a flush on
/// one connection does not consume the failure another connection's writes met).
pub trait SyncCursor: Send + Sync {
    /// Makes every write that completed before the call durable (`FLUSH`).
    fn flush(&self) -> io::Result<()>;
    /// Makes the writes to `offset .. offset + len` durable (`FUA`).
    fn flush_range(&self, offset: u64, len: u64) -> io::Result<()>;
}

/// A cursor for devices with no write-back of their own: it calls the device.
struct DeviceCursor<D: BlockDevice>(Arc<D>);

impl<D: BlockDevice> SyncCursor for DeviceCursor<D> {
    fn flush(&self) -> io::Result<()> {
        self.0.flush()
    }
    fn flush_range(&self, offset: u64, len: u64) -> io::Result<()> {
        self.0.flush_range(offset, len)
    }
}

/// What the NBD server needs from the storage behind an export.
///
/// The server checks every range against [`BlockDevice::len`] before calling, so
/// implementations may assume `offset + buf.len() <= len()` (and must still not panic if a
/// caller breaks that: return an error).
pub trait BlockDevice: Send + Sync + 'static {
    /// Size of the export in bytes.
    fn len(&self) -> u64;
    /// Whether the export is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Preferred block size (advertised as the preferred NBD block size).
    fn block_size(&self) -> usize;
    /// Fills `buf` from `offset` (exactly).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every write that completed before the call durable.
    fn flush(&self) -> io::Result<()>;
    /// Makes the writes to `offset..offset + len` durable (FUA).
    fn flush_range(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Makes the range read back as zeros.
    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Hints that the range is no longer needed; afterwards its contents are unspecified.
    fn trim(&self, offset: u64, len: u64) -> io::Result<()>;
    /// A new write-back error cursor for one connection.
    fn sync_cursor(self: Arc<Self>) -> Box<dyn SyncCursor>;
    /// Zero-copy access to `offset .. offset + len` if every byte is in memory now; `None`
    /// otherwise (and by default). Must never wait: it runs on a connection's own thread.
    fn read_resident(&self, offset: u64, len: usize) -> Option<io::Result<Box<dyn Resident + '_>>> {
        let _ = (offset, len);
        None
    }
    /// Writes `buf` at `offset` if that needs no waiting (every byte's page in memory and
    /// free); `None` if it would wait (and by default), with nothing written. Must never wait:
    /// it runs on a connection's own thread.
    fn try_write_at(&self, buf: &[u8], offset: u64) -> Option<io::Result<()>> {
        let _ = (buf, offset);
        None
    }
    /// Whether `WRITE_ZEROES` without `NO_HOLE` is cheap (no zeros written), so that
    /// `FAST_ZERO` requests may be carried out.
    fn zero_is_fast(&self) -> bool {
        false
    }
    /// The allocation of `offset .. offset + len`: at most `extents_max` extents from `offset`,
    /// covering at least one byte. Default: all data (always correct).
    fn allocation(&self, offset: u64, len: u64, extents_max: usize) -> io::Result<Vec<Extent>> {
        let _ = extents_max;
        let len = len.min(self.len().saturating_sub(offset));
        Ok(vec![Extent {
            len,
            allocation: Allocation::Data,
        }])
    }
    /// Bytes written by clients that may not be durable yet (dirty in the device's cache, or
    /// written since its last successful sync), if the device keeps count: what a failed final
    /// flush reports as not written. Default: `None` (unknown).
    fn unsynced_bytes(&self) -> Option<u64> {
        None
    }
    /// Loads the range into the device's cache, if it has one (`CMD_CACHE`). Default: nothing.
    fn prefetch(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }
}

fn check_range(size: u64, offset: u64, len: u64) -> io::Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("range {offset}+{len} past the end ({size} bytes)"),
        )),
    }
}

/// A volatile in-memory device for tests; `flush` copies the image to a "durable" copy so that
/// tests can check what a crash would keep.
pub struct MemDevice {
    data: RwLock<Vec<u8>>,
    durable: RwLock<Vec<u8>>,
    block_size: usize,
}

impl MemDevice {
    /// A zero-filled device of `len` bytes.
    pub fn new(len: usize) -> MemDevice {
        MemDevice {
            data: RwLock::new(vec![0; len]),
            durable: RwLock::new(vec![0; len]),
            block_size: 4096,
        }
    }

    /// The current contents.
    pub fn image(&self) -> Vec<u8> {
        self.data.read().clone()
    }

    /// The contents as of the last flush (ranges flushed by FUA included).
    pub fn durable_image(&self) -> Vec<u8> {
        self.durable.read().clone()
    }
}

impl BlockDevice for MemDevice {
    fn len(&self) -> u64 {
        self.data.read().len() as u64
    }
    fn block_size(&self) -> usize {
        self.block_size
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let data = self.data.read();
        check_range(data.len() as u64, offset, buf.len() as u64)?;
        let o = offset as usize;
        buf.copy_from_slice(&data[o..o + buf.len()]);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut data = self.data.write();
        check_range(data.len() as u64, offset, buf.len() as u64)?;
        let o = offset as usize;
        data[o..o + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        let data = self.data.read();
        self.durable.write().copy_from_slice(&data);
        Ok(())
    }
    fn flush_range(&self, offset: u64, len: u64) -> io::Result<()> {
        let data = self.data.read();
        check_range(data.len() as u64, offset, len)?;
        let (o, e) = (offset as usize, (offset + len) as usize);
        self.durable.write()[o..e].copy_from_slice(&data[o..e]);
        Ok(())
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut data = self.data.write();
        check_range(data.len() as u64, offset, len)?;
        data[offset as usize..(offset + len) as usize].fill(0);
        Ok(())
    }
    fn trim(&self, offset: u64, len: u64) -> io::Result<()> {
        self.write_zeroes(offset, len)
    }
    fn sync_cursor(self: Arc<Self>) -> Box<dyn SyncCursor> {
        Box::new(DeviceCursor(self))
    }
    fn zero_is_fast(&self) -> bool {
        true
    }
}

/// A regular file accessed with positional I/O and no cache of ours (the kernel's page cache
/// still applies). The baseline `folio serve --no-cache` serves.
///
/// **A failed sync is latched.** Every connection shares the one open file, and Linux reports
/// a write-back error once per open file: the first `fdatasync` after the failure returns it,
/// later ones return 0 although the pages whose write failed may have been marked clean and
/// never reach the disk. So the first failure is kept and every later `FLUSH` or `FUA`, on every
/// connection, fails with it until the server restarts (as qemu's file driver does: after a
/// failed `fdatasync` nothing tells which writes are on disk). The bytes stay readable through
/// the kernel's page cache while it keeps them; the final flush at shutdown fails too, so the
/// server exits with an error instead of reporting a clean stop. Syncs run one at a time, so a
/// sync that overlaps a failing one cannot return Ok before the failure is latched. With the
/// latch, `CAN_MULTI_CONN` holds: a flush on any connection covers every write completed on
/// any connection, and no connection's flush can succeed after a failure.
pub struct FileDevice {
    file: File,
    len: u64,
    /// `fdatasync`, or a replacement for fault-injection tests.
    sync: Box<SyncFn>,
    /// The first sync that failed (held while a sync runs: syncs run one at a time).
    failed: parking_lot::Mutex<Option<Latched>>,
    /// Bytes written or zeroed since the last successful sync (overlaps counted twice).
    unsynced_bytes: AtomicU64,
}

/// How a [`FileDevice`] syncs its file.
type SyncFn = dyn Fn(&File) -> io::Result<()> + Send + Sync;

/// What a failed sync said, kept to fail every later sync.
struct Latched {
    kind: io::ErrorKind,
    message: String,
}

impl FileDevice {
    /// Wraps an open file or block device (opened for writing unless the export is read-only).
    /// The size is where the file ends (`lseek(SEEK_END)`), which is right for block devices
    /// too, whose `st_size` is 0.
    pub fn new(file: File) -> io::Result<FileDevice> {
        FileDevice::with_sync_fn(file, |f| f.sync_data())
    }

    /// As [`FileDevice::new`], syncing with `sync` instead of `fdatasync`: for tests that
    /// inject sync failures (e.g. one that fails once, as Linux reports a write-back error once
    /// per open file).
    pub fn with_sync_fn(
        file: File,
        sync: impl Fn(&File) -> io::Result<()> + Send + Sync + 'static,
    ) -> io::Result<FileDevice> {
        use std::io::Seek;
        let len = (&file).seek(io::SeekFrom::End(0))?;
        Ok(FileDevice {
            file,
            len,
            sync: Box::new(sync),
            failed: parking_lot::Mutex::new(None),
            unsynced_bytes: AtomicU64::new(0),
        })
    }

    /// Syncs the file, or fails with the first failure if a sync ever failed (see the type's
    /// docs).
    fn sync_latched(&self) -> io::Result<()> {
        let mut failed = self.failed.lock();
        if let Some(l) = &*failed {
            return Err(io::Error::new(
                l.kind,
                format!(
                    "an earlier sync of this file failed ({}); writes since the last \
                     successful sync may not be on disk, and no later sync can tell",
                    l.message
                ),
            ));
        }
        // Writes counted before the sync are covered by it if it succeeds.
        let covered = self.unsynced_bytes.load(Ordering::Acquire);
        let r = (self.sync)(&self.file);
        if r.is_ok() {
            self.unsynced_bytes.fetch_sub(covered, Ordering::AcqRel);
        }
        if let Err(e) = &r {
            tracing::error!(
                error = %e,
                "syncing the file failed: every later FLUSH and FUA fails until restart"
            );
            *failed = Some(Latched {
                kind: e.kind(),
                message: e.to_string(),
            });
        }
        r
    }
}

impl BlockDevice for FileDevice {
    fn len(&self) -> u64 {
        self.len
    }
    fn block_size(&self) -> usize {
        4096
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(self.len, offset, buf.len() as u64)?;
        self.file.read_exact_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        check_range(self.len, offset, buf.len() as u64)?;
        self.file.write_all_at(buf, offset)?;
        // Counted once written: a sync that counted it started after the write completed, so
        // covers it (one that started before may count it still: more, never less).
        self.unsynced_bytes
            .fetch_add(buf.len() as u64, Ordering::AcqRel);
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        self.sync_latched()
    }
    fn flush_range(&self, _offset: u64, _len: u64) -> io::Result<()> {
        self.sync_latched()
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        check_range(self.len, offset, len)?;
        let zeros = vec![0u8; len.min(1 << 20) as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(zeros.len() as u64) as usize;
            let r = self.file.write_all_at(&zeros[..n], offset + done);
            // As in `write_at`: counted once written (partly, if it failed on the way).
            self.unsynced_bytes.fetch_add(n as u64, Ordering::AcqRel);
            r?;
            done += n as u64;
        }
        Ok(())
    }
    fn trim(&self, offset: u64, len: u64) -> io::Result<()> {
        // A hint only; zeroing keeps reads deterministic.
        self.write_zeroes(offset, len)
    }
    fn sync_cursor(self: Arc<Self>) -> Box<dyn SyncCursor> {
        Box::new(DeviceCursor(self))
    }
    fn unsynced_bytes(&self) -> Option<u64> {
        Some(self.unsynced_bytes.load(Ordering::Acquire))
    }
    fn allocation(&self, offset: u64, len: u64, extents_max: usize) -> io::Result<Vec<Extent>> {
        Ok(folio::backend::extents::file_extents(
            &self.file,
            self.len,
            offset,
            len,
            extents_max,
        )?)
    }
}
