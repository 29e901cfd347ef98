//! Unit tests of S3-FIFO (`s3fifo.rs`): the queues and the ghost against a list model of the
//! policy as first written.

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
        }
    }

    fn unlink(&mut self, frame: FrameId) {
        self.small.retain(|&f| f != frame);
        self.main.retain(|&f| f != frame);
    }

    fn insert(&mut self, frame: FrameId, fp: u32) {
        self.unlink(frame);
        self.fp[frame as usize] = fp;
        self.freq[frame as usize] = 0;
        let in_ghost = self.ghost.iter().position(|&g| g == fp);
        if let Some(i) = in_ghost {
            self.ghost.remove(i);
        }
        if in_ghost.is_some() || (!self.has_evicted && self.small.len() >= self.small_cap) {
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
                } else if claim(cand) {
                    return Some(cand);
                } else {
                    main_refused += 1;
                }
                self.main.push_back(cand);
            } else {
                let cand = self.small.pop_front().unwrap();
                if self.freq[cand as usize] < self.threshold && claim(cand) {
                    let fp = self.fp[cand as usize];
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
    for (capacity, keys, small_ratio) in
        [(1, 3, 0.1), (4, 12, 0.25), (10, 40, 0.1), (64, 200, 0.25)]
    {
        let params = S3FifoParams {
            small_ratio,
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
