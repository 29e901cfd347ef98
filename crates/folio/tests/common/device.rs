//! [`Device`]: an in-memory model of an asynchronous block device, for tests that need a chosen
//! backend call to stay in flight while other calls run.
//!
//! Like a file under io_uring or `pwrite`, a write's extent is fixed when it is *submitted* (it
//! is cut at the device's length then) and its bytes *land* later: a write that lands after a
//! truncation extends the device again, as `pwrite` past the end of a file does. A sync makes
//! what has landed since the last good sync durable; a failed sync loses those writes from what
//! can ever become durable (Linux marks the pages clean after a failed writeback: the next
//! `fsync` succeeds without writing them, the "fsyncgate" problem), and nothing tells the next
//! sync.
//!
//! A test *holds* the n-th call of a kind ([`Device::hold`]): that call blocks, after it has
//! decided what it will do, until the test releases it. [`Held::arrived`] waits until the call
//! is blocked, so interleavings are reproduced exactly, not by sleeping.

use std::sync::Arc;

use folio::{Error, Frame, FrameMut, Geometry, IoOp, IoWaiter, PageCacheBackend, Result};
use parking_lot::{Condvar, Mutex};

/// The kinds of call a test can hold or fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Read,
    Write,
    Sync,
    SetLen,
    WriteZeroes,
}

const CALLS: usize = 5;

impl Call {
    fn slot(self) -> usize {
        self as usize
    }

    fn op(self) -> IoOp {
        match self {
            Call::Read => IoOp::Read,
            Call::Write => IoOp::Write,
            Call::Sync => IoOp::Sync,
            Call::SetLen => IoOp::Resize,
            Call::WriteZeroes => IoOp::Zero,
        }
    }
}

#[derive(Default)]
struct State {
    /// What reads see (bytes that have landed).
    written: Vec<u8>,
    /// What the last good sync made durable.
    durable: Vec<u8>,
    /// Calls of each kind so far.
    calls: [u64; CALLS],
    /// Holds: (kind, call number, arrived, released).
    holds: Vec<(Call, u64, bool, bool)>,
    /// Calls of each kind to fail: numbers of the calls.
    fail: Vec<(Call, u64)>,
    /// Zeroings to apply and then report failed (a lost answer): numbers of the calls.
    zero_then_fail: Vec<u64>,
    /// The ranges the cache said it discarded (offset, length).
    discards: Vec<(u64, u64)>,
    /// Reads whose buffers the device keeps after completing them (a broken backend).
    keep: Vec<u64>,
    kept: Vec<FrameMut>,
    /// What landed since the last sync, in order: a good sync applies it to `durable`, a failed
    /// one forgets it.
    log: Vec<Landed>,
}

enum Landed {
    Bytes(usize, Vec<u8>),
    Len(usize),
}

/// See the [module docs](self).
pub struct Device {
    state: Mutex<State>,
    changed: Condvar,
    queue_depth: usize,
}

/// A held call: see [`Device::hold`].
pub struct Held {
    device: Arc<Device>,
    index: usize,
}

impl Device {
    /// A device holding `bytes` (durable), completing every call before it returns (queue depth 1).
    pub fn new(bytes: Vec<u8>) -> Arc<Device> {
        Device::with_queue_depth(bytes, 1)
    }

    /// As [`new`](Self::new), reporting `queue_depth` so the cache keeps that many I/Os in flight.
    pub fn with_queue_depth(bytes: Vec<u8>, queue_depth: usize) -> Arc<Device> {
        Arc::new(Device {
            state: Mutex::new(State {
                durable: bytes.clone(),
                written: bytes,
                ..State::default()
            }),
            changed: Condvar::new(),
            queue_depth,
        })
    }

    /// Holds the `nth` call of `kind` from now on (0: the next one).
    pub fn hold(self: &Arc<Self>, kind: Call, nth: u64) -> Held {
        let mut st = self.state.lock();
        let at = st.calls[kind.slot()] + nth;
        st.holds.push((kind, at, false, false));
        Held {
            device: self.clone(),
            index: st.holds.len() - 1,
        }
    }

    /// Fails the `nth` call of `kind` from now on (0: the next one).
    pub fn fail(&self, kind: Call, nth: u64) {
        let mut st = self.state.lock();
        let at = st.calls[kind.slot()] + nth;
        st.fail.push((kind, at));
    }

    /// Makes the `nth` zeroing from now on zero its range and then report a failure (its answer
    /// was lost).
    pub fn zero_then_fail(&self, nth: u64) {
        let mut st = self.state.lock();
        let at = st.calls[Call::WriteZeroes.slot()] + nth;
        st.zero_then_fail.push(at);
    }

    /// The ranges the cache said it discarded, in order (offset, length).
    pub fn discards(&self) -> Vec<(u64, u64)> {
        self.state.lock().discards.clone()
    }

    /// Makes the `nth` read from now on keep its buffers after completing (a broken backend):
    /// [`scribble`](Self::scribble) then writes into them, as a late device write would.
    pub fn keep_buffers(&self, nth: u64) {
        let mut st = self.state.lock();
        let at = st.calls[Call::Read.slot()] + nth;
        st.keep.push(at);
    }

    /// Writes `byte` over every buffer the device kept; returns how many.
    pub fn scribble(&self, byte: u8) -> usize {
        let mut st = self.state.lock();
        for f in st.kept.iter_mut() {
            f.as_mut_slice().fill(byte);
        }
        st.kept.len()
    }

    /// What reads of the device see now.
    pub fn image(&self) -> Vec<u8> {
        self.state.lock().written.clone()
    }

    /// What survives a power cut now.
    pub fn durable(&self) -> Vec<u8> {
        self.state.lock().durable.clone()
    }

    /// Calls of `kind` so far.
    pub fn calls(&self, kind: Call) -> u64 {
        self.state.lock().calls[kind.slot()]
    }

    /// Counts a call of `kind`; blocks it if held; says whether it must fail.
    fn enter(&self, kind: Call) -> bool {
        let mut st = self.state.lock();
        let n = st.calls[kind.slot()];
        st.calls[kind.slot()] += 1;
        let fail = st.fail.iter().any(|&(k, at)| k == kind && at == n);
        if let Some(i) = st.holds.iter().position(|h| h.0 == kind && h.1 == n) {
            st.holds[i].2 = true;
            self.changed.notify_all();
            while !st.holds[i].3 {
                self.changed.wait(&mut st);
            }
        }
        fail
    }

    fn failure(kind: Call, offset: u64) -> Error {
        Error::io(
            kind.op(),
            offset,
            std::io::Error::other("injected by the test device"),
        )
    }
}

impl Held {
    /// Waits until the held call has arrived and blocks.
    pub fn arrived(&self) {
        let mut st = self.device.state.lock();
        while !st.holds[self.index].2 {
            self.device.changed.wait(&mut st);
        }
    }

    /// True once the held call has arrived.
    pub fn has_arrived(&self) -> bool {
        self.device.state.lock().holds[self.index].2
    }

    /// Lets the held call go on.
    pub fn release(&self) {
        let mut st = self.device.state.lock();
        st.holds[self.index].3 = true;
        self.device.changed.notify_all();
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // A test that panics must not leave a backend call blocked forever.
        self.release();
    }
}

impl PageCacheBackend for Device {
    fn read_pages(&self, idx: u64, mut frames: Vec<FrameMut>) -> Result<IoWaiter> {
        let ps = frames.first().map_or(0, |f| f.len());
        let offset = idx * ps as u64;
        let n = self.calls(Call::Read);
        if self.enter(Call::Read) {
            return Err(Device::failure(Call::Read, offset));
        }
        let mut st = self.state.lock();
        for (i, frame) in frames.iter_mut().enumerate() {
            let start = offset as usize + i * ps;
            let buf = frame.as_mut_slice();
            buf.fill(0);
            if start < st.written.len() {
                let n = (st.written.len() - start).min(ps);
                buf[..n].copy_from_slice(&st.written[start..start + n]);
            }
        }
        if st.keep.contains(&n) {
            st.kept.extend(frames);
        }
        Ok(IoWaiter::ready(Ok(())))
    }

    fn write_pages(&self, idx: u64, frames: Vec<Frame>) -> Result<IoWaiter> {
        let ps = frames.first().map_or(0, |f| f.len());
        let offset = (idx * ps as u64) as usize;
        // Submission: the extent is cut at the length the device has now.
        let len = self.state.lock().written.len();
        let mut bytes = Vec::new();
        for f in &frames {
            bytes.extend_from_slice(&f.to_vec());
        }
        bytes.truncate(len.saturating_sub(offset));
        drop(frames);
        if self.enter(Call::Write) {
            return Ok(IoWaiter::ready(Err(Device::failure(
                Call::Write,
                offset as u64,
            ))));
        }
        // Landing: a write past the end extends the device, as pwrite does.
        let mut st = self.state.lock();
        let end = offset + bytes.len();
        if !bytes.is_empty() && end > st.written.len() {
            st.written.resize(end, 0);
        }
        st.written[offset..offset + bytes.len()].copy_from_slice(&bytes);
        st.log.push(Landed::Bytes(offset, bytes));
        Ok(IoWaiter::ready(Ok(())))
    }

    fn len(&self) -> u64 {
        self.state.lock().written.len() as u64
    }

    fn set_len(&self, len: u64) -> Result<()> {
        if self.enter(Call::SetLen) {
            return Err(Device::failure(Call::SetLen, len));
        }
        let mut st = self.state.lock();
        st.written.resize(len as usize, 0);
        st.log.push(Landed::Len(len as usize));
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        let fail = self.enter(Call::Sync);
        let mut st = self.state.lock();
        let log = std::mem::take(&mut st.log);
        if fail {
            // Those writes will never become durable unless they are written again.
            return Err(Device::failure(Call::Sync, 0));
        }
        for l in log {
            match l {
                Landed::Len(n) => st.durable.resize(n, 0),
                Landed::Bytes(at, b) => {
                    if at + b.len() > st.durable.len() {
                        st.durable.resize(at + b.len(), 0);
                    }
                    st.durable[at..at + b.len()].copy_from_slice(&b);
                }
            }
        }
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        let n = self.state.lock().calls[Call::WriteZeroes.slot()];
        if self.enter(Call::WriteZeroes) {
            return Err(Device::failure(Call::WriteZeroes, offset));
        }
        let mut st = self.state.lock();
        let lost = st.zero_then_fail.contains(&n);
        let size = st.written.len() as u64;
        let (start, end) = (
            offset.min(size) as usize,
            offset.saturating_add(len).min(size) as usize,
        );
        st.written[start..end].fill(0);
        st.log.push(Landed::Bytes(start, vec![0; end - start]));
        if lost {
            return Err(Device::failure(Call::WriteZeroes, offset));
        }
        Ok(())
    }

    fn discarded(&self, offset: u64, len: u64) {
        self.state.lock().discards.push((offset, len));
    }

    fn geometry(&self) -> Geometry {
        Geometry::default().with_queue_depth(self.queue_depth)
    }
}
