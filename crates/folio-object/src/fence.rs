//! The writer's fence: until when this writer's lease is surely its own, on this machine's
//! boot clock.
//!
//! Owns: [`Clock`] (milliseconds since the image was opened, on `CLOCK_BOOTTIME`, which keeps
//! counting while the machine is suspended: on the monotonic clock a writer suspended past its
//! lease would wake with its fence still open, review 3, L1) and [`Fence`]. The lease
//! (`lease.rs`) extends the fence after each renewal that lands, to 90% of the time to live after
//! the *start of the attempt that landed* (the store applied it no earlier, so a newcomer that saw
//! it waits at least a whole time to live from then). Every write under the lease is checked
//! against the fence before each attempt, and each attempt is abandoned when the fence ends
//! (`retry.rs`), so no request of this writer is outstanding past that point. The fence is lost
//! for good when another writer took the image over.
//!
//! Does not own: renewing (`lease.rs`). Nothing here blocks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::{ObjResult, ObjectError};

/// Milliseconds on the boot clock since a fixed start.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock(u64);

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock(boot_ms())
    }

    pub(crate) fn now_ms(&self) -> u64 {
        boot_ms().saturating_sub(self.0)
    }
}

/// Milliseconds on `CLOCK_BOOTTIME` (monotonic, and counting while suspended).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn boot_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    (t.tv_sec as u64).saturating_mul(1000) + t.tv_nsec as u64 / 1_000_000
}

/// Elsewhere, the monotonic clock (from the first call).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn boot_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// Whether this writer may still write. See the module docs.
pub(crate) struct Fence {
    clock: Clock,
    /// Milliseconds on `clock` until which the lease is surely ours (`u64::MAX`: no lease
    /// needed).
    valid_until_ms: AtomicU64,
    lost: Mutex<Option<String>>,
    prefix: String,
}

impl Fence {
    /// A fence that is open until `valid_until_ms` (`u64::MAX`: read-only, no lease).
    pub(crate) fn new(clock: Clock, prefix: String, valid_until_ms: u64) -> Fence {
        Fence {
            clock,
            valid_until_ms: AtomicU64::new(valid_until_ms),
            lost: Mutex::new(None),
            prefix,
        }
    }

    /// Err if writes must stop (now, or for good).
    pub(crate) fn check(&self) -> ObjResult<()> {
        if let Some(why) = self.lost.lock().clone() {
            return Err(ObjectError::LeaseLost {
                prefix: self.prefix.clone(),
                why,
            });
        }
        if self.left().is_zero() {
            return Err(ObjectError::LeaseLost {
                prefix: self.prefix.clone(),
                why: "not renewed within its time to live (writes resume once a renewal lands)"
                    .into(),
            });
        }
        Ok(())
    }

    /// How long the lease is surely ours from now.
    pub(crate) fn left(&self) -> Duration {
        let until = self.valid_until_ms.load(Ordering::Acquire);
        if until == u64::MAX {
            return Duration::MAX;
        }
        Duration::from_millis(until.saturating_sub(self.clock.now_ms()))
    }

    /// The lease is ours until `until_ms` (never moves the end back).
    pub(crate) fn extend(&self, until_ms: u64) {
        self.valid_until_ms.fetch_max(until_ms, Ordering::AcqRel);
    }

    /// The lease is gone for good.
    pub(crate) fn lose(&self, why: String) {
        tracing::error!(prefix = %self.prefix, why = %why, "lease lost; writes are refused");
        self.lost.lock().get_or_insert(why);
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.lost.lock().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_closes_at_its_end_and_for_good_when_lost() {
        let clock = Clock::new();
        let f = Fence::new(clock, "p".into(), clock.now_ms() + 50);
        assert!(f.check().is_ok());
        assert!(f.left() <= Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(60));
        assert!(f.check().is_err());
        f.extend(clock.now_ms() + 1000);
        f.extend(0);
        assert!(f.check().is_ok(), "an older end does not shorten it");
        f.lose("taken over".into());
        assert!(
            matches!(f.check(), Err(ObjectError::LeaseLost { why, .. }) if why == "taken over")
        );
        let open = Fence::new(clock, "p".into(), u64::MAX);
        assert_eq!(open.left(), Duration::MAX);
    }
}
