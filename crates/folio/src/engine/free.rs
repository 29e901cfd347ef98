//! The free frames: a set of frame ids in two levels of bitmaps, an eighth of a byte per frame
//! (a stack of `u32` ids, as before, held four bytes per frame).
//!
//! Owns nothing but the bits; [`Engine::free`](super::Engine) wraps it in a mutex, and every
//! method here runs under that mutex. Frames come out lowest id first: `pop` scans the summary
//! (one bit per 64 frames) from a hint that is never above the lowest word with a free frame,
//! so a pop reads O(1) words amortised (the hint only moves up past empty words, and a push
//! below it moves it down). Nothing allocates after construction, nothing blocks.

use crate::policy::FrameId;

/// A set of free frame ids below a fixed bound. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct FreeFrames {
    /// Bit `f % 64` of word `f / 64` is set while frame `f` is free.
    words: Box<[u64]>,
    /// Bit `w % 64` of word `w / 64` is set while `words[w]` is not zero.
    summary: Box<[u64]>,
    /// No word below this one has a free frame.
    hint: usize,
    len: usize,
    /// Pushes of a frame already free (a bug: reported by the invariant checker).
    doubles: usize,
}

impl FreeFrames {
    /// Frames `0 .. frames`, all free.
    pub(crate) fn full(frames: usize) -> FreeFrames {
        let words = frames.div_ceil(64);
        let mut set = FreeFrames {
            words: vec![0; words].into_boxed_slice(),
            summary: vec![0; words.div_ceil(64)].into_boxed_slice(),
            hint: 0,
            len: 0,
            doubles: 0,
        };
        for f in 0..frames {
            set.push(f as FrameId);
        }
        set.hint = 0;
        set
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Makes `f` free. A frame that was free already is counted in [`doubles`](Self::doubles)
    /// and stays free once.
    pub(crate) fn push(&mut self, f: FrameId) {
        let (w, bit) = (f as usize / 64, 1u64 << (f % 64));
        assert!(w < self.words.len(), "frame {f} is past the frame table");
        if self.words[w] & bit != 0 {
            self.doubles += 1;
            return;
        }
        self.words[w] |= bit;
        self.summary[w / 64] |= 1 << (w % 64);
        self.hint = self.hint.min(w);
        self.len += 1;
    }

    /// Takes the lowest free frame.
    pub(crate) fn pop(&mut self) -> Option<FrameId> {
        if self.len == 0 {
            return None;
        }
        // Bounded by the summary's length: a set bit exists at or after the hint.
        let mut s = self.hint / 64;
        let mut bits = self.summary[s] & (u64::MAX << (self.hint % 64));
        while bits == 0 {
            s += 1;
            bits = self.summary[s];
        }
        let w = s * 64 + bits.trailing_zeros() as usize;
        let word = self.words[w];
        debug_assert_ne!(word, 0, "the summary names an empty word");
        let f = w * 64 + word.trailing_zeros() as usize;
        self.words[w] = word & (word - 1);
        if self.words[w] == 0 {
            self.summary[s] &= !(1 << (w % 64));
        }
        self.hint = w;
        self.len -= 1;
        Some(f as FrameId)
    }

    /// True if `f` is free.
    #[cfg(test)]
    pub(crate) fn contains(&self, f: FrameId) -> bool {
        let w = f as usize / 64;
        w < self.words.len() && self.words[w] & (1 << (f % 64)) != 0
    }

    /// Every free frame, lowest first (for the invariant checker).
    pub(crate) fn iter(&self) -> impl Iterator<Item = FrameId> + '_ {
        self.words.iter().enumerate().flat_map(|(w, &word)| {
            let mut bits = word;
            std::iter::from_fn(move || {
                (bits != 0).then(|| {
                    let b = bits.trailing_zeros();
                    bits &= bits - 1;
                    (w * 64) as FrameId + b
                })
            })
        })
    }

    /// Pushes of a frame that was already free, since construction.
    pub(crate) fn doubles(&self) -> usize {
        self.doubles
    }

    /// Bytes held (for the overhead figure).
    pub(crate) fn bytes(&self) -> usize {
        std::mem::size_of_val(&*self.words) + std::mem::size_of_val(&*self.summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_out_lowest_first_and_each_once() {
        for n in [0usize, 1, 63, 64, 65, 4095, 4096, 4097, 70_000] {
            let mut set = FreeFrames::full(n);
            assert_eq!(set.len(), n);
            let mut got = Vec::new();
            while let Some(f) = set.pop() {
                got.push(f);
            }
            assert_eq!(got, (0..n as FrameId).collect::<Vec<_>>(), "{n} frames");
            assert_eq!(set.pop(), None);
        }
    }

    /// Against a model (a sorted set) under random pushes and pops, the lowest free frame
    /// comes out, lengths agree, and a double push is counted, not kept twice.
    #[test]
    fn agrees_with_a_sorted_set() {
        let n = 5000usize;
        let mut set = FreeFrames::full(n);
        let mut model: std::collections::BTreeSet<FrameId> = (0..n as FrameId).collect();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut doubles = 0;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 3 == 0 {
                assert_eq!(set.pop(), model.pop_first());
            } else {
                let f = (x >> 20) as FrameId % n as FrameId;
                if !model.insert(f) {
                    doubles += 1;
                }
                set.push(f);
            }
            assert_eq!(set.len(), model.len());
        }
        assert_eq!(set.doubles(), doubles);
        assert!(set.iter().eq(model.iter().copied()));
        assert!(model.iter().all(|&f| set.contains(f)));
    }

    /// Review 7: the module docs promise O(1) words read per pop amortised. The hint stays at
    /// the word of the last frame popped even when the set is empty, so freeing one frame above
    /// it and taking it again (a discard then a write, in a full cache) scans the summary from
    /// the old word to the new one: O(frames / 4096) words per pop, 0.25 us at 2^24 frames and
    /// 4.7 us at 2^28 on the development VM, under the free-list mutex. An empty set has no
    /// free word below any hint, so the first push may put the hint at its own word.
    #[test]
    fn a_push_into_an_empty_set_moves_the_hint_to_it() {
        let n = 1 << 20;
        let mut set = FreeFrames::full(n);
        while set.pop().is_some() {}
        // A frame at the bottom freed and taken again: the hint is at word 0, the set empty.
        set.push(0);
        assert_eq!(set.pop(), Some(0));
        let top = (n - 1) as FrameId;
        set.push(top);
        assert_eq!(
            set.hint,
            top as usize / 64,
            "the next pop scans the summary from word {}",
            set.hint
        );
        assert_eq!(set.pop(), Some(top));
    }
}
