//! [`FileBackend`]: a regular file or a block device, through positional vectored I/O.
//!
//! Reads and writes are `preadv`/`pwritev` over the frames of one contiguous run, so a run of
//! pages is one system call; they complete before returning (the waiter is ready). Durability is
//! `fdatasync`. With [`IoMode::Direct`] the file is opened `O_DIRECT`: frames are already
//! page-aligned, and the partial last page of a file whose length is not a multiple of the
//! alignment is written through a second, buffered descriptor so that the file never grows.

use std::fs::File;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{FallocateFlags, OFlags};

use super::{io_geometry, Extent, Frame, FrameMut, Geometry, IoWaiter, PageCacheBackend};
use crate::error::{Error, IoOp, Result};

/// How a [`FileBackend`] talks to the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoMode {
    /// Through the kernel's page cache.
    #[default]
    Buffered,
    /// `O_DIRECT`: bypass the kernel's page cache (needs page sizes that are a multiple of the
    /// device's logical block size).
    Direct,
}

/// Alignment assumed for O_DIRECT offsets and lengths (the logical block size of nearly every
/// device; the kernel rejects anything less with `EINVAL`, which comes back as a typed error).
pub(crate) const DIRECT_ALIGN: usize = 512;

/// A file or block device. See the [module docs](self).
#[derive(Debug)]
pub struct FileBackend {
    file: File,
    /// Buffered descriptor of the same file, for unaligned tail writes in direct mode.
    tail_file: Option<File>,
    mode: IoMode,
    len: AtomicU64,
    /// Resizes begun plus resizes ended: odd while one is under way. A read that comes back
    /// short while this moved was cut by our own shrink, not by someone else's truncation.
    resizes: AtomicU64,
}

impl FileBackend {
    /// Opens (creating if missing) the file at `path` for reading and writing.
    pub fn open(path: impl AsRef<Path>, mode: IoMode) -> Result<FileBackend> {
        let path = path.as_ref();
        let mut flags = OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC;
        if mode == IoMode::Direct {
            flags |= OFlags::DIRECT;
        }
        let fd = rustix::fs::open(path, flags, rustix::fs::Mode::from_raw_mode(0o644))
            .map_err(|e| Error::io(IoOp::Read, 0, e.into()))?;
        FileBackend::from_file(File::from(fd), mode)
    }

    /// Wraps an open file. For [`IoMode::Direct`] the file must have been opened with `O_DIRECT`.
    pub fn from_file(file: File, mode: IoMode) -> Result<FileBackend> {
        let len = rustix::fs::seek(&file, rustix::fs::SeekFrom::End(0))
            .map_err(|e| Error::io(IoOp::Read, 0, e.into()))?;
        let tail_file = match mode {
            IoMode::Buffered => None,
            IoMode::Direct => {
                let fd = file.as_fd();
                let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
                let tail = rustix::fs::open(
                    proc_path.as_str(),
                    OFlags::RDWR | OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
                .map_err(|e| Error::io(IoOp::Write, 0, e.into()))?;
                Some(File::from(tail))
            }
        };
        Ok(FileBackend {
            file,
            tail_file,
            mode,
            len: AtomicU64::new(len),
            resizes: AtomicU64::new(0),
        })
    }

    /// The I/O mode.
    pub fn mode(&self) -> IoMode {
        self.mode
    }

    /// The underlying file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// A buffered descriptor of the same file: the tail descriptor in direct mode, else the file.
    /// For the rare byte ranges O_DIRECT cannot do (unaligned tails, short-transfer remainders).
    pub(crate) fn buffered_file(&self) -> &File {
        self.tail_file.as_ref().unwrap_or(&self.file)
    }

    pub(crate) fn check_direct(&self, offset: u64, page_size: usize, count: usize) -> Result<()> {
        if count == 0 || page_size == 0 {
            return Err(Error::Misaligned {
                offset,
                len: 0,
                align: self.alignment(),
            });
        }
        if self.mode == IoMode::Direct
            && (page_size % DIRECT_ALIGN != 0 || offset % DIRECT_ALIGN as u64 != 0)
        {
            return Err(Error::Misaligned {
                offset,
                len: page_size * count,
                align: DIRECT_ALIGN,
            });
        }
        Ok(())
    }
}

/// Where a vectored transfer over a list of buffers has got to: the first buffer not yet done,
/// and how many of its bytes are.
#[derive(Default)]
struct IovCursor {
    first: usize,
    skip: usize,
}

impl IovCursor {
    /// Moves past `n` transferred bytes of `count` buffers whose lengths `len(i)` gives.
    fn advance(&mut self, mut n: usize, count: usize, len: impl Fn(usize) -> usize) {
        while n > 0 && self.first < count {
            let room = len(self.first) - self.skip;
            if n >= room {
                n -= room;
                self.first += 1;
                self.skip = 0;
            } else {
                self.skip += n;
                n = 0;
            }
        }
    }
}

/// Reads into `bufs` at `offset` until they are full or the file ends; returns bytes read.
pub(crate) fn preadv_full(
    file: &File,
    bufs: &mut [&mut [u8]],
    mut offset: u64,
) -> std::io::Result<usize> {
    let mut done = 0usize;
    let mut at = IovCursor::default();
    while at.first < bufs.len() {
        let mut slices: Vec<IoSliceMut<'_>> = Vec::with_capacity(bufs.len() - at.first);
        for (i, b) in bufs[at.first..].iter_mut().enumerate() {
            let s = if i == 0 { at.skip } else { 0 };
            slices.push(IoSliceMut::new(&mut b[s..]));
        }
        let n = match rustix::io::preadv(file, &mut slices, offset) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            break;
        }
        done += n;
        offset += n as u64;
        at.advance(n, bufs.len(), |i| bufs[i].len());
    }
    Ok(done)
}

/// Writes all of `bufs` at `offset`.
pub(crate) fn pwritev_full(file: &File, bufs: &[&[u8]], mut offset: u64) -> std::io::Result<()> {
    let mut at = IovCursor::default();
    while at.first < bufs.len() {
        let slices: Vec<IoSlice<'_>> = bufs[at.first..]
            .iter()
            .enumerate()
            .map(|(i, b)| IoSlice::new(if i == 0 { &b[at.skip..] } else { b }))
            .collect();
        let n = match rustix::io::pwritev(file, &slices, offset) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "pwritev wrote nothing",
            ));
        }
        offset += n as u64;
        at.advance(n, bufs.len(), |i| bufs[i].len());
    }
    Ok(())
}

impl FileBackend {
    /// The alignment (bytes) its I/O needs: the O_DIRECT block in [`IoMode::Direct`], else 1.
    pub(crate) fn alignment(&self) -> usize {
        match self.mode {
            IoMode::Buffered => 1,
            IoMode::Direct => DIRECT_ALIGN,
        }
    }

    /// The resize epoch (see `resizes`), sampled before an I/O whose shortness may be ours.
    pub(crate) fn resize_epoch(&self) -> u64 {
        self.resizes.load(Ordering::SeqCst)
    }

    /// True if a resize ran, or is running, since `epoch` was sampled.
    pub(crate) fn resized_since(&self, epoch: u64) -> bool {
        let now = self.resizes.load(Ordering::SeqCst);
        now != epoch || now % 2 == 1
    }

    /// `ftruncate`, then the new length for writes to clip at.
    fn set_len_now(&self, len: u64) -> Result<()> {
        rustix::fs::ftruncate(&self.file, len).map_err(|e| match e {
            rustix::io::Errno::INVAL | rustix::io::Errno::PERM
                if len != self.len.load(Ordering::Acquire) =>
            {
                Error::Unsupported("resizing this file or device")
            }
            e => Error::io(IoOp::Resize, len, e.into()),
        })?;
        self.len.store(len, Ordering::Release);
        Ok(())
    }
}

impl PageCacheBackend for FileBackend {
    fn read_pages(&self, idx: u64, mut frames: Vec<FrameMut>) -> Result<IoWaiter> {
        let (page_size, offset) = io_geometry(idx, frames.iter().map(|f| f.len()))?;
        self.check_direct(offset, page_size, frames.len())?;
        let wanted = page_size * frames.len();
        // The length before the read: a file that grows meanwhile (an append) may give more,
        // never less; one that shrinks (a truncation) may give less, checked below.
        let len_before = self.len.load(Ordering::Acquire);
        let resizes_before = self.resize_epoch();
        let mut bufs: Vec<&mut [u8]> = frames.iter_mut().map(|f| f.as_mut_slice()).collect();
        let done = preadv_full(&self.file, &mut bufs, offset)
            .map_err(|e| Error::io(IoOp::Read, offset, e))?;
        // Past the end of the file: zeros (the partial last page, or pages beyond it).
        let mut pos = 0usize;
        for b in bufs.iter_mut() {
            let end = pos + b.len();
            if end > done {
                let from = done.saturating_sub(pos);
                b[from..].fill(0);
            }
            pos = end;
        }
        let len = len_before.min(self.len.load(Ordering::Acquire));
        let expected = len.saturating_sub(offset).min(wanted as u64) as usize;
        if done < expected && !self.resized_since(resizes_before) {
            // The file is shorter than we believe: someone truncated it behind our back. (Cut
            // by a resize of ours racing the read, it reads as zeros past the cut, as the
            // pages past the new end do.)
            return Err(Error::ShortIo {
                op: IoOp::Read,
                offset,
                done,
                wanted: expected,
            });
        }
        Ok(IoWaiter::ready(Ok(())))
    }

    fn write_pages(&self, idx: u64, frames: Vec<Frame>) -> Result<IoWaiter> {
        let (page_size, offset) = io_geometry(idx, frames.iter().map(|f| f.len()))?;
        self.check_direct(offset, page_size, frames.len())?;
        let len = self.len.load(Ordering::Acquire);
        if offset >= len {
            return Ok(IoWaiter::ready(Ok(())));
        }
        // Never grow the file: clip the write at its length.
        let total = ((len - offset) as usize).min(page_size * frames.len());
        let mut bufs: Vec<&[u8]> = Vec::with_capacity(frames.len());
        let mut left = total;
        for f in &frames {
            if left == 0 {
                break;
            }
            let n = left.min(page_size);
            // SAFETY: the slices live until `pwritev` below returns, before this call completes
            // the write: the cache keeps the frames under write-back until then.
            bufs.push(unsafe { &f.as_slice()[..n] });
            left -= n;
        }
        let result = match (&self.tail_file, total % DIRECT_ALIGN) {
            (Some(tail_file), tail) if tail != 0 => {
                // Direct mode with an unaligned end: the aligned prefix directly, the tail
                // buffered.
                let last = bufs.pop().unwrap_or(&[]);
                let aligned = last.len() - tail;
                let prefix_len: usize = bufs.iter().map(|b| b.len()).sum::<usize>() + aligned;
                if aligned > 0 {
                    bufs.push(&last[..aligned]);
                }
                pwritev_full(&self.file, &bufs, offset).and_then(|()| {
                    pwritev_full(tail_file, &[&last[aligned..]], offset + prefix_len as u64)
                })
            }
            _ => pwritev_full(&self.file, &bufs, offset),
        };
        result.map_err(|e| Error::io(IoOp::Write, offset, e))?;
        Ok(IoWaiter::ready(Ok(())))
    }

    fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    fn set_len(&self, len: u64) -> Result<()> {
        self.resizes.fetch_add(1, Ordering::SeqCst);
        let result = self.set_len_now(len);
        self.resizes.fetch_add(1, Ordering::SeqCst);
        result
    }

    fn sync(&self) -> Result<()> {
        rustix::fs::fdatasync(&self.file).map_err(|e| Error::io(IoOp::Sync, 0, e.into()))
    }

    fn allocation(&self, offset: u64, len: u64, extents_max: usize) -> Result<Vec<Extent>> {
        let size = self.len.load(Ordering::Acquire);
        super::extents::file_extents(&self.file, size, offset, len, extents_max)
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        let size = self.len.load(Ordering::Acquire);
        let end = offset.saturating_add(len).min(size);
        if offset >= end {
            return Ok(());
        }
        rustix::fs::fallocate(
            &self.file,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            offset,
            end - offset,
        )
        .map_err(|e| match e {
            rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS => {
                Error::Unsupported("write_zeroes")
            }
            e => Error::io(IoOp::Zero, offset, e.into()),
        })
    }

    fn geometry(&self) -> Geometry {
        Geometry::default().with_alignment(self.alignment())
    }
}
