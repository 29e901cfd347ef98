//! What opening an image asks for ([`OpenOptions`], checked together), and what the backend
//! reports about its per-chunk state ([`MetadataStats`]).
//!
//! Owns: the options and their rules (a writer's lease outlives three store attempt
//! timeouts). Does not own: opening (`backend.rs`). Nothing here blocks.

use std::time::Duration;

use crate::error::{ObjResult, ObjectError};
use crate::image::{Access, Limits};
use crate::lease::LeaseMode;
use crate::retry::RetryPolicy;

/// How to open an image.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Read-only (no lease) or read-write (under the single-writer lease).
    pub access: Access,
    /// Retries of each store request.
    pub retry: RetryPolicy,
    /// Requests in flight and runtime threads.
    pub limits: Limits,
    /// How long the lease lives without renewal (renewed every third of it). At least three
    /// times `retry.attempt_timeout` ([`ObjectError::LeaseTooShort`]). Default 30 s.
    pub lease_ttl: Duration,
    /// What to do if another writer's lock is found.
    pub lease_mode: LeaseMode,
    /// How long closing waits for the writes in flight; past it, close fails with
    /// [`ObjectError::InFlightAtClose`] and leaves the lease to expire. Default: a rewrite's
    /// deadline (two retry budgets) plus one attempt timeout (about 136 s with the default
    /// retries), so a close waits for a rewrite that holds a slot when it starts; set it with
    /// [`OpenOptions::close_wait_for`] when you change `retry`.
    pub close_wait: Duration,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions {
            access: Access::ReadWrite,
            retry: RetryPolicy::default(),
            limits: Limits::default(),
            lease_ttl: Duration::from_secs(30),
            lease_mode: LeaseMode::Wait,
            close_wait: OpenOptions::close_wait_for(&RetryPolicy::default()),
        }
    }
}

impl OpenOptions {
    /// The close wait that matches `retry`: a rewrite round sends nothing past two retry
    /// budgets after it got its slot (`retry.rs`), and its last attempt may take one attempt
    /// timeout to be abandoned (review 3, L4: the default wait was 60 s, shorter than that).
    pub fn close_wait_for(retry: &RetryPolicy) -> Duration {
        retry.budget() * 2 + retry.attempt_timeout
    }

    /// Checks that the options make sense together: a writer's lease must outlive the store
    /// requests made under it (`lease.rs`).
    pub fn check(&self) -> ObjResult<()> {
        let timeout = self.retry.attempt_timeout;
        if self.access == Access::ReadWrite && self.lease_ttl < timeout.saturating_mul(3) {
            return Err(ObjectError::LeaseTooShort {
                lease_ttl: self.lease_ttl,
                attempt_timeout: timeout,
            });
        }
        if timeout.is_zero() {
            return Err(ObjectError::Invalid(
                "the store attempt timeout must not be zero".into(),
            ));
        }
        Ok(())
    }
}

/// What the backend keeps per chunk, beyond the requests in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetadataStats {
    /// Chunks with a stored object whose version the backend knows (one compact entry each).
    pub chunk_versions: usize,
    /// Chunks with transient state now: I/O in flight or queued, failed writes, or a write of
    /// unknown outcome. Idle chunks have none.
    pub chunk_cells: usize,
    /// Heap bytes of both (the versions table from its capacity; cells estimated).
    pub bytes: u64,
}
