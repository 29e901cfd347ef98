//! How a connection ends: stopping with the server (every request whose header was read is
//! answered, `ESHUTDOWN` for those not started, after the payload a write carries is in) and
//! waiting out the jobs of a peer that is gone without polling its socket.
//!
//! Owns: the `Finishing` phase of reading and the `PeerGone` wait. Does not own: the
//! connection's loop, its bounds or its reading (`mod.rs`). May block: only in `poll` on the
//! connection's mailbox (a gone peer), at most [`TICK`] at a time.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;

use rustix::event::{PollFd, PollFlags};

use super::{poll_for, tokens_cost, Conn, Input, Reading, TICK};
use crate::outq::{Out, OutQueue};
use crate::proto::*;

impl Conn<'_, '_> {
    /// The peer is gone: waits for the jobs with the pool (their replies are dropped) without
    /// polling the socket, so that they finish before the connection gives its place back.
    /// Bounded: by the jobs, or until the server forces connections closed.
    pub(super) fn wait_for_jobs(&mut self) -> io::Result<()> {
        if self.stalled.take().is_some() {
            self.dispatched -= 1; // never submitted
        }
        self.out = OutQueue::default(); // releases lent pages and budgets
        loop {
            for _ in self.mailbox.take() {
                self.dispatched -= 1;
            }
            if self.dispatched == 0 || self.ctx.forced.load(Ordering::Relaxed) {
                return Ok(());
            }
            let Some(ev) = &self.mailbox.event else {
                return Ok(()); // no pool: every job ran inline
            };
            poll_for(
                &mut [PollFd::from_borrowed_fd(ev.as_fd(), PollFlags::IN)],
                TICK,
            )?;
            self.mailbox.clear_event();
        }
    }

    /// The server is stopping: a write whose payload is still arriving will not be carried
    /// out, so its payload is skipped and it is answered `ESHUTDOWN` (a skip under way keeps
    /// its reply). The connection reads on only to the end of that request.
    pub(super) fn begin_finishing(&mut self) {
        if let Input::Payload { req, buf, got, .. } = &self.input {
            let skip = Input::Skip {
                left: buf.len() - got,
                reply: encode_status_reply(self.neg.structured, req.handle, ESHUTDOWN),
                cost: tokens_cost(req),
            };
            // Drops the buffer and its share of the server's budget.
            self.input = skip;
        }
        self.reading = Reading::Finishing;
    }

    /// Answers `ESHUTDOWN` to every request whose header is buffered; a write whose payload is
    /// not all here is skipped to its end first (reading goes on for it). Then stops reading.
    pub(super) fn answer_buffered_with_eshutdown(&mut self) {
        let s = self.neg.structured;
        // Bounded by the buffered bytes.
        while self.re - self.rs >= REQUEST_LEN {
            let hdr: &[u8; REQUEST_LEN] = self.rbuf[self.rs..self.rs + REQUEST_LEN]
                .try_into()
                .expect("28 bytes");
            let Ok(req) = parse_request(hdr) else { break };
            self.rs += REQUEST_LEN;
            if req.kind == CMD_DISC {
                break;
            }
            self.pending += 1;
            let reply = encode_status_reply(s, req.handle, ESHUTDOWN);
            let payload = if req.kind == CMD_WRITE {
                req.len as usize
            } else {
                0
            };
            let here = payload.min(self.re - self.rs);
            self.rs += here;
            if here < payload {
                if req.len > MAX_PAYLOAD {
                    // Too large to skip (as a refusal would close): answer and close.
                    self.out.push(Out::owned(reply, 0, None));
                    break;
                }
                self.input = Input::Skip {
                    left: payload - here,
                    reply,
                    cost: 0,
                };
                return;
            }
            self.out.push(Out::owned(reply, 0, None));
        }
        self.reading = Reading::Closed;
    }
}
