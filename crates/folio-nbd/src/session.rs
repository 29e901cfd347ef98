//! One connection: the handshake and the transmission phase, independent of sockets so that
//! the fuzz target and the property tests drive them from byte buffers.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use tracing::{debug, trace, warn};

use crate::device::BlockDevice;
use crate::proto::*;
use crate::server::ServerConfig;

/// A unit of work for the pool.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// What a connection needs to know.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub dev: Arc<dyn BlockDevice>,
    pub cfg: Arc<ServerConfig>,
    pub stopping: Arc<AtomicBool>,
}

impl Ctx {
    fn transmission_flags(&self) -> u16 {
        let mut f = TFLAG_HAS_FLAGS
            | TFLAG_SEND_FLUSH
            | TFLAG_SEND_FUA
            | TFLAG_SEND_TRIM
            | TFLAG_SEND_WRITE_ZEROES
            | TFLAG_CAN_MULTI_CONN;
        if self.cfg.read_only {
            f |= TFLAG_READ_ONLY;
        }
        f
    }

    fn preferred_block(&self) -> u32 {
        let b = self.dev.block_size();
        if b.is_power_of_two() && (MIN_BLOCK as usize..=MAX_PAYLOAD as usize).contains(&b) {
            b as u32
        } else {
            4096
        }
    }

    fn name_matches(&self, name: &[u8]) -> bool {
        name.is_empty() || name == self.cfg.export_name.as_bytes()
    }
}

/// How the handshake ended.
pub(crate) enum Handshake {
    /// Enter transmission.
    Transmission,
    /// The client aborted or must be dropped.
    Closed,
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn option_reply(w: &mut impl Write, option: u32, reply: u32, data: &[u8]) -> io::Result<()> {
    let mut msg = Vec::with_capacity(20 + data.len());
    msg.extend_from_slice(&encode_option_reply(option, reply, data.len() as u32));
    msg.extend_from_slice(data);
    w.write_all(&msg)?;
    w.flush()
}

/// Runs the fixed-newstyle handshake.
pub(crate) fn handshake(ctx: &Ctx, r: &mut impl Read, w: &mut impl Write) -> io::Result<Handshake> {
    let mut hello = Vec::with_capacity(18);
    hello.extend_from_slice(&NBDMAGIC.to_be_bytes());
    hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    w.write_all(&hello)?;
    w.flush()?;
    let client_flags = read_u32(r)?;
    if client_flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        warn!(client_flags, "unknown client flags; closing");
        return Ok(Handshake::Closed);
    }
    let no_zeroes = client_flags & FLAG_C_NO_ZEROES != 0;
    for _ in 0..ctx.cfg.max_options {
        let mut hdr = [0u8; OPTION_HEADER_LEN];
        r.read_exact(&mut hdr)?;
        let opt = match parse_option_header(&hdr) {
            Ok(o) => o,
            Err(e) => {
                warn!(?e, "bad option magic; closing");
                return Ok(Handshake::Closed);
            }
        };
        if opt.len > MAX_OPTION_LEN {
            warn!(
                option = opt.option,
                len = opt.len,
                "option too large; closing"
            );
            if opt.option != OPT_EXPORT_NAME {
                let _ = option_reply(w, opt.option, REP_ERR_TOO_BIG, &[]);
            }
            return Ok(Handshake::Closed);
        }
        let mut data = vec![0u8; opt.len as usize];
        r.read_exact(&mut data)?;
        debug!(option = opt.option, len = opt.len, "option");
        match opt.option {
            OPT_EXPORT_NAME => {
                if !ctx.name_matches(&data) || ctx.stopping.load(Ordering::SeqCst) {
                    warn!(name = %String::from_utf8_lossy(&data), "unknown export; closing");
                    return Ok(Handshake::Closed);
                }
                let mut msg = Vec::with_capacity(10 + 124);
                msg.extend_from_slice(&ctx.dev.len().to_be_bytes());
                msg.extend_from_slice(&ctx.transmission_flags().to_be_bytes());
                if !no_zeroes {
                    msg.extend_from_slice(&[0u8; 124]);
                }
                w.write_all(&msg)?;
                w.flush()?;
                return Ok(Handshake::Transmission);
            }
            OPT_ABORT => {
                let _ = option_reply(w, opt.option, REP_ACK, &[]);
                return Ok(Handshake::Closed);
            }
            OPT_LIST => {
                if !data.is_empty() {
                    option_reply(w, opt.option, REP_ERR_INVALID, &[])?;
                    continue;
                }
                let name = ctx.cfg.export_name.as_bytes();
                let mut d = Vec::with_capacity(4 + name.len());
                d.extend_from_slice(&(name.len() as u32).to_be_bytes());
                d.extend_from_slice(name);
                option_reply(w, opt.option, REP_SERVER, &d)?;
                option_reply(w, opt.option, REP_ACK, &[])?;
            }
            OPT_INFO | OPT_GO => {
                let Some(req) = parse_info_request(&data) else {
                    option_reply(w, opt.option, REP_ERR_INVALID, &[])?;
                    continue;
                };
                if !ctx.name_matches(&req.name) {
                    option_reply(w, opt.option, REP_ERR_UNKNOWN, &[])?;
                    continue;
                }
                if ctx.stopping.load(Ordering::SeqCst) {
                    option_reply(w, opt.option, REP_ERR_SHUTDOWN, &[])?;
                    continue;
                }
                let mut export = Vec::with_capacity(12);
                export.extend_from_slice(&INFO_EXPORT.to_be_bytes());
                export.extend_from_slice(&ctx.dev.len().to_be_bytes());
                export.extend_from_slice(&ctx.transmission_flags().to_be_bytes());
                option_reply(w, opt.option, REP_INFO, &export)?;
                let mut bs = Vec::with_capacity(14);
                bs.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
                bs.extend_from_slice(&MIN_BLOCK.to_be_bytes());
                bs.extend_from_slice(&ctx.preferred_block().to_be_bytes());
                bs.extend_from_slice(&MAX_PAYLOAD.to_be_bytes());
                option_reply(w, opt.option, REP_INFO, &bs)?;
                option_reply(w, opt.option, REP_ACK, &[])?;
                if opt.option == OPT_GO {
                    return Ok(Handshake::Transmission);
                }
            }
            other => {
                debug!(option = other, "unsupported option");
                option_reply(w, other, REP_ERR_UNSUP, &[])?;
            }
        }
    }
    warn!("too many options; closing");
    Ok(Handshake::Closed)
}

/// Where replies go: the connection's write half behind a mutex, so that workers finishing in
/// any order each write one whole reply.
pub(crate) struct ReplySink {
    w: Mutex<Box<dyn Write + Send>>,
    broken: AtomicBool,
    on_break: Option<Box<dyn Fn() + Send + Sync>>,
}

impl ReplySink {
    pub(crate) fn new(
        w: Box<dyn Write + Send>,
        on_break: Option<Box<dyn Fn() + Send + Sync>>,
    ) -> ReplySink {
        ReplySink {
            w: Mutex::new(w),
            broken: AtomicBool::new(false),
            on_break,
        }
    }

    /// Sends a reply. `msg` is either empty (header only) or a buffer whose first 16 bytes are
    /// reserved for the header and whose rest is the read data, so that a read reply leaves in
    /// one write.
    fn reply(&self, handle: u64, error: u32, mut msg: Vec<u8>) {
        if self.broken.load(Ordering::Relaxed) {
            return;
        }
        let hdr = encode_simple_reply(error, handle);
        if msg.len() >= REPLY_HEADER_LEN {
            msg[..REPLY_HEADER_LEN].copy_from_slice(&hdr);
        } else {
            msg = hdr.to_vec();
        }
        let mut w = self.w.lock();
        let res = w.write_all(&msg).and_then(|()| w.flush());
        if let Err(e) = res {
            debug!(error = %e, "reply failed; dropping the connection");
            self.broken.store(true, Ordering::Relaxed);
            if let Some(f) = &self.on_break {
                f();
            }
        }
    }
}

/// Bounds the requests (and payload bytes) one connection has in flight.
struct Inflight {
    state: Mutex<(usize, usize)>,
    cv: Condvar,
    max: usize,
    max_bytes: usize,
}

impl Inflight {
    fn acquire(&self, bytes: usize) {
        let mut s = self.state.lock();
        while s.0 >= self.max || (s.0 > 0 && s.1 + bytes > self.max_bytes) {
            self.cv.wait(&mut s);
        }
        s.0 += 1;
        s.1 += bytes;
    }

    fn release(&self, bytes: usize) {
        let mut s = self.state.lock();
        s.0 -= 1;
        s.1 -= bytes;
        self.cv.notify_all();
    }

    fn wait_idle(&self) {
        let mut s = self.state.lock();
        while s.0 > 0 {
            self.cv.wait(&mut s);
        }
    }
}

/// Releases an in-flight slot even if the job is dropped unrun or panics.
struct Slot {
    inflight: Arc<Inflight>,
    bytes: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.inflight.release(self.bytes);
    }
}

/// Serves requests until the client disconnects, sends `CMD_DISC`, breaks the protocol, or the
/// server stops; then waits until every request it accepted has been answered.
pub(crate) fn transmission(
    ctx: &Ctx,
    r: &mut impl Read,
    sink: Arc<ReplySink>,
    dispatch: &dyn Fn(Job) -> Result<(), ()>,
) -> io::Result<()> {
    let inflight = Arc::new(Inflight {
        state: Mutex::new((0, 0)),
        cv: Condvar::new(),
        max: ctx.cfg.max_inflight.max(1),
        max_bytes: ctx.cfg.max_inflight_bytes.max(1),
    });
    let result = transmission_loop(ctx, r, &sink, &inflight, dispatch);
    inflight.wait_idle();
    result
}

fn transmission_loop(
    ctx: &Ctx,
    r: &mut impl Read,
    sink: &Arc<ReplySink>,
    inflight: &Arc<Inflight>,
    dispatch: &dyn Fn(Job) -> Result<(), ()>,
) -> io::Result<()> {
    let size = ctx.dev.len();
    loop {
        let mut hdr = [0u8; REQUEST_LEN];
        match r.read_exact(&mut hdr) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        if sink.broken.load(Ordering::Relaxed) {
            return Ok(());
        }
        let req = match parse_request(&hdr) {
            Ok(req) => req,
            Err(e) => {
                warn!(?e, "bad request magic; closing");
                return Ok(());
            }
        };
        trace!(?req, "request");
        if req.kind == CMD_DISC {
            debug!("client disconnect");
            return Ok(());
        }
        let payload_len = if req.kind == CMD_WRITE {
            req.len as usize
        } else {
            0
        };
        match check_request(&req, size, ctx.cfg.read_only) {
            Verdict::Execute => {}
            Verdict::Reject(err) => {
                debug!(?req, err, "request rejected");
                if payload_len > 0 {
                    let n = io::copy(&mut r.take(payload_len as u64), &mut io::sink())?;
                    if n < payload_len as u64 {
                        return Ok(()); // disconnected mid-payload
                    }
                }
                sink.reply(req.handle, err, Vec::new());
                continue;
            }
            Verdict::RejectAndClose(err) => {
                warn!(
                    ?req,
                    err, "request rejected; payload too large to skip, closing"
                );
                sink.reply(req.handle, err, Vec::new());
                return Ok(());
            }
        }
        let payload = if payload_len > 0 {
            let mut buf = vec![0u8; payload_len];
            match r.read_exact(&mut buf) {
                Ok(()) => Some(buf),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    debug!("client disconnected mid-payload");
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        // Requests already received when shutdown begins are still carried out: the server
        // stops reading (the socket's receive side is shut down), answers what it has, and
        // the final flush covers them.
        let cost = payload_len.max(if req.kind == CMD_READ {
            req.len as usize
        } else {
            0
        });
        inflight.acquire(cost);
        let slot = Slot {
            inflight: inflight.clone(),
            bytes: cost,
        };
        let dev = ctx.dev.clone();
        let sink2 = sink.clone();
        let job: Job = Box::new(move || {
            let _slot = slot;
            let (err, data) = execute(&*dev, &req, payload);
            if err != 0 {
                debug!(?req, err, "request failed");
            }
            sink2.reply(req.handle, err, data);
        });
        if dispatch(job).is_err() {
            return Err(io::Error::other("worker pool stopped"));
        }
    }
}

/// Length of a simple reply header.
const REPLY_HEADER_LEN: usize = 16;

/// Carries out a validated request. Returns the NBD error (0 for success) and, for a
/// successful read, the reply buffer (16 header bytes reserved, then the data).
pub(crate) fn execute(
    dev: &dyn BlockDevice,
    req: &Request,
    payload: Option<Vec<u8>>,
) -> (u32, Vec<u8>) {
    let fua = req.flags & CMD_FLAG_FUA != 0;
    let len = req.len as u64;
    let res = match req.kind {
        CMD_READ => {
            let mut buf = vec![0u8; REPLY_HEADER_LEN + req.len as usize];
            return match dev.read_at(&mut buf[REPLY_HEADER_LEN..], req.offset) {
                Ok(()) => (0, buf),
                Err(e) => (errno_of(&e), Vec::new()),
            };
        }
        CMD_WRITE => {
            let data = payload.unwrap_or_default();
            dev.write_at(&data, req.offset)
        }
        CMD_FLUSH => dev.flush(),
        CMD_TRIM if len > 0 => dev.trim(req.offset, len),
        CMD_WRITE_ZEROES if len > 0 => {
            if req.flags & CMD_FLAG_NO_HOLE != 0 {
                write_zero_buffers(dev, req.offset, len)
            } else {
                dev.write_zeroes(req.offset, len)
            }
        }
        CMD_TRIM | CMD_WRITE_ZEROES => Ok(()),
        _ => return (EINVAL, Vec::new()),
    };
    let res = res.and_then(|()| {
        if fua && len > 0 && req.kind != CMD_FLUSH {
            dev.flush_range(req.offset, len)
        } else {
            Ok(())
        }
    });
    match res {
        Ok(()) => (0, Vec::new()),
        Err(e) => (errno_of(&e), Vec::new()),
    }
}

/// `WRITE_ZEROES` with `NO_HOLE`: write real zeros so that the range stays allocated.
fn write_zero_buffers(dev: &dyn BlockDevice, offset: u64, len: u64) -> io::Result<()> {
    let zeros = vec![0u8; len.min(1 << 20) as usize];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(zeros.len() as u64) as usize;
        dev.write_at(&zeros[..n], offset + done)?;
        done += n as u64;
    }
    Ok(())
}

/// Runs a whole session (handshake, then transmission with requests executed inline) over
/// `input`, returning what the server sent. For the fuzz target and the property tests.
pub fn run_session(dev: Arc<dyn BlockDevice>, cfg: ServerConfig, input: &[u8]) -> Vec<u8> {
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let out = Arc::new(Mutex::new(Vec::new()));
    let ctx = Ctx {
        dev,
        cfg: Arc::new(cfg),
        stopping: Arc::new(AtomicBool::new(false)),
    };
    let mut r = input;
    let mut w = Shared(out.clone());
    if let Ok(Handshake::Transmission) = handshake(&ctx, &mut r, &mut w) {
        let sink = Arc::new(ReplySink::new(Box::new(Shared(out.clone())), None));
        let inline = |job: Job| {
            job();
            Ok(())
        };
        let _ = transmission(&ctx, &mut r, sink, &inline);
    }
    let v = out.lock().clone();
    v
}
