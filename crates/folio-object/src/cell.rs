//! The transient state of one chunk: what is queued for it, whether its rewrite task runs,
//! which of its bytes' latest write failed, and whether a write of ours may have landed unseen.
//!
//! Owns: [`Cell`] and [`CellState`], the changes queued for a chunk ([`Op`], [`Pending`]), the
//! byte ranges whose write failed ([`Ranges`]), and the pure helpers that apply changes to a
//! chunk's bytes. A cell exists only while a chunk has something going on (a read or rewrite in
//! flight, queued writes, failed bytes, a write of unknown outcome): `image.rs` drops it when it
//! is idle, so memory per chunk is the compact version entry (`versions.rs`) alone.
//!
//! Does not own: the chunk's version (`versions.rs`), I/O (`chunk.rs`, `rewrite.rs`).
//! Nothing here blocks.

use std::sync::Arc;

use folio::backend::Frame;
use parking_lot::Mutex;
use tokio::sync::RwLock;

use crate::join::Join;

/// One chunk's transient state.
#[derive(Default)]
pub(crate) struct Cell {
    /// Shared by reads, exclusive for a rewrite.
    pub(crate) io: RwLock<()>,
    pub(crate) st: Mutex<CellState>,
}

/// See the module docs.
#[derive(Default)]
pub(crate) struct CellState {
    pub(crate) pending: Vec<Pending>,
    pub(crate) task: Task,
    /// Bytes of the chunk whose latest write failed.
    pub(crate) failed: Ranges,
    /// A write of ours whose outcome is unknown (a PUT that got no answer, or whose answer
    /// was lost) may have landed, or may still land: the version Folio knows may be stale.
    /// The next request resolves it (`rewrite.rs`); cleared once a later PUT of ours lands
    /// (every write is conditional on a version, and versions never come back, `trailer.rs`,
    /// so the unknown one can no longer land).
    pub(crate) unsure: bool,
}

impl CellState {
    /// True if nothing is going on: the cell may be dropped.
    pub(crate) fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.task == Task::Idle && self.failed.is_empty() && !self.unsure
    }
}

#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub(crate) enum Task {
    /// No rewrite task, nothing queued.
    #[default]
    Idle,
    /// Writes queued; the task starts at the next `unplug`.
    Plugged,
    /// A task is rewriting the chunk (and will take what is queued meanwhile).
    Running,
}

/// A change queued for a chunk.
pub(crate) enum Op {
    /// Pages at byte `at` of the chunk.
    Write { at: u64, frames: Vec<Frame> },
    /// Zeros over `start .. end` of the chunk.
    Zero { start: u64, end: u64 },
}

impl Op {
    pub(crate) fn span(&self) -> (u64, u64) {
        match self {
            Op::Write { at, frames } => {
                let len: usize = frames.iter().map(|f| f.len()).sum();
                (*at, at + len as u64)
            }
            Op::Zero { start, end } => (*start, *end),
        }
    }
}

/// A queued change, the waiter part it completes, and its write ticket.
pub(crate) struct Pending {
    pub(crate) op: Op,
    pub(crate) join: Arc<Join>,
    pub(crate) ticket: u64,
    pub(crate) offset: u64,
}

/// When a queued write's rewrite should start.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kick {
    /// Now: the caller waits next.
    Now,
    /// At the next `unplug` (the caller queues more first).
    Plugged,
}

/// Disjoint, sorted byte ranges of a chunk (at most 64 MiB, so `u32` offsets).
#[derive(Default, Debug, PartialEq, Eq)]
pub(crate) struct Ranges(Vec<(u32, u32)>);

impl Ranges {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes covered.
    pub(crate) fn bytes(&self) -> u64 {
        self.0.iter().map(|&(s, e)| (e - s) as u64).sum()
    }

    /// Adds `start .. end`; returns the bytes newly covered.
    pub(crate) fn add(&mut self, start: u64, end: u64) -> u64 {
        let before = self.bytes();
        let (mut s, mut e) = (clip(start), clip(end));
        if s >= e {
            return 0;
        }
        let mut out = Vec::with_capacity(self.0.len() + 1);
        for &(a, b) in &self.0 {
            if b < s || a > e {
                out.push((a, b));
            } else {
                s = s.min(a);
                e = e.max(b);
            }
        }
        out.push((s, e));
        out.sort_unstable();
        self.0 = out;
        self.bytes() - before
    }

    /// Removes `start .. end`; returns the bytes no longer covered.
    pub(crate) fn remove(&mut self, start: u64, end: u64) -> u64 {
        let before = self.bytes();
        let (s, e) = (clip(start), clip(end));
        if s >= e {
            return 0;
        }
        let mut out = Vec::with_capacity(self.0.len() + 1);
        for &(a, b) in &self.0 {
            if b <= s || a >= e {
                out.push((a, b));
                continue;
            }
            if a < s {
                out.push((a, s));
            }
            if b > e {
                out.push((e, b));
            }
        }
        self.0 = out;
        before - self.bytes()
    }
}

fn clip(x: u64) -> u32 {
    u32::try_from(x).unwrap_or(u32::MAX)
}

/// True if `ops` together cover `0 .. len`.
pub(crate) fn covers(ops: &[Op], len: u64) -> bool {
    let mut spans: Vec<(u64, u64)> = ops.iter().map(|op| op.span()).collect();
    spans.sort_unstable();
    let mut reached = 0;
    for (s, e) in spans {
        if s > reached {
            return false;
        }
        reached = reached.max(e);
    }
    reached >= len
}

/// Applies `op` to the chunk bytes `buf` (clipped to its length). The frames stay with the op:
/// a round that has to start again on another base applies them again.
pub(crate) fn apply(buf: &mut [u8], op: &Op) {
    let len = buf.len() as u64;
    match op {
        Op::Write { at, frames } => {
            let mut pos = *at;
            for f in frames {
                if pos >= len {
                    break;
                }
                let n = (f.len() as u64).min(len - pos) as usize;
                f.copy_to(&mut buf[pos as usize..pos as usize + n]);
                pos += f.len() as u64;
            }
        }
        Op::Zero { start, end } => {
            let (s, e) = ((*start).min(len) as usize, (*end).min(len) as usize);
            if s < e {
                buf[s..e].fill(0);
            }
        }
    }
}

/// Length of `buf` without its trailing zeros (bytes past an object's data read as zeros).
pub(crate) fn data_len(buf: &[u8]) -> usize {
    buf.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_split_and_count() {
        let mut r = Ranges::default();
        assert_eq!(r.add(100, 200), 100);
        assert_eq!(r.add(150, 300), 100);
        assert_eq!(r.add(400, 500), 100);
        assert_eq!(r.add(300, 400), 100, "touching ranges merge");
        assert_eq!(r.0, vec![(100, 500)]);
        assert_eq!(r.remove(200, 250), 50);
        assert_eq!(r.0, vec![(100, 200), (250, 500)]);
        assert_eq!(r.remove(0, 1000), 350);
        assert!(r.is_empty());
        assert_eq!(r.remove(0, 10), 0);
        // Sub-4 KiB pages: a 512-byte page that failed and is written again clears.
        assert_eq!(r.add(512, 1024), 512);
        assert_eq!(r.remove(512, 1024), 512);
        assert!(r.is_empty());
    }

    #[test]
    fn zero_ops_clip_and_trailing_zeros_are_not_data() {
        let mut buf = vec![1u8; 10];
        apply(&mut buf, &Op::Zero { start: 8, end: 100 });
        assert_eq!(buf, [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
        assert_eq!(data_len(&buf), 8);
        assert_eq!(data_len(&[0, 0]), 0);
        let ops = [
            Op::Zero { start: 0, end: 5 },
            Op::Zero { start: 5, end: 10 },
        ];
        assert!(covers(&ops, 10));
        assert!(!covers(&ops[1..], 10));
    }
}
