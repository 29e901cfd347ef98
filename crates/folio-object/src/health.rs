//! Whether the store is known to be down, so that writes fail fast against a dead store
//! without failing against a slow one.
//!
//! Owns: [`Health`]. The store is *known down* once a request gave up after attempts that all went
//! unanswered (timeouts, connection errors, injected faults), and *up* again as soon as any attempt
//! gets an answer (a success, an answer such as "not found", or an HTTP 5xx such as S3's 503 Slow
//! Down: a throttled store is up, only busy, and its writes retry as usual). While it is known
//! down, a write (`retry.rs`, `Gate::Write`) is not retried: one write at a time *probes* the store
//! with a single attempt; the writes that find a probe in flight wait for its outcome (at most one
//! attempt timeout) and go ahead if it was answered; after a probe failed, writes fail at once
//! without sending anything for as long as that probe took (at most an attempt timeout), so probing
//! takes at most about half the time while the store is down: a store that does not answer is
//! probed once per attempt timeout, one that refuses connections at once is probed by every write,
//! and either is found up by the first write after it comes back. So a sync of thousands of dirty
//! chunks against a dead store ends after about one retry budget, while against a healthy but slow
//! store every rewrite gets its whole budget from when it got its slot (`chunk.rs`); and the first
//! write after the store comes back (or a lease renewal, or a read) finds it up again.
//!
//! Does not own: the retry loop (`retry.rs`), deadlines (`chunk.rs`, `resize.rs`).
//!
//! May block: [`Health::wait_for_probe`] waits (async) for a probe in flight.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// See the module docs.
#[derive(Default)]
pub(crate) struct Health {
    /// 0 while the store is up; else 1 + when it was found down (ms on the image's clock).
    down_since: AtomicU64,
    /// 0 if no probe failed since the store was found down; else the time until which writes
    /// fail fast (ms on the image's clock): when the last probe ended, plus how long it took.
    quiet_until_ms: AtomicU64,
    /// A probe is in flight.
    probing: AtomicBool,
    /// Notified when a probe ends.
    probe_ended: Notify,
}

/// What a write does while the store is known down.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Down {
    /// The store is not known down: retry as usual.
    No,
    /// Send one attempt: this write probes the store.
    Probe,
    /// Another write is probing the store: wait for its outcome.
    AwaitProbe,
    /// Do not send: the store is down and a probe failed just now (see the module docs).
    FailFast,
}

impl Health {
    pub(crate) fn is_down(&self) -> bool {
        self.down_since.load(Ordering::Acquire) != 0
    }

    /// An attempt got an answer: the store is up.
    pub(crate) fn answered(&self) {
        if self.down_since.swap(0, Ordering::AcqRel) != 0 {
            self.quiet_until_ms.store(0, Ordering::Release);
            tracing::info!("the object store answers again");
        }
    }

    /// A request gave up without an answer at `now_ms`: the store is down.
    pub(crate) fn gave_up(&self, now_ms: u64) {
        if self
            .down_since
            .compare_exchange(0, now_ms + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            tracing::warn!("the object store does not answer; writes fail fast until it does");
        }
    }

    /// What a write about to send its first attempt at `now_ms` does (see [`Down`]); a write
    /// told [`Down::Probe`] must call [`probe_ended`](Self::probe_ended) when its attempt ends.
    pub(crate) fn before_write(&self, now_ms: u64) -> Down {
        if !self.is_down() {
            return Down::No;
        }
        if self.probing.load(Ordering::Acquire) {
            return Down::AwaitProbe;
        }
        if now_ms < self.quiet_until_ms.load(Ordering::Acquire) {
            return Down::FailFast;
        }
        match self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Down::Probe,
            Err(_) => Down::AwaitProbe,
        }
    }

    /// The probe's attempt, which started at `started_ms`, ended at `now_ms`; writes fail fast
    /// for as long as it took, at most `quiet_max` (if the store is still down).
    pub(crate) fn probe_ended(&self, started_ms: u64, now_ms: u64, quiet_max: Duration) {
        if self.is_down() {
            let took = now_ms
                .saturating_sub(started_ms)
                .min(quiet_max.as_millis() as u64);
            self.quiet_until_ms.store(now_ms + took, Ordering::Release);
        }
        self.probing.store(false, Ordering::Release);
        self.probe_ended.notify_waiters();
    }

    /// Waits (at most `wait_max`) for a probe in flight to end; true if the store is up then.
    pub(crate) async fn wait_for_probe(&self, wait_max: Duration) -> bool {
        let ended = self.probe_ended.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        if self.probing.load(Ordering::Acquire) {
            let _ = tokio::time::timeout(wait_max, ended).await;
        }
        !self.is_down()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_after_a_give_up_probed_one_at_a_time_up_after_an_answer() {
        let h = Health::default();
        let q = Duration::from_millis(100);
        assert_eq!(h.before_write(5), Down::No);
        h.gave_up(10);
        assert!(h.is_down());
        assert_eq!(
            h.before_write(11),
            Down::Probe,
            "found down: probed at once"
        );
        assert_eq!(h.before_write(12), Down::AwaitProbe, "one probe at a time");
        h.probe_ended(11, 300, q);
        assert_eq!(
            h.before_write(350),
            Down::FailFast,
            "quiet for as long as it took, capped"
        );
        assert_eq!(h.before_write(400), Down::Probe);
        h.probe_ended(400, 402, q);
        assert_eq!(h.before_write(403), Down::FailFast);
        assert_eq!(
            h.before_write(404),
            Down::Probe,
            "a quick refusal: probed again soon"
        );
        h.answered();
        h.probe_ended(404, 410, q);
        assert_eq!(h.before_write(411), Down::No);
        h.gave_up(500);
        assert_eq!(
            h.before_write(501),
            Down::Probe,
            "an old failed probe does not count"
        );
    }
}
