//! The free frames: a set of frame ids in three levels of bitmaps, an eighth of a byte per
//! frame (a stack of `u32` ids, as before, held four bytes per frame).
//!
//! Owns nothing but the bits; [`Engine::free`](super::Engine) wraps it in a mutex, and every
//! method here runs under that mutex. Frames come out lowest id first. Level 0 has a bit per
//! frame, level 1 a bit per level-0 word (64 frames), level 2 a bit per level-1 word (4,096
//! frames), so level 2 has one word per 262,144 frames. A pop scans level 2 from a hint that is
//! never past the lowest word with a free frame (a push below it, or into an empty set, moves
//! it there), then reads one word of each lower level: a handful of words for caches up to
//! millions of frames, at most `frames / 2^18 + 2` for any. Nothing allocates after
//! construction, nothing blocks.

use crate::policy::FrameId;

/// Levels of bitmaps: level 0 names frames, each level above names the words below it.
const LEVELS: usize = 3;

/// A set of free frame ids below a fixed bound. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct FreeFrames {
    /// `levels[0]`: bit `f % 64` of word `f / 64` is set while frame `f` is free; `levels[i]`
    /// for `i > 0`: bit `w % 64` of word `w / 64` is set while `levels[i - 1][w]` is not zero.
    levels: [Box<[u64]>; LEVELS],
    /// No word of the top level below this one has a bit set.
    hint: usize,
    len: usize,
    /// Pushes of a frame already free (a bug: reported by the invariant checker).
    doubles: usize,
    /// Top-level words the last pop read (for tests).
    #[cfg(test)]
    scanned: usize,
}

impl FreeFrames {
    /// Frames `0 .. frames`, all free.
    pub(crate) fn full(frames: usize) -> FreeFrames {
        let l0 = frames.div_ceil(64);
        let l1 = l0.div_ceil(64);
        let l2 = l1.div_ceil(64);
        let mut set = FreeFrames {
            levels: [l0, l1, l2].map(|n| vec![0u64; n].into_boxed_slice()),
            hint: 0,
            len: 0,
            doubles: 0,
            #[cfg(test)]
            scanned: 0,
        };
        for f in 0..frames {
            set.push(f as FrameId);
        }
        set
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Makes `f` free. A frame that was free already is counted in [`doubles`](Self::doubles)
    /// and stays free once.
    pub(crate) fn push(&mut self, f: FrameId) {
        let mut i = f as usize;
        assert!(
            i / 64 < self.levels[0].len(),
            "frame {f} is past the frame table"
        );
        if self.levels[0][i / 64] & (1 << (i % 64)) != 0 {
            self.doubles += 1;
            return;
        }
        for level in self.levels.iter_mut() {
            let was = level[i / 64];
            level[i / 64] = was | 1 << (i % 64);
            i /= 64;
            if was != 0 {
                break; // the levels above already name this word
            }
        }
        let top = f as usize >> (6 * LEVELS);
        self.hint = if self.len == 0 {
            top
        } else {
            self.hint.min(top)
        };
        self.len += 1;
    }

    /// Takes the lowest free frame.
    pub(crate) fn pop(&mut self) -> Option<FrameId> {
        if self.len == 0 {
            return None;
        }
        // Bounded by the top level's length: a set bit exists at or after the hint.
        let top = &self.levels[LEVELS - 1];
        let mut w = self.hint;
        while top[w] == 0 {
            w += 1;
        }
        #[cfg(test)]
        {
            self.scanned = w - self.hint + 1;
        }
        self.hint = w;
        // Down the levels: the lowest set bit of each word names the word below.
        let mut i = w;
        for level in self.levels.iter().rev() {
            let word = level[i];
            debug_assert_ne!(word, 0, "an upper level names an empty word");
            i = i * 64 + word.trailing_zeros() as usize;
        }
        let f = i;
        // Clear the frame's bit, and each upper bit whose word became empty.
        for level in self.levels.iter_mut() {
            let word = &mut level[i / 64];
            *word &= !(1 << (i % 64));
            if *word != 0 {
                break;
            }
            i /= 64;
        }
        self.len -= 1;
        Some(f as FrameId)
    }

    /// True if `f` is free.
    #[cfg(test)]
    pub(crate) fn contains(&self, f: FrameId) -> bool {
        let w = f as usize / 64;
        w < self.levels[0].len() && self.levels[0][w] & (1 << (f % 64)) != 0
    }

    /// Every free frame, lowest first (for the invariant checker).
    pub(crate) fn iter(&self) -> impl Iterator<Item = FrameId> + '_ {
        self.levels[0].iter().enumerate().flat_map(|(w, &word)| {
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
        self.levels
            .iter()
            .map(|l| std::mem::size_of_val(&**l))
            .sum()
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
        let n = 1 << 26;
        let mut set = FreeFrames::full(n);
        while set.pop().is_some() {}
        // A frame at the bottom freed and taken again: the set is empty.
        set.push(0);
        assert_eq!(set.pop(), Some(0));
        // A frame at the top: the next pop reads one top-level word, not 256.
        let top = (n - 1) as FrameId;
        set.push(top);
        assert_eq!(set.pop(), Some(top));
        assert_eq!(set.scanned, 1, "top-level words read");
        // Several free frames far apart: each pop reads at most the words between them.
        for f in [top, 5, 1 << 20] {
            set.push(f);
        }
        let got: Vec<_> = std::iter::from_fn(|| set.pop().map(|f| (f, set.scanned))).collect();
        assert_eq!(got, [(5, 1), (1 << 20, 5), (top, 252)]);
    }
}
