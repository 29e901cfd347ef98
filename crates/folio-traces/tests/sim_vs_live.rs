//! The simulator and the live cache choose the same victims. `folio sim` replays with
//! `evict_and_insert` (one call, which S3-FIFO, ARC, 2Q, W-TinyLFU and LIRS implement under one
//! lock acquisition); the live cache calls `choose_victim`, loads the page, then `on_insert`.
//! For every policy, replaying real traces both ways gives the same miss count, access by
//! access.

mod traces;

use std::collections::HashMap;

use folio_o3::sim::Simulator;
use folio_o3::{Admission, EvictionPolicy, FrameId, PageKey, PolicyKind};
use traces::Trace;

/// The live cache's protocol: a page table, free frames in order, then `choose_victim` with a
/// claim that accepts, and `on_insert` into the freed frame. Returns the misses.
fn replay_live(policy: &dyn EvictionPolicy, pages: &[PageKey]) -> Vec<bool> {
    let mut frame_of: HashMap<PageKey, FrameId> = HashMap::new();
    let mut page_of: Vec<PageKey> = Vec::new();
    let mut out = Vec::with_capacity(pages.len());
    for &p in pages {
        if let Some(&f) = frame_of.get(&p) {
            policy.on_hit(f);
            out.push(true);
            continue;
        }
        out.push(false);
        let f = if page_of.len() < policy.capacity() {
            page_of.push(p);
            (page_of.len() - 1) as FrameId
        } else {
            let v = policy.choose_victim(&mut |_| true).expect("a victim");
            frame_of.remove(&page_of[v as usize]);
            page_of[v as usize] = p;
            v
        };
        frame_of.insert(p, f);
        policy.on_insert(f, p, Admission::Demand);
    }
    out
}

fn replay_sim(policy: &dyn EvictionPolicy, pages: &[PageKey]) -> Vec<bool> {
    let mut sim = Simulator::new(policy);
    pages.iter().map(|&p| sim.access(p)).collect()
}

fn same_victims(trace: &str, accesses: usize, sizes: &[usize]) {
    let pages = Trace::by_name(trace).load();
    let pages = &pages[..accesses.min(pages.len())];
    for &kind in PolicyKind::ALL {
        for &size in sizes {
            let a = replay_sim(&*kind.build(size), pages);
            let b = replay_live(&*kind.build(size), pages);
            let first = a.iter().zip(&b).position(|(x, y)| x != y);
            assert_eq!(
                first, None,
                "{kind} at {size} pages on {trace}: the two paths part at access {first:?}"
            );
        }
    }
}

#[test]
fn multi3_every_policy() {
    same_victims("lirs_multi3", usize::MAX, &[74, 372, 1490]);
}

#[test]
fn oltp_every_policy() {
    same_victims("arc_oltp", 300_000, &[1868, 18688]);
}

#[test]
fn cloudphysics_every_policy() {
    same_victims("cloudphysics", 300_000, &[2692, 26921]);
}
