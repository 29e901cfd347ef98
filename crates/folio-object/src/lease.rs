//! The single-writer lease: a lock object written with conditional PUTs only (never deleted).
//!
//! Owns: taking, renewing and releasing `PREFIX/lock`, whose body names its holder, its time to
//! live, the holder's store attempt timeout, a renewal number and whether it was released.
//! - **Take**: PUT If-None-Match `*`. If the lock exists and was released, take it over at once
//!   (PUT If-Match the version seen). Else watch it: a live holder renews it (a new version) at
//!   least every third of its time to live, so a lock unchanged for its time to live plus a
//!   tenth plus the holder's attempt timeout (measured on this machine's clock, so clocks need
//!   not agree) belongs to a writer that is gone *and whose requests can no longer land* (a
//!   request takes effect within its attempt timeout of being sent or never, `retry.rs`; the
//!   holder sends none past its fence, below): it is taken over with a PUT If-Match the version
//!   seen, so of two newcomers racing, one wins. [`LeaseMode::Break`] takes it over at once
//!   (the operator says the holder is gone).
//! - **Fence**: after each PUT of the lock that lands, the fence (`fence.rs`) is open until 90%
//!   of the time to live after the *start of the attempt that landed* (the store applied it no
//!   earlier, so a newcomer that saw it waits at least a whole time to live from then). Every
//!   write is sent only while the fence is open, each attempt is abandoned when it closes
//!   (`retry.rs`), and the time to live must be at least three attempt timeouts
//!   ([`ObjectError::LeaseTooShort`]), so that a renewal outlives one attempt that hangs.
//! - **Renew**: a task rewrites the lock If-Match its last version every third of the time to
//!   live. A precondition failure is read back: if the lock is still ours (a renewal of ours
//!   landed but its answer was lost), its version is adopted and the renewal made again; if
//!   another writer holds it, the fence is lost for good.
//! - **Release**: on close, once no request of ours can still land, the lock is rewritten
//!   If-Match our version as "released", so a newcomer need not wait; if another writer took
//!   it over meanwhile the condition fails and its lock is left alone.
//!
//! Does not own: what writes do when the fence is down (`fence.rs`, `rewrite.rs`).
//!
//! May block: taking a lease held by another writer waits up to its time to live plus its
//! attempt timeout.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::PutMode;

use crate::error::{ObjResult, ObjectError};
use crate::image::Image;
use crate::retry::{Failed, Gate, Sent};
use crate::store::Version;

/// What to do when another writer's lock is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseMode {
    /// Watch it for its time to live; take it over only if nobody renewed it.
    Wait,
    /// Take it over at once (the operator knows its writer is gone).
    Break,
}

/// The lease held by an open image.
pub(crate) struct Lease {
    version: parking_lot::Mutex<Version>,
    holder: String,
    ttl: Duration,
    renewals: std::sync::atomic::AtomicU64,
    /// Held by a renewal and by the release, so they never race; true once released.
    closed: tokio::sync::Mutex<bool>,
}

/// What a lock object says.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Lock {
    holder: String,
    ttl: Duration,
    /// The holder's store attempt timeout: how long after its fence closed a request of its
    /// may still land.
    attempt_timeout: Duration,
    released: bool,
}

impl Lock {
    fn body(&self, renewal: u64) -> Bytes {
        Bytes::from(
            serde_json::json!({
                "holder": self.holder,
                "ttl_ms": self.ttl.as_millis() as u64,
                "attempt_timeout_ms": self.attempt_timeout.as_millis() as u64,
                "renewal": renewal,
                "released": self.released,
            })
            .to_string(),
        )
    }

    /// A lock's body (defaults if unreadable: a corrupt lock must not make us wait for ever,
    /// nor be taken at once).
    fn parse(bytes: &[u8]) -> Lock {
        let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
        let ms = |name: &str, default: u64| {
            let ms = v.get(name).and_then(|t| t.as_u64()).unwrap_or(default);
            Duration::from_millis(ms.min(3_600_000)) // at most an hour
        };
        let ttl = ms("ttl_ms", 30_000);
        Lock {
            holder: v
                .get("holder")
                .and_then(|h| h.as_str())
                .unwrap_or("unknown")
                .to_string(),
            ttl,
            // Not said: as long as the time to live (a holder's is at most a third of it).
            attempt_timeout: ms("attempt_timeout_ms", ttl.as_millis() as u64),
            released: v.get("released").and_then(|r| r.as_bool()) == Some(true),
        }
    }

    /// How long a newcomer watches this lock before taking it over.
    fn watch(&self) -> Duration {
        self.ttl + self.ttl / 10 + self.attempt_timeout
    }
}

/// A name for this process: host, pid and a random part.
pub(crate) fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string());
    let random = crate::trailer::random_u64() as u32;
    format!("{host}:{}:{random:08x}", std::process::id())
}

fn precondition(f: &Failed) -> bool {
    matches!(
        f,
        Failed::Answer {
            error: object_store::Error::Precondition { .. }
                | object_store::Error::NotFound { .. }
                | object_store::Error::AlreadyExists { .. },
            ..
        }
    )
}

impl Lease {
    /// Takes the lease on `image` (see the module docs).
    pub(crate) async fn take(image: &Image, ttl: Duration, mode: LeaseMode) -> ObjResult<Lease> {
        let key = image.layout.lock();
        let ours = Lock {
            holder: holder_name(),
            ttl,
            attempt_timeout: image.req.policy.attempt_timeout,
            released: false,
        };
        let prefix = image.layout.prefix().to_string();
        // Bounded: each round takes the lock, refuses, or saw it change hands (taken by a
        // racing newcomer, or released) — four rounds at most.
        for _ in 0..4 {
            let before_ms = image.req.clock.now_ms();
            let put = image
                .req
                .put(&key, ours.body(0), PutMode::Create, Gate::Lease)
                .await;
            match put {
                Ok(sent) => return Ok(Lease::held(image, sent, ours)),
                Err(f) if precondition(&f) => {}
                Err(f) => return Err(f.into_error("PUT", key.as_ref())),
            }
            let Some((theirs, seen)) = Lease::read(image).await? else {
                continue; // gone meanwhile
            };
            if theirs.holder == ours.holder {
                // Our own create landed, its answer lost: no earlier than our first attempt.
                return Ok(Lease::adopted(image, seen, ours, before_ms));
            }
            if mode == LeaseMode::Wait && !theirs.released {
                tracing::info!(holder = %theirs.holder, watch = ?theirs.watch(),
                    "image is leased; watching it");
                tokio::time::sleep(theirs.watch()).await;
                match image.req.head(&key).await {
                    Ok(Some(now)) if now.e_tag == seen.e_tag => {} // not renewed: gone
                    Ok(Some(_)) => match Lease::read(image).await? {
                        // Released (its holder closed) or gone during the watch: the next round
                        // takes it (review 3, L2: this was reported as leased).
                        Some((now, _)) if now.released => continue,
                        None => continue,
                        Some((now, _)) => {
                            return Err(ObjectError::Leased {
                                prefix,
                                holder: now.holder,
                            })
                        }
                    },
                    Ok(None) => {
                        return Err(ObjectError::Invalid(format!(
                            "the store returned no ETag for {key}: it cannot hold a lease"
                        )))
                    }
                    Err(Failed::Answer {
                        error: object_store::Error::NotFound { .. },
                        ..
                    }) => continue,
                    Err(f) => return Err(f.into_error("HEAD", key.as_ref())),
                }
            }
            if !theirs.released {
                tracing::warn!(holder = %theirs.holder, "taking over the lease of a writer that is gone");
            }
            let before_ms = image.req.clock.now_ms();
            let put = image
                .req
                .put(
                    &key,
                    ours.body(0),
                    PutMode::Update(seen.update()),
                    Gate::Lease,
                )
                .await;
            match put {
                Ok(sent) => return Ok(Lease::held(image, sent, ours)),
                Err(f) if precondition(&f) => {
                    // Someone else was quicker — or our own takeover landed, its answer lost.
                    if let Some((now, v)) = Lease::read(image).await? {
                        if now.holder == ours.holder {
                            return Ok(Lease::adopted(image, v, ours, before_ms));
                        }
                    }
                }
                Err(f) => return Err(f.into_error("PUT", key.as_ref())),
            }
        }
        Err(ObjectError::Leased {
            prefix,
            holder: "writers that keep changing".into(),
        })
    }

    /// The lock as stored and its version; `None` if there is none.
    async fn read(image: &Image) -> ObjResult<Option<(Lock, Version)>> {
        let key = image.layout.lock();
        match image.req.get(&key, None, None, Gate::Lease).await {
            Ok(got) => {
                let v = got.version.ok_or_else(|| {
                    ObjectError::Invalid(format!(
                        "the store returned no ETag for {key}: it cannot hold a lease"
                    ))
                })?;
                Ok(Some((Lock::parse(&got.bytes), v)))
            }
            Err(Failed::Answer {
                error: object_store::Error::NotFound { .. },
                ..
            }) => Ok(None),
            Err(f) => Err(f.into_error("GET", key.as_ref())),
        }
    }

    fn held(image: &Image, sent: Sent<Version>, lock: Lock) -> Lease {
        Lease::adopted(image, sent.value, lock, sent.started_ms)
    }

    /// The lease is ours at version `v`, which landed no earlier than `since_ms`.
    fn adopted(image: &Image, v: Version, lock: Lock, since_ms: u64) -> Lease {
        image.fence.extend(since_ms + fence_ms(lock.ttl));
        tracing::info!(holder = %lock.holder, ttl = ?lock.ttl, "lease taken");
        Lease {
            version: parking_lot::Mutex::new(v),
            holder: lock.holder,
            ttl: lock.ttl,
            renewals: Default::default(),
            closed: tokio::sync::Mutex::new(false),
        }
    }

    fn lock(&self, image: &Image, released: bool) -> Lock {
        Lock {
            holder: self.holder.clone(),
            ttl: self.ttl,
            attempt_timeout: image.req.policy.attempt_timeout,
            released,
        }
    }

    /// Renews the lease every third of its time to live until the image is dropped or the
    /// lease is lost. Runs as a task on the backend's runtime.
    pub(crate) async fn renew_forever(self: Arc<Lease>, image: std::sync::Weak<Image>) {
        let period = self.ttl / 3;
        loop {
            tokio::time::sleep(period).await;
            let Some(image) = image.upgrade() else { return };
            if image.fence.is_lost() {
                return;
            }
            if let Err(e) = self.renew(&image).await {
                tracing::warn!(error = %e, "lease renewal failed");
            }
        }
    }

    /// One renewal (see the module docs).
    pub(crate) async fn renew(&self, image: &Image) -> ObjResult<()> {
        let closed = self.closed.lock().await;
        if *closed {
            return Ok(());
        }
        let key = image.layout.lock();
        // Bounded: a second round only after adopting our own landed renewal.
        for _ in 0..2 {
            match self.put_lock(image, false).await {
                Ok(sent) => {
                    *self.version.lock() = sent.value;
                    image.fence.extend(sent.started_ms + fence_ms(self.ttl));
                    return Ok(());
                }
                Err(f) if precondition(&f) => match Lease::read(image).await? {
                    Some((now, v)) if now.holder == self.holder && !now.released => {
                        // A renewal of ours landed without its answer: take its version and
                        // renew again (its landing time is unknown, so the fence waits for
                        // the next one).
                        tracing::info!("a lease renewal landed without its answer; adopted");
                        *self.version.lock() = v;
                    }
                    now => {
                        let why = match now {
                            Some((l, _)) => {
                                format!("another writer ({}) took the image over", l.holder)
                            }
                            None => "the lock object was deleted".to_string(),
                        };
                        image.fence.lose(why.clone());
                        return Err(ObjectError::LeaseLost {
                            prefix: image.layout.prefix().to_string(),
                            why,
                        });
                    }
                },
                Err(f) => return Err(f.into_error("PUT", key.as_ref())),
            }
        }
        Ok(())
    }

    /// Rewrites the lock with our next renewal number (released or not), If-Match the version
    /// we know.
    async fn put_lock(&self, image: &Image, released: bool) -> Result<Sent<Version>, Failed> {
        let n = 1 + self
            .renewals
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let seen = self.version.lock().clone();
        let body = self.lock(image, released).body(n);
        let mode = PutMode::Update(seen.update());
        image
            .req
            .put(&image.layout.lock(), body, mode, Gate::Lease)
            .await
    }

    /// Marks the lock released, If-Match our version (see the module docs). The caller has
    /// made sure no request of ours can still land.
    pub(crate) async fn release(&self, image: &Image) {
        let mut closed = self.closed.lock().await;
        *closed = true;
        if image.fence.is_lost() {
            return;
        }
        match self.put_lock(image, true).await {
            Ok(_) => tracing::info!(holder = %self.holder, "lease released"),
            Err(f) if precondition(&f) => {
                tracing::warn!("lease not released: the lock is no longer ours")
            }
            Err(f) => {
                let key = image.layout.lock();
                tracing::warn!(error = %f.into_error("PUT", key.as_ref()), "lease not released")
            }
        }
    }
}

/// How long after a lock PUT landed the fence stays open: 90% of the time to live.
fn fence_ms(ttl: Duration) -> u64 {
    ttl.as_millis() as u64 * 9 / 10
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_bodies_parse_back_and_bad_ones_are_bounded() {
        let l = Lock {
            holder: "h:1:2".into(),
            ttl: Duration::from_secs(3),
            attempt_timeout: Duration::from_secs(1),
            released: true,
        };
        assert_eq!(Lock::parse(&l.body(7)), l);
        assert_eq!(l.watch(), Duration::from_millis(4300));
        let bad = Lock::parse(b"garbage");
        assert_eq!(bad.holder, "unknown");
        assert_eq!(bad.ttl, Duration::from_secs(30));
        assert!(!bad.released, "an unreadable lock is not free");
        let huge = Lock::parse(br#"{"ttl_ms": 99999999999}"#);
        assert_eq!(huge.ttl, Duration::from_secs(3600));
        assert!(holder_name().contains(&std::process::id().to_string()));
        assert_ne!(holder_name(), holder_name());
    }
}
