//! Durability through the real `FileBackend`: a child process (this test binary, re-executed
//! with `FOLIO_KILL_CHILD` set) writes whole pages in a loop over a file and syncs every few
//! writes, reporting each successful sync on stdout; the parent kills it with `SIGKILL` at a
//! random point (after a random number of reported syncs, plus a random few milliseconds, so it
//! lands inside the workload however fast the machine runs), reopens the file through a fresh
//! cache and checks every page:
//! - it is a page the workload wrote (header and checksum intact: never bytes nobody wrote), and
//! - it holds the version of the last write to it before the last reported sync, or a later one.
//!
//! Several rounds run over the same file, each continuing from what the previous one left.
//! `FOLIO_KILL_SEED` replays a parent seed (kill timing still varies).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use folio::{CacheConfig, FileBackend, IoMode, PageCache};

const PS: usize = 4096;
const PAGES: u64 = 48;
const SYNC_EVERY: u64 = 25;
const CHILD_ENV: &str = "FOLIO_KILL_CHILD";

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The page written by operation `i` of round `seed`.
fn page_of(seed: u64, i: u64) -> u64 {
    mix(seed ^ mix(i)) % PAGES
}

/// Page contents: page, seed, op index, checksum of those, then filler derived from them.
fn page_bytes(p: u64, seed: u64, i: u64) -> Vec<u8> {
    let mut b = vec![0u8; PS];
    let sum = mix(p ^ mix(seed ^ mix(i)));
    for (k, v) in [p, seed, i, sum].into_iter().enumerate() {
        b[k * 8..k * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    let mut x = sum;
    for chunk in b[32..].chunks_mut(8) {
        x = mix(x);
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    b
}

/// Decodes a page as `(seed, op)` if it is intact, `None` if it is all zeros, `Err` otherwise.
fn decode(p: u64, b: &[u8]) -> Result<Option<(u64, u64)>, String> {
    if b.iter().all(|&x| x == 0) {
        return Ok(None);
    }
    let word = |k: usize| u64::from_le_bytes(b[k * 8..k * 8 + 8].try_into().unwrap());
    let (page, seed, i) = (word(0), word(1), word(2));
    if page != p || page_bytes(p, seed, i) != b {
        return Err(format!(
            "page {p} holds bytes nobody wrote (header page {page})"
        ));
    }
    Ok(Some((seed, i)))
}

/// The child: writes and syncs until killed.
fn child(path: &str, seed: u64) {
    let backend = Arc::new(FileBackend::open(path, IoMode::Buffered).expect("open"));
    let cache = PageCache::new(
        backend,
        CacheConfig::with_budget_pages(16).writeback_interval(Duration::from_millis(5)),
    )
    .expect("cache");
    for i in 0.. {
        let p = page_of(seed, i);
        cache
            .write_all_at(&page_bytes(p, seed, i), p * PS as u64)
            .expect("write");
        if (i + 1) % SYNC_EVERY == 0 {
            cache.sync().expect("sync");
            println!("synced {i}");
        }
    }
}

/// Not a test of its own: the child role, run by `killed_writers_never_lose_synced_pages`.
#[test]
fn kill_child_entry() {
    if let Ok(arg) = std::env::var(CHILD_ENV) {
        let (path, seed) = arg.rsplit_once(':').expect("path:seed");
        child(path, seed.parse().expect("seed"));
    }
}

#[test]
fn killed_writers_never_lose_synced_pages() {
    let parent_seed = std::env::var("FOLIO_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x4B11);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.img");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(PAGES * PS as u64)
        .unwrap();
    let exe = std::env::current_exe().unwrap();
    for round in 0..4u64 {
        let seed = mix(parent_seed ^ round) | 1;
        let before = std::fs::read(&path).unwrap();
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "kill_child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{}:{seed}", path.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (synced_tx, synced_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut last = None;
            for line in lines.map_while(Result::ok) {
                // The harness may print "test kill_child_entry ... " before the first line.
                if let Some((_, i)) = line.split_once("synced ") {
                    last = Some(i.parse::<u64>().unwrap());
                    let _ = synced_tx.send(());
                }
            }
            last
        });
        // Wait (bounded, against a hang) for a random number of reported syncs, then a random
        // few milliseconds more, and kill it: past its first sync whatever the machine's load.
        let syncs_before_kill = 1 + mix(seed ^ 1) % 4;
        for _ in 0..syncs_before_kill {
            if synced_rx.recv_timeout(Duration::from_secs(60)).is_err() {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!("the child did not report a sync within a minute");
            }
        }
        std::thread::sleep(Duration::from_millis(mix(seed) % 20));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success(), "the child must have been killed");
        let last_synced = reader.join().unwrap();
        assert!(last_synced.is_some(), "the round was killed after a sync");
        eprintln!("round {round}: killed after the sync of op {last_synced:?}");

        // Restart: a fresh cache over the file.
        let backend = Arc::new(FileBackend::open(&path, IoMode::Buffered).unwrap());
        let cache = PageCache::new(backend, CacheConfig::with_budget_pages(8)).unwrap();
        assert_eq!(cache.len(), PAGES * PS as u64);
        let mut page = vec![0u8; PS];
        for p in 0..PAGES {
            cache.read_exact_at(&mut page, p * PS as u64).unwrap();
            // The last write to p covered by a reported sync, if any.
            let floor =
                last_synced.and_then(|last| (0..=last).rev().find(|&i| page_of(seed, i) == p));
            let ctx = format!(
                "parent seed {parent_seed}, round {round}, page {p}, last synced op {last_synced:?}"
            );
            match decode(p, &page).unwrap_or_else(|e| panic!("{e} ({ctx})")) {
                Some((s, i)) if s == seed => {
                    assert_eq!(page_of(seed, i), p, "{ctx}");
                    if let Some(f) = floor {
                        assert!(i >= f, "synced op {f} lost: page holds op {i} ({ctx})");
                    }
                }
                _ => {
                    // Nothing of this round: the page must be as before, and never synced.
                    assert_eq!(floor, None, "synced op lost ({ctx})");
                    assert_eq!(
                        &page[..],
                        &before[p as usize * PS..(p as usize + 1) * PS],
                        "{ctx}"
                    );
                }
            }
        }
        cache.close().unwrap();
    }
}
