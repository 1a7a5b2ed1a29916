//! Who loadgen acts as: the merchants, terminals and payers it uses, either read from the CSV
//! that `authctl provision` writes, or opened by loadgen itself over an operator connection
//! (pipelined, a window of requests per round trip).
//!
//! The CSV (version 1):
//!
//! ```text
//! # authd provision v1
//! kind,id,owner,secret_hex
//! merchant,<merchant_id>,<settlement_account>,
//! terminal,<terminal_id>,<merchant_id>,<64 lowercase hex>
//! payer,<account>,<mobile or 0>,
//! ```

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};
use wire::client::{Client, Incoming};
use wire::logon::{secret_from_hex, Secret};
use wire::messages::operator::{
    LoadFunds, OpenAccount, RegisterDevice, RegisterMerchant, RegisterTerminal, SetPin,
};
use wire::types::{AccountKind, AccountNumber, Limits, MerchantId, ShortText};
use wire::{PinBlock, Reply, Request};

use crate::template::{CURRENCY, OFFER_PIN};

/// Most requests the provisioning connection keeps in flight.
const PROVISION_WINDOW_MAX: usize = 512;
/// Most rows a credentials file may hold.
pub const CSV_ROWS_MAX: usize = 10_000_000;

/// A merchant loadgen's terminals belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Merchant {
    /// Its id.
    pub id: u32,
    /// Its settlement account.
    pub settlement: u64,
}

/// A terminal loadgen logs on as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Terminal {
    /// Its id.
    pub id: u32,
    /// Index of its merchant in `Credentials::merchants`.
    pub merchant: u32,
    /// Its log-on secret.
    pub secret: Secret,
}

/// Everything loadgen needs to send load.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// Merchants.
    pub merchants: Vec<Merchant>,
    /// Terminals.
    pub terminals: Vec<Terminal>,
    /// Payer account numbers.
    pub payers: Vec<u64>,
}

/// A payer device loadgen logs on as (a gateway: registered for account 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    /// Its id.
    pub id: u32,
    /// Its log-on secret.
    pub secret: Secret,
}

/// Readies the offer flows: sets `OFFER_PIN` on every payer (an accept must carry the payer's
/// PIN) and registers `gateways` gateway devices (account 0: they see and may answer every
/// payer's offers), one per load thread.
pub fn prepare_offers(operator: &mut Client, payers: &[u64], gateways: usize) -> anyhow::Result<Vec<Device>> {
    let pin = PinBlock::from_digits(OFFER_PIN)
        .map_err(|error| anyhow::anyhow!("the offer PIN is invalid: {error:?}"))?;
    let requests: Vec<Request> = payers
        .iter()
        .map(|account| {
            Request::SetPin(SetPin {
                account: AccountNumber(*account),
                pin,
            })
        })
        .collect();
    for reply in pipelined(operator, &requests)? {
        let Reply::SetPin(status) = reply else {
            bail!("set PIN: unexpected reply {reply:?}");
        };
        check(status.code, status.reason, "set PIN")?;
    }
    let register = Request::RegisterDevice(RegisterDevice {
        account: AccountNumber(0),
    });
    let mut devices = Vec::with_capacity(gateways);
    for reply in pipelined(operator, &vec![register; gateways])? {
        let Reply::RegisterDevice(device) = reply else {
            bail!("register gateway device: unexpected reply {reply:?}");
        };
        check(device.code, device.reason, "register gateway device")?;
        devices.push(Device {
            id: device.device_id.0,
            secret: device.secret,
        });
    }
    Ok(devices)
}

/// Parses a credentials CSV; errors name the line.
pub fn parse_csv(text: &str) -> Result<Credentials, String> {
    let mut credentials = Credentials::default();
    let mut merchant_index: HashMap<u32, u32> = HashMap::new();
    let mut pending_terminals: Vec<(usize, u32, u32, Secret)> = Vec::new();
    let mut rows = 0usize;
    for (number, line) in text
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim()))
    {
        if line.is_empty() || line.starts_with('#') || line.starts_with("kind,") {
            continue;
        }
        rows += 1;
        if rows > CSV_ROWS_MAX {
            return Err(format!("more than {CSV_ROWS_MAX} rows"));
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [kind, id, owner, secret] = fields[..] else {
            return Err(format!(
                "line {number}: expected 4 fields kind,id,owner,secret_hex, got {}",
                fields.len()
            ));
        };
        let number_of = |text: &str, what: &str| -> Result<u64, String> {
            text.parse()
                .map_err(|_| format!("line {number}: {what} '{text}' is not a number"))
        };
        match kind {
            "merchant" => {
                let id = u32::try_from(number_of(id, "merchant id")?)
                    .map_err(|_| format!("line {number}: merchant id too large"))?;
                let settlement = number_of(owner, "settlement account")?;
                let index = credentials.merchants.len() as u32;
                if merchant_index.insert(id, index).is_some() {
                    return Err(format!("line {number}: merchant {id} listed twice"));
                }
                credentials.merchants.push(Merchant { id, settlement });
            }
            "terminal" => {
                let id = u32::try_from(number_of(id, "terminal id")?)
                    .map_err(|_| format!("line {number}: terminal id too large"))?;
                let merchant = u32::try_from(number_of(owner, "merchant id")?)
                    .map_err(|_| format!("line {number}: merchant id too large"))?;
                let secret = parse_secret(secret).map_err(|error| format!("line {number}: {error}"))?;
                pending_terminals.push((number, id, merchant, secret));
            }
            "payer" => credentials.payers.push(number_of(id, "account")?),
            other => {
                return Err(format!(
                    "line {number}: unknown kind '{other}' (merchant, terminal, payer)"
                ))
            }
        }
    }
    for (number, id, merchant, secret) in pending_terminals {
        let merchant = *merchant_index
            .get(&merchant)
            .ok_or_else(|| format!("line {number}: terminal {id} names merchant {merchant}, not listed"))?;
        credentials.terminals.push(Terminal { id, merchant, secret });
    }
    if credentials.terminals.is_empty() || credentials.payers.is_empty() {
        return Err("the file lists no terminal or no payer; run authctl provision with both".into());
    }
    Ok(credentials)
}

/// Parses 64 hex digits into a secret.
pub fn parse_secret(text: &str) -> Result<Secret, String> {
    secret_from_hex(text).map_err(|error| error.to_string())
}

/// Reads the operator secret from a key file (64 hex digits).
pub fn read_operator_key(path: &Path) -> anyhow::Result<Secret> {
    let text = wire::logon::read_secret_file(path).with_context(|| {
        format!(
            "cannot read the operator key {}; pass --key FILE or --data-dir of the authd",
            path.display()
        )
    })?;
    parse_secret(&text).map_err(|error| anyhow::anyhow!("operator key {}: {error}", path.display()))
}

/// What loadgen opens for itself.
#[derive(Clone, Copy, Debug)]
pub struct ProvisionPlan {
    /// Merchants to register.
    pub merchants: u32,
    /// Terminals to register (one per connection).
    pub terminals: u32,
    /// Payers to open.
    pub payers: u32,
    /// Funds loaded on each payer, minor units.
    pub payer_balance: u64,
    /// Merchant fee, basis points.
    pub fee_bps: u16,
    /// Every terminal belongs to merchant 0.
    pub hot_merchant: bool,
}

/// Sends `requests` pipelined and returns their replies in request order.
pub fn pipelined(operator: &mut Client, requests: &[Request]) -> anyhow::Result<Vec<Reply>> {
    let window = (operator.server_limits().requests_in_flight_max as usize).clamp(1, PROVISION_WINDOW_MAX);
    let mut replies: Vec<Option<Reply>> = vec![None; requests.len()];
    for (chunk_index, chunk) in requests.chunks(window).enumerate() {
        let mut positions = HashMap::with_capacity(chunk.len());
        for (offset, request) in chunk.iter().enumerate() {
            let request_id = operator.send(request)?;
            positions.insert(request_id, chunk_index * window + offset);
        }
        while !positions.is_empty() {
            match operator.recv()? {
                Incoming::Reply { request_id, reply } => {
                    let position = positions
                        .remove(&request_id)
                        .with_context(|| format!("reply to unknown request id {request_id}"))?;
                    replies[position] = Some(reply);
                }
                Incoming::Push(_) => {}
            }
        }
    }
    Ok(replies.into_iter().flatten().collect())
}

/// Registers merchants and terminals and opens and loads payers.
pub fn provision(operator: &mut Client, plan: &ProvisionPlan) -> anyhow::Result<Credentials> {
    // No origin: authd keeps non-empty origins unique, and load needs none.
    let origin = ShortText::default();
    let requests: Vec<Request> = (0..plan.merchants.max(1))
        .map(|_| {
            Request::RegisterMerchant(RegisterMerchant {
                fee_bps: plan.fee_bps,
                fee_bps_with_product: plan.fee_bps / 2,
                origin,
            })
        })
        .collect();
    let mut credentials = Credentials::default();
    for reply in pipelined(operator, &requests)? {
        let Reply::RegisterMerchant(merchant) = reply else {
            bail!("register merchant: unexpected reply {reply:?}");
        };
        check(merchant.code, merchant.reason, "register merchant")?;
        credentials.merchants.push(Merchant {
            id: merchant.merchant_id.0,
            settlement: merchant.settlement_account.0,
        });
    }
    let merchants = credentials.merchants.len() as u32;
    let owner = |index: u32| if plan.hot_merchant { 0 } else { index % merchants };
    let requests: Vec<Request> = (0..plan.terminals)
        .map(|index| {
            Request::RegisterTerminal(RegisterTerminal {
                merchant_id: MerchantId(credentials.merchants[owner(index) as usize].id),
            })
        })
        .collect();
    for (index, reply) in pipelined(operator, &requests)?.into_iter().enumerate() {
        let Reply::RegisterTerminal(terminal) = reply else {
            bail!("register terminal: unexpected reply {reply:?}");
        };
        check(terminal.code, terminal.reason, "register terminal")?;
        credentials.terminals.push(Terminal {
            id: terminal.terminal_id.0,
            merchant: owner(index as u32),
            secret: terminal.secret,
        });
    }
    let open = Request::OpenAccount(OpenAccount {
        kind: AccountKind::Payer,
        currency: CURRENCY,
        mobile: 0,
        limits: Limits::NONE,
    });
    let requests = vec![open; plan.payers.max(1) as usize];
    for reply in pipelined(operator, &requests)? {
        let Reply::OpenAccount(account) = reply else {
            bail!("open account: unexpected reply {reply:?}");
        };
        check(account.code, account.reason, "open account")?;
        credentials.payers.push(account.account.0);
    }
    let requests: Vec<Request> = credentials
        .payers
        .iter()
        .map(|account| {
            Request::LoadFunds(LoadFunds {
                account: AccountNumber(*account),
                amount_minor: plan.payer_balance,
            })
        })
        .collect();
    for reply in pipelined(operator, &requests)? {
        let Reply::LoadFunds(loaded) = reply else {
            bail!("load funds: unexpected reply {reply:?}");
        };
        check(loaded.code, loaded.reason, "load funds")?;
    }
    Ok(credentials)
}

fn check(code: u8, reason: u8, what: &str) -> anyhow::Result<()> {
    if code != 0 {
        bail!("{what} declined: code {code}, reason {reason} (is --payers or --merchants above authd's capacity?)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn the_authctl_csv_parses() {
        let text = format!(
            "# authd provision v1\nkind,id,owner,secret_hex\nmerchant,7,9,\nterminal,17,7,{SECRET}\n\
             terminal,18,7,{SECRET}\npayer,1000001,33612345678,\npayer,1000002,0,\n"
        );
        let credentials = parse_csv(&text).expect("parse");
        assert_eq!(credentials.merchants, vec![Merchant { id: 7, settlement: 9 }]);
        assert_eq!(credentials.terminals.len(), 2);
        assert_eq!(credentials.terminals[0].id, 17);
        assert_eq!(credentials.terminals[0].merchant, 0);
        assert_eq!(credentials.terminals[0].secret[31], 0x1f);
        assert_eq!(credentials.payers, vec![1_000_001, 1_000_002]);
    }

    #[test]
    fn terminals_may_come_before_their_merchant() {
        let text = format!("terminal,17,7,{SECRET}\nmerchant,7,9,\npayer,1000001,0,\n");
        assert_eq!(parse_csv(&text).expect("parse").terminals[0].merchant, 0);
    }

    #[test]
    fn bad_rows_are_named_by_line() {
        let cases = [
            ("merchant,7,9\n", "line 1: expected 4 fields"),
            ("merchant,x,9,\n", "line 1: merchant id 'x'"),
            ("terminal,1,7,abc\n", "line 1: a secret is 64 hex digits"),
            (
                &*format!("merchant,7,9,\nterminal,1,8,{SECRET}\npayer,1,0,\n"),
                "line 2: terminal 1 names merchant 8",
            ),
            ("shop,1,2,\n", "line 1: unknown kind 'shop'"),
            ("merchant,7,9,\n", "no terminal or no payer"),
            (
                "merchant,7,9,\nmerchant,7,9,\n",
                "line 2: merchant 7 listed twice",
            ),
        ];
        for (text, expected) in cases {
            let error = parse_csv(text).expect_err(text);
            assert!(error.contains(expected), "{text:?}: {error}");
        }
        assert!(parse_secret(&"zz".repeat(32)).is_err());
    }
}
