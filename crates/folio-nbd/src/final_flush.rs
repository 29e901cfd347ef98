//! The server's last flush, at shutdown, and what it reports when data could not be written.
//!
//! Owns: flushing every export once the connections are done, retrying the exports whose flush
//! failed (a bounded number of attempts, waiting longer before each: a store that is down for
//! a few seconds, a full disk being cleaned up), and the typed error [`NotFlushed`] that names
//! every export still holding writes acknowledged to clients but not known to be durable, with
//! how many bytes, so the process can exit non-zero with a loud message instead of stopping as
//! if nothing were lost. Does not own: the devices (what they keep after a failure is theirs:
//! the page cache keeps failed pages dirty, a plain file keeps its bytes in the kernel's page
//! cache) or the exit status (the caller's). May block: in the devices' flushes and between
//! attempts, at most `final_flush_attempts` flushes per export and the waits between them.

use std::fmt;
use std::io;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::config::{Export, ServerConfig};

/// The longest wait between two attempts.
const RETRY_WAIT_MAX: Duration = Duration::from_secs(8);

/// One export whose final flush failed every attempt.
#[derive(Debug)]
#[non_exhaustive]
pub struct ExportNotFlushed {
    /// The export's name.
    pub name: String,
    /// Its description (for `folio serve`, the image's path or URL).
    pub description: String,
    /// Bytes written by clients that may not be durable, if the device keeps count
    /// ([`BlockDevice::unsynced_bytes`](crate::BlockDevice::unsynced_bytes)).
    pub unsynced_bytes: Option<u64>,
    /// The last attempt's error.
    pub error: io::Error,
}

/// The final flush at shutdown failed: writes that clients were told had completed (though not
/// that they were durable: they sent no `FLUSH` or `FUA` that succeeded after them) are not
/// known to be written. Returned (inside an [`io::Error`] of kind `Other`) by
/// [`Server::serve`](crate::Server::serve).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub struct NotFlushed {
    /// The exports that could not be flushed.
    pub exports: Vec<ExportNotFlushed>,
    /// Attempts made for each of them.
    pub attempts: u32,
}

impl fmt::Display for NotFlushed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DATA NOT WRITTEN: the final flush failed {} time(s) for {} export(s); writes \
             acknowledged to clients may be lost:",
            self.attempts,
            self.exports.len()
        )?;
        for e in &self.exports {
            write!(f, " export {:?} ({}): ", e.name, e.description)?;
            match e.unsynced_bytes {
                Some(n) => write!(f, "{n} bytes not durable")?,
                None => write!(f, "an unknown amount not durable")?,
            }
            write!(f, " ({});", e.error)?;
        }
        Ok(())
    }
}

/// Flushes every export, retrying those that fail (see the module docs).
pub(crate) fn flush_exports(exports: &[Export], cfg: &ServerConfig) -> Result<(), NotFlushed> {
    let attempts = cfg.final_flush_attempts.max(1);
    let mut wait = cfg.final_flush_retry_wait;
    let mut left: Vec<&Export> = exports.iter().collect();
    let mut attempt = 1;
    // Bounded: `attempts` rounds.
    loop {
        let mut failed = Vec::new();
        for e in left {
            match e.dev.flush() {
                Ok(()) if attempt > 1 => {
                    info!(export = %e.name, attempt, "final flush succeeded on a retry")
                }
                Ok(()) => {}
                Err(err) => {
                    warn!(export = %e.name, attempt, attempts, error = %err, "final flush failed");
                    failed.push((e, err));
                }
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        if attempt >= attempts {
            return Err(not_flushed(failed, attempts));
        }
        std::thread::sleep(wait);
        wait = (wait * 2).min(RETRY_WAIT_MAX);
        attempt += 1;
        left = failed.into_iter().map(|(e, _)| e).collect();
    }
}

/// The error for the exports that failed every attempt, logged loudly.
fn not_flushed(failed: Vec<(&Export, io::Error)>, attempts: u32) -> NotFlushed {
    let exports: Vec<ExportNotFlushed> = failed
        .into_iter()
        .map(|(e, error)| ExportNotFlushed {
            name: e.name.clone(),
            description: e.description.clone(),
            unsynced_bytes: e.dev.unsynced_bytes(),
            error,
        })
        .collect();
    for e in &exports {
        error!(
            export = %e.name,
            image = %e.description,
            unsynced_bytes = ?e.unsynced_bytes,
            error = %e.error,
            attempts,
            "DATA NOT WRITTEN: writes acknowledged to clients could not be made durable"
        );
    }
    NotFlushed { exports, attempts }
}
