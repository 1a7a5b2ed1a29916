//! Log-on: the first frames of every connection. HELLO (role, id, versions, client nonce) ->
//! CHALLENGE (chosen version, server nonce) -> PROOF (HMAC-SHA256 of both nonces under the
//! secret) -> LOGON_OK, or LOGON_FAILED and close. No secret crosses the wire and a recorded
//! PROOF is useless on another connection (its server nonce is fresh). Failed log-ons are
//! rate limited per peer (an IPv4 address or an IPv6 /64).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use wire::logon::{self, Challenge, Hello, LogonFailed, LogonOk, Nonce, Proof};
use wire::types::Role;
use wire::Logon;

use crate::ids::{DeviceId, Status, TerminalId};
use crate::reason::Reason;
use crate::server::dispatch::Principal;
use crate::store::Store;

/// The operator's id in HELLO.
pub const OPERATOR_ID: u32 = 1;

/// Where a connection is in its log-on.
#[derive(Clone, Debug)]
pub enum Session {
    /// Waiting for HELLO.
    AwaitingHello,
    /// CHALLENGE sent; waiting for PROOF.
    AwaitingProof { hello: Hello, server_nonce: Nonce },
    /// Logged on.
    LoggedOn(Principal),
}

/// What the connection does after a log-on frame.
pub enum Step {
    /// Send this frame and go on.
    Reply(Logon),
    /// Send this frame, then close.
    Refuse(Logon),
}

/// Failed log-ons per peer in a window; past the limit, log-ons from it are refused until the
/// window ends. A peer is an IPv4 address or an IPv6 /64 (one host is given a whole /64, so
/// counting addresses would let it try again from each). The map is bounded, and filling it
/// never forgives a refused peer: when full, peers whose window has ended go first, then
/// those not refused; if only refused peers are left, a new peer's failure goes uncounted.
/// A full table is swept at most eight times per window (a sweep reads every entry, under
/// the lock every log-on takes); between sweeps, new peers of a full table go uncounted.
pub struct LogonLimiter {
    failures_max: u32,
    window: Duration,
    peers: Mutex<Peers>,
}

#[derive(Default)]
struct Peers {
    /// Failures in the current window, and when it began.
    counts: HashMap<Peer, (u32, Instant)>,
    /// No sweep of a full table before then.
    next_sweep: Option<Instant>,
}

/// Peers remembered at most by the limiter.
pub const LIMITER_PEERS_MAX: usize = 10_000;

/// What the limiter counts failures by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Peer {
    V4(u32),
    /// The first 64 bits of the address.
    V6(u64),
}

impl Peer {
    fn of(address: IpAddr) -> Peer {
        match address {
            IpAddr::V4(address) => Peer::V4(address.to_bits()),
            IpAddr::V6(address) => match address.to_ipv4_mapped() {
                Some(mapped) => Peer::V4(mapped.to_bits()),
                None => Peer::V6((address.to_bits() >> 64) as u64),
            },
        }
    }
}

impl LogonLimiter {
    /// At most `failures_max` failures per `window` per peer.
    pub fn new(failures_max: u32, window: Duration) -> LogonLimiter {
        LogonLimiter {
            failures_max,
            window,
            peers: Mutex::new(Peers::default()),
        }
    }

    fn refuses(&self, (failures, since): (u32, Instant), now: Instant) -> bool {
        failures >= self.failures_max && now.duration_since(since) < self.window
    }

    /// True if `peer` may try to log on now.
    pub fn allows(&self, peer: IpAddr, now: Instant) -> bool {
        let peers = self.peers.lock();
        peers
            .counts
            .get(&Peer::of(peer))
            .is_none_or(|entry| !self.refuses(*entry, now))
    }

    /// Count a failure of `peer`.
    pub fn failed(&self, peer: IpAddr, now: Instant) {
        let peer = Peer::of(peer);
        let mut guard = self.peers.lock();
        let peers = &mut *guard;
        if peers.counts.len() >= LIMITER_PEERS_MAX && !peers.counts.contains_key(&peer) {
            if peers.next_sweep.is_some_and(|next| now < next) {
                return;
            }
            let window = self.window;
            peers.next_sweep = now.checked_add(window / 8);
            peers
                .counts
                .retain(|_, (_, since)| now.duration_since(*since) < window);
            if peers.counts.len() >= LIMITER_PEERS_MAX {
                peers.counts.retain(|_, entry| self.refuses(*entry, now));
            }
            if peers.counts.len() >= LIMITER_PEERS_MAX {
                return;
            }
        }
        let entry = peers.counts.entry(peer).or_insert((0, now));
        if now.duration_since(entry.1) >= self.window {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(1);
    }
}

/// What a log-on step needs from the server.
pub struct LogonContext<'a> {
    /// The books (terminal and device secrets).
    pub store: &'a Store,
    /// The operator's secret.
    pub operator_secret: &'a [u8; 32],
    /// Limits announced in LOGON_OK.
    pub ok: LogonOk,
}

/// The LOGON_FAILED frame for `reason`.
pub fn failed(reason: Reason) -> Logon {
    Logon::LogonFailed(LogonFailed {
        code: reason.iso_code(),
        reason: reason as u8,
    })
}

impl Session {
    /// Advance the log-on with `frame`; `server_nonce` is fresh randomness for CHALLENGE.
    pub fn step(&mut self, context: &LogonContext<'_>, frame: &Logon, server_nonce: Nonce) -> Step {
        match (&*self, frame) {
            (Session::AwaitingHello, Logon::Hello(hello)) => {
                let chosen = logon::choose_version(
                    hello.version_min,
                    hello.version_max,
                    wire::header::VERSION_MIN,
                    wire::header::VERSION_MAX,
                );
                let Some(version) = chosen else {
                    return Step::Refuse(failed(Reason::InvalidRequest));
                };
                *self = Session::AwaitingProof {
                    hello: *hello,
                    server_nonce,
                };
                Step::Reply(Logon::Challenge(Challenge {
                    version,
                    server_nonce,
                }))
            }
            (Session::AwaitingProof { hello, server_nonce }, Logon::Proof(proof)) => {
                match verify(context, hello, server_nonce, proof) {
                    Some(principal) => {
                        *self = Session::LoggedOn(principal);
                        Step::Reply(Logon::LogonOk(context.ok))
                    }
                    None => Step::Refuse(failed(Reason::NotPermitted)),
                }
            }
            _ => Step::Refuse(failed(Reason::InvalidRequest)),
        }
    }
}

/// The principal `hello` names, if the proof is its secret's and it may log on.
fn verify(
    context: &LogonContext<'_>,
    hello: &Hello,
    server_nonce: &Nonce,
    proof: &Proof,
) -> Option<Principal> {
    let books = context.store.books();
    let (principal, secret) = match hello.role {
        Role::Terminal => {
            let terminal = TerminalId(hello.id);
            let (merchant, status, secret) = books.terminal(terminal)?;
            let merchant_active = books
                .merchant(merchant)
                .is_some_and(|view| view.status == Status::Active);
            if status != Status::Active || !merchant_active {
                return None;
            }
            (Principal::Terminal { terminal, merchant }, secret)
        }
        Role::PayerDevice => {
            let device = DeviceId(hello.id);
            let (account, status, secret) = books.device(device)?;
            if status != Status::Active {
                return None;
            }
            (Principal::Device { device, account }, secret)
        }
        Role::Operator if hello.id == OPERATOR_ID => (Principal::Operator, *context.operator_secret),
        Role::Operator => return None,
    };
    let valid = logon::verify_logon_mac(
        &secret,
        hello.role,
        hello.id,
        &hello.client_nonce,
        server_nonce,
        &proof.mac,
    );
    valid.then_some(principal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_refuses_past_the_limit_until_the_window_ends() {
        let limiter = LogonLimiter::new(2, Duration::from_secs(10));
        let peer: IpAddr = [127, 0, 0, 1].into();
        let start = Instant::now();
        assert!(limiter.allows(peer, start));
        limiter.failed(peer, start);
        assert!(limiter.allows(peer, start));
        limiter.failed(peer, start);
        assert!(!limiter.allows(peer, start));
        assert!(
            limiter.allows([127, 0, 0, 2].into(), start),
            "other peers are not affected"
        );
        assert!(limiter.allows(peer, start + Duration::from_secs(10)));
    }

    #[test]
    fn an_ipv6_64_counts_as_one_peer_and_a_mapped_ipv4_as_its_address() {
        let limiter = LogonLimiter::new(2, Duration::from_secs(10));
        let now = Instant::now();
        let host = |last: u16| IpAddr::from([0x2001, 0xdb8, 1, 2, 0, 0, 0, last]);
        limiter.failed(host(1), now);
        limiter.failed(host(2), now);
        assert!(!limiter.allows(host(3), now), "another address of the same /64");
        assert!(limiter.allows(IpAddr::from([0x2001, 0xdb8, 1, 3, 0, 0, 0, 1]), now));
        let v4: IpAddr = [10, 0, 0, 7].into();
        let mapped = IpAddr::from(std::net::Ipv4Addr::new(10, 0, 0, 7).to_ipv6_mapped());
        limiter.failed(v4, now);
        limiter.failed(mapped, now);
        assert!(!limiter.allows(v4, now));
    }

    #[test]
    fn a_full_limiter_never_forgives_a_refused_peer_early() {
        let limiter = LogonLimiter::new(2, Duration::from_secs(10));
        let start = Instant::now();
        let second = |seconds| start + Duration::from_secs(seconds);
        let refused: IpAddr = [192, 0, 2, 1].into();
        limiter.failed(refused, start);
        limiter.failed(refused, start);
        // Fill the table with other refused peers, a second later.
        let peer = |index: u32| IpAddr::from(std::net::Ipv4Addr::from_bits(0x0a00_0000 + index));
        for index in 1..LIMITER_PEERS_MAX as u32 {
            limiter.failed(peer(index), second(1));
            limiter.failed(peer(index), second(1));
        }
        assert_eq!(limiter.peers.lock().counts.len(), LIMITER_PEERS_MAX);
        // Full of refused peers: a newcomer goes uncounted, and no one is forgiven.
        let newcomer: IpAddr = [198, 51, 100, 7].into();
        for _ in 0..3 {
            limiter.failed(newcomer, second(2));
        }
        assert!(limiter.allows(newcomer, second(2)));
        assert!(!limiter.allows(refused, second(2)));
        assert!(!limiter.allows(peer(7), second(2)));
        assert!(limiter.peers.lock().counts.len() <= LIMITER_PEERS_MAX);
        // The first refused peer's window ends: it may try again, and its place counts the
        // newcomer (the next sweep is due: one was made at 2 s, an eighth of the window ago).
        assert!(limiter.allows(refused, second(10)));
        limiter.failed(newcomer, second(10));
        limiter.failed(newcomer, second(10));
        assert!(!limiter.allows(newcomer, second(10)));
        assert!(
            !limiter.allows(peer(7), second(10)),
            "the others' windows have not ended"
        );
    }
}
