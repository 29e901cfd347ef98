//! The whole-cache invariant checker (docs/design.md, "Invariants"), for tests and the
//! simulation: called at a point where no operation of the caller's is running. It waits for
//! the background work (a flusher round, a readahead job) in progress and keeps new work from
//! starting while it looks.
//!
//! Owns nothing; reads every frame, the index, the free list, the policy and the counters.

use std::collections::HashSet;

use super::Engine;
use crate::page::{kind, FrameMeta, DIRTY, EXCLUSIVE, FREE, LOADING, NO_PAGE, ORPHAN, VALID};
use crate::policy::FrameId;
use crate::sync::Ordering;

/// What the caller says is still held when it checks.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Held {
    /// Guards and pins the caller keeps alive across the check.
    pub(crate) holds: bool,
}

impl Engine {
    /// Checks every invariant; returns the first few violations.
    pub(crate) fn check_invariants(&self, held: Held) -> std::result::Result<(), String> {
        let _rest = self.background.write();
        let mut bad: Vec<String> = Vec::new();
        let mut report = |s: String| {
            if bad.len() < 16 {
                bad.push(s);
            }
        };
        let (free_set, doubles): (HashSet<FrameId>, usize) = {
            let free = self.free.lock();
            (free.iter().collect(), free.doubles())
        };
        if doubles != 0 {
            report(format!(
                "a free frame was put on the free list again ({doubles} times)"
            ));
        }
        let quarantined: HashSet<FrameId> = self.quarantined.lock().iter().copied().collect();
        let g = self.index.lock();
        let indexed = self.index.frames_indexed(&g);
        if indexed.len() != *g {
            report(format!(
                "the index counts {} entries, holds {}",
                *g,
                indexed.len()
            ));
        }
        let indexed_set: HashSet<FrameId> = indexed.iter().copied().collect();
        if indexed_set.len() != indexed.len() {
            report("a frame is in the index twice".into());
        }
        let len = self.len();
        let mut dirty = 0u64;
        for (i, meta) in self.frames.iter().enumerate() {
            let f = i as FrameId;
            let (s, tag) = (meta.state(), meta.tag());
            let in_index = indexed_set.contains(&f);
            let holders = s & (crate::page::READERS_MASK | crate::page::PINS_MASK | EXCLUSIVE);
            match kind(s) {
                FREE if quarantined.contains(&f) => {
                    if s & EXCLUSIVE == 0 || in_index || free_set.contains(&f) {
                        report(format!("quarantined frame {f} is usable: {s:#x}"));
                    }
                }
                FREE => {
                    if !free_set.contains(&f) {
                        report(format!("free frame {f} is lost (not on the free list)"));
                    }
                    if holders != 0 || tag != NO_PAGE || in_index {
                        report(format!(
                            "free frame {f}: state {s:#x}, tag {tag}, indexed {in_index}"
                        ));
                    }
                }
                LOADING => report(format!("frame {f} is still loading page {tag} at rest")),
                VALID => {
                    if !in_index || self.index.lookup(tag, &self.frames) != Some(f) {
                        report(format!("valid frame {f} (page {tag}) is not in the index"));
                    }
                    if free_set.contains(&f) {
                        report(format!("valid frame {f} is on the free list"));
                    }
                    if !self.policy.contains(f) {
                        report(format!(
                            "valid frame {f} (page {tag}) is unknown to the policy"
                        ));
                    }
                    if s & crate::page::WRITEBACK != 0 {
                        report(format!(
                            "frame {f} (page {tag}) is under write-back at rest"
                        ));
                    }
                    if !held.holds && holders != 0 {
                        report(format!("frame {f} (page {tag}) is held at rest: {s:#x}"));
                    }
                    dirty += u64::from(s & DIRTY != 0);
                    if s & EXCLUSIVE == 0 {
                        self.check_zero_past_end(meta, f, tag, len, &mut report);
                    }
                }
                ORPHAN => {
                    if !held.holds || holders == 0 || in_index {
                        report(format!(
                            "orphan frame {f}: state {s:#x}, indexed {in_index}"
                        ));
                    }
                }
                _ => report(format!("frame {f} has an impossible kind: {s:#x}")),
            }
            if kind(s) != VALID && self.policy.contains(f) {
                report(format!("frame {f} is in the policy but not valid: {s:#x}"));
            }
        }
        drop(g);
        let counted = self.dirty_now();
        if counted != dirty {
            report(format!(
                "the dirty counter says {counted}, {dirty} frames are dirty"
            ));
        }
        let in_flight = self.wb.in_flight.load(Ordering::Acquire);
        if in_flight != 0 {
            report(format!(
                "{in_flight} pages counted under write-back at rest"
            ));
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad.join("; "))
        }
    }

    /// Cached bytes past the end of the file are zero.
    fn check_zero_past_end(
        &self,
        _meta: &FrameMeta,
        f: FrameId,
        page: u64,
        len: u64,
        report: &mut impl FnMut(String),
    ) {
        let start = page << self.page_shift;
        let end = start + self.page_size as u64;
        if end <= len {
            return;
        }
        let from = len.saturating_sub(start) as usize;
        // At rest nobody holds it exclusively: a reader hold of our own, to look.
        let crate::engine::Took::Held(held) = self.acquire_shared(f, page, false) else {
            report(format!("page {page} in frame {f} cannot be read at rest"));
            return;
        };
        let bytes = held.bytes();
        if let Some(i) = bytes[from..].iter().position(|&b| b != 0) {
            report(format!(
                "page {page} has a non-zero byte {:#x} past the end of the file (at {})",
                bytes[from + i],
                start + (from + i) as u64
            ));
        }
    }
}
