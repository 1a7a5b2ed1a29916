//! Pipelined terminal load for the crash tests: each terminal sends windows of purchases and
//! authorizations, remembers every request sent and every reply received, and stops at the
//! first broken connection; after a restart, everything is resent with its original id.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use authd_tests::Authd;
use wire::client::{Client, Incoming};
use wire::types::Role;
use wire::{Reply, Request};

use super::{authorize, purchase, Random};

/// One terminal's traffic: what it sent and which replies came back before the stop.
pub struct Traffic {
    /// The terminal and its secret.
    pub terminal: u32,
    pub secret: [u8; 32],
    /// Which of the test's merchants it belongs to.
    pub merchant: usize,
    /// Every request sent (or being sent when the connection broke), by request id.
    pub sent: BTreeMap<u64, Request>,
    /// Every reply received, by request id.
    pub received: BTreeMap<u64, Reply>,
}

/// Requests a terminal sends before collecting their replies.
pub const WINDOW: usize = 32;
/// Requests a terminal sends at most (the stop comes long before).
pub const REQUESTS_PER_TERMINAL_MAX: usize = 20_000;

/// Pipeline purchases and authorizations in windows until the connection breaks.
pub fn pipeline(
    addr: SocketAddr,
    mut traffic: Traffic,
    payers: &[u64],
    seed: u64,
    received: &AtomicU64,
) -> Traffic {
    let mut random = Random::from_seed(seed);
    let mut client = Client::connect(addr, Role::Terminal, traffic.terminal, traffic.secret).expect("log on");
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    while traffic.sent.len() < REQUESTS_PER_TERMINAL_MAX {
        let mut window = Vec::with_capacity(WINDOW);
        for _ in 0..WINDOW {
            let payer = payers[random.below(payers.len() as u64) as usize];
            let amount = 1 + random.below(2_000);
            let request = if random.below(10) < 7 {
                purchase(payer, amount)
            } else {
                authorize(payer, amount)
            };
            let request_id = 1_000_000 + traffic.sent.len() as u64;
            // Remembered before it is sent: a request cut by the stop is resent after it.
            traffic.sent.insert(request_id, request.clone());
            if client.send_with_id(request_id, &request).is_err() {
                return traffic;
            }
            window.push(request_id);
        }
        for _ in 0..window.len() {
            match client.recv() {
                Ok(Incoming::Reply { request_id, reply }) => {
                    traffic.received.insert(request_id, reply);
                    received.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Incoming::Push(push)) => panic!("no push expected: {push:?}"),
                Err(_) => return traffic,
            }
        }
    }
    traffic
}

/// Resend every request of `traffic` with its original id; the replies by id.
pub fn resend_all(authd: &Authd, traffic: &Traffic) -> BTreeMap<u64, Reply> {
    let mut client = authd.client(Role::Terminal, traffic.terminal, traffic.secret);
    let mut replies = BTreeMap::new();
    let sent: Vec<(&u64, &Request)> = traffic.sent.iter().collect();
    for chunk in sent.chunks(WINDOW) {
        for (request_id, request) in chunk {
            client.send_with_id(**request_id, request).expect("resend");
        }
        for _ in 0..chunk.len() {
            match client.recv().expect("reply to a resent request") {
                Incoming::Reply { request_id, reply } => {
                    replies.insert(request_id, reply);
                }
                Incoming::Push(push) => panic!("no push expected: {push:?}"),
            }
        }
    }
    assert_eq!(
        replies.len(),
        traffic.sent.len(),
        "every resent request is answered once"
    );
    replies
}
