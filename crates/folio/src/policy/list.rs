//! Intrusive doubly linked lists over frame ids: two `u32` links per frame, no allocation per
//! operation. Several lists may share one [`Links`] as long as each frame is in at most one of
//! them (the policy tracks which).
//!
//! Orientation: the head holds the newest entry, the tail the oldest; `newer(i)` walks toward the
//! head, `older(i)` toward the tail.

/// "No frame" in a link.
pub(crate) const NIL: u32 = u32::MAX;

/// Link storage for `n` frames: both links of a frame side by side (one cache line access per
/// frame touched, not two).
#[derive(Debug)]
pub(crate) struct Links {
    /// `[newer, older]` per frame.
    link: Box<[[u32; 2]]>,
}

const NEWER: usize = 0;
const OLDER: usize = 1;

/// One list threaded through a [`Links`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct List {
    pub(crate) head: u32,
    pub(crate) tail: u32,
    pub(crate) len: usize,
}

impl List {
    pub(crate) const fn new() -> List {
        List {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

impl Links {
    pub(crate) fn new(n: usize) -> Links {
        Links {
            link: vec![[NIL; 2]; n].into_boxed_slice(),
        }
    }

    /// The entry one step toward the head (newer), or `NIL`.
    #[inline]
    pub(crate) fn newer(&self, i: u32) -> u32 {
        self.link[i as usize][NEWER]
    }

    /// The entry one step toward the tail (older), or `NIL`.
    #[inline]
    #[allow(dead_code)]
    pub(crate) fn older(&self, i: u32) -> u32 {
        self.link[i as usize][OLDER]
    }

    /// Puts `i` (not in any list) at the head of `list`.
    #[inline]
    pub(crate) fn push_head(&mut self, list: &mut List, i: u32) {
        self.link[i as usize] = [NIL, list.head];
        if list.head != NIL {
            self.link[list.head as usize][NEWER] = i;
        } else {
            list.tail = i;
        }
        list.head = i;
        list.len += 1;
    }

    /// Unlinks `i`, which must be in `list`.
    #[inline]
    pub(crate) fn unlink(&mut self, list: &mut List, i: u32) {
        let [n, o] = self.link[i as usize];
        if n != NIL {
            self.link[n as usize][OLDER] = o;
        } else {
            list.head = o;
        }
        if o != NIL {
            self.link[o as usize][NEWER] = n;
        } else {
            list.tail = n;
        }
        self.link[i as usize] = [NIL, NIL];
        list.len -= 1;
    }

    /// Moves `i`, which is in `list`, to its head.
    #[inline]
    pub(crate) fn move_to_head(&mut self, list: &mut List, i: u32) {
        if list.head != i {
            self.unlink(list, i);
            self.push_head(list, i);
        }
    }

    /// Bytes of link storage per frame.
    pub(crate) const BYTES_PER_FRAME: usize = 8;
}
