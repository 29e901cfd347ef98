//! The transmission phase of one connection, run to completion on the connection's own thread.
//!
//! Owns: reading and parsing requests, checking them, answering read hits inline straight from
//! the device's memory (zero-copy) and carrying out writes to cached pages inline, handing
//! everything that may block to the pool, sending
//! replies (many per vectored write), and every per-connection bound: requests and bytes in
//! flight, reply bytes a client leaves unread (past which the connection stops reading its
//! requests), the idle timeout, and stopping (`ESHUTDOWN` for requests whose header was read
//! but that were not started, after the payload they carry is in). A panic of the device on the
//! inline paths answers that request `EIO`, as a pool job's panic does. A peer that is gone
//! (reset) is not polled again: the connection waits only for its jobs with the pool (how a
//! connection ends is in `ending.rs`). Does not own: the handshake, the device's semantics
//! (`exec.rs`), the server-wide budgets (`limits.rs`), kept payload buffers (`spare.rs`) or
//! accepting connections (`server.rs`). May block: only in `poll` on its own socket and
//! mailbox; never on the device, the pool or another connection.

use std::io;
use std::os::fd::AsFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use tracing::{debug, trace, warn};

use crate::config::{Export, ServerConfig};
use crate::device::SyncCursor;
use crate::exec::{execute, STATUS_EXTENTS_MAX};
use crate::handshake::Agreed;
use crate::limits::{Limits, Tokens};
use crate::mailbox::Done;
pub(crate) use crate::mailbox::Mailbox;
use crate::outq::{Out, OutQueue};
use crate::pool::{Job, Pool};
use crate::proto::*;
use crate::spare::{Payload, Spares};
use crate::wire::Wire;

mod ending;

/// What a connection needs to know.
pub(crate) struct ConnCtx<'a> {
    pub(crate) export: &'a Export,
    pub(crate) agreed: Agreed,
    pub(crate) cfg: &'a ServerConfig,
    pub(crate) limits: &'a Arc<Limits>,
    /// `None`: carry out every request inline (the in-memory session).
    pub(crate) pool: Option<&'a Pool>,
    pub(crate) stopping: &'a AtomicBool,
    pub(crate) forced: &'a AtomicBool,
}

/// Where the request stream is.
enum Input {
    /// Between requests.
    Header,
    /// Receiving a write's payload.
    Payload {
        req: Request,
        buf: Payload,
        got: usize,
        tokens: Tokens,
    },
    /// Skipping the payload of a refused write (or of a write shutdown came before); then this
    /// reply is sent, counting `cost` of the connection's in-flight bytes.
    Skip {
        left: usize,
        reply: Vec<u8>,
        cost: usize,
    },
}

/// Whether requests are still read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Reading {
    Open,
    /// The server is stopping: the payload being received or skipped is read to its end,
    /// then every request whose header is buffered is answered `ESHUTDOWN`; then `Closed`.
    Finishing,
    /// The client disconnected, broke the protocol, or the server stopped.
    Closed,
    /// The peer is gone (reset, or both directions shut): nothing can be read or sent, and the
    /// socket is not polled again (it would wake every `poll` at once).
    PeerGone,
}

/// Why reading paused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Pause {
    /// Not paused.
    No,
    /// Waiting for this connection's replies to leave (its own bounds).
    Replies,
    /// Waiting for a server-wide budget or a place in the pool's queue: retried on a timer.
    Server,
}

struct Conn<'a, 'd> {
    ctx: &'a ConnCtx<'d>,
    neg: Negotiated,
    cursor: Arc<dyn SyncCursor>,
    mailbox: &'a Arc<Mailbox>,
    rbuf: Vec<u8>,
    rs: usize,
    re: usize,
    input: Input,
    reading: Reading,
    out: OutQueue<'d>,
    /// Requests accepted and not yet fully answered, and their costs.
    pending: usize,
    pending_bytes: usize,
    /// Jobs with the pool.
    dispatched: usize,
    /// A job the pool's full queue refused, retried first.
    stalled: Option<Job>,
    last_request: Instant,
    /// Since when the socket has refused replies (none: it takes them).
    blocked_since: Option<Instant>,
    /// Payload buffers of inline writes, kept for the next writes.
    spare: Spares,
}

/// How long lent page bytes may wait for a socket that takes nothing before they are copied
/// out and their holds released (a client slow to read must not pin pages).
const HOLD_WAIT: Duration = Duration::from_millis(5);
/// Receive buffer: many request headers per read.
const RBUF_BYTES: usize = 256 << 10;
/// How often a connection checks for shutdown and its idle timeout when nothing happens.
const TICK: Duration = Duration::from_millis(100);
/// How soon a connection retries after a server-wide budget or the pool's queue was full.
const RETRY: Duration = Duration::from_millis(1);

/// Serves requests until the client disconnects, sends `CMD_DISC`, breaks the protocol, goes
/// idle too long, or the server stops; then waits until every accepted request is answered
/// (unless the server forces connections closed).
pub(crate) fn serve(ctx: &ConnCtx<'_>, wire: &mut Wire, mailbox: &Arc<Mailbox>) -> io::Result<()> {
    let e = ctx.export;
    let mut c = Conn {
        ctx,
        neg: Negotiated {
            size: e.dev.len(),
            read_only: e.read_only,
            structured: ctx.agreed.structured,
            block_status: ctx.agreed.block_status,
        },
        cursor: Arc::from(e.dev.clone().sync_cursor()),
        mailbox,
        rbuf: vec![0u8; RBUF_BYTES],
        rs: 0,
        re: 0,
        input: Input::Header,
        reading: Reading::Open,
        out: OutQueue::default(),
        pending: 0,
        pending_bytes: 0,
        dispatched: 0,
        stalled: None,
        last_request: Instant::now(),
        blocked_since: None,
        spare: Spares::new(ctx.limits),
    };
    let result = c.run(wire);
    if result.is_err() {
        // A read or send that failed (a reset peer, say) ends the connection with jobs maybe
        // still on the pool: its place is given back only once they are done, as for a peer
        // found gone while paused.
        let _ = c.wait_for_jobs();
    }
    wire.close();
    result
}

impl<'a, 'd> Conn<'a, 'd> {
    fn run(&mut self, wire: &mut Wire) -> io::Result<()> {
        let idle = self.ctx.cfg.idle_timeout;
        // Bounded: every pass either makes progress, or waits in `poll` for at most `TICK`;
        // it ends when the client goes, or on shutdown (forced after the grace period).
        loop {
            if self.ctx.forced.load(Ordering::Relaxed) {
                return Ok(());
            }
            if self.reading == Reading::PeerGone {
                return self.wait_for_jobs();
            }
            self.collect();
            if self.ctx.stopping.load(Ordering::Relaxed) && self.reading == Reading::Open {
                self.begin_finishing();
            }
            let pause = self.process()?;
            let sent = self.out.send(wire)?;
            self.pending -= sent.replies;
            self.pending_bytes -= sent.cost;
            if !sent.blocked || sent.replies > 0 {
                self.blocked_since = None;
            }
            if sent.blocked {
                let since = *self.blocked_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= HOLD_WAIT {
                    self.out.own_all();
                }
            }
            let drained = self.dispatched == 0 && self.stalled.is_none() && self.out.is_empty();
            if self.reading == Reading::Closed && drained && !wire.has_pending() {
                return Ok(());
            }
            if let Some(t) = idle {
                if self.pending == 0 && self.last_request.elapsed() >= t {
                    debug!("idle timeout; closing");
                    return Ok(());
                }
            }
            if pause == Pause::Replies && sent.replies > 0 {
                continue; // replies left: the bound may allow more requests now
            }
            let want_input = match self.reading {
                Reading::Open => pause == Pause::No,
                // Only the rest of the request under way.
                Reading::Finishing => !matches!(self.input, Input::Header),
                Reading::Closed | Reading::PeerGone => false,
            };
            if want_input && self.fill(wire)? {
                continue;
            }
            let Some(fd) = wire.fd() else {
                // Memory: nothing to wait for; every request ran inline.
                if self.reading == Reading::Open && !want_input {
                    continue; // paused on the budget; inline replies free it at once
                }
                return Ok(());
            };
            let want_output = !self.out.is_empty() || wire.has_pending();
            let mut flags = PollFlags::empty();
            if want_input {
                flags |= PollFlags::IN;
            }
            if want_output {
                flags |= PollFlags::OUT;
            }
            let mut fds = vec![PollFd::from_borrowed_fd(fd, flags)];
            if let Some(ev) = &self.mailbox.event {
                fds.push(PollFd::from_borrowed_fd(ev.as_fd(), PollFlags::IN));
            }
            let wait = if pause == Pause::Server || self.stalled.is_some() {
                RETRY
            } else if self.blocked_since.is_some() {
                HOLD_WAIT
            } else {
                TICK
            };
            poll_for(&mut fds, wait)?;
            let hup = fds[0].revents().intersects(PollFlags::HUP | PollFlags::ERR);
            if fds.len() > 1 && !fds[1].revents().is_empty() {
                self.mailbox.clear_event();
            }
            if hup && !want_input && !want_output {
                // The peer is gone (a reset, or both directions shut): nothing owed to it can
                // be sent. A read or write would have reported it; this connection wanted
                // neither (paused, or closed with jobs still out).
                debug!("peer gone; waiting for the jobs still with the pool");
                self.reading = Reading::PeerGone;
            }
        }
    }

    /// Reads what the wire has into the receive buffer (or straight into a write's payload).
    /// True if bytes arrived.
    fn fill(&mut self, wire: &mut Wire) -> io::Result<bool> {
        let res = match &mut self.input {
            Input::Payload { buf, got, .. } if self.rs == self.re => {
                // Straight into the payload buffer: no second copy for large writes.
                let r = wire.read(&mut buf[*got..]);
                if let Ok(n) = r {
                    *got += n;
                }
                r
            }
            _ => {
                if self.rs == self.re {
                    (self.rs, self.re) = (0, 0);
                } else if self.re == self.rbuf.len() || self.rs > self.rbuf.len() / 2 {
                    self.rbuf.copy_within(self.rs..self.re, 0);
                    (self.rs, self.re) = (0, self.re - self.rs);
                }
                let r = wire.read(&mut self.rbuf[self.re..]);
                if let Ok(n) = r {
                    self.re += n;
                }
                r
            }
        };
        match res {
            Ok(0) => {
                trace!("end of the request stream");
                self.reading = Reading::Closed;
                Ok(true)
            }
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Takes the replies workers finished.
    fn collect(&mut self) {
        for d in self.mailbox.take() {
            self.dispatched -= 1;
            self.out.push(Out::owned(d.bytes, d.cost, d.tokens));
        }
    }

    /// Handles every complete request in the receive buffer, as far as the bounds allow.
    fn process(&mut self) -> io::Result<Pause> {
        if let Some(job) = self.stalled.take() {
            if let Err(job) = self.submit(job) {
                self.stalled = Some(job);
                return Ok(Pause::Server);
            }
        }
        // Bounded by the buffered bytes: every pass consumes some or returns.
        loop {
            match &mut self.input {
                Input::Payload { buf, got, .. } => {
                    let n = (buf.len() - *got).min(self.re - self.rs);
                    buf[*got..*got + n].copy_from_slice(&self.rbuf[self.rs..self.rs + n]);
                    *got += n;
                    self.rs += n;
                    if *got < buf.len() {
                        return Ok(Pause::No);
                    }
                    let Input::Payload {
                        req, buf, tokens, ..
                    } = std::mem::replace(&mut self.input, Input::Header)
                    else {
                        unreachable!("matched above")
                    };
                    self.write(req, buf, tokens);
                }
                Input::Skip { left, .. } => {
                    let n = (*left).min(self.re - self.rs);
                    *left -= n;
                    self.rs += n;
                    if *left > 0 {
                        return Ok(Pause::No);
                    }
                    let Input::Skip { reply, cost, .. } =
                        std::mem::replace(&mut self.input, Input::Header)
                    else {
                        unreachable!("matched above")
                    };
                    self.out.push(Out::owned(reply, cost, None));
                }
                Input::Header if self.reading == Reading::Finishing => {
                    self.answer_buffered_with_eshutdown();
                    if matches!(self.input, Input::Header) {
                        return Ok(Pause::No);
                    }
                }
                Input::Header => {
                    if self.reading != Reading::Open || self.re - self.rs < REQUEST_LEN {
                        return Ok(Pause::No);
                    }
                    let pause = self.header()?;
                    if pause != Pause::No {
                        return Ok(pause);
                    }
                }
            }
            if self.stalled.is_some() {
                return Ok(Pause::Server);
            }
        }
    }

    /// Handles the request header at the front of the receive buffer, or pauses (leaving it
    /// there).
    fn header(&mut self) -> io::Result<Pause> {
        let hdr: &[u8; REQUEST_LEN] = self.rbuf[self.rs..self.rs + REQUEST_LEN]
            .try_into()
            .expect("28 bytes");
        let req = match parse_request(hdr) {
            Ok(r) => r,
            Err(e) => {
                warn!(?e, "bad request magic; closing");
                self.reading = Reading::Closed;
                return Ok(Pause::No);
            }
        };
        trace!(?req, "request");
        let s = self.neg.structured;
        if req.kind == CMD_DISC {
            debug!("client disconnect");
            self.rs += REQUEST_LEN;
            self.reading = Reading::Closed;
            return Ok(Pause::No);
        }
        match check_request(&req, &self.neg) {
            Verdict::Execute => {}
            Verdict::Reject(err) => {
                debug!(?req, err, "request refused");
                self.rs += REQUEST_LEN;
                self.last_request = Instant::now();
                self.pending += 1;
                let reply = encode_status_reply(s, req.handle, err);
                if req.kind == CMD_WRITE && req.len > 0 {
                    self.input = Input::Skip {
                        left: req.len as usize,
                        reply,
                        cost: 0,
                    };
                } else {
                    self.out.push(Out::owned(reply, 0, None));
                }
                return Ok(Pause::No);
            }
            Verdict::RejectAndClose(err) => {
                warn!(
                    ?req,
                    err, "request refused; payload too large to skip, closing"
                );
                self.rs += REQUEST_LEN;
                self.pending += 1;
                self.out
                    .push(Out::owned(encode_status_reply(s, req.handle, err), 0, None));
                self.reading = Reading::Closed;
                return Ok(Pause::No);
            }
        }
        // This connection's own bounds first: they free up as its replies leave.
        let cfg = self.ctx.cfg;
        let cost = tokens_cost(&req);
        let over_bytes = self.pending > 0 && self.pending_bytes + cost > cfg.inflight_bytes_max;
        if self.pending >= cfg.inflight_max.max(1)
            || over_bytes
            || self.out.unsent > cfg.unsent_bytes_max
        {
            return Ok(Pause::Replies);
        }
        // Then the server's, before any allocation.
        let effect = match req.kind {
            CMD_TRIM | CMD_WRITE_ZEROES | CMD_CACHE => req.len as u64,
            _ => 0,
        };
        let Some(tokens) = Tokens::take(self.ctx.limits, cost as u64, effect) else {
            return Ok(Pause::Server);
        };
        self.rs += REQUEST_LEN;
        self.last_request = Instant::now();
        self.pending += 1;
        self.pending_bytes += cost;
        match req.kind {
            CMD_READ => {
                let len = req.len as usize;
                let dev = &self.ctx.export.dev;
                match inline(&req, || dev.read_resident(req.offset, len)) {
                    Some(Ok(held)) => {
                        let head = encode_read_header(s, req.handle, req.offset, req.len);
                        self.out
                            .push(Out::held(head, held, len, cost, Some(tokens)));
                    }
                    Some(Err(e)) => {
                        let reply = encode_status_reply(s, req.handle, errno_of(&e));
                        self.out.push(Out::owned(reply, cost, Some(tokens)));
                    }
                    None => self.dispatch(req, None, tokens),
                }
            }
            CMD_WRITE => {
                self.input = Input::Payload {
                    req,
                    buf: self.spare.take(req.len as usize),
                    got: 0,
                    tokens,
                };
            }
            _ => self.dispatch(req, None, tokens),
        }
        Ok(Pause::No)
    }

    /// A write whose payload is here: inline if the device can do it without waiting (and
    /// no FUA asks for I/O), else to the pool.
    fn write(&mut self, req: Request, buf: Payload, tokens: Tokens) {
        if req.flags & CMD_FLAG_FUA == 0 {
            let dev = &self.ctx.export.dev;
            if let Some(done) = inline(&req, || dev.try_write_at(&buf, req.offset)) {
                let err = match done {
                    Ok(()) => 0,
                    Err(e) => errno_of(&e),
                };
                let reply = encode_status_reply(self.neg.structured, req.handle, err);
                self.out
                    .push(Out::owned(reply, tokens_cost(&req), Some(tokens)));
                self.spare.keep(buf);
                return;
            }
        }
        self.dispatch(req, Some(buf), tokens);
    }

    /// Hands a request to the pool (or runs it inline without one).
    fn dispatch(&mut self, req: Request, payload: Option<Payload>, tokens: Tokens) {
        let dev = self.ctx.export.dev.clone();
        let cursor = self.cursor.clone();
        let mailbox = self.mailbox.clone();
        let structured = self.neg.structured;
        let cost = tokens_cost(&req);
        let job: Job = Box::new(move || {
            // A kept buffer's share of the spare budget lasts as long as its bytes.
            let (payload, _share) = match payload {
                Some(p) => {
                    let (bytes, share) = p.into_parts();
                    (Some(bytes), Some(share))
                }
                None => (None, None),
            };
            let run = std::panic::AssertUnwindSafe(|| {
                execute(&*dev, &*cursor, &req, payload, structured)
            });
            let bytes = std::panic::catch_unwind(run).unwrap_or_else(|_| {
                warn!(?req, "request handler panicked; answering EIO");
                encode_status_reply(structured, req.handle, EIO)
            });
            mailbox.post(Done {
                bytes,
                cost,
                tokens: Some(tokens),
            });
        });
        self.dispatched += 1;
        if let Err(job) = self.submit(job) {
            self.stalled = Some(job);
        }
    }

    fn submit(&mut self, job: Job) -> Result<(), Job> {
        match self.ctx.pool {
            Some(pool) => pool.try_submit(job),
            None => {
                job();
                self.collect();
                Ok(())
            }
        }
    }
}

/// Runs a device call of the inline paths on the connection's own thread. A panic becomes an
/// error (the request is answered `EIO`, as a pool job's panic is) instead of unwinding the
/// connection with its requests unanswered.
fn inline<'r, T>(
    req: &Request,
    call: impl FnOnce() -> Option<io::Result<T>> + 'r,
) -> Option<io::Result<T>> {
    catch_unwind(AssertUnwindSafe(call)).unwrap_or_else(|_| {
        warn!(
            ?req,
            "the device panicked on the inline path; answering EIO"
        );
        Some(Err(io::Error::other("the device panicked")))
    })
}

/// Waits in `poll` for at most `wait` (an interrupted wait counts as done).
fn poll_for(fds: &mut [PollFd<'_>], wait: Duration) -> io::Result<()> {
    let ts = rustix::event::Timespec {
        tv_sec: wait.as_secs() as i64,
        tv_nsec: wait.subsec_nanos() as _,
    };
    match rustix::event::poll(fds, Some(&ts)) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What a request counts against the in-flight byte bounds: its payload or reply.
fn tokens_cost(req: &Request) -> usize {
    match req.kind {
        CMD_READ | CMD_WRITE => req.len as usize,
        CMD_BLOCK_STATUS => 32 + 8 * STATUS_EXTENTS_MAX,
        _ => 32,
    }
}
