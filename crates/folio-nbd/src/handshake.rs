//! The fixed-newstyle handshake: greeting, options, TLS upgrade, export choice.
//!
//! Owns: option negotiation (`OPT_GO`, `OPT_INFO`, `OPT_EXPORT_NAME`, `OPT_LIST`,
//! `OPT_ABORT`, `OPT_STARTTLS`, `OPT_STRUCTURED_REPLY`, `OPT_LIST_META_CONTEXT`,
//! `OPT_SET_META_CONTEXT`) and what it settles ([`Agreed`]). Does not own: the deadline (the
//! stream enforces it, `wire.rs`) or the transmission phase. May block: on the client's
//! options, until the whole-handshake deadline.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tracing::{debug, warn};

use crate::config::{Export, ServerConfig, TlsMode};
use crate::proto::*;
use crate::wire::HsStream;

/// What a handshake needs to know.
pub(crate) struct HsCtx<'a> {
    pub(crate) exports: &'a [Export],
    pub(crate) cfg: &'a ServerConfig,
    pub(crate) tls: Option<&'a Arc<rustls::ServerConfig>>,
    pub(crate) stopping: &'a AtomicBool,
}

/// What the handshake settled.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Agreed {
    /// Index of the export in [`HsCtx::exports`].
    pub(crate) export: usize,
    /// Structured replies are on.
    pub(crate) structured: bool,
    /// `base:allocation` is selected.
    pub(crate) block_status: bool,
}

/// How the handshake ended.
pub(crate) enum Outcome {
    /// Enter transmission.
    Go(Agreed),
    /// The client aborted or must be dropped.
    Closed,
}

impl HsCtx<'_> {
    fn find(&self, name: &[u8]) -> Option<usize> {
        if name.is_empty() {
            return (!self.exports.is_empty()).then_some(0);
        }
        self.exports.iter().position(|e| e.name.as_bytes() == name)
    }

    fn tflags(&self, e: &Export) -> u16 {
        let mut f = TFLAG_HAS_FLAGS
            | TFLAG_SEND_FLUSH
            | TFLAG_SEND_FUA
            | TFLAG_SEND_TRIM
            | TFLAG_SEND_WRITE_ZEROES
            | TFLAG_SEND_DF
            | TFLAG_CAN_MULTI_CONN
            | TFLAG_SEND_CACHE
            | TFLAG_SEND_FAST_ZERO;
        if e.read_only {
            f |= TFLAG_READ_ONLY;
        }
        f
    }

    fn preferred_block(e: &Export) -> u32 {
        let b = e.dev.block_size();
        if b.is_power_of_two() && (512..=MAX_PAYLOAD as usize).contains(&b) {
            b as u32
        } else {
            4096
        }
    }
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn reply(w: &mut impl Write, option: u32, kind: u32, data: &[u8]) -> io::Result<()> {
    let mut msg = Vec::with_capacity(20 + data.len());
    msg.extend_from_slice(&encode_option_reply(option, kind, data.len() as u32));
    msg.extend_from_slice(data);
    w.write_all(&msg)?;
    w.flush()
}

fn string_field(s: &[u8]) -> Vec<u8> {
    let mut d = Vec::with_capacity(4 + s.len());
    d.extend_from_slice(&(s.len() as u32).to_be_bytes());
    d.extend_from_slice(s);
    d
}

/// Runs the handshake over `s`.
pub(crate) fn handshake(ctx: &HsCtx<'_>, s: &mut HsStream<'_>) -> io::Result<Outcome> {
    let mut hello = Vec::with_capacity(18);
    hello.extend_from_slice(&NBDMAGIC.to_be_bytes());
    hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    s.write_all(&hello)?;
    s.flush()?;
    let client_flags = read_u32(s)?;
    if client_flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        warn!(client_flags, "unknown client flags; closing");
        return Ok(Outcome::Closed);
    }
    let no_zeroes = client_flags & FLAG_C_NO_ZEROES != 0;
    let mut structured = false;
    // The export name `base:allocation` was selected for, if any.
    let mut meta_for: Option<Vec<u8>> = None;
    for _ in 0..ctx.cfg.options_max {
        let mut hdr = [0u8; OPTION_HEADER_LEN];
        s.read_exact(&mut hdr)?;
        let opt = match parse_option_header(&hdr) {
            Ok(o) => o,
            Err(e) => {
                warn!(?e, "bad option magic; closing");
                return Ok(Outcome::Closed);
            }
        };
        if opt.len > MAX_OPTION_LEN {
            warn!(
                option = opt.option,
                len = opt.len,
                "option too large; closing"
            );
            if opt.option != OPT_EXPORT_NAME {
                let _ = reply(s, opt.option, REP_ERR_TOO_BIG, &[]);
            }
            return Ok(Outcome::Closed);
        }
        let mut data = vec![0u8; opt.len as usize];
        s.read_exact(&mut data)?;
        debug!(option = opt.option, len = opt.len, "option");
        let o = opt.option;
        if o == OPT_ABORT {
            let _ = reply(s, o, REP_ACK, &[]);
            return Ok(Outcome::Closed);
        }
        if ctx.stopping.load(Ordering::SeqCst) {
            if o == OPT_EXPORT_NAME {
                return Ok(Outcome::Closed);
            }
            reply(s, o, REP_ERR_SHUTDOWN, &[])?;
            continue;
        }
        let tls_missing = ctx.cfg.tls == TlsMode::Require && !s.is_tls();
        if tls_missing && o != OPT_STARTTLS {
            if o == OPT_EXPORT_NAME {
                warn!("OPT_EXPORT_NAME before TLS, which is required; closing");
                return Ok(Outcome::Closed);
            }
            reply(s, o, REP_ERR_TLS_REQD, &[])?;
            continue;
        }
        match o {
            OPT_STARTTLS => match ctx.tls {
                None => reply(s, o, REP_ERR_UNSUP, &[])?,
                Some(_) if !data.is_empty() || s.is_tls() => reply(s, o, REP_ERR_INVALID, &[])?,
                Some(cfg) => {
                    reply(s, o, REP_ACK, &[])?;
                    s.start_tls(cfg)?;
                    // Nothing negotiated in plain text survives the upgrade.
                    structured = false;
                    meta_for = None;
                }
            },
            OPT_EXPORT_NAME => {
                let Some(i) = ctx.find(&data) else {
                    warn!(name = %String::from_utf8_lossy(&data), "unknown export; closing");
                    return Ok(Outcome::Closed);
                };
                let e = &ctx.exports[i];
                let mut msg = Vec::with_capacity(10 + 124);
                msg.extend_from_slice(&e.dev.len().to_be_bytes());
                msg.extend_from_slice(&ctx.tflags(e).to_be_bytes());
                if !no_zeroes {
                    msg.extend_from_slice(&[0u8; 124]);
                }
                s.write_all(&msg)?;
                s.flush()?;
                // OPT_EXPORT_NAME cannot carry structured replies (they need OPT_GO's reply).
                return Ok(Outcome::Go(Agreed {
                    export: i,
                    structured,
                    block_status: structured && meta_for.as_deref() == Some(&data[..]),
                }));
            }
            OPT_LIST => {
                if !data.is_empty() {
                    reply(s, o, REP_ERR_INVALID, &[])?;
                    continue;
                }
                for e in ctx.exports {
                    let mut d = string_field(e.name.as_bytes());
                    d.extend_from_slice(e.description.as_bytes());
                    reply(s, o, REP_SERVER, &d)?;
                }
                reply(s, o, REP_ACK, &[])?;
            }
            OPT_STRUCTURED_REPLY => {
                if !data.is_empty() {
                    reply(s, o, REP_ERR_INVALID, &[])?;
                } else {
                    structured = true;
                    reply(s, o, REP_ACK, &[])?;
                }
            }
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                let Some(m) = parse_meta_request(&data) else {
                    reply(s, o, REP_ERR_INVALID, &[])?;
                    continue;
                };
                if o == OPT_SET_META_CONTEXT && !structured {
                    reply(s, o, REP_ERR_INVALID, &[])?;
                    continue;
                }
                if ctx.find(&m.name).is_none() {
                    reply(s, o, REP_ERR_UNKNOWN, &[])?;
                    continue;
                }
                let wanted = |q: &[u8]| {
                    q == META_BASE_ALLOCATION.as_bytes()
                        || (o == OPT_LIST_META_CONTEXT && q == b"base:")
                };
                let matched = if o == OPT_LIST_META_CONTEXT && m.queries.is_empty() {
                    true
                } else {
                    m.queries.iter().any(|q| wanted(q))
                };
                if o == OPT_SET_META_CONTEXT {
                    meta_for = matched.then(|| m.name.clone());
                }
                if matched {
                    let mut d = CONTEXT_BASE_ALLOCATION.to_be_bytes().to_vec();
                    d.extend_from_slice(META_BASE_ALLOCATION.as_bytes());
                    reply(s, o, REP_META_CONTEXT, &d)?;
                }
                reply(s, o, REP_ACK, &[])?;
            }
            OPT_INFO | OPT_GO => {
                let Some(req) = parse_info_request(&data) else {
                    reply(s, o, REP_ERR_INVALID, &[])?;
                    continue;
                };
                let Some(i) = ctx.find(&req.name) else {
                    reply(s, o, REP_ERR_UNKNOWN, &[])?;
                    continue;
                };
                let e = &ctx.exports[i];
                let mut export = Vec::with_capacity(12);
                export.extend_from_slice(&INFO_EXPORT.to_be_bytes());
                export.extend_from_slice(&e.dev.len().to_be_bytes());
                export.extend_from_slice(&ctx.tflags(e).to_be_bytes());
                reply(s, o, REP_INFO, &export)?;
                let mut bs = Vec::with_capacity(14);
                bs.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
                bs.extend_from_slice(&MIN_BLOCK.to_be_bytes());
                bs.extend_from_slice(&HsCtx::preferred_block(e).to_be_bytes());
                bs.extend_from_slice(&MAX_PAYLOAD.to_be_bytes());
                reply(s, o, REP_INFO, &bs)?;
                if req.requests.contains(&INFO_NAME) {
                    let mut d = INFO_NAME.to_be_bytes().to_vec();
                    d.extend_from_slice(e.name.as_bytes());
                    reply(s, o, REP_INFO, &d)?;
                }
                if req.requests.contains(&INFO_DESCRIPTION) && !e.description.is_empty() {
                    let mut d = INFO_DESCRIPTION.to_be_bytes().to_vec();
                    d.extend_from_slice(e.description.as_bytes());
                    reply(s, o, REP_INFO, &d)?;
                }
                reply(s, o, REP_ACK, &[])?;
                if o == OPT_GO {
                    let selected = meta_for.as_deref().is_some_and(|n| ctx.find(n) == Some(i));
                    return Ok(Outcome::Go(Agreed {
                        export: i,
                        structured,
                        block_status: structured && selected,
                    }));
                }
            }
            other => {
                debug!(option = other, "unsupported option");
                reply(s, other, REP_ERR_UNSUP, &[])?;
            }
        }
    }
    warn!("too many options; closing");
    Ok(Outcome::Closed)
}
