//! Unit tests of the state word's transitions (`meta.rs`), on std's atomics.

use super::*;

fn owned_valid(tag: u64) -> FrameMeta {
    let m = FrameMeta::default();
    m.set_owned_state_for_test(EXCLUSIVE | LOADING);
    m.set_tag(tag);
    m.set_owned_state(EXCLUSIVE | VALID);
    let _ = m.unlock_exclusive(false);
    m
}

#[test]
fn readers_exclude_writer_and_claim() {
    let m = owned_valid(7);
    assert_eq!(m.lock_shared(7), Acquire::Acquired);
    assert_eq!(m.lock_exclusive(7), Acquire::Wait);
    assert!(!m.claim());
    assert_eq!(m.unlock_shared(), Released::Held);
    assert_eq!(m.lock_exclusive(7), Acquire::Acquired);
    assert_eq!(m.lock_shared(7), Acquire::Wait);
    assert_eq!(m.unlock_exclusive(true), (true, Released::Held));
    assert_eq!(PageState::from_word(m.state()), PageState::Dirty);
    assert_eq!(m.lock_shared(8), Acquire::Absent);
}

#[test]
fn writeback_clears_dirty_and_failure_restores_it() {
    let m = owned_valid(3);
    assert_eq!(m.lock_exclusive(3), Acquire::Acquired);
    let _ = m.unlock_exclusive(true);
    assert_eq!(m.begin_writeback(3), Acquire::Acquired);
    assert_eq!(PageState::from_word(m.state()), PageState::Writeback);
    // A writer waits for the I/O; a second write-back waits too.
    assert_eq!(m.lock_exclusive(3), Acquire::Wait);
    assert_eq!(m.begin_writeback(3), Acquire::Wait);
    assert_eq!(m.end_writeback(false), (true, Released::Held));
    assert_eq!(PageState::from_word(m.state()), PageState::Dirty);
    assert_eq!(m.begin_writeback(3), Acquire::Acquired);
    assert_eq!(m.end_writeback(true), (false, Released::Held));
    assert_eq!(PageState::from_word(m.state()), PageState::UpToDate);
    assert_eq!(m.begin_writeback(3), Acquire::Absent);
}

#[test]
fn orphan_is_freed_by_last_holder() {
    let m = owned_valid(1);
    assert_eq!(m.pin(1), Acquire::Acquired);
    assert_eq!(m.lock_shared(1), Acquire::Acquired);
    assert_eq!(
        m.orphan(),
        Orphaned::Done {
            was_dirty: false,
            released: Released::Held
        }
    );
    assert_eq!(m.lock_shared(1), Acquire::Absent);
    assert_eq!(m.unlock_shared(), Released::Held);
    assert_eq!(m.unpin(), Released::Freed);
    assert_eq!(kind(m.state()), FREE);
}
