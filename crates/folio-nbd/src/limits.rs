//! Server-wide limits: bytes in flight, range effects in flight, payload buffers kept for reuse,
//! connections in all and per address.
//!
//! Owns: the counters and the tokens that give their share back when dropped. Does not own:
//! the per-connection bounds (`conn/`) or the configuration (`config.rs`). Never blocks:
//! every acquisition is a try; whoever cannot get a share stops reading and retries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::listener::Peer;

/// A count that never goes past its maximum.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicU64,
    max: u64,
}

impl Budget {
    pub(crate) fn new(max: u64) -> Budget {
        Budget {
            used: AtomicU64::new(0),
            max: max.max(1),
        }
    }

    /// Takes `n` if that stays within the maximum. A request for more than the whole budget
    /// takes the whole budget instead (when nothing else is taken), so it can still run, alone.
    pub(crate) fn try_take(&self, n: u64) -> Option<u64> {
        let n = n.min(self.max);
        let mut used = self.used.load(Ordering::Relaxed);
        // Bounded: each failed CAS means another thread moved the count.
        loop {
            if used + n > self.max {
                return None;
            }
            match self.used.compare_exchange_weak(
                used,
                used + n,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(n),
                Err(now) => used = now,
            }
        }
    }

    /// Takes exactly `n` if that stays within the maximum (never the whole budget in place of
    /// more than it: for memory that is really held, like kept buffers).
    pub(crate) fn try_take_exact(&self, n: u64) -> bool {
        n <= self.max && self.try_take(n).is_some()
    }

    pub(crate) fn give_back(&self, n: u64) {
        let before = self.used.fetch_sub(n, Ordering::AcqRel);
        debug_assert!(before >= n, "budget released more than it lent");
    }

    /// What is taken now.
    #[cfg(test)]
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// The server-wide budgets.
#[derive(Debug)]
pub(crate) struct Limits {
    /// Payload and reply bytes in flight.
    pub(crate) bytes: Budget,
    /// Bytes covered by `TRIM`, `WRITE_ZEROES` and `CACHE` in flight.
    pub(crate) effect: Budget,
    /// Bytes of payload buffers connections keep for their next writes (`spare.rs`).
    pub(crate) spare: Budget,
}

impl Limits {
    /// The server-wide budgets of `cfg`.
    pub(crate) fn new(cfg: &crate::config::ServerConfig) -> Limits {
        Limits {
            bytes: Budget::new(cfg.global_inflight_bytes_max),
            effect: Budget::new(cfg.effect_bytes_max),
            spare: Budget::new(cfg.spare_bytes_max),
        }
    }
}

/// A share of the server-wide budgets, given back when dropped (when its reply has been sent,
/// or dropped unsent).
#[derive(Debug)]
pub(crate) struct Tokens {
    limits: Arc<Limits>,
    pub(crate) bytes: u64,
    effect: u64,
}

impl Tokens {
    /// Takes `bytes` of memory and `effect` bytes of range effect, or nothing.
    pub(crate) fn take(limits: &Arc<Limits>, bytes: u64, effect: u64) -> Option<Tokens> {
        let b = limits.bytes.try_take(bytes)?;
        let e = if effect > 0 {
            match limits.effect.try_take(effect) {
                Some(e) => e,
                None => {
                    limits.bytes.give_back(b);
                    return None;
                }
            }
        } else {
            0
        };
        Some(Tokens {
            limits: limits.clone(),
            bytes: b,
            effect: e,
        })
    }
}

impl Drop for Tokens {
    fn drop(&mut self) {
        self.limits.bytes.give_back(self.bytes);
        if self.effect > 0 {
            self.limits.effect.give_back(self.effect);
        }
    }
}

/// Connections open, in all and per address.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    per_peer: Mutex<HashMap<Peer, usize>>,
}

/// A connection's place, given back when dropped.
pub(crate) struct Seat {
    conns: Arc<Connections>,
    peer: Peer,
}

impl Connections {
    /// A seat for `peer` if it has fewer than `per_peer_max` and all have fewer than `max`.
    pub(crate) fn admit(
        self: &Arc<Self>,
        peer: &Peer,
        max: usize,
        per_peer_max: usize,
    ) -> Option<Seat> {
        let mut m = self.per_peer.lock();
        let total: usize = m.values().sum();
        let mine = m.get(peer).copied().unwrap_or(0);
        if total >= max || mine >= per_peer_max {
            return None;
        }
        *m.entry(peer.clone()).or_insert(0) += 1;
        Some(Seat {
            conns: self.clone(),
            peer: peer.clone(),
        })
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let mut m = self.conns.per_peer.lock();
        if let Some(n) = m.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_never_overcommit_and_give_back_on_drop() {
        let limits = Arc::new(Limits {
            bytes: Budget::new(100),
            effect: Budget::new(1000),
            spare: Budget::new(1),
        });
        let a = Tokens::take(&limits, 60, 0).unwrap();
        assert!(Tokens::take(&limits, 50, 0).is_none());
        // Failing on the effect budget gives the bytes back.
        let big = Tokens::take(&limits, 40, 1000).unwrap();
        assert!(Tokens::take(&limits, 0, 1).is_none());
        drop(big);
        assert_eq!(limits.bytes.used(), 60);
        drop(a);
        // A request larger than the whole budget takes all of it, alone.
        let all = Tokens::take(&limits, 1 << 40, 0).unwrap();
        assert_eq!(all.bytes, 100);
        assert!(Tokens::take(&limits, 1, 0).is_none());
        drop(all);
        assert_eq!((limits.bytes.used(), limits.effect.used()), (0, 0));
    }

    #[test]
    fn connection_caps_per_address_and_in_all() {
        let c = Arc::new(Connections::default());
        let a = Peer::Ip("127.0.0.1".parse().unwrap());
        let b = Peer::Ip("127.0.0.2".parse().unwrap());
        let s1 = c.admit(&a, 3, 2).unwrap();
        let _s2 = c.admit(&a, 3, 2).unwrap();
        assert!(c.admit(&a, 3, 2).is_none(), "per-address cap");
        let _s3 = c.admit(&b, 3, 2).unwrap();
        assert!(c.admit(&b, 3, 2).is_none(), "global cap");
        drop(s1);
        assert!(c.admit(&a, 3, 2).is_some());
    }
}
