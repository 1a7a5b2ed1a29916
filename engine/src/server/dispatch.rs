//! One request of a logged-on connection, from wire to books and back: check the role may send
//! it, turn it into an engine [`Command`], execute it through the [`Store`], and build the
//! reply. Returns the log position the reply must wait for: the command's own record, or for a
//! read the last record it may have observed, so that nothing leaves before what it reflects is
//! durable.

use wire::messages::reply::{
    AccountInfoReply, AccountReply, BalanceReply, DeviceReply, EchoReply, HoldReply, LoadFundsReply,
    MerchantReply, StatusReply, TerminalReply,
};
use wire::types::{self as w, AccountNumber, PayerRef};
use wire::{Reply, Request};

use crate::books::shard::AccountInfo;
use crate::command::{Command, Extras, Limits, Origin, Outcome, TerminalOp};
use crate::ids::{AccountId, AccountKind, Currency, HoldId, Lsn, MerchantId, PinBlock, RequestKey, Status};
use crate::ids::{DeviceId, TerminalId};
use crate::reason::Reason;
use crate::server::stats::Stats;
use crate::store::Store;

/// Who is logged on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A merchant's terminal: acts for its merchant only.
    Terminal {
        terminal: TerminalId,
        merchant: MerchantId,
    },
    /// A payer's device: acts for its payer only.
    Device { device: DeviceId, account: AccountId },
    /// The issuer's operator.
    Operator,
}

/// What dispatching a request needs.
pub struct Context<'a> {
    /// The books and their log.
    pub store: &'a Store,
    /// Counters.
    pub stats: &'a Stats,
    /// The time the request is stamped with.
    pub now_us: u64,
    /// Where new secrets come from.
    pub secret: &'a dyn Fn() -> std::io::Result<[u8; 32]>,
}

/// Execute `request` for `principal`; returns the reply and the log position it waits for.
pub fn dispatch(
    context: &Context<'_>,
    principal: Principal,
    request_id: u64,
    request: &Request,
) -> (Reply, Lsn) {
    if let Request::Echo(echo) = request {
        return (
            Reply::Echo(EchoReply {
                code: 0,
                reason: 0,
                value: echo.value,
            }),
            0,
        );
    }
    let (reply, lsn) = match principal {
        Principal::Terminal { terminal, merchant } => {
            let origin = Origin {
                merchant,
                key: RequestKey { terminal, request_id },
            };
            terminal_request(context, origin, request)
        }
        Principal::Device { account, .. } => device_request(context, account, request),
        Principal::Operator => operator_request(context, request),
    }
    .unwrap_or_else(|reason| (super::declined::declined(request, reason), read_position(context)));
    context.stats.count_reply(reply.outcome().1);
    (reply, lsn)
}

/// Start loading the memory a terminal's payment will touch, before it is executed
/// (`Books::prefetch`); the connection calls it for the request after the one it is handling.
/// Payers named by mobile number are skipped (resolving them is a lookup of its own).
pub(crate) fn prefetch(store: &Store, principal: Principal, request_id: u64, request: &Request) {
    let Principal::Terminal { terminal, .. } = principal else {
        return;
    };
    let payer = match request {
        Request::Purchase(body) => body.payer,
        Request::Authorize(body) => body.payer,
        _ => return,
    };
    if let PayerRef::Account(number) = payer {
        let key = RequestKey { terminal, request_id };
        store.books().prefetch_payment(&key, AccountId(number.0));
    }
}

/// The log position a read must wait for: everything it may have seen.
pub(crate) fn read_position(context: &Context<'_>) -> Lsn {
    context.store.wal().last_lsn()
}

pub(crate) fn payer(context: &Context<'_>, payer: PayerRef) -> Result<AccountId, Reason> {
    match payer {
        PayerRef::Account(number) => Ok(AccountId(number.0)),
        PayerRef::Mobile(mobile) => context
            .store
            .books()
            .resolve_mobile(mobile)
            .ok_or(Reason::AccountUnknown),
    }
}

fn pin(block: Option<wire::PinBlock>) -> Option<PinBlock> {
    block.map(|block| PinBlock(*block.as_bytes()))
}

fn execute(context: &Context<'_>, command: Command) -> (Outcome, Lsn) {
    let executed = context.store.execute(&command, context.now_us);
    (executed.outcome, executed.lsn)
}

fn hold_reply(outcome: Outcome) -> HoldReply {
    HoldReply {
        code: outcome.reason.iso_code(),
        reason: outcome.reason as u8,
        hold_id: w::HoldId(outcome.id),
        amount_minor: outcome.amount,
    }
}

pub(crate) fn status_reply(reason: Reason) -> StatusReply {
    StatusReply {
        code: reason.iso_code(),
        reason: reason as u8,
    }
}

type Dispatched = Result<(Reply, Lsn), Reason>;

fn terminal_request(context: &Context<'_>, origin: Origin, request: &Request) -> Dispatched {
    let terminal = |op| Command::Terminal { origin, op };
    let (reply, lsn) = match request {
        Request::Authorize(body) => {
            let op = TerminalOp::Authorize {
                payer: payer(context, body.payer)?,
                amount: body.amount_minor,
                currency: Currency(body.currency),
                pin: pin(body.pin),
                lifetime_us: u64::from(body.hold_lifetime_s) * 1_000_000,
            };
            let (outcome, lsn) = execute(context, terminal(op));
            (Reply::Authorize(hold_reply(outcome)), lsn)
        }
        Request::Increment(body) => {
            let op = TerminalOp::Increment {
                hold: HoldId(body.hold_id.0),
                amount: body.amount_minor,
            };
            let (outcome, lsn) = execute(context, terminal(op));
            (Reply::Increment(hold_reply(outcome)), lsn)
        }
        Request::Capture(body) => {
            let extras = Extras {
                product_details: body.product.is_some(),
                loyalty_points: body.loyalty_points,
            };
            let op = TerminalOp::Capture {
                hold: HoldId(body.hold_id.0),
                amount: body.amount_minor,
                last: body.final_capture,
                extras,
            };
            let (outcome, lsn) = execute(context, terminal(op));
            (Reply::Capture(hold_reply(outcome)), lsn)
        }
        Request::Void(body) => {
            let (outcome, lsn) = execute(
                context,
                terminal(TerminalOp::Void {
                    hold: HoldId(body.hold_id.0),
                }),
            );
            (Reply::Void(hold_reply(outcome)), lsn)
        }
        Request::Purchase(body) => {
            let op = TerminalOp::Purchase {
                payer: payer(context, body.payer)?,
                amount: body.amount_minor,
                currency: Currency(body.currency),
                pin: pin(body.pin),
                extras: Extras {
                    product_details: body.product.is_some(),
                    loyalty_points: body.loyalty_points,
                },
            };
            let (outcome, lsn) = execute(context, terminal(op));
            (Reply::Purchase(hold_reply(outcome)), lsn)
        }
        Request::Refund(body) => {
            let op = TerminalOp::Refund {
                hold: HoldId(body.hold_id.0),
                amount: body.amount_minor,
            };
            let (outcome, lsn) = execute(context, terminal(op));
            (Reply::Refund(hold_reply(outcome)), lsn)
        }
        Request::Reversal(body) => {
            let op = TerminalOp::Reversal {
                payer: payer(context, body.payer)?,
                original_request_id: body.original_request_id,
            };
            let (outcome, lsn) = execute(context, terminal(op));
            (Reply::Reversal(status_reply(outcome.reason)), lsn)
        }
        Request::BalanceCheck(body) => {
            let account = payer(context, body.payer)?;
            let books = context.store.books();
            let outcome = books.balance_check(origin, account, body.amount_minor, Currency(body.currency));
            (
                Reply::BalanceCheck(status_reply(outcome.reason)),
                read_position(context),
            )
        }
        _ => return super::offers::terminal(context, origin, request).unwrap_or(Err(Reason::NotPermitted)),
    };
    Ok((reply, lsn))
}

fn device_request(context: &Context<'_>, account: AccountId, request: &Request) -> Dispatched {
    match request {
        Request::OwnBalance(_) if account.0 == 0 => Err(Reason::NotPermitted),
        Request::OwnBalance(_) => {
            let info = context
                .store
                .books()
                .account_info(account)
                .ok_or(Reason::AccountUnknown)?;
            let reply = BalanceReply {
                code: 0,
                reason: 0,
                currency: info.currency.0,
                balance_minor: info.balance,
                held_minor: info.held,
                available_minor: info.available,
                loyalty_points: info.loyalty_points,
            };
            Ok((Reply::OwnBalance(reply), read_position(context)))
        }
        _ => super::offers::device(context, account, request).unwrap_or(Err(Reason::NotPermitted)),
    }
}

fn limits(limits: w::Limits) -> Limits {
    Limits {
        payment_max: limits.per_payment_minor,
        day_amount_max: limits.per_day_minor,
        day_count_max: limits.per_day_count,
        pin_above: limits.pin_above_minor,
    }
}

fn wire_limits(limits: Limits) -> w::Limits {
    w::Limits {
        per_payment_minor: limits.payment_max,
        per_day_minor: limits.day_amount_max,
        per_day_count: limits.day_count_max,
        pin_above_minor: limits.pin_above,
    }
}

fn status(status: w::AccountStatus) -> Status {
    match status {
        w::AccountStatus::Active => Status::Active,
        w::AccountStatus::Frozen => Status::Frozen,
        w::AccountStatus::Closed => Status::Closed,
    }
}

fn operator_request(context: &Context<'_>, request: &Request) -> Dispatched {
    let books = context.store.books();
    let (reply, lsn) = match request {
        Request::OpenAccount(body) => {
            if body.kind != w::AccountKind::Payer {
                return Err(Reason::InvalidRequest);
            }
            let command = Command::OpenAccount {
                shard: books.pick_shard(),
                currency: Currency(body.currency),
                mobile: (body.mobile != 0).then_some(body.mobile),
                limits: limits(body.limits),
            };
            let (outcome, lsn) = execute(context, command);
            let reply = AccountReply {
                code: outcome.reason.iso_code(),
                reason: outcome.reason as u8,
                account: AccountNumber(outcome.id),
            };
            (Reply::OpenAccount(reply), lsn)
        }
        Request::LoadFunds(body) => {
            let account = AccountId(body.account.0);
            let (outcome, lsn) = execute(
                context,
                Command::Load {
                    account,
                    amount: body.amount_minor,
                },
            );
            let info = books
                .account_info(account)
                .filter(|_| outcome.reason.is_approved());
            let reply = LoadFundsReply {
                code: outcome.reason.iso_code(),
                reason: outcome.reason as u8,
                balance_minor: info.as_ref().map_or(0, |info| info.balance),
                available_minor: info.as_ref().map_or(0, |info| info.available),
            };
            // The balance is read after the load: it may show later commands, whose records
            // the reply must wait for too.
            (Reply::LoadFunds(reply), lsn.max(read_position(context)))
        }
        Request::SetLimits(body) => {
            let command = Command::SetLimits {
                account: AccountId(body.account.0),
                limits: limits(body.limits),
            };
            let (outcome, lsn) = execute(context, command);
            (Reply::SetLimits(status_reply(outcome.reason)), lsn)
        }
        Request::SetPin(body) => {
            let command = Command::SetPin {
                account: AccountId(body.account.0),
                pin: PinBlock(*body.pin.as_bytes()),
            };
            let (outcome, lsn) = execute(context, command);
            (Reply::SetPin(status_reply(outcome.reason)), lsn)
        }
        Request::SetStatus(body) => {
            let account = AccountId(body.account.0);
            let command = match (account.is_payer(), account.settlement_merchant()) {
                (true, _) => Command::SetAccountStatus {
                    account,
                    status: status(body.status),
                },
                (false, Some(merchant)) => Command::SetMerchantStatus {
                    merchant,
                    status: status(body.status),
                },
                (false, None) => return Err(Reason::InvalidRequest),
            };
            let (outcome, lsn) = execute(context, command);
            (Reply::SetStatus(status_reply(outcome.reason)), lsn)
        }
        Request::RegisterMerchant(body) => {
            let origin = crate::ids::Reference::new(body.origin.as_str()).ok_or(Reason::InvalidRequest)?;
            let command = Command::RegisterMerchant {
                fee_bps: body.fee_bps,
                fee_bps_with_details: body.fee_bps_with_product,
                origin,
            };
            let (outcome, lsn) = execute(context, command);
            let merchant = MerchantId(outcome.id as u32);
            let reply = MerchantReply {
                code: outcome.reason.iso_code(),
                reason: outcome.reason as u8,
                merchant_id: w::MerchantId(merchant.0),
                settlement_account: AccountNumber(if outcome.id == 0 {
                    0
                } else {
                    AccountId::settlement(merchant).0
                }),
            };
            (Reply::RegisterMerchant(reply), lsn)
        }
        Request::RegisterTerminal(body) => {
            // Without a secret nothing is registered: a malfunction, not a panic.
            let secret = (context.secret)().map_err(|_| Reason::SystemMalfunction)?;
            let command = Command::RegisterTerminal {
                merchant: MerchantId(body.merchant_id.0),
                secret,
            };
            let (outcome, lsn) = execute(context, command);
            let approved = outcome.reason.is_approved();
            let reply = TerminalReply {
                code: outcome.reason.iso_code(),
                reason: outcome.reason as u8,
                terminal_id: w::TerminalId(outcome.id as u32),
                secret: if approved { secret } else { [0; 32] },
            };
            (Reply::RegisterTerminal(reply), lsn)
        }
        Request::RegisterDevice(body) => {
            // Without a secret nothing is registered: a malfunction, not a panic.
            let secret = (context.secret)().map_err(|_| Reason::SystemMalfunction)?;
            let command = Command::RegisterDevice {
                account: AccountId(body.account.0),
                secret,
            };
            let (outcome, lsn) = execute(context, command);
            let approved = outcome.reason.is_approved();
            let reply = DeviceReply {
                code: outcome.reason.iso_code(),
                reason: outcome.reason as u8,
                device_id: w::DeviceId(outcome.id as u32),
                secret: if approved { secret } else { [0; 32] },
            };
            (Reply::RegisterDevice(reply), lsn)
        }
        Request::AccountInfo(body) => (
            Reply::AccountInfo(account_info(context, AccountId(body.account.0))?),
            read_position(context),
        ),
        Request::Stats(_) => (Reply::Stats(context.stats.reply(context.store)), 0),
        _ => return super::offers::operator(context, request).unwrap_or(Err(Reason::NotPermitted)),
    };
    Ok((reply, lsn))
}

fn account_info(context: &Context<'_>, account: AccountId) -> Result<AccountInfoReply, Reason> {
    let books = context.store.books();
    let kind = AccountKind::of(account).ok_or(Reason::AccountUnknown)?;
    if kind != AccountKind::Payer {
        let unknown_merchant = account
            .settlement_merchant()
            .is_some_and(|merchant| books.merchant(merchant).is_none());
        if unknown_merchant {
            return Err(Reason::AccountUnknown);
        }
        let balance = books.ledger_balance(account).ok_or(Reason::AccountUnknown)?;
        // Ledger balances are signed (the funding account is negative): sent as i64 bits.
        let balance_minor =
            i64::try_from(balance).unwrap_or(if balance < 0 { i64::MIN } else { i64::MAX }) as u64;
        return Ok(AccountInfoReply {
            code: 0,
            reason: 0,
            account: AccountNumber(account.0),
            kind: Some(wire_kind(kind)),
            status: Some(w::AccountStatus::Active),
            currency: books.config().currency.0,
            mobile: 0,
            balance_minor,
            held_minor: 0,
            available_minor: 0,
            loyalty_points: 0,
            limits: w::Limits::NONE,
        });
    }
    let info: AccountInfo = books.account_info(account).ok_or(Reason::AccountUnknown)?;
    Ok(AccountInfoReply {
        code: 0,
        reason: 0,
        account: AccountNumber(account.0),
        kind: Some(w::AccountKind::Payer),
        status: Some(match info.status {
            Status::Active => w::AccountStatus::Active,
            Status::Frozen => w::AccountStatus::Frozen,
            Status::Closed => w::AccountStatus::Closed,
        }),
        currency: info.currency.0,
        mobile: info.mobile.unwrap_or(0),
        balance_minor: info.balance,
        held_minor: info.held,
        available_minor: info.available,
        loyalty_points: info.loyalty_points,
        limits: wire_limits(info.limits),
    })
}

fn wire_kind(kind: AccountKind) -> w::AccountKind {
    match kind {
        AccountKind::Payer => w::AccountKind::Payer,
        AccountKind::MerchantSettlement => w::AccountKind::Merchant,
        AccountKind::IssuerFunding => w::AccountKind::IssuerFunding,
        AccountKind::IssuerFee => w::AccountKind::IssuerFee,
    }
}

#[cfg(test)]
mod tests {
    use wire::messages::operator::{RegisterMerchant, RegisterTerminal};
    use wire::types::ShortText;

    use super::*;

    #[test]
    fn no_random_source_declines_a_registration_and_registers_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::open_for_tests(dir.path());
        let stats = Stats::default();
        let out_of_descriptors = || Err(std::io::Error::from_raw_os_error(24));
        let random = || Ok([7; 32]);
        let context = |secret| Context {
            store: &store,
            stats: &stats,
            now_us: 1,
            secret,
        };
        let merchant = Request::RegisterMerchant(RegisterMerchant {
            fee_bps: 100,
            fee_bps_with_product: 50,
            origin: ShortText::new("cafe").expect("short"),
        });
        let (reply, _) = dispatch(&context(&random), Principal::Operator, 1, &merchant);
        assert_eq!(reply.outcome(), (0, 0), "{reply:?}");
        let terminal = Request::RegisterTerminal(RegisterTerminal {
            merchant_id: w::MerchantId(1),
        });
        let (reply, _) = dispatch(&context(&out_of_descriptors), Principal::Operator, 2, &terminal);
        let malfunction = (
            Reason::SystemMalfunction.iso_code(),
            Reason::SystemMalfunction as u8,
        );
        assert_eq!(reply.outcome(), malfunction, "{reply:?}");
        let (reply, _) = dispatch(&context(&random), Principal::Operator, 3, &terminal);
        match reply {
            Reply::RegisterTerminal(registered) => {
                assert_eq!((registered.terminal_id.0, registered.secret), (1, [7; 32]))
            }
            other => panic!("unexpected reply {other:?}"),
        }
    }
}
