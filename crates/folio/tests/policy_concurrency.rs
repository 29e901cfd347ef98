//! Every policy under concurrent use as the live cache drives it: lock-free hits racing with
//! misses, evictions with pinned frames, and removals; bookkeeping must stay consistent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use folio::{Admission, FrameId, PolicyKind};

#[test]
fn concurrent_hits_misses_removals() {
    const CAP: usize = 64;
    for &kind in PolicyKind::ALL {
        let policy = kind.build(CAP);
        let policy = &*policy;
        // The cache's index: page -> frame and frame -> page, plus the free frames.
        let index = Mutex::new((
            HashMap::<u64, FrameId>::new(),
            HashMap::<FrameId, u64>::new(),
            (0..CAP as FrameId).collect::<Vec<_>>(),
        ));
        let pinned: Vec<AtomicBool> = (0..CAP).map(|_| AtomicBool::new(false)).collect();
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (index, pinned) = (&index, &pinned);
                s.spawn(move || {
                    let mut x = t + 1;
                    for _ in 0..5_000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let page = x % 200;
                        let hit = index.lock().unwrap().0.get(&page).copied();
                        if let Some(f) = hit {
                            // Outside the index lock, as on the live hit path.
                            policy.on_hit(f);
                            if x % 17 == 0 {
                                pinned[f as usize].store(x % 2 == 0, Ordering::Relaxed);
                            }
                            continue;
                        }
                        let mut idx = index.lock().unwrap();
                        let (by_page, by_frame, free) = &mut *idx;
                        if by_page.contains_key(&page) {
                            continue;
                        }
                        if x % 23 == 0 {
                            if let Some((&f, &p)) = by_frame.iter().next() {
                                policy.on_remove(f);
                                by_frame.remove(&f);
                                by_page.remove(&p);
                                free.push(f);
                            }
                        }
                        let frame = match free.pop() {
                            Some(f) => f,
                            None => {
                                let claimed = policy.choose_victim(&mut |f| {
                                    !pinned[f as usize].load(Ordering::Relaxed)
                                });
                                let Some(v) = claimed else { continue };
                                let old = by_frame.remove(&v).expect("victim was resident");
                                by_page.remove(&old);
                                v
                            }
                        };
                        policy.on_insert(frame, page, Admission::Demand);
                        by_page.insert(page, frame);
                        by_frame.insert(frame, page);
                    }
                });
            }
        });
        let idx = index.lock().unwrap();
        assert_eq!(policy.len(), idx.1.len(), "{kind}");
        for f in 0..CAP as FrameId {
            assert_eq!(
                policy.contains(f),
                idx.1.contains_key(&f),
                "{kind}: frame {f}"
            );
        }
    }
}
