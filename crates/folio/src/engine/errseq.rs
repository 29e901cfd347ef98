//! The record of write-back failures: Linux's `errseq`.

use crate::error::{Error, Result};
use crate::sync::{AtomicU64, Mutex, Ordering};

/// The record of write-back failures (Linux's `errseq`): a counter of failures and the latest
/// one. Each observer keeps the count it has seen; a check reports a failure newer than that
/// once and moves the observer forward.
#[derive(Debug, Default)]
pub(crate) struct ErrSeq {
    count: AtomicU64,
    /// The highest count some observer has been told about.
    reported: AtomicU64,
    last: Mutex<Option<Error>>,
}

impl ErrSeq {
    pub(crate) fn record(&self, e: &Error) {
        *self.last.lock() = Some(e.clone());
        self.count.fetch_add(1, Ordering::AcqRel);
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

    pub(crate) fn check(&self, seen: &AtomicU64) -> Result<()> {
        let now = self.count.load(Ordering::Acquire);
        let before = seen.fetch_max(now, Ordering::AcqRel);
        if before >= now {
            return Ok(());
        }
        self.reported.fetch_max(now, Ordering::AcqRel);
        let last = self.last.lock().clone();
        Err(Error::WritebackFailed {
            seq: now,
            source: Box::new(last.unwrap_or(Error::Closed)),
        })
    }
}
