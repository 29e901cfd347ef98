//! The storage an export serves: the [`BlockDevice`] trait and its implementations.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use parking_lot::RwLock;

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
}

/// A regular file accessed with positional I/O and no cache of ours (the kernel's page cache
/// still applies). The baseline `folio serve --no-cache` serves.
pub struct FileDevice {
    file: File,
    len: u64,
}

impl FileDevice {
    /// Wraps an open file (opened for writing unless the export is read-only).
    pub fn new(file: File) -> io::Result<FileDevice> {
        let len = file.metadata()?.len();
        Ok(FileDevice { file, len })
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
        self.file.write_all_at(buf, offset)
    }
    fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn flush_range(&self, _offset: u64, _len: u64) -> io::Result<()> {
        self.file.sync_data()
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        check_range(self.len, offset, len)?;
        let zeros = vec![0u8; len.min(1 << 20) as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(zeros.len() as u64) as usize;
            self.file.write_all_at(&zeros[..n], offset + done)?;
            done += n as u64;
        }
        Ok(())
    }
    fn trim(&self, offset: u64, len: u64) -> io::Result<()> {
        // A hint only; zeroing keeps reads deterministic.
        self.write_zeroes(offset, len)
    }
}

/// The Folio page cache as an export: reads and writes go through the cache, `FLUSH` is a
/// whole-cache [`PageCache::sync`](folio::PageCache::sync) (so a flush on one connection covers
/// writes acknowledged on every connection sharing the cache: `CAN_MULTI_CONN`), FUA is
/// [`sync_range`](folio::PageCache::sync_range), and both `WRITE_ZEROES` and `TRIM` are
/// [`zero_range`](folio::PageCache::zero_range) (holes punched where the backend can; trimmed
/// ranges then read back as zeros, which is deterministic and allowed).
pub struct CacheDevice {
    cache: Arc<folio::PageCache>,
}

impl CacheDevice {
    /// Wraps a shared cache.
    pub fn new(cache: Arc<folio::PageCache>) -> CacheDevice {
        CacheDevice { cache }
    }

    /// The cache.
    pub fn cache(&self) -> &Arc<folio::PageCache> {
        &self.cache
    }

    fn end(&self, offset: u64, len: u64) -> io::Result<u64> {
        check_range(self.cache.len(), offset, len)?;
        Ok(offset + len)
    }
}

impl BlockDevice for CacheDevice {
    fn len(&self) -> u64 {
        self.cache.len()
    }
    fn block_size(&self) -> usize {
        self.cache.page_size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        Ok(self.cache.read_exact_at(buf, offset)?)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        // The cache would grow the file; an export has a fixed size.
        self.end(offset, buf.len() as u64)?;
        Ok(self.cache.write_all_at(buf, offset)?)
    }
    fn flush(&self) -> io::Result<()> {
        Ok(self.cache.sync()?)
    }
    fn flush_range(&self, offset: u64, len: u64) -> io::Result<()> {
        let end = self.end(offset, len)?;
        Ok(self.cache.sync_range(offset..end)?)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        let end = self.end(offset, len)?;
        Ok(self.cache.zero_range(offset..end)?)
    }
    fn trim(&self, offset: u64, len: u64) -> io::Result<()> {
        self.write_zeroes(offset, len)
    }
}
