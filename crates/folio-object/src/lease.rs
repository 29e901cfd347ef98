//! The single-writer lease: a lock object written with conditional PUTs.
//!
//! Owns: taking, renewing and releasing `PREFIX/lock`.
//! - **Take**: PUT If-None-Match `*`. If the lock exists, read its holder and time to live and
//!   watch it: a live holder renews it (a new ETag) at least every third of its time to live,
//!   so a lock unchanged for a whole time to live (measured on this machine's clock, so clocks
//!   need not agree) belongs to a dead writer and is taken over with a PUT If-Match the ETag
//!   seen — of two newcomers racing, one wins. [`LeaseMode::Break`] takes it over at once (the
//!   operator says the holder is gone).
//! - **Renew**: a task rewrites the lock If-Match its last ETag every third of the time to live.
//!   A precondition failure means another writer took the image over: the fence is lost for
//!   good. Until a renewal succeeds the fence admits writes only up to 90% of the time to live
//!   after the last renewal began, before anyone may take over.
//! - **Release**: delete the lock on close (not if it was lost).
//!
//! Chunk PUTs are conditional on their ETags too, so a writer that lost the lease cannot
//! overwrite a chunk the new writer wrote even inside that window.
//!
//! Does not own: what writes do when the fence is down (`image.rs`, `chunk.rs`).
//!
//! May block: taking a lease held by another writer waits up to its time to live.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::PutMode;

use crate::error::{ObjResult, ObjectError};
use crate::image::Image;
use crate::retry::Failed;
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
}

fn body(holder: &str, ttl: Duration, renewal: u64) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "holder": holder,
            "ttl_ms": ttl.as_millis() as u64,
            "renewal": renewal,
        })
        .to_string(),
    )
}

/// Who holds a lock and for how long it lives, from its body (defaults if unreadable).
fn parse(bytes: &[u8]) -> (String, Duration) {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    let holder = v
        .get("holder")
        .and_then(|h| h.as_str())
        .unwrap_or("unknown")
        .to_string();
    let ttl_ms = v.get("ttl_ms").and_then(|t| t.as_u64()).unwrap_or(30_000);
    // A corrupt lock must not make us wait for ever: at most an hour.
    (holder, Duration::from_millis(ttl_ms.min(3_600_000)))
}

/// A name for this process: host, pid and a random part.
pub(crate) fn holder_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string());
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{host}:{}:{:08x}", std::process::id(), h.finish() as u32)
}

impl Lease {
    /// Takes the lease on `image` (see the module docs).
    pub(crate) async fn take(image: &Image, ttl: Duration, mode: LeaseMode) -> ObjResult<Lease> {
        let key = image.layout.lock();
        let holder = holder_name();
        let prefix = image.layout.prefix().to_string();
        // Bounded: each round either takes the lock, refuses, or saw the lock change hands
        // (deleted, or taken by a racing newcomer) — three rounds at most.
        for _ in 0..3 {
            let started = image.fence.now_ms();
            let put = image
                .req
                .put(&key, body(&holder, ttl, 0), PutMode::Create, None)
                .await;
            let existing = match put {
                Ok(v) => return Ok(Lease::held(image, v, holder, ttl, started)),
                Err(Failed::Answer {
                    error: object_store::Error::AlreadyExists { .. },
                    ..
                }) => match image.req.get(&key, None, None).await {
                    Ok(got) => got,
                    Err(Failed::Answer {
                        error: object_store::Error::NotFound { .. },
                        ..
                    }) => continue, // released meanwhile
                    Err(f) => return Err(f.into_error("GET", key.as_ref())),
                },
                Err(f) => return Err(f.into_error("PUT", key.as_ref())),
            };
            let (theirs, their_ttl) = parse(&existing.bytes);
            let Some(seen) = existing.version else {
                return Err(ObjectError::Invalid(format!(
                    "the store returned no ETag for {key}: it cannot hold a lease"
                )));
            };
            if mode == LeaseMode::Wait {
                tracing::info!(holder = %theirs, ttl = ?their_ttl, "image is leased; watching it");
                tokio::time::sleep(their_ttl + their_ttl / 10).await;
                match image.req.head(&key).await {
                    Ok((Some(now), _)) if now.e_tag == seen.e_tag => {} // not renewed: dead
                    Ok(_) => {
                        return Err(ObjectError::Leased {
                            prefix,
                            holder: theirs,
                        })
                    }
                    Err(Failed::Answer {
                        error: object_store::Error::NotFound { .. },
                        ..
                    }) => continue,
                    Err(f) => return Err(f.into_error("HEAD", key.as_ref())),
                }
            }
            tracing::warn!(holder = %theirs, "taking over the lease of a writer that is gone");
            let started = image.fence.now_ms();
            let put = image
                .req
                .put(
                    &key,
                    body(&holder, ttl, 0),
                    PutMode::Update(seen.update()),
                    None,
                )
                .await;
            match put {
                Ok(v) => return Ok(Lease::held(image, v, holder, ttl, started)),
                Err(Failed::Answer {
                    error:
                        object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
                    ..
                }) => continue, // someone else was quicker, or it was released
                Err(f) => return Err(f.into_error("PUT", key.as_ref())),
            }
        }
        Err(ObjectError::Leased {
            prefix,
            holder: "writers that keep changing".into(),
        })
    }

    fn held(image: &Image, v: Version, holder: String, ttl: Duration, started_ms: u64) -> Lease {
        image
            .fence
            .extend(started_ms + ttl.as_millis() as u64 * 9 / 10);
        tracing::info!(holder = %holder, ttl = ?ttl, "lease taken");
        Lease {
            version: parking_lot::Mutex::new(v),
            holder,
            ttl,
            renewals: Default::default(),
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

    async fn renew(&self, image: &Image) -> ObjResult<()> {
        let key = image.layout.lock();
        let n = 1 + self
            .renewals
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let started = image.fence.now_ms();
        let seen = self.version.lock().clone();
        let put = image
            .req
            .put(
                &key,
                body(&self.holder, self.ttl, n),
                PutMode::Update(seen.update()),
                None,
            )
            .await;
        match put {
            Ok(v) => {
                *self.version.lock() = v;
                image
                    .fence
                    .extend(started + self.ttl.as_millis() as u64 * 9 / 10);
                Ok(())
            }
            Err(Failed::Answer {
                error:
                    object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
                ..
            }) => {
                let why = "another writer took the image over".to_string();
                image.fence.lose(why.clone());
                Err(ObjectError::LeaseLost {
                    prefix: image.layout.prefix().to_string(),
                    why,
                })
            }
            Err(f) => Err(f.into_error("PUT", key.as_ref())),
        }
    }

    /// Deletes the lock (unless the lease was lost to another writer).
    pub(crate) async fn release(&self, image: &Image) {
        if image.fence.is_lost() {
            return;
        }
        let key = image.layout.lock();
        match image.req.delete(&key).await {
            Ok(()) => tracing::info!(holder = %self.holder, "lease released"),
            Err(f) => {
                tracing::warn!(error = %f.into_error("DELETE", key.as_ref()), "lease not released")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_bodies_parse_back_and_bad_ones_are_bounded() {
        let b = body("h:1:2", Duration::from_secs(3), 7);
        assert_eq!(parse(&b), ("h:1:2".to_string(), Duration::from_secs(3)));
        let (h, ttl) = parse(b"garbage");
        assert_eq!((h.as_str(), ttl), ("unknown", Duration::from_secs(30)));
        let (_, ttl) = parse(br#"{"ttl_ms": 99999999999}"#);
        assert_eq!(ttl, Duration::from_secs(3600));
        assert!(holder_name().contains(&std::process::id().to_string()));
    }
}
