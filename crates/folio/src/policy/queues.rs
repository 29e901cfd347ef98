//! FIFO queues of `u32` entries that share one pool of fixed-size chunks.
//!
//! S3-FIFO keeps two FIFO queues of frame ids whose lengths move against each other (either may
//! hold every frame). Two rings of `capacity` entries each would cost 8 bytes per frame; chunks
//! of [`CHUNK`] entries taken from one shared pool cost the total length (about 4 bytes per frame)
//! plus a few partly filled chunks, and entries still sit side by side in memory, so pushing and
//! popping walk memory sequentially (unlike linked lists threaded through the frames).
//!
//! A queue is a singly linked chain of chunks from its oldest (tail) to its newest (head); a
//! chunk whose entries have all been popped goes back to the pool at once. The pool never grows:
//! [`ChunkPool::try_push`] reports when no chunk is free, and the owner then drops entries it no
//! longer needs with [`ChunkPool::retain`] (S3-FIFO deletes lazily, so its queues hold stale
//! entries that only it can recognise) and pushes again.

/// Entries per chunk: 32 bytes, half a cache line (larger chunks would cost small caches more in
/// partly filled chunks).
pub(crate) const CHUNK: usize = 8;

/// "No chunk".
const NIL: u32 = u32::MAX;

/// One FIFO queue in a [`ChunkPool`]. Its chunks belong to that pool only.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Queue {
    /// The oldest chunk (`NIL` if the queue is empty) and the offset of its oldest entry.
    tail: u32,
    tail_off: usize,
    /// The newest chunk and the offset just past its newest entry.
    head: u32,
    head_off: usize,
    len: usize,
}

impl Queue {
    pub(crate) const fn new() -> Queue {
        Queue {
            tail: NIL,
            tail_off: 0,
            head: NIL,
            head_off: 0,
            len: 0,
        }
    }

    /// Entries in the queue.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// The chunk storage shared by several [`Queue`]s. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct ChunkPool {
    /// `CHUNK` entries per chunk.
    entries: Box<[u32]>,
    /// Per chunk: the next newer chunk of its queue, or the next free chunk.
    next: Box<[u32]>,
    /// The first free chunk (`NIL` if none).
    free: u32,
}

impl ChunkPool {
    /// A pool of `chunks` chunks, all free.
    pub(crate) fn new(chunks: usize) -> ChunkPool {
        assert!(chunks < NIL as usize, "too many chunks");
        ChunkPool {
            entries: vec![0; chunks * CHUNK].into_boxed_slice(),
            next: (1..=chunks as u32)
                .map(|c| if c as usize == chunks { NIL } else { c })
                .collect(),
            free: if chunks == 0 { NIL } else { 0 },
        }
    }

    /// Chunks needed so that queues holding `entries` entries in all, spread over `queues`
    /// queues, always find a free chunk for one more entry (each queue may have a partly used
    /// chunk at both ends).
    pub(crate) fn chunks_for(entries: usize, queues: usize) -> usize {
        entries.div_ceil(CHUNK) + 2 * queues + 1
    }

    /// Bytes of entries and links.
    pub(crate) fn bytes(&self) -> usize {
        std::mem::size_of_val(&*self.entries) + std::mem::size_of_val(&*self.next)
    }

    /// Appends `x` as the newest entry of `q`; false (and no change) if a new chunk was needed
    /// and none is free.
    #[inline]
    pub(crate) fn try_push(&mut self, q: &mut Queue, x: u32) -> bool {
        if q.head == NIL || q.head_off == CHUNK {
            let c = self.free;
            if c == NIL {
                return false;
            }
            self.free = self.next[c as usize];
            self.next[c as usize] = NIL;
            if q.head == NIL {
                q.tail = c;
                q.tail_off = 0;
            } else {
                self.next[q.head as usize] = c;
            }
            q.head = c;
            q.head_off = 0;
        }
        self.entries[q.head as usize * CHUNK + q.head_off] = x;
        q.head_off += 1;
        q.len += 1;
        true
    }

    /// Removes and returns the oldest entry of `q`.
    #[inline]
    pub(crate) fn pop(&mut self, q: &mut Queue) -> Option<u32> {
        if q.len == 0 {
            return None;
        }
        let x = self.entries[q.tail as usize * CHUNK + q.tail_off];
        q.tail_off += 1;
        q.len -= 1;
        if q.len == 0 {
            // Empty: give back the last chunk (whatever part of it was used).
            self.release(q.tail);
            *q = Queue::new();
        } else if q.tail_off == CHUNK {
            let c = q.tail;
            q.tail = self.next[c as usize];
            q.tail_off = 0;
            self.release(c);
        }
        Some(x)
    }

    fn release(&mut self, c: u32) {
        self.next[c as usize] = self.free;
        self.free = c;
    }

    /// Keeps only the entries of `q` for which `keep` returns true (called once per entry, oldest
    /// first), in their order, and returns the chunks this frees to the pool.
    pub(crate) fn retain(&mut self, q: &mut Queue, mut keep: impl FnMut(u32) -> bool) {
        if q.len == 0 {
            return;
        }
        // Read and write cursors start at the oldest entry; the write cursor never passes the
        // read cursor, so entries are moved toward the tail within the queue's own chunks.
        let (mut rc, mut ro) = (q.tail, q.tail_off);
        let (mut wc, mut wo) = (q.tail, q.tail_off);
        let mut kept = 0;
        for _ in 0..q.len {
            if ro == CHUNK {
                rc = self.next[rc as usize];
                ro = 0;
            }
            let x = self.entries[rc as usize * CHUNK + ro];
            ro += 1;
            if keep(x) {
                if wo == CHUNK {
                    wc = self.next[wc as usize];
                    wo = 0;
                }
                self.entries[wc as usize * CHUNK + wo] = x;
                wo += 1;
                kept += 1;
            }
        }
        if kept == 0 {
            // Free every chunk, the write cursor's included.
            let mut c = q.tail;
            while c != NIL {
                let n = self.next[c as usize];
                self.release(c);
                c = n;
            }
            *q = Queue::new();
            return;
        }
        let mut c = self.next[wc as usize];
        while c != NIL {
            let n = self.next[c as usize];
            self.release(c);
            c = n;
        }
        self.next[wc as usize] = NIL;
        q.head = wc;
        q.head_off = wo;
        q.len = kept;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Two queues against two `VecDeque`s through pushes, pops and filters, with a pool just
    /// large enough, so chunks are reused constantly and `try_push` sometimes fails.
    #[test]
    fn matches_vecdeques() {
        let cap = 100;
        let mut pool = ChunkPool::new(ChunkPool::chunks_for(cap, 2));
        let mut qs = [Queue::new(), Queue::new()];
        let mut models = [VecDeque::new(), VecDeque::new()];
        let mut x = 7u64;
        let mut next_val = 0u32;
        let mut refused = 0;
        for step in 0..200_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let which = (x >> 40) as usize % 2;
            let total = models[0].len() + models[1].len();
            let (q, m) = (&mut qs[which], &mut models[which]);
            match (x >> 20) % 64 {
                0..=39 => {
                    if pool.try_push(q, next_val) {
                        m.push_back(next_val);
                    } else {
                        assert!(total >= cap, "step {step}: refused with {total} entries");
                        refused += 1;
                    }
                    next_val += 1;
                }
                40..=62 => assert_eq!(pool.pop(q), m.pop_front(), "step {step}"),
                _ => {
                    let k = (x >> 50) as u32 % 4 + 5;
                    let mut seen = Vec::new();
                    pool.retain(q, |v| {
                        seen.push(v);
                        v % k != 0
                    });
                    assert_eq!(seen, Vec::from(m.clone()), "step {step}: retain order");
                    m.retain(|v| v % k != 0);
                }
            }
            for (q, m) in qs.iter().zip(&models) {
                assert_eq!(q.len(), m.len(), "step {step}");
            }
        }
        assert!(refused > 0, "the pool never ran out");
        for (q, m) in qs.iter_mut().zip(&mut models) {
            while let Some(v) = m.pop_front() {
                assert_eq!(pool.pop(q), Some(v));
            }
            assert_eq!(pool.pop(q), None);
        }
        // Every chunk is free again.
        let mut free = 0;
        let mut c = pool.free;
        while c != NIL {
            free += 1;
            c = pool.next[c as usize];
        }
        assert_eq!(free, ChunkPool::chunks_for(cap, 2));
    }
}
