//! Log-on: the first frames of every connection. HELLO (role, id, versions, client nonce) ->
//! CHALLENGE (chosen version, server nonce) -> PROOF (HMAC-SHA256 of both nonces under the
//! secret) -> LOGON_OK, or LOGON_FAILED and close. No secret crosses the wire and a recorded
//! PROOF is useless on another connection (its server nonce is fresh). Failed log-ons are
//! rate limited per peer address.

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

/// Failed log-ons per peer address in a window; past the limit, log-ons from it are refused
/// until the window ends. The map is bounded: when full, it is cleared (which only forgives).
pub struct LogonLimiter {
    failures_max: u32,
    window: Duration,
    peers: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// Peers remembered at most by the limiter.
const LIMITER_PEERS_MAX: usize = 10_000;

impl LogonLimiter {
    /// At most `failures_max` failures per `window` per address.
    pub fn new(failures_max: u32, window: Duration) -> LogonLimiter {
        LogonLimiter {
            failures_max,
            window,
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// True if `peer` may try to log on now.
    pub fn allows(&self, peer: IpAddr, now: Instant) -> bool {
        let peers = self.peers.lock();
        match peers.get(&peer) {
            Some((failures, since)) => {
                now.duration_since(*since) >= self.window || *failures < self.failures_max
            }
            None => true,
        }
    }

    /// Count a failure of `peer`.
    pub fn failed(&self, peer: IpAddr, now: Instant) {
        let mut peers = self.peers.lock();
        if peers.len() >= LIMITER_PEERS_MAX {
            peers.clear();
        }
        let entry = peers.entry(peer).or_insert((0, now));
        if now.duration_since(entry.1) >= self.window {
            *entry = (0, now);
        }
        entry.0 += 1;
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
}
