//! Payload buffers a connection keeps for its next writes, within bounds.
//!
//! Owns: the buffers of inline writes kept for reuse (no allocation and no zeroing for the
//! next write's payload), at most [`SPARES_MAX`] per connection, none larger than
//! [`SPARE_BYTES_MAX`], and all of them together within the server-wide budget
//! [`ServerConfig::spare_bytes_max`](crate::ServerConfig::spare_bytes_max): each kept buffer
//! holds a share of it, given back when the buffer is taken for a write or dropped (a buffer
//! with no share left is simply freed). Does not own: the payload bytes in flight (those count
//! against the in-flight budgets, `limits.rs`). Never blocks.

use std::sync::Arc;

use crate::limits::Limits;

/// Payload buffers kept per connection.
pub(crate) const SPARES_MAX: usize = 4;
/// The largest buffer kept (a larger one is freed after its write).
pub(crate) const SPARE_BYTES_MAX: usize = 1 << 20;

/// A kept buffer and its share of the server-wide budget.
struct Kept {
    buf: Vec<u8>,
    limits: Arc<Limits>,
    share: u64,
}

impl Drop for Kept {
    fn drop(&mut self) {
        self.limits.spare.give_back(self.share);
    }
}

/// One connection's kept payload buffers.
pub(crate) struct Spares {
    limits: Arc<Limits>,
    kept: Vec<Kept>,
}

impl Spares {
    pub(crate) fn new(limits: &Arc<Limits>) -> Spares {
        Spares {
            limits: limits.clone(),
            kept: Vec::with_capacity(SPARES_MAX),
        }
    }

    /// Keeps `buf` for a later write if the bounds allow it; frees it otherwise.
    pub(crate) fn keep(&mut self, buf: Vec<u8>) {
        let share = buf.capacity() as u64;
        if buf.capacity() > SPARE_BYTES_MAX || self.kept.len() >= SPARES_MAX {
            return;
        }
        if !self.limits.spare.try_take_exact(share) {
            return;
        }
        self.kept.push(Kept {
            buf,
            limits: self.limits.clone(),
            share,
        });
    }

    /// A buffer of `len` bytes for a write's payload, which the payload then overwrites whole:
    /// a kept one if one is large enough (no allocation and no zeroing), else a new one.
    pub(crate) fn take(&mut self, len: usize) -> Vec<u8> {
        match self.kept.iter().position(|k| k.buf.capacity() >= len) {
            Some(i) => {
                let mut kept = self.kept.swap_remove(i);
                let mut b = std::mem::take(&mut kept.buf);
                drop(kept); // its share goes back: the buffer is in flight now
                            // Shrinking keeps the old bytes; growing within the capacity zeroes only the
                            // new tail. Either way every byte is overwritten by the payload before use.
                b.resize(len, 0);
                b
            }
            None => vec![0u8; len],
        }
    }

    /// Buffers kept now.
    #[cfg(test)]
    fn count(&self) -> usize {
        self.kept.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Budget;

    fn limits(spare_bytes_max: u64) -> Arc<Limits> {
        Arc::new(Limits {
            bytes: Budget::new(1 << 30),
            effect: Budget::new(1 << 30),
            spare: Budget::new(spare_bytes_max),
        })
    }

    #[test]
    fn kept_buffers_stay_within_the_server_wide_budget_and_give_it_back() {
        const MIB: usize = 1 << 20;
        let l = limits(3 * MIB as u64);
        // Two connections each finish four 1 MiB inline writes: only three buffers in all are
        // kept, whoever keeps them.
        let (mut a, mut b) = (Spares::new(&l), Spares::new(&l));
        for _ in 0..4 {
            a.keep(vec![0u8; MIB]);
            b.keep(vec![0u8; MIB]);
        }
        assert_eq!(a.count() + b.count(), 3);
        assert!(l.spare.used() <= 3 * MIB as u64);
        // A buffer taken for a write gives its share back; one dropped with its connection
        // too.
        let buf = a.take(MIB);
        assert_eq!(buf.len(), MIB);
        b.keep(vec![0u8; MIB]);
        assert_eq!(a.count() + b.count(), 3);
        drop((a, b));
        assert_eq!(l.spare.used(), 0);
    }

    #[test]
    fn per_connection_count_and_size_are_bounded() {
        let l = limits(1 << 30);
        let mut a = Spares::new(&l);
        a.keep(vec![0u8; SPARE_BYTES_MAX + 1]);
        assert_eq!(a.count(), 0, "larger than a spare may be");
        for _ in 0..SPARES_MAX + 3 {
            a.keep(vec![0u8; 4096]);
        }
        assert_eq!(a.count(), SPARES_MAX);
        // A request larger than every kept buffer gets a new one; kept ones stay.
        assert_eq!(a.take(8192).len(), 8192);
        assert_eq!(a.count(), SPARES_MAX);
        assert_eq!(a.take(100).len(), 100);
        assert_eq!(a.count(), SPARES_MAX - 1);
    }

    #[test]
    fn no_budget_keeps_nothing() {
        let l = limits(0);
        let mut a = Spares::new(&l);
        a.keep(vec![0u8; 4096]);
        assert_eq!(a.count(), 0);
    }
}
