//! Where workers leave a connection's finished replies, and how they wake its thread.
//!
//! Owns: the list of finished replies and the eventfd the connection's `poll` watches. Does not
//! own: making or sending replies. Never blocks (a short mutex; the eventfd is non-blocking).

use std::io;
use std::os::fd::OwnedFd;

use parking_lot::Mutex;

use crate::limits::Tokens;

/// A reply a worker made, with what it holds of the budgets.
pub(crate) struct Done {
    pub(crate) bytes: Vec<u8>,
    pub(crate) cost: usize,
    pub(crate) tokens: Option<Tokens>,
}

/// Where workers leave replies for the connection's thread, which they wake through an eventfd.
pub(crate) struct Mailbox {
    done: Mutex<Vec<Done>>,
    pub(crate) event: Option<OwnedFd>,
}

impl Mailbox {
    pub(crate) fn new(with_event: bool) -> io::Result<Mailbox> {
        let event = if with_event {
            Some(rustix::event::eventfd(
                0,
                rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
            )?)
        } else {
            None
        };
        Ok(Mailbox {
            done: Mutex::new(Vec::new()),
            event,
        })
    }

    pub(crate) fn post(&self, d: Done) {
        self.done.lock().push(d);
        if let Some(fd) = &self.event {
            let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
        }
    }

    pub(crate) fn take(&self) -> Vec<Done> {
        std::mem::take(&mut *self.done.lock())
    }

    pub(crate) fn clear_event(&self) {
        if let Some(fd) = &self.event {
            let _ = rustix::io::read(fd, &mut [0u8; 8]);
        }
    }
}
