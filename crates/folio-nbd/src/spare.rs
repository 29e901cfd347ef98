//! Payload buffers a connection keeps for its next writes, within bounds.
//!
//! Owns: the buffers of inline writes kept for reuse (no allocation and no zeroing for the
//! next write's payload), at most [`SPARES_MAX`] per connection, none larger than
//! [`SPARE_BYTES_MAX`], and all of them together within the server-wide budget
//! [`ServerConfig::spare_bytes_max`](crate::ServerConfig::spare_bytes_max). A kept buffer
//! holds a share of that budget, its capacity, for as long as it lives: kept, and also while
//! it carries a write's payload (its capacity may exceed the payload, which is all the
//! in-flight budget counts), until it is dropped (the share goes back) or kept again. A buffer
//! that finds no share is simply freed after its write. Does not own: the payload bytes in
//! flight (the in-flight budgets, `limits.rs`). Never blocks.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use crate::limits::Limits;

/// Payload buffers kept per connection.
pub(crate) const SPARES_MAX: usize = 4;
/// The largest buffer kept (a larger one is freed after its write).
pub(crate) const SPARE_BYTES_MAX: usize = 1 << 20;

/// A share of the spare budget, given back when dropped.
struct Share {
    limits: Arc<Limits>,
    bytes: u64,
}

impl Drop for Share {
    fn drop(&mut self) {
        self.limits.spare.give_back(self.bytes);
    }
}

/// A write's payload buffer; one that was kept holds its share of the spare budget until it
/// is dropped or kept again.
pub(crate) struct Payload {
    buf: Vec<u8>,
    share: Option<Share>,
}

impl Payload {
    /// A new buffer of `len` zeros, holding no share.
    pub(crate) fn new(len: usize) -> Payload {
        Payload {
            buf: vec![0u8; len],
            share: None,
        }
    }

    /// The bytes, and a guard to keep alive for as long as they are (their share, if any).
    pub(crate) fn into_parts(self) -> (Vec<u8>, impl Send) {
        (self.buf, self.share)
    }
}

impl Deref for Payload {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.buf
    }
}

impl DerefMut for Payload {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
}

/// One connection's kept payload buffers (each holding its share).
pub(crate) struct Spares {
    limits: Arc<Limits>,
    kept: Vec<Payload>,
}

impl Spares {
    pub(crate) fn new(limits: &Arc<Limits>) -> Spares {
        Spares {
            limits: limits.clone(),
            kept: Vec::with_capacity(SPARES_MAX),
        }
    }

    /// Keeps `p` for a later write if the bounds allow it; frees it otherwise.
    pub(crate) fn keep(&mut self, mut p: Payload) {
        let bytes = p.buf.capacity() as u64;
        if p.buf.capacity() > SPARE_BYTES_MAX || self.kept.len() >= SPARES_MAX {
            return;
        }
        if p.share.as_ref().map(|s| s.bytes) != Some(bytes) {
            p.share = None; // gives back a share that no longer matches (none does today)
            if !self.limits.spare.try_take_exact(bytes) {
                return;
            }
            p.share = Some(Share {
                limits: self.limits.clone(),
                bytes,
            });
        }
        self.kept.push(p);
    }

    /// A buffer of `len` bytes for a write's payload, which the payload then overwrites whole:
    /// a kept one if one is large enough (no allocation and no zeroing; it keeps its share),
    /// else a new one.
    pub(crate) fn take(&mut self, len: usize) -> Payload {
        match self.kept.iter().position(|k| k.buf.capacity() >= len) {
            Some(i) => {
                let mut p = self.kept.swap_remove(i);
                // Shrinking keeps the old bytes; growing within the capacity zeroes only the
                // new tail. Either way every byte is overwritten by the payload before use.
                p.buf.resize(len, 0);
                p
            }
            None => Payload::new(len),
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
            a.keep(Payload::new(MIB));
            b.keep(Payload::new(MIB));
        }
        assert_eq!(a.count() + b.count(), 3);
        assert_eq!(l.spare.used(), 3 * MIB as u64);
        // A kept buffer taken for a (small) write keeps its share while it carries the
        // payload: no other buffer can be kept in its place meanwhile.
        let small = a.take(4096);
        assert_eq!(small.len(), 4096);
        b.keep(Payload::new(MIB));
        assert_eq!(a.count() + b.count(), 2);
        assert_eq!(l.spare.used(), 3 * MIB as u64);
        // Kept again after its write: with the share it has.
        a.keep(small);
        assert_eq!(a.count() + b.count(), 3);
        assert_eq!(l.spare.used(), 3 * MIB as u64);
        // Its share goes back when it is dropped in flight (a write handed to the pool), and
        // when its connection ends.
        let (bytes, share) = a.take(MIB).into_parts();
        drop(bytes);
        assert_eq!(l.spare.used(), 3 * MIB as u64);
        drop(share);
        assert_eq!(l.spare.used(), 2 * MIB as u64);
        drop((a, b));
        assert_eq!(l.spare.used(), 0);
    }

    #[test]
    fn per_connection_count_and_size_are_bounded() {
        let l = limits(1 << 30);
        let mut a = Spares::new(&l);
        a.keep(Payload::new(SPARE_BYTES_MAX + 1));
        assert_eq!(a.count(), 0, "larger than a spare may be");
        for _ in 0..SPARES_MAX + 3 {
            a.keep(Payload::new(4096));
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
        a.keep(Payload::new(4096));
        assert_eq!(a.count(), 0);
    }
}
