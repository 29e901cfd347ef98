//! A connection's queue of replies not yet sent, and sending them.
//!
//! Owns: reply entries (a header plus either nothing, owned bytes, or bytes lent by the device
//! straight from its memory), gathering many replies into one vectored write, and copying lent
//! bytes out (releasing the device's holds) when the socket will not take them now. Does not
//! own: the socket (`wire.rs`) or what replies say. Never blocks.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use crate::device::Resident;
use crate::limits::Tokens;
use crate::wire::Wire;

/// Slices one vectored write carries at most (Linux's `IOV_MAX`).
const IOV_MAX: usize = 1024;

/// A reply's bytes after its header.
pub(crate) enum Body<'d> {
    /// Bytes the server owns.
    Owned(Vec<u8>),
    /// Bytes lent by the device (page-cache read guards): sent without a copy.
    Held(Box<dyn Resident + 'd>),
}

/// One reply.
pub(crate) struct Out<'d> {
    head: [u8; 28],
    head_len: usize,
    body: Body<'d>,
    /// Header plus body bytes.
    total: usize,
    /// Bytes already sent.
    sent: usize,
    /// What the connection counts for this request (bytes of its in-flight bound).
    pub(crate) cost: usize,
    /// The server-wide share, given back when the reply is sent or dropped.
    _tokens: Option<Tokens>,
}

impl<'d> Out<'d> {
    /// A reply whose bytes are all in `bytes`.
    pub(crate) fn owned(bytes: Vec<u8>, cost: usize, tokens: Option<Tokens>) -> Out<'d> {
        Out {
            head: [0; 28],
            head_len: 0,
            total: bytes.len(),
            body: Body::Owned(bytes),
            sent: 0,
            cost,
            _tokens: tokens,
        }
    }

    /// A header followed by `len` bytes lent by the device.
    pub(crate) fn held(
        head: ([u8; 28], usize),
        body: Box<dyn Resident + 'd>,
        len: usize,
        cost: usize,
        tokens: Option<Tokens>,
    ) -> Out<'d> {
        Out {
            head: head.0,
            head_len: head.1,
            body: Body::Held(body),
            total: head.1 + len,
            sent: 0,
            cost,
            _tokens: tokens,
        }
    }

    fn remaining(&self) -> usize {
        self.total - self.sent
    }

    /// Pushes the unsent parts onto `v` (up to `IOV_MAX` slices in all).
    fn slices<'s>(&'s self, v: &mut Vec<IoSlice<'s>>) {
        let mut skip = self.sent;
        let mut push = |part: &'s [u8], v: &mut Vec<IoSlice<'s>>| {
            if skip >= part.len() {
                skip -= part.len();
            } else if v.len() < IOV_MAX {
                v.push(IoSlice::new(&part[skip..]));
                skip = 0;
            }
        };
        push(&self.head[..self.head_len], v);
        match &self.body {
            Body::Owned(b) => push(b, v),
            Body::Held(h) => {
                // Bounded by the number of parts (a page each).
                let mut i = 0;
                while let Some(part) = h.part(i) {
                    push(part, v);
                    if v.len() >= IOV_MAX {
                        break;
                    }
                    i += 1;
                }
            }
        }
    }

    /// Copies lent bytes into an owned buffer, releasing the device's holds.
    fn own(&mut self) {
        if let Body::Held(h) = &self.body {
            let mut bytes = Vec::with_capacity(self.total - self.head_len);
            let mut i = 0;
            while let Some(part) = h.part(i) {
                bytes.extend_from_slice(part);
                i += 1;
            }
            debug_assert_eq!(bytes.len(), self.total - self.head_len);
            self.body = Body::Owned(bytes);
        }
    }
}

/// Replies waiting for the socket, in the order they were made.
#[derive(Default)]
pub(crate) struct OutQueue<'d> {
    q: VecDeque<Out<'d>>,
    /// Bytes not yet sent.
    pub(crate) unsent: usize,
}

/// What [`OutQueue::send`] did.
pub(crate) struct Sent {
    /// Replies fully sent: (count, their costs).
    pub(crate) replies: usize,
    pub(crate) cost: usize,
    /// The wire would take no more now.
    pub(crate) blocked: bool,
}

impl<'d> OutQueue<'d> {
    pub(crate) fn push(&mut self, o: Out<'d>) {
        self.unsent += o.remaining();
        self.q.push_back(o);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Sends as much as the wire takes now, many replies per vectored write.
    pub(crate) fn send(&mut self, wire: &mut Wire) -> io::Result<Sent> {
        let mut sent = Sent {
            replies: 0,
            cost: 0,
            blocked: false,
        };
        // Bounded: each pass sends at least one byte or returns.
        loop {
            if !wire.flush_pending()? {
                sent.blocked = true;
                return Ok(sent);
            }
            if self.q.is_empty() {
                return Ok(sent);
            }
            let mut iov = Vec::with_capacity(64);
            for o in &self.q {
                o.slices(&mut iov);
                if iov.len() >= IOV_MAX {
                    break;
                }
            }
            let n = match wire.write_vectored(&iov) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    sent.blocked = true;
                    return Ok(sent);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            drop(iov);
            self.advance(n, &mut sent);
        }
    }

    fn advance(&mut self, mut n: usize, sent: &mut Sent) {
        self.unsent -= n;
        while n > 0 {
            let front = self
                .q
                .front_mut()
                .expect("sent bytes belong to queued replies");
            let r = front.remaining();
            if n < r {
                front.sent += n;
                return;
            }
            n -= r;
            let done = self.q.pop_front().expect("front exists");
            sent.replies += 1;
            sent.cost += done.cost;
        }
        // Replies with nothing left (none are made empty, but be exact).
        while self.q.front().is_some_and(|o| o.remaining() == 0) {
            let done = self.q.pop_front().expect("front exists");
            sent.replies += 1;
            sent.cost += done.cost;
        }
    }

    /// Copies every lent reply still queued into owned buffers, releasing the device's holds
    /// (pinned pages), for when the client is not taking its replies.
    pub(crate) fn own_all(&mut self) {
        for o in &mut self.q {
            o.own();
        }
    }
}
