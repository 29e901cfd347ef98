//! A whole session over memory: the handshake, then transmission with every request carried
//! out inline. For the fuzz target and the property tests, which drive the same code as a
//! socket does from byte buffers.
//!
//! Owns: nothing but the wiring of memory into the handshake and the connection loop. Never
//! blocks (beyond the device's own work).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::config::{Export, ServerConfig};
use crate::conn::{serve, ConnCtx};
use crate::device::BlockDevice;
use crate::handshake::{handshake, HsCtx, Outcome};
use crate::limits::Limits;
use crate::mailbox::Mailbox;
use crate::wire::{HsStream, MemOut};

/// Runs a whole session (handshake, then transmission with requests executed inline) over
/// `input`, returning what the server sent.
pub fn run_session(dev: Arc<dyn BlockDevice>, cfg: ServerConfig, input: &[u8]) -> Vec<u8> {
    let exports = [Export {
        name: cfg.export_name.clone(),
        description: String::new(),
        dev,
        read_only: cfg.read_only,
    }];
    let stopping = AtomicBool::new(false);
    let out = MemOut::default();
    let mut s = HsStream::Mem(input, out.clone());
    let hs = HsCtx {
        exports: &exports,
        cfg: &cfg,
        tls: None,
        stopping: &stopping,
    };
    if let Ok(Outcome::Go(agreed)) = handshake(&hs, &mut s) {
        let limits = Arc::new(Limits::new(&cfg));
        let ctx = ConnCtx {
            export: &exports[agreed.export],
            agreed,
            cfg: &cfg,
            limits: &limits,
            pool: None,
            stopping: &stopping,
            forced: &stopping,
        };
        if let (Ok(mut wire), Ok(mailbox)) = (s.into_wire(), Mailbox::new(false)) {
            let _ = serve(&ctx, &mut wire, &Arc::new(mailbox));
        }
    }
    let v = out.0.lock().clone();
    v
}
