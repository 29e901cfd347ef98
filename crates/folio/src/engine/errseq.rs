//! The record of write-back failures: Linux's `errseq`, with a cursor per observer.
//!
//! Owns the failure count, the latest failure, and [`Cursor`] (what one observer has seen).
//! Touches nothing else. Never blocks but on its own short mutex.

use crate::error::{Error, Result};
use crate::sync::{AtomicU64, Mutex, Ordering};

/// The record of write-back failures (Linux's `errseq`): a counter of failures and the latest
/// one. Each observer keeps the count it has seen; a check reports a failure newer than that
/// once and moves the observer forward.
#[derive(Debug, Default)]
pub(crate) struct ErrSeq {
    /// Failures recorded so far; moves only under `last`'s lock, after `last` is set, so a
    /// count read with the lock held always comes with its own failure.
    count: AtomicU64,
    /// The highest count some observer has been told about.
    reported: AtomicU64,
    /// The latest failure, with its count.
    last: Mutex<Option<(u64, Error)>>,
}

/// What one observer (the cache itself, a [`SyncHandle`](crate::SyncHandle)) has been told.
///
/// Two positions: a sync must report every failure since the observer's last *sync*, whatever
/// flushes reported meanwhile (a flush or an eviction that saw a failure does not make the data
/// durable, so the next sync must not return Ok as if nothing happened). Flushes report once
/// per failure on their own position.
#[derive(Debug)]
pub(crate) struct Cursor {
    sync: AtomicU64,
    flush: AtomicU64,
}

impl Cursor {
    /// A cursor that has seen everything up to `at`.
    pub(crate) fn at(at: u64) -> Cursor {
        Cursor {
            sync: AtomicU64::new(at),
            flush: AtomicU64::new(at),
        }
    }

    /// The sync position (for `Debug`).
    pub(crate) fn sync_position(&self) -> u64 {
        self.sync.load(Ordering::Relaxed)
    }
}

/// Which position of a [`Cursor`] a check reports against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// A sync: reports failures since the last sync, and moves both positions.
    Sync,
    /// A flush (or an eviction, or a hint that writes back): reports failures since the last
    /// report of either kind, and moves only the flush position.
    Flush,
}

impl ErrSeq {
    pub(crate) fn record(&self, e: &Error) {
        let mut last = self.last.lock();
        let n = self.count.load(Ordering::Relaxed) + 1;
        *last = Some((n, e.clone()));
        self.count.store(n, Ordering::Release);
    }

    /// Failures recorded so far.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Where a new observer starts: after the failures somebody has seen, so one nobody has
    /// seen is reported to it (Linux's `errseq_sample`).
    pub(crate) fn sample(&self) -> u64 {
        self.reported.load(Ordering::Acquire)
    }

    /// Reports a failure newer than what `cursor` has seen (by `check`), once.
    pub(crate) fn check(&self, cursor: &Cursor, check: Check) -> Result<()> {
        // The cheap case first: nothing new.
        let now = self.count.load(Ordering::Acquire);
        let pos = match check {
            Check::Sync => &cursor.sync,
            Check::Flush => &cursor.flush,
        };
        if pos.load(Ordering::Acquire) >= now {
            return Ok(());
        }
        // The count and its failure, together.
        let (seq, failure) = match &*self.last.lock() {
            Some((seq, e)) => (*seq, e.clone()),
            None => return Ok(()),
        };
        let before = pos.fetch_max(seq, Ordering::AcqRel);
        if check == Check::Sync {
            cursor.flush.fetch_max(seq, Ordering::AcqRel);
        }
        if before >= seq {
            return Ok(());
        }
        self.reported.fetch_max(seq, Ordering::AcqRel);
        Err(Error::WritebackFailed {
            seq,
            source: Box::new(failure),
        })
    }
}

#[cfg(all(test, not(folio_model)))]
mod tests {
    use super::*;

    fn failure(n: u64) -> Error {
        Error::io(crate::IoOp::Write, n, std::io::Error::other("test"))
    }

    #[test]
    fn a_sync_reports_what_a_flush_already_reported() {
        let seq = ErrSeq::default();
        let c = Cursor::at(seq.sample());
        seq.record(&failure(1));
        assert!(seq.check(&c, Check::Flush).is_err());
        assert!(seq.check(&c, Check::Flush).is_ok(), "a flush reports once");
        assert!(
            seq.check(&c, Check::Sync).is_err(),
            "the sync must still hear of it"
        );
        assert!(seq.check(&c, Check::Sync).is_ok());
        assert!(
            seq.check(&c, Check::Flush).is_ok(),
            "a sync's report covers flushes"
        );
    }

    #[test]
    fn a_report_names_the_failure_it_counts() {
        let seq = ErrSeq::default();
        let c = Cursor::at(0);
        seq.record(&failure(1));
        seq.record(&failure(2));
        match seq.check(&c, Check::Sync) {
            Err(Error::WritebackFailed { seq: 2, source }) => {
                assert!(source.to_string().contains("byte 2"), "{source}")
            }
            other => panic!("{other:?}"),
        }
        assert!(seq.check(&c, Check::Sync).is_ok(), "one report for both");
    }
}
