//! NBD wire format: constants and pure parsers.
//!
//! Owns: the numbers of the protocol (doc/proto.md of the NetworkBlockDevice project), the
//! parsers of client messages and the encoders of server messages, and the check of a request
//! against what was negotiated. Does not own: sockets, devices or any state. Never blocks:
//! everything here is side-effect free so that it can be property-tested and fuzzed without a
//! socket. Numbers are big-endian on the wire. Spoken: the fixed-newstyle handshake, simple and
//! structured replies, meta contexts (`base:allocation`); not extended headers.

/// `NBDMAGIC`, first thing the server sends.
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: the newstyle magic and the prefix of every client option.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Magic of every option reply.
pub const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Magic of every transmission request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Magic of a simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// Magic of a structured reply chunk.
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

/// Handshake flag: fixed newstyle.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1;
/// Handshake flag: the server can omit the 124 zero bytes after `OPT_EXPORT_NAME`.
pub const FLAG_NO_ZEROES: u16 = 2;
/// Client flag: fixed newstyle.
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1;
/// Client flag: omit the 124 zero bytes.
pub const FLAG_C_NO_ZEROES: u32 = 2;

/// Options.
pub const OPT_EXPORT_NAME: u32 = 1;
/// Option: soft disconnect.
pub const OPT_ABORT: u32 = 2;
/// Option: list exports.
pub const OPT_LIST: u32 = 3;
/// Option: upgrade the connection to TLS.
pub const OPT_STARTTLS: u32 = 5;
/// Option: describe an export.
pub const OPT_INFO: u32 = 6;
/// Option: describe an export and enter transmission.
pub const OPT_GO: u32 = 7;
/// Option: use structured replies.
pub const OPT_STRUCTURED_REPLY: u32 = 8;
/// Option: list the meta contexts matching queries.
pub const OPT_LIST_META_CONTEXT: u32 = 9;
/// Option: select meta contexts for `CMD_BLOCK_STATUS`.
pub const OPT_SET_META_CONTEXT: u32 = 10;

/// Option reply: done.
pub const REP_ACK: u32 = 1;
/// Option reply: one export of a list.
pub const REP_SERVER: u32 = 2;
/// Option reply: one piece of information about an export.
pub const REP_INFO: u32 = 3;
/// Option reply: one meta context (id and name).
pub const REP_META_CONTEXT: u32 = 4;
/// Option reply error: option not supported.
pub const REP_ERR_UNSUP: u32 = 0x8000_0001;
/// Option reply error: refused by the server's policy.
pub const REP_ERR_POLICY: u32 = 0x8000_0002;
/// Option reply error: malformed option.
pub const REP_ERR_INVALID: u32 = 0x8000_0003;
/// Option reply error: TLS is required first.
pub const REP_ERR_TLS_REQD: u32 = 0x8000_0005;
/// Option reply error: no such export.
pub const REP_ERR_UNKNOWN: u32 = 0x8000_0006;
/// Option reply error: the server is shutting down.
pub const REP_ERR_SHUTDOWN: u32 = 0x8000_0007;
/// Option reply error: option data too large.
pub const REP_ERR_TOO_BIG: u32 = 0x8000_0009;

/// Info type: size and transmission flags.
pub const INFO_EXPORT: u16 = 0;
/// Info type: the export's name.
pub const INFO_NAME: u16 = 1;
/// Info type: the export's description.
pub const INFO_DESCRIPTION: u16 = 2;
/// Info type: block size constraints.
pub const INFO_BLOCK_SIZE: u16 = 3;

/// Transmission flag: flags field is valid.
pub const TFLAG_HAS_FLAGS: u16 = 1;
/// Transmission flag: read-only export.
pub const TFLAG_READ_ONLY: u16 = 1 << 1;
/// Transmission flag: `CMD_FLUSH` supported.
pub const TFLAG_SEND_FLUSH: u16 = 1 << 2;
/// Transmission flag: `CMD_FLAG_FUA` supported.
pub const TFLAG_SEND_FUA: u16 = 1 << 3;
/// Transmission flag: `CMD_TRIM` supported.
pub const TFLAG_SEND_TRIM: u16 = 1 << 5;
/// Transmission flag: `CMD_WRITE_ZEROES` supported.
pub const TFLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
/// Transmission flag: `CMD_FLAG_DF` supported (reads are never fragmented anyway).
pub const TFLAG_SEND_DF: u16 = 1 << 7;
/// Transmission flag: a flush on any connection covers writes acknowledged on all of them.
pub const TFLAG_CAN_MULTI_CONN: u16 = 1 << 8;
/// Transmission flag: `CMD_CACHE` supported.
pub const TFLAG_SEND_CACHE: u16 = 1 << 10;
/// Transmission flag: `CMD_FLAG_FAST_ZERO` supported.
pub const TFLAG_SEND_FAST_ZERO: u16 = 1 << 11;

/// Command: read.
pub const CMD_READ: u16 = 0;
/// Command: write (payload follows the header).
pub const CMD_WRITE: u16 = 1;
/// Command: disconnect.
pub const CMD_DISC: u16 = 2;
/// Command: flush.
pub const CMD_FLUSH: u16 = 3;
/// Command: trim (discard).
pub const CMD_TRIM: u16 = 4;
/// Command: prefetch into the server's cache.
pub const CMD_CACHE: u16 = 5;
/// Command: write zeroes.
pub const CMD_WRITE_ZEROES: u16 = 6;
/// Command: report the status of a range in the negotiated meta contexts.
pub const CMD_BLOCK_STATUS: u16 = 7;

/// Command flag: force unit access.
pub const CMD_FLAG_FUA: u16 = 1;
/// Command flag: write zeroes without punching a hole.
pub const CMD_FLAG_NO_HOLE: u16 = 2;
/// Command flag: reply to a read in one chunk (do not fragment).
pub const CMD_FLAG_DF: u16 = 1 << 2;
/// Command flag: `CMD_BLOCK_STATUS` wants one extent only.
pub const CMD_FLAG_REQ_ONE: u16 = 1 << 3;
/// Command flag: fail `WRITE_ZEROES` with `ENOTSUP` rather than zero slowly.
pub const CMD_FLAG_FAST_ZERO: u16 = 1 << 4;

/// Structured reply flag: the last chunk of the reply.
pub const REPLY_FLAG_DONE: u16 = 1;
/// Structured reply chunk: nothing (a reply with no data).
pub const REPLY_TYPE_NONE: u16 = 0;
/// Structured reply chunk: data at an offset.
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
/// Structured reply chunk: block status descriptors of one meta context.
pub const REPLY_TYPE_BLOCK_STATUS: u16 = 5;
/// Structured reply chunk: an error.
pub const REPLY_TYPE_ERROR: u16 = (1 << 15) | 1;

/// The meta context of allocation status.
pub const META_BASE_ALLOCATION: &str = "base:allocation";
/// `base:allocation` status bit: the extent is a hole.
pub const STATE_HOLE: u32 = 1;
/// `base:allocation` status bit: the extent reads as zeros.
pub const STATE_ZERO: u32 = 2;
/// The id this server gives `base:allocation`.
pub const CONTEXT_BASE_ALLOCATION: u32 = 1;

/// Error: operation not permitted (write to a read-only export).
pub const EPERM: u32 = 1;
/// Error: I/O error.
pub const EIO: u32 = 5;
/// Error: invalid argument.
pub const EINVAL: u32 = 22;
/// Error: no space (write past the end).
pub const ENOSPC: u32 = 28;
/// Error: value too large (a structured read the client forbade to fragment; unused).
pub const EOVERFLOW: u32 = 75;
/// Error: not supported (a `FAST_ZERO` that would be slow).
pub const ENOTSUP: u32 = 95;
/// Error: server shutting down.
pub const ESHUTDOWN: u32 = 108;

/// Smallest block size advertised: any offset and length work (as qemu-nbd advertises), so an
/// image whose size is not a multiple of 512 has no unaddressable tail.
pub const MIN_BLOCK: u32 = 1;
/// Largest request payload accepted (and advertised maximum block size).
pub const MAX_PAYLOAD: u32 = 32 << 20;
/// Largest option payload accepted during the handshake.
pub const MAX_OPTION_LEN: u32 = 64 << 10;
/// Longest export name accepted (the protocol's string limit).
pub const MAX_NAME_LEN: usize = 4096;

/// Length of a request header.
pub const REQUEST_LEN: usize = 28;
/// Length of a simple reply header.
pub const SIMPLE_REPLY_LEN: usize = 16;
/// Length of a structured reply chunk header.
pub const CHUNK_HEADER_LEN: usize = 20;
/// Length of an option header (magic, option, length).
pub const OPTION_HEADER_LEN: usize = 16;

/// Why a request header could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Wrong magic: the stream is out of sync and the connection must close.
    BadMagic(u64),
}

/// A parsed option header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionHeader {
    /// The option number.
    pub option: u32,
    /// Length of the option data that follows.
    pub len: u32,
}

/// Parses an option header.
pub fn parse_option_header(b: &[u8; OPTION_HEADER_LEN]) -> Result<OptionHeader, HeaderError> {
    let magic = u64::from_be_bytes(b[0..8].try_into().expect("8 bytes"));
    if magic != IHAVEOPT {
        return Err(HeaderError::BadMagic(magic));
    }
    Ok(OptionHeader {
        option: u32::from_be_bytes(b[8..12].try_into().expect("4 bytes")),
        len: u32::from_be_bytes(b[12..16].try_into().expect("4 bytes")),
    })
}

/// The body of `OPT_INFO` / `OPT_GO`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InfoRequest {
    /// Export name (may be empty: the default export).
    pub name: Vec<u8>,
    /// Information types the client asked for.
    pub requests: Vec<u16>,
}

/// Parses the data of `OPT_INFO` / `OPT_GO`: u32 name length, name, u16 count, count × u16.
/// Returns `None` if the lengths are inconsistent (the caller replies `REP_ERR_INVALID`).
pub fn parse_info_request(data: &[u8]) -> Option<InfoRequest> {
    let name_len = u32::from_be_bytes(data.get(0..4)?.try_into().ok()?) as usize;
    if name_len > MAX_NAME_LEN {
        return None;
    }
    let name_end = 4usize.checked_add(name_len)?;
    let name = data.get(4..name_end)?.to_vec();
    let count = u16::from_be_bytes(data.get(name_end..name_end + 2)?.try_into().ok()?) as usize;
    let rest = &data[name_end + 2..];
    if rest.len() != count * 2 {
        return None;
    }
    let requests = rest
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    Some(InfoRequest { name, requests })
}

/// A parsed transmission request header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Command flags.
    pub flags: u16,
    /// Command type.
    pub kind: u16,
    /// Opaque handle (cookie) echoed in the reply.
    pub handle: u64,
    /// Byte offset.
    pub offset: u64,
    /// Byte length.
    pub len: u32,
}

/// Parses a request header.
pub fn parse_request(b: &[u8; REQUEST_LEN]) -> Result<Request, HeaderError> {
    let magic = u32::from_be_bytes(b[0..4].try_into().expect("4 bytes"));
    if magic != REQUEST_MAGIC {
        return Err(HeaderError::BadMagic(magic as u64));
    }
    Ok(Request {
        flags: u16::from_be_bytes([b[4], b[5]]),
        kind: u16::from_be_bytes([b[6], b[7]]),
        handle: u64::from_be_bytes(b[8..16].try_into().expect("8 bytes")),
        offset: u64::from_be_bytes(b[16..24].try_into().expect("8 bytes")),
        len: u32::from_be_bytes(b[24..28].try_into().expect("4 bytes")),
    })
}

/// Encodes a request header (used by tests and clients).
pub fn encode_request(r: &Request) -> [u8; REQUEST_LEN] {
    let mut b = [0u8; REQUEST_LEN];
    b[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
    b[4..6].copy_from_slice(&r.flags.to_be_bytes());
    b[6..8].copy_from_slice(&r.kind.to_be_bytes());
    b[8..16].copy_from_slice(&r.handle.to_be_bytes());
    b[16..24].copy_from_slice(&r.offset.to_be_bytes());
    b[24..28].copy_from_slice(&r.len.to_be_bytes());
    b
}

/// Encodes a simple reply header.
pub fn encode_simple_reply(error: u32, handle: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&error.to_be_bytes());
    b[8..16].copy_from_slice(&handle.to_be_bytes());
    b
}

/// Encodes an option reply header.
pub fn encode_option_reply(option: u32, reply: u32, len: u32) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[0..8].copy_from_slice(&REPLY_MAGIC.to_be_bytes());
    b[8..12].copy_from_slice(&option.to_be_bytes());
    b[12..16].copy_from_slice(&reply.to_be_bytes());
    b[16..20].copy_from_slice(&len.to_be_bytes());
    b
}

/// Encodes a structured reply chunk header; `len` is the length of the chunk's payload.
pub fn encode_chunk_header(flags: u16, kind: u16, handle: u64, len: u32) -> [u8; CHUNK_HEADER_LEN] {
    let mut b = [0u8; CHUNK_HEADER_LEN];
    b[0..4].copy_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    b[4..6].copy_from_slice(&flags.to_be_bytes());
    b[6..8].copy_from_slice(&kind.to_be_bytes());
    b[8..16].copy_from_slice(&handle.to_be_bytes());
    b[16..20].copy_from_slice(&len.to_be_bytes());
    b
}

/// The header of a successful read reply carrying `len` data bytes from `offset`: a simple
/// reply (16 bytes) or, with structured replies, one `OFFSET_DATA` chunk flagged done (28
/// bytes). The data follows it on the wire. Returns the buffer and how much of it is used.
pub fn encode_read_header(
    structured: bool,
    handle: u64,
    offset: u64,
    len: u32,
) -> ([u8; 28], usize) {
    let mut b = [0u8; 28];
    if structured {
        let h = encode_chunk_header(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, handle, 8 + len);
        b[..CHUNK_HEADER_LEN].copy_from_slice(&h);
        b[CHUNK_HEADER_LEN..].copy_from_slice(&offset.to_be_bytes());
        (b, 28)
    } else {
        b[..SIMPLE_REPLY_LEN].copy_from_slice(&encode_simple_reply(0, handle));
        (b, SIMPLE_REPLY_LEN)
    }
}

/// A whole reply without data: success or an error, simple or structured (`NONE` or `ERROR`
/// chunk, flagged done).
pub fn encode_status_reply(structured: bool, handle: u64, error: u32) -> Vec<u8> {
    if !structured {
        return encode_simple_reply(error, handle).to_vec();
    }
    if error == 0 {
        return encode_chunk_header(REPLY_FLAG_DONE, REPLY_TYPE_NONE, handle, 0).to_vec();
    }
    let mut v = encode_chunk_header(REPLY_FLAG_DONE, REPLY_TYPE_ERROR, handle, 6).to_vec();
    v.extend_from_slice(&error.to_be_bytes());
    v.extend_from_slice(&0u16.to_be_bytes()); // no message
    v
}

/// A `BLOCK_STATUS` chunk (flagged done) for one context: `(length, flags)` descriptors.
pub fn encode_block_status(handle: u64, context: u32, extents: &[(u32, u32)]) -> Vec<u8> {
    let len = 4 + 8 * extents.len() as u32;
    let mut v = encode_chunk_header(REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS, handle, len).to_vec();
    v.extend_from_slice(&context.to_be_bytes());
    for &(l, f) in extents {
        v.extend_from_slice(&l.to_be_bytes());
        v.extend_from_slice(&f.to_be_bytes());
    }
    v
}

/// The body of `OPT_LIST_META_CONTEXT` / `OPT_SET_META_CONTEXT`: export name and queries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaRequest {
    /// Export name.
    pub name: Vec<u8>,
    /// Query strings (e.g. `base:allocation`, or `base:` for every context of that namespace).
    pub queries: Vec<Vec<u8>>,
}

/// Parses the data of a meta-context option: u32 name length, name, u32 count, then count
/// (u32 length, string). `None` if inconsistent or over the protocol's string limit.
pub fn parse_meta_request(data: &[u8]) -> Option<MetaRequest> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = data.get(at..at.checked_add(n)?)?;
        at += n;
        Some(s)
    };
    let name_len = u32::from_be_bytes(take(4)?.try_into().ok()?) as usize;
    if name_len > MAX_NAME_LEN {
        return None;
    }
    let name = take(name_len)?.to_vec();
    let count = u32::from_be_bytes(take(4)?.try_into().ok()?) as usize;
    // Each query takes at least 4 bytes: a count the data cannot hold is malformed.
    if count > data.len() / 4 {
        return None;
    }
    let mut queries = Vec::with_capacity(count);
    for _ in 0..count {
        let len = u32::from_be_bytes(take(4)?.try_into().ok()?) as usize;
        if len > MAX_NAME_LEN {
            return None;
        }
        queries.push(take(len)?.to_vec());
    }
    (at == data.len()).then_some(MetaRequest { name, queries })
}

/// What the server should do with a request, decided from the header alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Carry it out.
    Execute,
    /// Reply with this error (after draining the payload of a write, if any).
    Reject(u32),
    /// Reply with this error and close the connection (payload too large to drain).
    RejectAndClose(u32),
}

/// What a request is checked against: the export and what the handshake negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// Export size in bytes.
    pub size: u64,
    /// The export refuses writes.
    pub read_only: bool,
    /// Structured replies are on.
    pub structured: bool,
    /// `base:allocation` was selected (`CMD_BLOCK_STATUS` allowed).
    pub block_status: bool,
}

/// Validates a request against the export: flags, range, size, read-only.
///
/// Errors follow the protocol: a range past the end (or whose end overflows) is `EINVAL`, or
/// `ENOSPC` for `WRITE` and `WRITE_ZEROES`; `FUA` is accepted on every command, as a server
/// that advertises it must. `CMD_DISC` is not validated here (it has no reply).
pub fn check_request(r: &Request, n: &Negotiated) -> Verdict {
    let allowed_flags = CMD_FLAG_FUA
        | match r.kind {
            CMD_READ => CMD_FLAG_DF,
            CMD_WRITE | CMD_TRIM | CMD_FLUSH | CMD_DISC | CMD_CACHE => 0,
            CMD_WRITE_ZEROES => CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO,
            CMD_BLOCK_STATUS if n.block_status => CMD_FLAG_REQ_ONE,
            _ => return Verdict::Reject(EINVAL),
        };
    let payload = r.kind == CMD_WRITE;
    let reject = |e| {
        if payload && r.len > MAX_PAYLOAD {
            Verdict::RejectAndClose(e)
        } else {
            Verdict::Reject(e)
        }
    };
    if r.flags & !allowed_flags != 0 {
        return reject(EINVAL);
    }
    if r.kind == CMD_FLUSH || r.kind == CMD_DISC {
        return Verdict::Execute;
    }
    if (r.kind == CMD_READ || r.kind == CMD_WRITE) && r.len > MAX_PAYLOAD {
        return reject(EINVAL);
    }
    let writes = matches!(r.kind, CMD_WRITE | CMD_TRIM | CMD_WRITE_ZEROES);
    if writes && n.read_only {
        return reject(EPERM);
    }
    let space = if r.kind == CMD_WRITE || r.kind == CMD_WRITE_ZEROES {
        ENOSPC
    } else {
        EINVAL
    };
    match r.offset.checked_add(r.len as u64) {
        Some(end) if end <= n.size => {}
        _ => return reject(space),
    }
    if r.kind == CMD_BLOCK_STATUS && r.len == 0 {
        return reject(EINVAL);
    }
    Verdict::Execute
}

/// Maps an I/O error from a [`crate::BlockDevice`] to an NBD error value. Running out of
/// memory is `EIO` (the protocol says a server should not send `ENOMEM`).
pub fn errno_of(e: &std::io::Error) -> u32 {
    use std::io::ErrorKind;
    if let Some(code) = e.raw_os_error() {
        return match code {
            1 | 13 | 30 => EPERM, // EPERM, EACCES, EROFS
            22 => EINVAL,
            27 | 28 | 122 => ENOSPC, // EFBIG, ENOSPC, EDQUOT
            95 => ENOTSUP,
            _ => EIO,
        };
    }
    match e.kind() {
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => EPERM,
        ErrorKind::InvalidInput => EINVAL,
        ErrorKind::StorageFull | ErrorKind::FileTooLarge => ENOSPC,
        ErrorKind::Unsupported => ENOTSUP,
        _ => EIO,
    }
}
