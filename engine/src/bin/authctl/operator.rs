//! The operator's connection: find the key, log on, and turn every failure into a sentence that
//! says what to do next. A declined request becomes a [`Declined`] error that names the reason
//! and its ISO code, so `main` can exit with its own status. The few subcommands the operator
//! role may not send (listing offers, an offer's state) log on as a device or terminal with
//! [`Operator::connect_as`] and get the same calls and errors.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use engine::server::operator_key::{self, KeyError};
use wire::client::{Client, ClientError};
use wire::reason::reason_info;
use wire::{Reply, Request, Role};

/// The operator id authd accepts.
pub const OPERATOR_ID: u32 = 1;
/// How long to wait for the connection, the log-on and each reply, by default.
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// The `--timeout-s` of this run (set once by `main`, before any connection).
static TIMEOUT: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();

/// Sets how long to wait for the connection, the log-on and each reply.
pub fn set_timeout(timeout: Duration) {
    let _ = TIMEOUT.set(timeout);
}

fn timeout() -> Duration {
    TIMEOUT.get().copied().unwrap_or(TIMEOUT_DEFAULT)
}

/// No reply came (a timeout, or the connection closed): the request may or may not have been
/// applied. Its own exit status, so that a script does not simply retry a load.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OutcomeUnknown(pub String);

/// A request authd answered with a non-zero code.
#[derive(Debug, thiserror::Error)]
#[error("{what} declined: {}", describe_reason(*.reason, *.code))]
pub struct Declined {
    /// What was asked, in the user's words.
    pub what: String,
    /// ISO 8583 code.
    pub code: u8,
    /// authd reason.
    pub reason: u8,
}

/// `InsufficientFunds (ISO 51): The payer's available balance is below the amount.`
pub fn describe_reason(reason: u8, code: u8) -> String {
    match reason_info(reason) {
        Some(info) => format!("{} (ISO {:02}): {}", info.name, code, info.meaning),
        None => format!("reason {reason} (ISO {code:02}), unknown to this authctl"),
    }
}

/// Where the key is: `--key`, else `DATA_DIR/operator.key`.
pub fn key_path(data_dir: &Path, key: Option<&Path>) -> PathBuf {
    key.map_or_else(|| data_dir.join(operator_key::FILE_NAME), Path::to_path_buf)
}

/// The operator secret at `path`.
pub fn read_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    operator_key::read(path).map_err(|error| match error {
        KeyError::Io { cause, .. } if cause.kind() == ErrorKind::NotFound => anyhow!(
            "no operator key at {}; pass --data-dir of the authd data dir or --key",
            path.display()
        ),
        KeyError::Io { cause, .. } if cause.kind() == ErrorKind::InvalidData => anyhow!(
            "{} is not an operator key ({cause}); pass --key with authd's DATA_DIR/operator.key",
            path.display()
        ),
        KeyError::Io { cause, .. } => anyhow!(
            "cannot read the operator key at {}: {cause}; check its permissions, or pass --key",
            path.display()
        ),
        KeyError::Malformed { .. } => anyhow!(
            "{} is not an operator key (64 hex digits); pass --key with authd's \
             DATA_DIR/operator.key, or --data-dir of the authd data dir",
            path.display()
        ),
    })
}

/// A logged-on operator connection.
pub struct Operator {
    client: Client,
}

impl Operator {
    /// Log on to `address` with the key at `key_path`.
    pub fn connect(address: &str, key_path: &Path) -> anyhow::Result<Operator> {
        let secret = read_key(key_path)?;
        let refused = |reason| {
            format!(
                "authd at {address} refused the operator log-on ({reason}); the key at {} may \
                 belong to another authd: pass --data-dir of this authd's data dir or --key",
                key_path.display()
            )
        };
        Operator::log_on(address, Role::Operator, OPERATOR_ID, secret, refused)
    }

    /// Log on to `address` as terminal or payer device `id` with `secret`; `flags` names the
    /// flags that gave them, for the error if authd refuses.
    pub fn connect_as(
        address: &str,
        role: Role,
        id: u32,
        secret: [u8; 32],
        flags: &str,
    ) -> anyhow::Result<Operator> {
        let name = match role {
            Role::Terminal => "terminal",
            Role::PayerDevice => "payer device",
            Role::Operator => "operator",
        };
        let refused = |reason| {
            format!("authd at {address} refused the log-on of {name} {id} ({reason}); check {flags}")
        };
        Operator::log_on(address, role, id, secret, refused)
    }

    fn log_on(
        address: &str,
        role: Role,
        id: u32,
        secret: [u8; 32],
        refused: impl FnOnce(String) -> String,
    ) -> anyhow::Result<Operator> {
        let mut client = Client::connect_timeout(address, role, id, secret, timeout())
            .map_err(|error| connect_error(error, address, refused))?;
        client
            .set_read_timeout(Some(timeout()))
            .context("set the reply timeout")?;
        Ok(Operator { client })
    }

    /// The connection, for pipelining.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Send `request`, wait for its reply; a decline is a [`Declined`] error about `what`.
    pub fn call(&mut self, what: &str, request: &Request) -> anyhow::Result<Reply> {
        let reply = self
            .client
            .call(request)
            .map_err(|error| reply_error(error, what))?;
        check(what, reply)
    }
}

/// `reply` if approved; otherwise why not.
pub fn check(what: &str, reply: Reply) -> anyhow::Result<Reply> {
    if let Reply::Error(error) = &reply {
        return Err(anyhow!(
            "authd could not execute {what}: {:?} (ISO {:02}, reason {}); \
             this authctl may not match the server's protocol version",
            error.error,
            error.code,
            error.reason
        ));
    }
    let (code, reason) = reply.outcome();
    if code != 0 || reason != 0 {
        return Err(Declined {
            what: what.to_string(),
            code,
            reason,
        }
        .into());
    }
    Ok(reply)
}

/// The error for a failed wait on a reply.
pub fn reply_error(error: ClientError, what: &str) -> anyhow::Error {
    match error {
        ClientError::Io(io) if matches!(io.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            OutcomeUnknown(format!(
                "no reply from authd to {what} within {:?} (--timeout-s): it may or may not have been applied; look (authctl account, authctl stats) before retrying anything that moves money; is authd overloaded or stopped?",
                timeout()
            ))
            .into()
        }
        ClientError::Closed => OutcomeUnknown(format!(
            "authd closed the connection during {what}: it may or may not have been applied; look before retrying, and check authd's log"
        ))
        .into(),
        other => anyhow!("{what} failed: {other}"),
    }
}

/// A secret or PIN given on the command line, or `-`: read it from the first line of standard
/// input (a command line is visible to other users of the machine, and stays in the shell's
/// history).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Given<T> {
    /// Typed on the command line.
    Typed(T),
    /// `-`: on standard input.
    Stdin,
}

impl<T> Given<T> {
    /// The value, read from standard input (and checked by `parse`) if it was `-`.
    pub fn resolve(self, what: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> anyhow::Result<T> {
        match self {
            Given::Typed(value) => Ok(value),
            Given::Stdin => {
                // One line (Enter ends it at a terminal), of at most 256 bytes.
                let mut line = String::new();
                let mut input = std::io::Read::take(std::io::stdin().lock(), 256);
                std::io::BufRead::read_line(&mut input, &mut line)
                    .with_context(|| format!("read {what} from standard input"))?;
                let line = line.trim();
                parse(line).map_err(|error| anyhow!("{what} on standard input: {error}"))
            }
        }
    }
}

/// `--device-secret` and `--terminal-secret`: 64 hex digits, or `-`.
pub fn parse_given_secret(text: &str) -> Result<Given<[u8; 32]>, String> {
    match text {
        "-" => Ok(Given::Stdin),
        _ => parse_secret(text).map(Given::Typed),
    }
}

/// `--pin`: the digits, or `-`.
pub fn parse_given_pin(text: &str) -> Result<Given<String>, String> {
    match text {
        "-" => Ok(Given::Stdin),
        _ => Ok(Given::Typed(text.to_string())),
    }
}

/// A terminal's or device's secret as typed: 64 hex digits.
pub fn parse_secret(text: &str) -> Result<[u8; 32], String> {
    let malformed = || {
        format!(
            "not a secret: give the 64 hex digits register-terminal or register-device printed ({} characters given)",
            text.len()
        )
    };
    wire::logon::secret_from_hex(text).map_err(|_| malformed())
}

fn connect_error(error: ClientError, address: &str, refused: impl FnOnce(String) -> String) -> anyhow::Error {
    match error {
        ClientError::Io(io) if io.kind() == ErrorKind::ConnectionRefused => {
            anyhow!("cannot connect to {address}; is authd running? pass --connect")
        }
        ClientError::Io(io) if matches!(io.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => anyhow!(
            "no connection or log-on answer from {address} within {:?} (--timeout-s); is authd stopped or overloaded? pass --connect",
            timeout()
        ),
        ClientError::Io(io) => anyhow!("cannot connect to {address}: {io}; is authd running? pass --connect"),
        // At its connection limit authd answers Busy before any log-on: not the key's fault.
        ClientError::LogonRefused { code, reason } if reason == wire::reason::REASON_CAPACITY_EXCEEDED => anyhow!(
            "authd at {address} is at its connection limit ({}); retry later, or raise its --connections-max",
            describe_reason(reason, code)
        ),
        ClientError::LogonRefused { code, reason } if reason == wire::reason::REASON_LOGONS_LIMITED => anyhow!(
            "authd at {address} refuses log-ons from this host for now ({}); wait authd's --logon-failure-window-s (10 s by default), then check the key or secret",
            describe_reason(reason, code)
        ),
        ClientError::LogonRefused { code, reason } => anyhow!(refused(describe_reason(reason, code))),
        other => anyhow!("log-on to {address} failed: {other}"),
    }
}
