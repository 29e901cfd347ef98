//! S3-FIFO's queue entries (`s3fifo.rs`): each queue is a FIFO of `u32` entries, a frame id
//! and the generation it was pushed under; removal is lazy (an entry whose frame has left its
//! queue, or holds a newer page, is stale and skipped when popped), and compaction drops the
//! stale entries when they fill the pool's slack. See the parent's "Layout" section.
//!
//! Owns no state of its own: every method runs under the parent's lock (`Inner`) and reads or
//! writes the frames' state bytes, which only that lock's holder writes.

use std::sync::atomic::Ordering;

use super::{FrameId, Inner, S3Fifo, GEN_SHIFT, MAIN, NONE, QUEUE, SEEN, SMALL};

impl S3Fifo {
    pub(super) fn state(&self, frame: FrameId) -> u8 {
        self.frames[frame as usize].state.load(Ordering::Relaxed)
    }

    pub(super) fn set_state(&self, frame: FrameId, state: u8) {
        self.frames[frame as usize]
            .state
            .store(state, Ordering::Relaxed);
    }

    /// Puts `frame` (in no queue) into queue `q` with a new entry under a new generation, which
    /// makes any entry the frame still has from an earlier page stale.
    pub(super) fn enqueue(&self, inner: &mut Inner, frame: FrameId, q: u8) {
        let gen_mask = (1u8 << inner.gen_bits) - 1;
        let gen = ((self.state(frame) >> GEN_SHIFT) + 1) & gen_mask;
        self.set_state(frame, q | gen << GEN_SHIFT);
        inner.len[q as usize] += 1;
        self.push_entry(inner, (frame << inner.gen_bits) | gen as u32, q);
    }

    /// Appends `entry` to queue `q`, compacting the queues first if the pool is out of chunks.
    pub(super) fn push_entry(&self, inner: &mut Inner, entry: u32, q: u8) {
        if !inner.pool.try_push(&mut inner.queues[q as usize], entry) {
            self.compact(inner);
            let pushed = inner.pool.try_push(&mut inner.queues[q as usize], entry);
            assert!(pushed, "S3-FIFO queue pool exhausted after compaction");
        }
    }

    /// The frame of `entry` if the entry is its live place in queue `q`.
    #[inline]
    pub(super) fn live_entry(&self, gen_bits: u32, entry: u32, q: u8) -> Option<FrameId> {
        let frame = entry >> gen_bits;
        let gen_mask = (1u8 << gen_bits) - 1;
        let s = self.state(frame);
        (s & QUEUE == q && (s >> GEN_SHIFT) & gen_mask == entry as u8 & gen_mask).then_some(frame)
    }

    /// Pops the oldest live entry of queue `q` (dropping stale ones before it) and its frame,
    /// which still counts as in `q`.
    #[inline]
    pub(super) fn pop_live(&self, inner: &mut Inner, q: u8) -> Option<(u32, FrameId)> {
        let gen_bits = inner.gen_bits;
        if q == MAIN {
            if let Some(entry) = inner.peeked.take() {
                if let Some(frame) = self.live_entry(gen_bits, entry, q) {
                    return Some((entry, frame));
                }
            }
        }
        while let Some(entry) = inner.pool.pop(&mut inner.queues[q as usize]) {
            if let Some(frame) = self.live_entry(gen_bits, entry, q) {
                return Some((entry, frame));
            }
        }
        None
    }

    /// Moves a frame whose entry was just popped from `from` to the newest end of `to`, with the
    /// same entry (its generation is unchanged: it has no other live entry).
    pub(super) fn requeue(&self, inner: &mut Inner, entry: u32, frame: FrameId, from: u8, to: u8) {
        if from != to {
            let s = self.state(frame);
            self.set_state(frame, (s & !QUEUE) | to);
            inner.len[from as usize] -= 1;
            inner.len[to as usize] += 1;
        }
        self.push_entry(inner, entry, to);
    }

    /// Takes `frame` out of its queue, if any: its entry becomes stale.
    pub(super) fn unlink(&self, inner: &mut Inner, frame: FrameId) {
        let s = self.state(frame);
        let q = s & QUEUE;
        if q != NONE {
            inner.len[q as usize] -= 1;
            self.set_state(frame, s & !QUEUE);
        }
    }

    /// Drops every stale entry (and all but the oldest of any entries a wrapped generation made
    /// look live), so that the queues hold exactly their live pages. O(frames).
    pub(super) fn compact(&self, inner: &mut Inner) {
        let gen_bits = inner.gen_bits;
        // Main's peeked victim is its oldest page: it keeps its place, and any older entry of
        // its frame is dropped as a duplicate.
        let peeked = inner
            .peeked
            .and_then(|entry| self.live_entry(gen_bits, entry, MAIN));
        if let Some(frame) = peeked {
            self.set_state(frame, self.state(frame) | SEEN);
        } else {
            inner.peeked = None;
        }
        for q in [SMALL, MAIN] {
            let held = usize::from(q == MAIN && peeked.is_some());
            let mut queue = inner.queues[q as usize];
            inner.pool.retain(&mut queue, |entry| {
                match self.live_entry(gen_bits, entry, q) {
                    Some(frame) if self.state(frame) & SEEN == 0 => {
                        self.set_state(frame, self.state(frame) | SEEN);
                        true
                    }
                    _ => false,
                }
            });
            inner.queues[q as usize] = queue;
            // One entry per live page, except the page being pushed (counted, not yet queued).
            debug_assert!(queue.len() + held + 1 >= inner.len[q as usize]);
            debug_assert!(queue.len() + held <= inner.len[q as usize]);
        }
        for f in self.frames.iter() {
            f.state.fetch_and(!SEEN, Ordering::Relaxed);
        }
    }
}
