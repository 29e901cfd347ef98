//! The simulated device ([`SimDevice`]): a backend whose faults the seed decides.
//!
//! # Owns
//! - the bytes written and the bytes durable, and the log of what landed since the last good
//!   sync (writes, zeroed ranges, length changes);
//! - the faults, at the seed's rates ([`Rates`]): failed reads, writes and syncs, torn
//!   multi-page writes (a prefix lands, then the error), and the loss of the writes since the
//!   last good sync when a sync fails; each is stamped with the logical clock ([`Fault`]) for
//!   rule 3 of the [module docs](super);
//! - when a write lands: cut at the device's length when submitted, landed after one to three
//!   scheduling points;
//! - the power cut ([`SimDevice::crash`]): the durable image plus a random subset of the page
//!   pieces landed since the last good sync.
//!
//! # Does not own
//! - the plan, the threads and the run (`mod.rs`), the model and the checks (`model.rs`).
//!
//! # May block
//! - never: its state is behind a `std` mutex, which shuttle does not schedule, and no call
//!   holds it across a scheduling point (`yield_now`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use shuttle::thread;

use super::{Clock, PS};
use crate::backend::faulty::SplitMix64;
use crate::backend::{Frame, FrameMut, Geometry, IoWaiter, PageCacheBackend};
use crate::error::{Error, IoOp, Result};

/// What the device injected, with when.
#[derive(Clone, Copy, Debug)]
pub(super) enum Fault {
    Write(u64),
    Sync(u64),
}

#[derive(Default)]
pub(super) struct Device {
    pub(super) written: Vec<u8>,
    pub(super) durable: Vec<u8>,
    /// Landed since the last good sync: (offset, bytes), or a new length.
    pub(super) log: Vec<(usize, Option<Vec<u8>>)>,
    pub(super) rng: Option<SplitMix64>,
    pub(super) faults: Vec<Fault>,
    /// What the device did, for the failure report.
    pub(super) trace: Vec<String>,
}

/// Fault rates in 1/1000.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rates {
    pub(super) read: u64,
    pub(super) write: u64,
    pub(super) sync: u64,
    pub(super) torn: u64,
}

/// The simulated device of the module docs.
pub(super) struct SimDevice {
    pub(super) state: std::sync::Mutex<Device>,
    pub(super) rates: Rates,
    pub(super) clock: Arc<Clock>,
}

impl SimDevice {
    fn chance(&self, per_mille: u64) -> bool {
        let mut st = self.state.lock().unwrap();
        st.rng.as_mut().expect("rng").below(1000) < per_mille
    }

    fn failure(op: IoOp, offset: u64) -> Error {
        Error::io(
            op,
            offset,
            std::io::Error::other("injected by the simulation"),
        )
    }

    /// The durable image with each unsynced write landed or not (page-sized pieces, in any
    /// order): what a power cut leaves.
    pub(super) fn crash(&self) -> Vec<u8> {
        let mut st = self.state.lock().unwrap();
        let st = &mut *st;
        let rng = st.rng.as_mut().expect("rng");
        let mut image = st.durable.clone();
        let mut pieces: Vec<(usize, Option<Vec<u8>>)> = Vec::new();
        for (at, what) in &st.log {
            match what {
                None => pieces.push((*at, None)),
                Some(b) => {
                    for (i, chunk) in b.chunks(PS).enumerate() {
                        pieces.push((at + i * PS, Some(chunk.to_vec())));
                    }
                }
            }
        }
        for i in (1..pieces.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            pieces.swap(i, j);
        }
        for (at, what) in pieces {
            if rng.below(2) == 0 {
                continue;
            }
            match what {
                None => image.resize(at, 0),
                Some(b) => {
                    if at + b.len() > image.len() {
                        image.resize(at + b.len(), 0);
                    }
                    image[at..at + b.len()].copy_from_slice(&b);
                }
            }
        }
        image
    }
}

impl PageCacheBackend for SimDevice {
    fn read_pages(&self, idx: u64, mut frames: Vec<FrameMut>) -> Result<IoWaiter> {
        let offset = idx as usize * PS;
        if self.chance(self.rates.read) {
            return Err(SimDevice::failure(IoOp::Read, offset as u64));
        }
        thread::yield_now();
        let mut st = self.state.lock().unwrap();
        let t = self.clock.0.load(Ordering::SeqCst);
        let first = st.written.get(offset).copied();
        st.trace.push(format!(
            "@{t} read pages {idx}+{} (first byte {first:?})",
            frames.len()
        ));
        for (i, f) in frames.iter_mut().enumerate() {
            let start = offset + i * PS;
            let buf = f.as_mut_slice();
            buf.fill(0);
            if start < st.written.len() {
                let n = (st.written.len() - start).min(PS);
                buf[..n].copy_from_slice(&st.written[start..start + n]);
            }
        }
        Ok(IoWaiter::ready(Ok(())))
    }

    fn write_pages(&self, idx: u64, frames: Vec<Frame>) -> Result<IoWaiter> {
        let offset = idx as usize * PS;
        let pages = frames.len();
        // Submitted: cut at the device's length now.
        let len = self.state.lock().unwrap().written.len();
        let mut bytes: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
        drop(frames);
        bytes.truncate(len.saturating_sub(offset));
        let fail = self.chance(self.rates.write);
        if fail {
            let torn = pages > 1 && self.chance(self.rates.torn);
            let mut st = self.state.lock().unwrap();
            let landed = if torn {
                1 + st.rng.as_mut().expect("rng").below(pages as u64 - 1) as usize
            } else {
                0
            };
            bytes.truncate(landed * PS);
            let t = self.clock.tick();
            st.faults.push(Fault::Write(t));
        }
        // In flight for one to three scheduling points.
        let steps = 1 + self
            .state
            .lock()
            .unwrap()
            .rng
            .as_mut()
            .expect("rng")
            .below(3);
        for _ in 0..steps {
            thread::yield_now();
        }
        // Landed.
        let mut st = self.state.lock().unwrap();
        let t = self.clock.0.load(Ordering::SeqCst);
        let first = bytes.first().copied();
        st.trace.push(format!(
            "@{t} write pages {idx}+{pages} landed {} bytes (first {first:?}){}",
            bytes.len(),
            if fail { ", failed" } else { "" }
        ));
        if !bytes.is_empty() {
            if offset + bytes.len() > st.written.len() {
                st.written.resize(offset + bytes.len(), 0);
            }
            st.written[offset..offset + bytes.len()].copy_from_slice(&bytes);
            st.log.push((offset, Some(bytes)));
        }
        Ok(IoWaiter::ready(if fail {
            Err(SimDevice::failure(IoOp::Write, offset as u64))
        } else {
            Ok(())
        }))
    }

    fn len(&self) -> u64 {
        self.state.lock().unwrap().written.len() as u64
    }

    fn set_len(&self, len: u64) -> Result<()> {
        let mut st = self.state.lock().unwrap();
        let t = self.clock.0.load(Ordering::SeqCst);
        st.trace.push(format!("@{t} set_len {len}"));
        st.written.resize(len as usize, 0);
        st.log.push((len as usize, None));
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        let fail = self.chance(self.rates.sync);
        thread::yield_now();
        let mut st = self.state.lock().unwrap();
        let log = std::mem::take(&mut st.log);
        if fail {
            // Those writes will never be durable unless written again.
            let t = self.clock.tick();
            st.faults.push(Fault::Sync(t));
            return Err(SimDevice::failure(IoOp::Sync, 0));
        }
        for (at, what) in log {
            match what {
                None => st.durable.resize(at, 0),
                Some(b) => {
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
        let mut st = self.state.lock().unwrap();
        let size = st.written.len();
        let (a, b) = (
            (offset as usize).min(size),
            (offset.saturating_add(len) as usize).min(size),
        );
        let t = self.clock.0.load(Ordering::SeqCst);
        st.trace.push(format!("@{t} zeroes {a}..{b}"));
        st.written[a..b].fill(0);
        st.log.push((a, Some(vec![0; b - a])));
        Ok(())
    }

    fn geometry(&self) -> Geometry {
        Geometry::default().with_io_pages_max(4)
    }
}
