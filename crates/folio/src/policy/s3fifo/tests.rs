//! Unit tests of S3-FIFO (`s3fifo.rs`): the queues, the ghost and frequency admission against a
//! list model of the policy as first written.

use std::collections::VecDeque;

use super::*;

/// S3-FIFO as first written here: two lists (index 0 oldest) with removal from the middle
/// and an exact ghost FIFO of fingerprints. The queues and the ghost above must make the
/// same choices.
struct Model {
    small: VecDeque<FrameId>,
    main: VecDeque<FrameId>,
    freq: Vec<u8>,
    fp: Vec<u32>,
    ghost: VecDeque<u32>,
    ghost_cap: usize,
    small_cap: usize,
    main_cap: usize,
    threshold: u8,
    has_evicted: bool,
    /// With [`MainAdmission::Frequency`]: the same sketch, fed the same accesses.
    sketch: Option<CountMin4>,
}

impl Model {
    fn new(capacity: usize, params: S3FifoParams) -> Model {
        let small_cap = ((capacity as f64 * params.small_ratio) as usize).clamp(1, capacity.max(1));
        Model {
            small: VecDeque::new(),
            main: VecDeque::new(),
            freq: vec![0; capacity],
            fp: vec![0; capacity],
            ghost: VecDeque::new(),
            ghost_cap: (capacity as f64 * params.ghost_ratio) as usize,
            small_cap,
            main_cap: capacity.saturating_sub(small_cap),
            threshold: params.move_to_main_threshold,
            has_evicted: false,
            sketch: (params.admission == MainAdmission::Frequency).then(|| {
                CountMin4::new(
                    capacity,
                    SKETCH_COUNTERS_PER_FRAME,
                    SKETCH_PERIOD_PER_FRAME,
                    0,
                )
            }),
        }
    }

    /// Frequency admission as first written: main's victim is found by running its clock and
    /// stays at main's front.
    fn admits(&mut self, fp: u32) -> bool {
        let Some(sketch) = &mut self.sketch else {
            return true;
        };
        if self.main.len() < self.main_cap {
            return true;
        }
        for _ in 0..FREQ_MAX as usize * self.main.len() + 1 {
            let Some(&victim) = self.main.front() else {
                return true;
            };
            let v = self.freq[victim as usize];
            if v >= 1 {
                self.freq[victim as usize] = v - 1;
                sketch.increment(self.fp[victim as usize]);
                self.main.pop_front();
                self.main.push_back(victim);
                continue;
            }
            return sketch.frequency(fp) > sketch.frequency(self.fp[victim as usize]);
        }
        true
    }

    fn unlink(&mut self, frame: FrameId) {
        self.small.retain(|&f| f != frame);
        self.main.retain(|&f| f != frame);
    }

    fn insert(&mut self, frame: FrameId, fp: u32) {
        self.unlink(frame);
        self.fp[frame as usize] = fp;
        self.freq[frame as usize] = 0;
        if let Some(sketch) = &mut self.sketch {
            sketch.increment(fp);
        }
        let in_ghost = self.ghost.iter().position(|&g| g == fp);
        if let Some(i) = in_ghost {
            self.ghost.remove(i);
        }
        let admitted = in_ghost.is_some() && self.admits(fp);
        if admitted || (!self.has_evicted && self.small.len() >= self.small_cap) {
            self.main.push_back(frame);
        } else {
            self.small.push_back(frame);
        }
    }

    fn choose(&mut self, claim: &mut dyn FnMut(FrameId) -> bool) -> Option<FrameId> {
        self.has_evicted = true;
        let budget = (FREQ_MAX as usize + 2) * (self.small.len() + self.main.len()) + 1;
        let mut main_refused = 0;
        for _ in 0..budget {
            let blocked = main_refused >= self.main.len();
            if (self.main.len() > self.main_cap && !blocked) || self.small.is_empty() {
                let cand = self.main.pop_front()?;
                let v = self.freq[cand as usize];
                if v >= 1 {
                    self.freq[cand as usize] = v.min(FREQ_MAX) - 1;
                    if let Some(sketch) = &mut self.sketch {
                        sketch.increment(self.fp[cand as usize]);
                    }
                } else if claim(cand) {
                    return Some(cand);
                } else {
                    main_refused += 1;
                }
                self.main.push_back(cand);
            } else {
                let cand = self.small.pop_front().unwrap();
                let (v, fp) = (self.freq[cand as usize], self.fp[cand as usize]);
                if let Some(sketch) = &mut self.sketch {
                    for _ in 0..v {
                        sketch.increment(fp);
                    }
                }
                let evict = v < self.threshold || !self.admits(fp);
                if evict && claim(cand) {
                    if self.ghost_cap > 0 && !self.ghost.contains(&fp) {
                        if self.ghost.len() == self.ghost_cap {
                            self.ghost.pop_front();
                        }
                        self.ghost.push_back(fp);
                    }
                    return Some(cand);
                }
                self.freq[cand as usize] = 0;
                self.main.push_back(cand);
            }
        }
        None
    }
}

/// Random hits, misses, removals (leaving stale entries, which fill the pool and force
/// compaction), re-insertions into frames still queued, and refused (pinned) candidates.
#[test]
fn matches_the_list_model() {
    use MainAdmission::{Frequency, Threshold};
    for (capacity, keys, small_ratio, admission) in [
        (1, 3, 0.1, Threshold),
        (4, 12, 0.25, Threshold),
        (10, 40, 0.1, Threshold),
        (64, 200, 0.25, Threshold),
        (1, 3, 0.1, Frequency),
        (4, 12, 0.25, Frequency),
        (10, 40, 0.1, Frequency),
        (64, 200, 0.05, Frequency),
        (64, 100, 0.25, Frequency),
    ] {
        let params = S3FifoParams {
            small_ratio,
            admission,
            ..S3FifoParams::default()
        };
        let p = S3Fifo::with_params(capacity, params, "test");
        let mut m = Model::new(capacity, params);
        let mut page_of: Vec<Option<u64>> = vec![None; capacity];
        let mut pinned = vec![false; capacity];
        let mut x = capacity as u64 + 11;
        for step in 0..100_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = (x >> 33) as usize;
            match (x >> 20) % 16 {
                0..=9 => {
                    let key = (r % keys) as u64;
                    if let Some(f) = page_of.iter().position(|&k| k == Some(key)) {
                        p.on_hit(f as FrameId);
                        let v = &mut m.freq[f];
                        *v = (*v + 1).min(FREQ_MAX);
                        continue;
                    }
                    let frame = match page_of.iter().position(|k| k.is_none()) {
                        Some(f) => f as FrameId,
                        None => {
                            let got = p.choose_victim(&mut |f| !pinned[f as usize]);
                            let want = m.choose(&mut |f| !pinned[f as usize]);
                            assert_eq!(got, want, "cap {capacity} step {step}");
                            let Some(f) = got else { continue };
                            f
                        }
                    };
                    page_of[frame as usize] = Some(key);
                    p.on_insert(frame, key, Admission::Demand);
                    m.insert(frame, fingerprint(key));
                }
                10 | 11 => {
                    let f = r % capacity;
                    page_of[f] = None;
                    p.on_remove(f as FrameId);
                    m.unlink(f as FrameId);
                }
                12 => {
                    // A new page into a frame that is still queued.
                    let f = r % capacity;
                    let key = (keys + r % keys) as u64;
                    if !page_of.contains(&Some(key)) {
                        page_of[f] = Some(key);
                        p.on_insert(f as FrameId, key, Admission::Demand);
                        m.insert(f as FrameId, fingerprint(key));
                    }
                }
                _ => pinned[r % capacity] ^= true,
            }
            assert_eq!(
                p.len(),
                m.small.len() + m.main.len(),
                "cap {capacity} step {step}"
            );
        }
    }
}

/// Replays `keys` as the live cache does (free frames in order, then victims); the miss ratio.
pub(super) fn miss_ratio(p: &S3Fifo, keys: impl Iterator<Item = u64>) -> f64 {
    let mut frame_of = std::collections::HashMap::new();
    let mut page_of = Vec::new();
    let (mut misses, mut accesses) = (0u64, 0u64);
    for k in keys {
        accesses += 1;
        if let Some(&f) = frame_of.get(&k) {
            p.on_hit(f);
            continue;
        }
        misses += 1;
        let f = if page_of.len() < p.capacity() {
            page_of.push(k);
            (page_of.len() - 1) as FrameId
        } else {
            let v = p.choose_victim(&mut |_| true).expect("a victim");
            frame_of.remove(&std::mem::replace(&mut page_of[v as usize], k));
            v
        };
        frame_of.insert(k, f);
        p.on_insert(f, k, Admission::Demand);
    }
    misses as f64 / accesses.max(1) as f64
}

/// A hot set of 30% of the cache (a third of the accesses, at random) beside a loop over 120%
/// of it: the best a cache can do is keep the hot set and a fixed part of the loop (miss ratio
/// about 0.28). S3-FIFO's ghost admits every loop page that comes back soon enough to main,
/// where the loop pages push each other out; with frequency admission a loop page enters main
/// only if it has been seen more often than main's victim, so main keeps a part of the loop.
pub(super) fn hot_set_beside_a_loop(cap: u64, accesses: u64) -> impl Iterator<Item = u64> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut i = 0u64;
    (0..accesses).map(move |_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x % 3 == 0 {
            (x >> 8) % (3 * cap / 10)
        } else {
            i += 1;
            (1 << 40) + i % (12 * cap / 10)
        }
    })
}

#[test]
fn frequency_admission_keeps_a_part_of_a_loop_beside_a_hot_set() {
    let cap = 1000;
    let ratio = |admission| {
        let params = S3FifoParams {
            small_ratio: 0.02,
            admission,
            ..S3FifoParams::default()
        };
        miss_ratio(
            &S3Fifo::with_params(cap, params, "test"),
            hot_set_beside_a_loop(cap as u64, 150_000),
        )
    };
    let (threshold, frequency) = (
        ratio(MainAdmission::Threshold),
        ratio(MainAdmission::Frequency),
    );
    assert!(
        frequency < 0.33 && threshold > 0.40,
        "miss ratios: threshold {threshold:.4}, frequency {frequency:.4}"
    );
}

/// Review 7: the list model against the policy with the peeked main victim as the target of
/// removals, pins, hits and re-insertions (the random test above reaches it only by chance).
#[test]
fn the_peeked_victim_removed_pinned_hit_or_reinserted_matches_the_list_model() {
    let mut peeked_touched = [0usize; 4];
    for (capacity, keys, small_ratio) in [(16, 40, 0.1), (64, 200, 0.05), (200, 500, 0.02)] {
        let params = S3FifoParams {
            small_ratio,
            admission: MainAdmission::Frequency,
            ..S3FifoParams::default()
        };
        let p = S3Fifo::with_params(capacity, params, "test");
        let mut m = Model::new(capacity, params);
        let mut page_of: Vec<Option<u64>> = vec![None; capacity];
        let mut pinned = vec![false; capacity];
        let mut x = capacity as u64 + 7;
        let mut fresh = 1u64 << 40;
        for step in 0..60_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = (x >> 33) as usize;
            let peeked = {
                let i = p.inner.lock();
                i.peeked.and_then(|e| p.live_entry(i.gen_bits, e, MAIN))
            };
            if let (Some(f), true) = (peeked, (x >> 20) % 4 == 0) {
                let what = (x >> 24) as usize % 4;
                peeked_touched[what] += 1;
                match what {
                    0 => {
                        page_of[f as usize] = None;
                        p.on_remove(f);
                        m.unlink(f);
                    }
                    1 => pinned[f as usize] ^= true,
                    2 => {
                        p.on_hit(f);
                        let v = &mut m.freq[f as usize];
                        *v = (*v + 1).min(FREQ_MAX);
                    }
                    _ => {
                        fresh += 1;
                        page_of[f as usize] = Some(fresh);
                        p.on_insert(f, fresh, Admission::Demand);
                        m.insert(f, fingerprint(fresh));
                    }
                }
            } else {
                let key = (r % keys) as u64;
                if let Some(f) = page_of.iter().position(|&k| k == Some(key)) {
                    p.on_hit(f as FrameId);
                    let v = &mut m.freq[f];
                    *v = (*v + 1).min(FREQ_MAX);
                } else {
                    let frame = match page_of.iter().position(|k| k.is_none()) {
                        Some(f) => Some(f as FrameId),
                        None => {
                            let got = p.choose_victim(&mut |f| !pinned[f as usize]);
                            let want = m.choose(&mut |f| !pinned[f as usize]);
                            assert_eq!(got, want, "cap {capacity} step {step}");
                            got
                        }
                    };
                    if let Some(frame) = frame {
                        page_of[frame as usize] = Some(key);
                        p.on_insert(frame, key, Admission::Demand);
                        m.insert(frame, fingerprint(key));
                    }
                }
                if (x >> 28) % 8 == 0 {
                    pinned[r % capacity] = false;
                }
            }
            assert_eq!(
                p.len(),
                m.small.len() + m.main.len(),
                "cap {capacity} step {step}"
            );
        }
    }
    eprintln!("peeked victim removed/pinned/hit/reinserted: {peeked_touched:?}");
    assert!(
        peeked_touched.iter().all(|&n| n > 100),
        "{peeked_touched:?}"
    );
}
