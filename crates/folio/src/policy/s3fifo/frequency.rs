//! Frequency admission to S3-FIFO's main queue ([`MainAdmission::Frequency`]).
//!
//! With [`MainAdmission::Frequency`] (TinyLFU's test: G. Einziger, R. Friedman, B. Manes,
//! "TinyLFU: A Highly Efficient Cache Admission Policy", ACM ToS 2017) a page that S3-FIFO's
//! rule sends to main — hit `threshold` times in the small queue, or a ghost hit — enters it
//! only while main has room or if a count-min sketch (`sketch.rs`, 4-bit counters, four per
//! frame, halved every five frames' worth of counted accesses) has seen its key more often than
//! main's next victim; otherwise a small-queue page is evicted to the ghost as if never hit, and
//! a ghost hit starts in the small queue. The victim is found by running main's clock as an
//! eviction does and stays main's oldest page (`Inner::peeked`): the next eviction from main
//! takes it first unless it was hit meanwhile. Main then keeps a stable part of a loop or scan a
//! little larger than the cache beside its hot pages, where S3-FIFO's ghost lets the loop's pages
//! push each other through main (ARC P6 at 10%: 0.345 with a 2% small queue against 0.422
//! without). The sketch counts every demand miss (not readahead) and learns of hits only when
//! eviction spends a frame's hit counter (at most 3 per pass), so the lock-free hit path is
//! unchanged; a frequency it
//! under-counts is that of a page hit more than three times per pass, which is no victim. It
//! costs elsewhere (P6 at 20%, OLTP), so the adaptive flavour offers it as a candidate only.
//!
//! Owns the rule and its constants; the sketch itself (`sketch.rs`) and main's peeked victim
//! live in the parent's `Inner`, under its lock, as everything here runs.

use std::sync::atomic::Ordering;

use super::{Inner, S3Fifo, COUNT, FREQ_MAX, MAIN};

/// The frequency sketch ([`MainAdmission::Frequency`]): 4-bit counters per frame (2 bytes).
pub(super) const SKETCH_COUNTERS_PER_FRAME: usize = 4;
/// The sketch halves its counters every this many counted accesses per frame.
pub(super) const SKETCH_PERIOD_PER_FRAME: usize = 5;

/// Which of the pages S3-FIFO's rule sends to main (hit `move_to_main_threshold` times in the
/// small queue, or a ghost hit) enter it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MainAdmission {
    /// All of them (S3-FIFO as published).
    #[default]
    Threshold,
    /// Those that arrive while main has room, and those whose key a count-min sketch has seen
    /// more often than main's next victim's (TinyLFU's test, Einziger et al., ACM ToS 2017);
    /// the others are evicted to the ghost (from the small queue) or start in the small queue
    /// (a ghost hit).
    Frequency,
}

impl S3Fifo {
    /// True if the page of fingerprint `fp`, which S3-FIFO's rule sends to main (hit enough in
    /// the small queue, or a ghost hit), may enter it: always with
    /// [`MainAdmission::Threshold`] or while main has room; with [`MainAdmission::Frequency`]
    /// only if the sketch has seen it more often than main's next victim. That victim is found
    /// by running main's clock as an eviction would (hit pages go round with one hit less) and
    /// stays the oldest page of main (`Inner::peeked`), so the next eviction from main takes
    /// it unless it is hit meanwhile.
    pub(super) fn admits(&self, inner: &mut Inner, fp: u32) -> bool {
        if inner.admission == MainAdmission::Threshold || inner.len[MAIN as usize] < inner.main_cap
        {
            return true;
        }
        // Each main page is passed at most FREQ_MAX times before its count is zero.
        let budget = FREQ_MAX as usize * inner.len[MAIN as usize] + 1;
        for _ in 0..budget {
            let Some((entry, victim)) = self.pop_live(inner, MAIN) else {
                return true;
            };
            let f = &self.frames[victim as usize].freq;
            let v = f.load(Ordering::Relaxed);
            let victim_fp = inner.fp[victim as usize];
            let sketch = inner
                .sketch
                .as_mut()
                .expect("frequency admission has a sketch");
            if v & COUNT >= 1 {
                f.store(v - 1, Ordering::Relaxed);
                sketch.increment(victim_fp);
                self.push_entry(inner, entry, MAIN);
                continue;
            }
            let admit = sketch.frequency(fp) > sketch.frequency(victim_fp);
            inner.peeked = Some(entry);
            return admit;
        }
        true
    }
}
