//! Feeds arbitrary bytes to a whole NBD session (handshake, then transmission with requests
//! executed inline) over an in-memory device. Half the inputs get a valid `OPT_GO` prefix so
//! that the fuzzer reaches the transmission phase quickly.
#![no_main]

use std::sync::Arc;

use folio_nbd::proto::*;
use folio_nbd::{run_session, BlockDevice, MemDevice, ServerConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut input = Vec::new();
    if mode & 1 == 1 {
        input.extend_from_slice(&(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).to_be_bytes());
        input.extend_from_slice(&IHAVEOPT.to_be_bytes());
        input.extend_from_slice(&OPT_GO.to_be_bytes());
        input.extend_from_slice(&6u32.to_be_bytes());
        input.extend_from_slice(&[0; 6]);
    }
    input.extend_from_slice(rest);
    let dev = Arc::new(MemDevice::new(64 << 10));
    let cfg = ServerConfig {
        read_only: mode & 2 == 2,
        options_max: 64,
        ..ServerConfig::default()
    };
    let before = dev.image();
    let out = run_session(dev.clone(), cfg.clone(), &input);
    assert_eq!(&out[..8], &NBDMAGIC.to_be_bytes());
    assert_eq!(dev.len(), 64 << 10);
    if cfg.read_only {
        assert_eq!(dev.image(), before);
    }
});
