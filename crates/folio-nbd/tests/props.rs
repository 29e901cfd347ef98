//! Property tests over the request and option parsers and whole sessions fed arbitrary bytes.

use std::sync::Arc;

use folio_nbd::proto::*;
use folio_nbd::{run_session, BlockDevice, MemDevice, ServerConfig};
use proptest::prelude::*;

fn arb_request() -> impl Strategy<Value = Request> {
    (
        any::<u16>(),
        prop_oneof![0u16..8, any::<u16>()],
        any::<u64>(),
        prop_oneof![0u64..(1 << 21), any::<u64>()],
        prop_oneof![0u32..(1 << 16), any::<u32>()],
    )
        .prop_map(|(flags, kind, handle, offset, len)| Request {
            flags,
            kind,
            handle,
            offset,
            len,
        })
}

/// A client hello plus `OPT_GO` for the default export.
fn go_prefix() -> Vec<u8> {
    let mut v = (FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)
        .to_be_bytes()
        .to_vec();
    v.extend_from_slice(&IHAVEOPT.to_be_bytes());
    v.extend_from_slice(&OPT_GO.to_be_bytes());
    v.extend_from_slice(&6u32.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    v
}

fn cfg(read_only: bool) -> ServerConfig {
    ServerConfig {
        read_only,
        options_max: 16,
        ..ServerConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn request_round_trips(r in arb_request()) {
        prop_assert_eq!(parse_request(&encode_request(&r)), Ok(r));
    }

    #[test]
    fn request_parser_accepts_exactly_the_magic(b in proptest::array::uniform28(any::<u8>())) {
        let magic = u32::from_be_bytes(b[0..4].try_into().unwrap());
        prop_assert_eq!(parse_request(&b).is_ok(), magic == REQUEST_MAGIC);
    }

    #[test]
    fn option_header_parser(b in proptest::array::uniform16(any::<u8>()), opt: u32, len: u32) {
        let magic = u64::from_be_bytes(b[0..8].try_into().unwrap());
        prop_assert_eq!(parse_option_header(&b).is_ok(), magic == IHAVEOPT);
        let mut good = [0u8; 16];
        good[0..8].copy_from_slice(&IHAVEOPT.to_be_bytes());
        good[8..12].copy_from_slice(&opt.to_be_bytes());
        good[12..16].copy_from_slice(&len.to_be_bytes());
        prop_assert_eq!(parse_option_header(&good), Ok(OptionHeader { option: opt, len }));
    }

    #[test]
    fn info_request_round_trips(name in proptest::collection::vec(any::<u8>(), 0..300),
                                reqs in proptest::collection::vec(any::<u16>(), 0..20)) {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(&name);
        d.extend_from_slice(&(reqs.len() as u16).to_be_bytes());
        for r in &reqs {
            d.extend_from_slice(&r.to_be_bytes());
        }
        prop_assert_eq!(parse_info_request(&d), Some(InfoRequest { name: name.clone(), requests: reqs }));
        // Any truncation or extension is rejected, never a panic.
        prop_assert_eq!(parse_info_request(&d[..d.len() - 1]), None);
        d.push(0);
        prop_assert_eq!(parse_info_request(&d), None);
    }

    #[test]
    fn info_parser_never_panics(d in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse_info_request(&d);
    }

    #[test]
    fn executed_requests_are_in_range(r in arb_request(), size in 0u64..(1 << 22), ro: bool,
                                      structured: bool, bs: bool) {
        let n = Negotiated { size, read_only: ro, structured, block_status: structured && bs };
        let v = check_request(&r, &n);
        if v == Verdict::Execute && r.kind != CMD_FLUSH && r.kind != CMD_DISC {
            prop_assert!(r.offset.checked_add(r.len as u64).is_some_and(|e| e <= size));
            prop_assert!(r.len <= MAX_PAYLOAD || r.kind != CMD_READ && r.kind != CMD_WRITE);
            prop_assert!(!ro || [CMD_READ, CMD_CACHE, CMD_BLOCK_STATUS].contains(&r.kind));
            prop_assert!([CMD_READ, CMD_WRITE, CMD_TRIM, CMD_WRITE_ZEROES, CMD_CACHE,
                          CMD_BLOCK_STATUS].contains(&r.kind));
            prop_assert!(r.kind != CMD_BLOCK_STATUS || n.block_status);
        }
        // FUA is accepted on every command the server knows.
        if v == Verdict::Execute {
            let fua = Request { flags: r.flags | CMD_FLAG_FUA, ..r };
            prop_assert_eq!(check_request(&fua, &n), Verdict::Execute);
        }
        if let Verdict::RejectAndClose(_) = v {
            prop_assert!(r.kind == CMD_WRITE && r.len > MAX_PAYLOAD);
        }
        // Overflowing or past-the-end ranges: EINVAL, or ENOSPC for writes; never EOVERFLOW.
        if let Verdict::Reject(e) | Verdict::RejectAndClose(e) = v {
            prop_assert!(e != EOVERFLOW);
        }
    }

    #[test]
    fn arbitrary_handshake_bytes_never_panic(d in proptest::collection::vec(any::<u8>(), 0..200)) {
        let dev = Arc::new(MemDevice::new(8192));
        let out = run_session(dev, cfg(false), &d);
        prop_assert_eq!(&out[0..8], &NBDMAGIC.to_be_bytes());
    }

    #[test]
    fn arbitrary_requests_never_panic_and_stay_in_bounds(
        reqs in proptest::collection::vec((arb_request(), proptest::collection::vec(any::<u8>(), 0..64)), 0..16),
        ro: bool,
    ) {
        let dev = Arc::new(MemDevice::new(8192));
        let mut input = go_prefix();
        for (mut r, junk) in reqs {
            // Keep most requests near the device and payloads small enough to generate.
            if r.kind == CMD_WRITE {
                r.len %= 128;
            }
            input.extend_from_slice(&encode_request(&r));
            if r.kind == CMD_WRITE {
                input.extend(std::iter::repeat_n(0xa5, r.len as usize));
            } else if r.kind > 8 {
                input.extend_from_slice(&junk);
            }
        }
        let before = dev.image();
        let _ = run_session(dev.clone(), cfg(ro), &input);
        prop_assert_eq!(dev.len(), 8192);
        if ro {
            prop_assert_eq!(dev.image(), before);
        }
    }
}
