//! Completion of one backend I/O made of several store requests.
//!
//! Owns: [`Join`], which completes a cache [`IoWaiter`](folio::backend::IoWaiter) once every
//! part (one per chunk piece) has finished, with the first error if any failed.
//!
//! Does not own: the requests themselves.

use std::sync::atomic::{AtomicUsize, Ordering};

use folio::backend::IoCompleter;
use parking_lot::Mutex;

/// Completes a waiter when its last part finishes.
pub(crate) struct Join {
    left: AtomicUsize,
    first_error: Mutex<Option<folio::Error>>,
    completer: Mutex<Option<IoCompleter>>,
}

impl Join {
    /// A join of `parts` parts (at least one) completing `completer`.
    pub(crate) fn new(completer: IoCompleter, parts: usize) -> Join {
        assert!(parts > 0, "a join needs a part");
        Join {
            left: AtomicUsize::new(parts),
            first_error: Mutex::new(None),
            completer: Mutex::new(Some(completer)),
        }
    }

    /// Records that one part finished with `result`; the last one completes the waiter.
    pub(crate) fn part(&self, result: folio::Result<()>) {
        if let Err(e) = result {
            self.first_error.lock().get_or_insert(e);
        }
        let before = self.left.fetch_sub(1, Ordering::AcqRel);
        assert!(before > 0, "more parts finished than the join has");
        if before == 1 {
            let result = match self.first_error.lock().take() {
                Some(e) => Err(e),
                None => Ok(()),
            };
            if let Some(c) = self.completer.lock().take() {
                c.complete(result);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use folio::backend::IoWaiter;
    use folio::IoOp;

    #[test]
    fn completes_after_the_last_part_with_the_first_error() {
        let (w, c) = IoWaiter::pending(IoOp::Read, 0);
        let j = Join::new(c, 3);
        j.part(Ok(()));
        j.part(Err(folio::Error::Unsupported("first")));
        assert!(!w.is_complete());
        j.part(Err(folio::Error::Unsupported("second")));
        let e = w.wait().unwrap_err();
        assert!(e.to_string().contains("first"), "{e}");
        let (w, c) = IoWaiter::pending(IoOp::Read, 0);
        Join::new(c, 1).part(Ok(()));
        w.wait().unwrap();
    }
}
