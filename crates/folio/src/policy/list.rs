//! Intrusive doubly linked lists over frame ids: two `u32` links per frame, no allocation per
//! operation. Several lists may share one [`Links`] as long as each frame is in at most one of
//! them (the policy tracks which).
//!
//! Orientation: the head holds the newest entry, the tail the oldest; `newer(i)` walks toward the
//! head, `older(i)` toward the tail.

/// "No frame" in a link.
pub(crate) const NIL: u32 = u32::MAX;

/// Link storage for `n` frames: both links of a frame side by side (one cache line access per
/// frame touched, not two), with an optional per-frame payload `T` next to them (S3-FIFO keeps
/// the page key there, read when the frame is evicted, right after its links).
#[derive(Debug)]
pub(crate) struct Links<T = ()> {
    node: Box<[Node<T>]>,
}

#[derive(Clone, Copy, Debug)]
struct Node<T> {
    /// `[newer, older]`.
    link: [u32; 2],
    data: T,
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

impl<T: Copy + Default> Links<T> {
    pub(crate) fn new(n: usize) -> Links<T> {
        let node = Node {
            link: [NIL; 2],
            data: T::default(),
        };
        Links {
            node: vec![node; n].into_boxed_slice(),
        }
    }

    /// The payload of frame `i`.
    #[inline]
    #[allow(dead_code)]
    pub(crate) fn data(&self, i: u32) -> T {
        self.node[i as usize].data
    }

    /// Sets the payload of frame `i`.
    #[inline]
    #[allow(dead_code)]
    pub(crate) fn set_data(&mut self, i: u32, data: T) {
        self.node[i as usize].data = data;
    }

    /// The entry one step toward the head (newer), or `NIL`.
    #[inline]
    pub(crate) fn newer(&self, i: u32) -> u32 {
        self.node[i as usize].link[NEWER]
    }

    /// The entry one step toward the tail (older), or `NIL`.
    #[inline]
    #[allow(dead_code)]
    pub(crate) fn older(&self, i: u32) -> u32 {
        self.node[i as usize].link[OLDER]
    }

    /// Puts `i` (not in any list) at the head of `list`.
    #[inline]
    pub(crate) fn push_head(&mut self, list: &mut List, i: u32) {
        self.node[i as usize].link = [NIL, list.head];
        if list.head != NIL {
            self.node[list.head as usize].link[NEWER] = i;
        } else {
            list.tail = i;
        }
        list.head = i;
        list.len += 1;
    }

    /// Puts `i` (not in any list) at the tail (oldest end) of `list`.
    #[inline]
    pub(crate) fn push_tail(&mut self, list: &mut List, i: u32) {
        self.node[i as usize].link = [list.tail, NIL];
        if list.tail != NIL {
            self.node[list.tail as usize].link[OLDER] = i;
        } else {
            list.head = i;
        }
        list.tail = i;
        list.len += 1;
    }

    /// Unlinks `i`, which must be in `list`.
    #[inline]
    pub(crate) fn unlink(&mut self, list: &mut List, i: u32) {
        let [n, o] = self.node[i as usize].link;
        if n != NIL {
            self.node[n as usize].link[OLDER] = o;
        } else {
            list.head = o;
        }
        if o != NIL {
            self.node[o as usize].link[NEWER] = n;
        } else {
            list.tail = n;
        }
        self.node[i as usize].link = [NIL, NIL];
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

    /// Bytes of link storage per frame, payload included.
    pub(crate) const BYTES_PER_FRAME: usize = std::mem::size_of::<Node<T>>();
}

/// The resident frames of a single-list policy (FIFO, LRU): the list from oldest (tail) to
/// newest (head) and a resident flag per frame. Frames the set does not know are ignored, as the
/// policy contract requires.
#[derive(Debug)]
pub(crate) struct ResidentList {
    pub(crate) links: Links,
    pub(crate) list: List,
    resident: Box<[bool]>,
}

impl ResidentList {
    pub(crate) fn new(capacity: usize) -> ResidentList {
        ResidentList {
            links: Links::new(capacity),
            list: List::new(),
            resident: vec![false; capacity].into_boxed_slice(),
        }
    }

    pub(crate) fn contains(&self, frame: u32) -> bool {
        self.resident.get(frame as usize).copied().unwrap_or(false)
    }

    /// Makes `frame` the newest, inserting it if it is not resident.
    pub(crate) fn insert(&mut self, frame: u32) {
        let Some(r) = self.resident.get_mut(frame as usize) else {
            return;
        };
        if *r {
            self.links.move_to_head(&mut self.list, frame);
        } else {
            *r = true;
            self.links.push_head(&mut self.list, frame);
        }
    }

    /// Makes a resident `frame` the newest; ignores others.
    pub(crate) fn touch(&mut self, frame: u32) {
        if self.contains(frame) {
            self.links.move_to_head(&mut self.list, frame);
        }
    }

    /// Forgets `frame` if it is resident.
    pub(crate) fn remove(&mut self, frame: u32) {
        if self.contains(frame) {
            self.resident[frame as usize] = false;
            self.links.unlink(&mut self.list, frame);
        }
    }

    /// Bytes per frame: the links and the resident flag.
    pub(crate) const BYTES_PER_FRAME: usize = <Links>::BYTES_PER_FRAME + 1;
}
