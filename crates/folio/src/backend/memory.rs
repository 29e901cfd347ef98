//! [`MemoryBackend`]: a growable byte vector, for tests, examples and the simulator.
//!
//! It keeps two images, like a disk with a volatile write cache: `written` (what reads see) and
//! `durable` (what the last [`sync`](PageCacheBackend::sync) made durable), so tests can check
//! what would survive a crash with [`MemoryBackend::durable_image`].

use parking_lot::Mutex;

use super::{io_geometry, Frame, FrameMut, IoWaiter, PageCacheBackend};
use crate::error::Result;

/// An in-memory backend. See the [module docs](self).
#[derive(Debug, Default)]
pub struct MemoryBackend {
    images: Mutex<Images>,
}

#[derive(Debug, Default, Clone)]
struct Images {
    written: Vec<u8>,
    durable: Vec<u8>,
    reads: u64,
    writes: u64,
    syncs: u64,
}

/// Operation counts of a [`MemoryBackend`], for tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryCounts {
    /// `read_pages` calls.
    pub reads: u64,
    /// `write_pages` calls.
    pub writes: u64,
    /// `sync` calls.
    pub syncs: u64,
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    /// A backend holding `bytes` (already durable).
    pub fn from_bytes(bytes: Vec<u8>) -> MemoryBackend {
        MemoryBackend {
            images: Mutex::new(Images {
                durable: bytes.clone(),
                written: bytes,
                ..Images::default()
            }),
        }
    }

    /// A copy of the image as written (what a read sees).
    pub fn image(&self) -> Vec<u8> {
        self.images.lock().written.clone()
    }

    /// A copy of the image as of the last completed sync (what survives a power cut).
    pub fn durable_image(&self) -> Vec<u8> {
        self.images.lock().durable.clone()
    }

    /// How many reads, writes and syncs the backend has served.
    pub fn counts(&self) -> MemoryCounts {
        let i = self.images.lock();
        MemoryCounts {
            reads: i.reads,
            writes: i.writes,
            syncs: i.syncs,
        }
    }
}

impl PageCacheBackend for MemoryBackend {
    fn read_pages(&self, idx: u64, mut frames: Vec<FrameMut>) -> Result<IoWaiter> {
        let (page_size, offset) = io_geometry(idx, frames.iter().map(|f| f.len()))?;
        let mut images = self.images.lock();
        images.reads += 1;
        for (i, frame) in frames.iter_mut().enumerate() {
            let start = offset + (i * page_size) as u64;
            let buf = frame.as_mut_slice();
            buf.fill(0);
            let len = images.written.len() as u64;
            if start < len {
                let n = ((len - start) as usize).min(page_size);
                let s = start as usize;
                buf[..n].copy_from_slice(&images.written[s..s + n]);
            }
        }
        Ok(IoWaiter::ready(Ok(())))
    }

    fn write_pages(&self, idx: u64, frames: Vec<Frame>) -> Result<IoWaiter> {
        let (page_size, offset) = io_geometry(idx, frames.iter().map(|f| f.len()))?;
        let mut images = self.images.lock();
        images.writes += 1;
        for (i, frame) in frames.iter().enumerate() {
            let start = offset + (i * page_size) as u64;
            let len = images.written.len() as u64;
            if start >= len {
                break;
            }
            let n = ((len - start) as usize).min(page_size);
            let s = start as usize;
            frame.copy_to(&mut images.written[s..s + n]);
        }
        Ok(IoWaiter::ready(Ok(())))
    }

    fn len(&self) -> u64 {
        self.images.lock().written.len() as u64
    }

    fn set_len(&self, len: u64) -> Result<()> {
        let out_of_memory = |op| {
            crate::Error::io(
                op,
                len,
                std::io::Error::new(
                    std::io::ErrorKind::OutOfMemory,
                    "the memory backend cannot hold an image this long",
                ),
            )
        };
        let len = usize::try_from(len).map_err(|_| out_of_memory(crate::error::IoOp::Resize))?;
        let mut images = self.images.lock();
        let more = len.saturating_sub(images.written.len());
        // A typed error, not an abort, when the memory is not there.
        images
            .written
            .try_reserve_exact(more)
            .map_err(|_| out_of_memory(crate::error::IoOp::Resize))?;
        images.written.resize(len, 0);
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        let mut images = self.images.lock();
        images.syncs += 1;
        images.durable = images.written.clone();
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        let mut images = self.images.lock();
        let size = images.written.len() as u64;
        let start = offset.min(size) as usize;
        let end = offset.saturating_add(len).min(size) as usize;
        images.written[start..end].fill(0);
        Ok(())
    }
}
