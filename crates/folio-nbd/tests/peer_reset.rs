//! A client that resets its connection while the connection is paused (at its bound of
//! requests in flight, with a request still on a worker) must not make the connection's thread
//! spin: a reset socket makes every `poll` on it return at once. The connection waits for its
//! worker quietly and then ends. About 1.5 s.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use folio_nbd::proto::*;
use folio_nbd::{MemDevice, ServerConfig};

mod common;
use common::*;

#[test]
fn a_reset_while_paused_with_a_request_on_a_worker_does_not_spin() {
    let mem = Arc::new(MemDevice::new(SIZE));
    let gate = Gate::new();
    let srv = TestServer::with_device(
        mem.clone(),
        Arc::new(gate.device(mem)),
        ServerConfig {
            export_name: "test".into(),
            handshake_deadline: Duration::from_secs(5),
            // One request in flight: the second one pauses the connection.
            inflight_max: 1,
            ..ServerConfig::default()
        },
    );
    let (mut c, _, _) = Client::go(srv.addr, "test");
    // A miss (MemDevice lends nothing), held on a worker by the gate; then a request the
    // connection may not start yet: it stops reading.
    c.request(CMD_READ, 0, 1, 0, 4096);
    gate.wait_arrived(1);
    c.request(CMD_READ, 0, 2, 4096, 4096);
    std::thread::sleep(Duration::from_millis(100));
    // The client goes away with a reset (SO_LINGER 0), which the paused connection sees only
    // as POLLHUP | POLLERR on a socket it does not want to read or write.
    rustix::net::sockopt::set_socket_linger(c.s.as_fd(), Some(Duration::ZERO)).unwrap();
    drop(c);
    let name = "nbd-conn-0";
    let before = thread_cpu(name).expect("the connection's thread is alive");
    std::thread::sleep(Duration::from_secs(1));
    let used = thread_cpu(name).expect("the connection waits for its worker") - before;
    gate.open();
    // A spinning thread burns most of a core for the whole second (hundreds of ms even on a
    // loaded machine); a waiting one wakes a few times (0 ticks of 10 ms, maybe 1).
    assert!(
        used <= Duration::from_millis(100),
        "the connection's thread used {used:?} of CPU in 1 s while waiting for its worker"
    );
    // Once the worker is done, the connection ends.
    let deadline = Instant::now() + Duration::from_secs(5);
    while thread_cpu(name).is_some() {
        assert!(Instant::now() < deadline, "the connection never ended");
        std::thread::sleep(Duration::from_millis(10));
    }
    srv.stop().unwrap();
}

/// A reset met while reading (not paused) with a request on a worker: the connection waits
/// for the job before its place is given back (it returned at once, its slot free while the
/// job ran on). About 0.5 s.
#[test]
fn a_reset_while_reading_waits_for_the_jobs_before_giving_the_place_back() {
    let mem = Arc::new(MemDevice::new(SIZE));
    let gate = Gate::new();
    let srv = TestServer::with_device(
        mem.clone(),
        Arc::new(gate.device(mem)),
        ServerConfig {
            export_name: "test".into(),
            handshake_deadline: Duration::from_secs(5),
            connections_max: 1,
            ..ServerConfig::default()
        },
    );
    let (mut c, _, _) = Client::go(srv.addr, "test");
    // A miss held on a worker; the connection is not paused: it keeps reading its socket.
    c.request(CMD_READ, 0, 1, 0, 4096);
    gate.wait_arrived(1);
    rustix::net::sockopt::set_socket_linger(c.s.as_fd(), Some(Duration::ZERO)).unwrap();
    drop(c);
    std::thread::sleep(Duration::from_millis(500));
    let alive = thread_cpu("nbd-conn-0").is_some();
    gate.open();
    assert!(
        alive,
        "the connection's thread ended (its slot given back) while its request was still on a worker"
    );
    srv.stop().unwrap();
}
