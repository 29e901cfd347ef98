//! The per-byte model of the [module docs](super), and the checks of rules 1 to 3.
//!
//! # Owns
//! - what a run recorded ([`Record`]): the changes operations may have made to byte ranges
//!   ([`Event`]), the syncs and their outcomes ([`SyncRecord`]), the reads and the bytes they
//!   returned, and a log of every operation for the failure report;
//! - which values a byte may hold in a window of time ([`Model::allowed`]), and the ranges that
//!   discards and zeroing act on ([`cut`], [`whole_pages`]);
//! - the checks, after the run ([`check`]): every byte read was allowed (rule 1), a failure
//!   reached the next sync of every handle and a failed device sync is never followed by an Ok
//!   one (rule 3), the power cut kept what the last good sync covered (rule 2).
//!
//! # Does not own
//! - running the operations (`mod.rs`), the device and its faults (`device.rs`), the
//!   whole-cache invariants (rule 4: `PageCache::check_invariants`, called by `mod.rs`).
//!
//! # May block
//! - never.

use std::ops::Range;

use super::device::{Fault, SimDevice};
use super::{MAXB, PSU};

/// A change an operation may have made to a byte range.
#[derive(Clone, Debug)]
pub(super) struct Event {
    pub(super) inv: u64,
    pub(super) resp: u64,
    pub(super) bytes: Range<usize>,
    /// The value written, or `None` for a discard (any earlier value).
    pub(super) value: Option<u8>,
    /// It certainly took effect (the operation returned Ok); else it may have.
    pub(super) certain: bool,
}

/// A sync's outcome, for the reporting rules.
#[derive(Clone, Debug)]
pub(super) struct SyncRecord {
    /// The sync handle's number (see `Plan::handle_of`).
    pub(super) handle: usize,
    pub(super) inv: u64,
    pub(super) resp: u64,
    pub(super) ok: bool,
}

#[derive(Default)]
pub(super) struct Record {
    pub(super) events: Vec<Event>,
    pub(super) syncs: Vec<SyncRecord>,
    /// Reads: (inv, resp, offset, bytes).
    pub(super) reads: Vec<(u64, u64, usize, Vec<u8>)>,
    /// Every operation, for the failure report: "inv..resp thread op -> outcome".
    pub(super) log: Vec<String>,
}

/// The model of the module docs: which values a byte may hold in a window of time.
struct Model<'a> {
    events: &'a [Event],
}

impl Model<'_> {
    /// Values byte `b` may show to an observation made between `t0` and `t1`.
    fn allowed(&self, b: usize, t0: u64, t1: u64) -> Vec<u8> {
        let touching: Vec<&Event> = self
            .events
            .iter()
            .filter(|e| e.bytes.contains(&b) && e.inv < t1)
            .collect();
        let mut out = Vec::new();
        for e in &touching {
            let overlapping = e.resp > t0;
            // Completed before the window: allowed unless some certain event certainly
            // came after it (started after it ended, and ended before the window).
            let superseded = !overlapping
                && touching
                    .iter()
                    .any(|n| n.certain && n.inv > e.resp && n.resp < t0);
            if superseded {
                continue;
            }
            match e.value {
                Some(v) => out.push(v),
                None => out.extend(
                    touching
                        .iter()
                        .filter(|p| p.inv < e.resp)
                        .filter_map(|p| p.value),
                ),
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

pub(super) fn cut(r: &Range<u64>, len: u64) -> Range<usize> {
    r.start.min(len) as usize..r.end.min(len) as usize
}

/// Whole pages of `r` below `len`, as bytes (what discard and zero act on at least).
pub(super) fn whole_pages(r: &Range<u64>, len: u64) -> Range<usize> {
    let end = r.end.min(len);
    let first = r.start.div_ceil(PSU) * PSU;
    let last = end / PSU * PSU;
    if first >= last {
        0..0
    } else {
        first as usize..last as usize
    }
}

/// Checks rules 1 to 3 of the [module docs](super) on what the threads recorded (`rec`) and
/// what the device did, after a run of `threads` logical threads; panics on a violation.
/// `handle_of[t]` is the sync handle thread `t` uses.
pub(super) fn check(rec: &Record, device: &SimDevice, handle_of: &[usize]) {
    let model = Model {
        events: &rec.events,
    };
    let trace = device.state.lock().unwrap().trace.clone();
    let ops = || {
        format!(
            "{}\n device:\n  {}",
            rec.log.join("\n  "),
            trace.join("\n  ")
        )
    };
    // 1. Reads.
    for (inv, resp, at, bytes) in &rec.reads {
        for (i, &v) in bytes.iter().enumerate() {
            let b = at + i;
            let allowed = model.allowed(b, *inv, *resp);
            assert!(
                allowed.contains(&v),
                "a read ({inv}..{resp}) of byte {b} returned {v}, allowed {allowed:?}\n  {}",
                ops()
            );
        }
    }
    // 3. Failures reach syncs.
    let faults = device.state.lock().unwrap().faults.clone();
    let log = || format!("faults {faults:?}\n  {}", rec.log.join("\n  "));
    for (t, &h) in handle_of.iter().enumerate() {
        if h != t {
            continue; // its handle's syncs are checked with the thread that owns it
        }
        let mut mine: Vec<&SyncRecord> = rec.syncs.iter().filter(|s| s.handle == t).collect();
        mine.sort_by_key(|s| s.inv);
        for f in &faults {
            let (Fault::Write(at) | Fault::Sync(at)) = *f;
            // Reported by the first sync of this handle that began after the failure, or by
            // one that was still running when it happened (or, on a shared handle, by a sync
            // of the other thread running at the same time as that first one).
            if let Some(first) = mine.iter().find(|s| s.inv > at) {
                let told = mine
                    .iter()
                    .any(|s| !s.ok && s.resp > at && s.inv <= first.resp);
                assert!(
                    told,
                    "handle {t}'s sync ({}..{}) missed the {f:?} before it\n{}",
                    first.inv,
                    first.resp,
                    log()
                );
            }
        }
        // Told once: an Err sync followed by a sync with no failure since the first began.
        if !faults.iter().any(|f| matches!(f, Fault::Sync(_))) {
            for w in mine.windows(2) {
                let failed_since = faults.iter().any(|f| {
                    let (Fault::Write(at) | Fault::Sync(at)) = *f;
                    at > w[0].inv
                });
                // (Syncs of a shared handle that overlap may both report the failure.)
                if !w[0].ok && !failed_since && w[1].inv > w[0].resp {
                    assert!(w[1].ok, "handle {t} was told of one failure twice");
                }
            }
        }
    }
    if let Some(first_sync_failure) = faults.iter().find_map(|f| match f {
        Fault::Sync(at) => Some(*at),
        Fault::Write(_) => None,
    }) {
        for s in rec.syncs.iter().filter(|s| s.inv > first_sync_failure) {
            assert!(
                !s.ok,
                "a sync ({}..{}) returned Ok after a failed one",
                s.inv, s.resp
            );
        }
    }
    // 2. A power cut keeps what the last good sync covered.
    let image = device.crash();
    let since = rec
        .syncs
        .iter()
        .filter(|s| s.ok)
        .map(|s| s.inv)
        .max()
        .unwrap_or(0);
    for b in 0..MAXB {
        let v = image.get(b).copied().unwrap_or(0);
        let allowed = model.allowed(b, since, u64::MAX);
        assert!(
            allowed.contains(&v),
            "after the crash byte {b} is {v}; allowed after the sync at {since}: {allowed:?}\n  {}",
            ops()
        );
    }
}
