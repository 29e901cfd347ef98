//! Caffeine's hill climber for W-TinyLFU's window (`SimpleClimber` of its simulator, with the
//! defaults of its `reference.conf`): every sample of `10 x capacity` accesses once the cache is
//! full, compare the sample's hit ratio with the previous sample's; keep the direction if it did
//! not get worse, else reverse; steps start at 6.25% of the capacity (at least 2 pages) and
//! decay by 2% a sample (0.5% for caches of at most 512 pages, which also lengthen their sample
//! as the step decays), and restart when the hit ratio moves by 5 points. Source: G. Einziger,
//! O. Eytan, R. Friedman, B. Manes, "Adaptive Software Cache Management", Middleware 2018.
//!
//! It only counts and decides; `wtinylfu.rs` moves the pages. Lives under the policy's lock.

/// Caffeine's simple hill climber (`SimpleClimber`, defaults of its `reference.conf`).
#[derive(Debug)]
pub(crate) struct Climber {
    hits: u64,
    misses: u64,
    sample: u64,
    initial_sample: u64,
    previous_hit_ratio: f64,
    step: f64,
    initial_step: f64,
    /// Fractional part of the steps taken so far.
    carry: f64,
    increase: bool,
    small: bool,
}

/// Step: 6.25% of the capacity (at least 2 pages).
const CLIMB_STEP_RATIO: f64 = 0.0625;
/// Sample: 10 x the capacity.
const CLIMB_SAMPLE_RATIO: f64 = 10.0;
const CLIMB_STEP_DECAY: f64 = 0.98;
const CLIMB_SMALL_STEP_DECAY: f64 = 0.995;
const CLIMB_SMALL_SAMPLE_CAP: f64 = 10.0;
const CLIMB_SMALL_CACHE: usize = 512;
const CLIMB_RESTART: f64 = 0.05;

impl Climber {
    pub(crate) fn new(capacity: usize) -> Climber {
        let initial_step = (CLIMB_STEP_RATIO * capacity as f64).max(2.0);
        let initial_sample = ((CLIMB_SAMPLE_RATIO * capacity as f64) as u64).max(1);
        let small = capacity <= CLIMB_SMALL_CACHE;
        Climber {
            hits: 0,
            misses: 0,
            sample: initial_sample,
            initial_sample,
            previous_hit_ratio: 0.0,
            step: initial_step,
            initial_step,
            carry: 0.0,
            increase: small,
            small,
        }
    }

    pub(crate) fn on_access(&mut self, hit: bool, full: bool) {
        if full {
            if hit {
                self.hits += 1;
            } else {
                self.misses += 1;
            }
        }
    }

    /// Whole pages to move the boundary by (positive: grow the window), if a sample is done.
    pub(crate) fn adapt(&mut self) -> Option<i64> {
        let n = self.hits + self.misses;
        if n < self.sample {
            return None;
        }
        let hit_ratio = self.hits as f64 / n as f64;
        if hit_ratio < self.previous_hit_ratio {
            self.increase = !self.increase;
        }
        if (hit_ratio - self.previous_hit_ratio).abs() >= CLIMB_RESTART {
            self.sample = self.initial_sample;
            self.step = self.initial_step;
        }
        let amount = if self.increase { self.step } else { -self.step };
        // Next sample.
        self.previous_hit_ratio = hit_ratio;
        self.hits = 0;
        self.misses = 0;
        if self.small {
            self.step *= CLIMB_SMALL_STEP_DECAY;
            let magnitude = (self.initial_step / CLIMB_SMALL_SAMPLE_CAP).max(self.step.abs());
            let ratio = (self.initial_step / magnitude).clamp(1.0, CLIMB_SMALL_SAMPLE_CAP);
            self.sample = (self.initial_sample as f64 * ratio) as u64;
        } else {
            self.step *= CLIMB_STEP_DECAY;
        }
        let total = self.carry + amount;
        let whole = total.trunc();
        self.carry = total - whole;
        (whole != 0.0).then_some(whole as i64)
    }
}
