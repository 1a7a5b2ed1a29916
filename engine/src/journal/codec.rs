//! Commands as log records: a tag byte, then fixed little-endian fields. The payload of every
//! write-ahead log record is one command in this form (the record header carries its
//! timestamp), so replay decodes and re-executes it.
//!
//! | tag | command | fields after the tag |
//! |---|---|---|
//! | 1 | Terminal | merchant u32, terminal u32, request id u64, op tag u8, op fields |
//! | 2 | OpenAccount | shard u32, currency u16, mobile u64 (0 = none), limits |
//! | 3 | Load | account u64, amount u64 |
//! | 4 | SetLimits | account u64, limits |
//! | 5 | SetPin | account u64, PIN block 8 bytes |
//! | 6 | SetAccountStatus | account u64, status u8 |
//! | 7 | RegisterMerchant | fee bps u16, fee bps with details u16, origin length u8 and 32 bytes |
//! | 8 | SetMerchantStatus | merchant u32, status u8 |
//! | 9 | RegisterTerminal | merchant u32, secret 32 bytes |
//! | 10 | SetTerminalStatus | terminal u32, status u8 |
//! | 11 | AdvanceTime | shard u32 |
//! | 12 | RegisterDevice | account u64, secret 32 bytes |
//! | 13 | OfferAnswer | offer u64, payer u64 (0 = a gateway), accept u8, PIN |
//! | 14 | DisputeOpen | hold u64, amount u64, cause u8 |
//! | 15 | DisputeResolve | dispute u64, for payer u8 |
//! | 16 | StartHoldIds | shard u32, serial u64 |
//!
//! Limits are payment max u64, day amount max u64, day count max u32, PIN above u64. Terminal
//! ops (op tag = `TerminalOp::kind`): 1 Authorize (payer u64, amount u64, currency u16, PIN,
//! lifetime us u64); 2 Increment (hold u64, amount u64); 3 Capture (hold u64, amount u64, last
//! u8, extras); 4 Void (hold u64); 5 Purchase (payer u64, amount u64, currency u16, PIN,
//! extras); 6 Refund (hold u64, amount u64); 7 Reversal (payer u64, original request id u64);
//! 8 Offer (payer u64, amount u64, currency u16, lifetime us u64, reference length u8 and 32
//! bytes); 9 OfferCancel (offer u64); 10 ReportFailedProvisioning (hold u64, amount u64, cause u8).
//! A PIN is a flag u8 (0 none, 1 present) and 8 bytes (zero when none); extras are product
//! details u8 (0/1) and loyalty points u32.

use crate::books::state::{Reader, StateError};
use crate::command::{Command, Extras, Limits, Origin, TerminalOp};
use crate::ids::{
    AccountId, Currency, DisputeId, HoldId, MerchantId, PinBlock, RequestKey, Status, TerminalId,
};

/// Largest encoded command.
pub const COMMAND_BYTES_MAX: usize = 96;

/// An encoded command, on the stack: the hot path encodes without allocating.
pub struct Encoded {
    bytes: [u8; COMMAND_BYTES_MAX],
    len: usize,
}

impl Encoded {
    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The encoded bytes as little-endian words of eight, the last one padded with zeros.
    pub fn padded_words(&self) -> impl Iterator<Item = u64> + '_ {
        self.bytes[..self.len.div_ceil(8) * 8]
            .chunks_exact(8)
            .map(|chunk| u64::from_le_bytes(chunk.try_into().unwrap_or_else(|_| unreachable!("chunks of 8"))))
    }

    // Inlined so each field's copy has a constant length and compiles to one store, not a
    // call to memcpy (which cost ~15% of a purchase's instructions).
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) -> &mut Encoded {
        let end = self.len + bytes.len();
        assert!(end <= COMMAND_BYTES_MAX, "every command fits COMMAND_BYTES_MAX");
        self.bytes[self.len..end].copy_from_slice(bytes);
        self.len = end;
        self
    }

    #[inline(always)]
    fn u8(&mut self, value: u8) -> &mut Encoded {
        self.put(&[value])
    }

    #[inline(always)]
    fn u16(&mut self, value: u16) -> &mut Encoded {
        self.put(&value.to_le_bytes())
    }

    #[inline(always)]
    fn u32(&mut self, value: u32) -> &mut Encoded {
        self.put(&value.to_le_bytes())
    }

    #[inline(always)]
    fn u64(&mut self, value: u64) -> &mut Encoded {
        self.put(&value.to_le_bytes())
    }

    fn limits(&mut self, limits: &Limits) -> &mut Encoded {
        self.u64(limits.payment_max).u64(limits.day_amount_max);
        self.u32(limits.day_count_max).u64(limits.pin_above)
    }

    #[inline(always)]
    fn pin(&mut self, pin: Option<PinBlock>) -> &mut Encoded {
        self.u8(u8::from(pin.is_some()))
            .put(&pin.map_or([0; 8], |block| block.0))
    }

    #[inline(always)]
    fn extras(&mut self, extras: Extras) -> &mut Encoded {
        self.u8(u8::from(extras.product_details))
            .u32(extras.loyalty_points)
    }
}

/// Encode a command.
pub fn encode(command: &Command) -> Encoded {
    let mut out = Encoded {
        bytes: [0; COMMAND_BYTES_MAX],
        len: 0,
    };
    match *command {
        Command::Terminal { origin, op } => {
            out.u8(1)
                .u32(origin.merchant.0)
                .u32(origin.key.terminal.0)
                .u64(origin.key.request_id);
            put_op(&op, &mut out);
        }
        Command::OpenAccount {
            shard,
            currency,
            mobile,
            limits,
        } => {
            out.u8(2)
                .u32(shard)
                .u16(currency.0)
                .u64(mobile.unwrap_or(0))
                .limits(&limits);
        }
        Command::Load { account, amount } => {
            out.u8(3).u64(account.0).u64(amount);
        }
        Command::SetLimits { account, limits } => {
            out.u8(4).u64(account.0).limits(&limits);
        }
        Command::SetPin { account, pin } => {
            out.u8(5).u64(account.0).put(&pin.0);
        }
        Command::SetAccountStatus { account, status } => {
            out.u8(6).u64(account.0).u8(status as u8);
        }
        Command::RegisterMerchant {
            fee_bps,
            fee_bps_with_details,
            origin,
        } => {
            out.u8(7).u16(fee_bps).u16(fee_bps_with_details);
            out.u8(origin.len).put(&origin.bytes);
        }
        Command::SetMerchantStatus { merchant, status } => {
            out.u8(8).u32(merchant.0).u8(status as u8);
        }
        Command::RegisterTerminal { merchant, secret } => {
            out.u8(9).u32(merchant.0).put(&secret);
        }
        Command::SetTerminalStatus { terminal, status } => {
            out.u8(10).u32(terminal.0).u8(status as u8);
        }
        Command::AdvanceTime { shard } => {
            out.u8(11).u32(shard);
        }
        Command::RegisterDevice { account, secret } => {
            out.u8(12).u64(account.0).put(&secret);
        }
        Command::OfferAnswer {
            offer,
            payer,
            accept,
            pin,
        } => {
            out.u8(13)
                .u64(offer.0)
                .u64(payer.map_or(0, |payer| payer.0))
                .u8(u8::from(accept))
                .pin(pin);
        }
        Command::DisputeOpen { hold, amount, cause } => {
            out.u8(14).u64(hold.0).u64(amount).u8(cause);
        }
        Command::DisputeResolve { dispute, for_payer } => {
            out.u8(15).u64(dispute.0).u8(u8::from(for_payer));
        }
        Command::StartHoldIds { shard, serial } => {
            out.u8(16).u32(shard).u64(serial);
        }
    }
    out
}

/// Encode a terminal operation alone (its tag and fields): the canonical form of a request's
/// content, which the idempotency window fingerprints.
pub fn encode_op(op: &TerminalOp) -> Encoded {
    let mut out = Encoded {
        bytes: [0; COMMAND_BYTES_MAX],
        len: 0,
    };
    put_op(op, &mut out);
    out
}

fn put_op(op: &TerminalOp, out: &mut Encoded) {
    out.u8(op.kind());
    match *op {
        TerminalOp::Authorize {
            payer,
            amount,
            currency,
            pin,
            lifetime_us,
        } => {
            out.u64(payer.0)
                .u64(amount)
                .u16(currency.0)
                .pin(pin)
                .u64(lifetime_us);
        }
        TerminalOp::Increment { hold, amount } | TerminalOp::Refund { hold, amount } => {
            out.u64(hold.0).u64(amount);
        }
        TerminalOp::Capture {
            hold,
            amount,
            last,
            extras,
        } => {
            out.u64(hold.0).u64(amount).u8(u8::from(last)).extras(extras);
        }
        TerminalOp::Void { hold } => {
            out.u64(hold.0);
        }
        TerminalOp::Purchase {
            payer,
            amount,
            currency,
            pin,
            extras,
        } => {
            out.u64(payer.0)
                .u64(amount)
                .u16(currency.0)
                .pin(pin)
                .extras(extras);
        }
        TerminalOp::Reversal {
            payer,
            original_request_id,
        } => {
            out.u64(payer.0).u64(original_request_id);
        }
        TerminalOp::Offer {
            payer,
            amount,
            currency,
            lifetime_us,
            reference,
        } => {
            out.u64(payer.0).u64(amount).u16(currency.0).u64(lifetime_us);
            out.u8(reference.len).put(&reference.bytes);
        }
        TerminalOp::OfferCancel { offer } => {
            out.u64(offer.0);
        }
        TerminalOp::ReportFailedProvisioning { hold, amount, cause } => {
            out.u64(hold.0).u64(amount).u8(cause);
        }
    }
}

/// Decode a command; every byte must be used.
pub fn decode(bytes: &[u8]) -> Result<Command, StateError> {
    let mut reader = Reader::new(bytes);
    let command = match reader.u8()? {
        1 => {
            let merchant = MerchantId(reader.u32()?);
            let key = RequestKey {
                terminal: TerminalId(reader.u32()?),
                request_id: reader.u64()?,
            };
            Command::Terminal {
                origin: Origin { merchant, key },
                op: decode_op(&mut reader)?,
            }
        }
        2 => Command::OpenAccount {
            shard: reader.u32()?,
            currency: Currency(reader.u16()?),
            mobile: Some(reader.u64()?).filter(|mobile| *mobile != 0),
            limits: limits(&mut reader)?,
        },
        3 => Command::Load {
            account: AccountId(reader.u64()?),
            amount: reader.u64()?,
        },
        4 => Command::SetLimits {
            account: AccountId(reader.u64()?),
            limits: limits(&mut reader)?,
        },
        5 => Command::SetPin {
            account: AccountId(reader.u64()?),
            pin: PinBlock(reader.array()?),
        },
        6 => Command::SetAccountStatus {
            account: AccountId(reader.u64()?),
            status: status(&mut reader)?,
        },
        7 => Command::RegisterMerchant {
            fee_bps: reader.u16()?,
            fee_bps_with_details: reader.u16()?,
            origin: reader.reference()?,
        },
        8 => Command::SetMerchantStatus {
            merchant: MerchantId(reader.u32()?),
            status: status(&mut reader)?,
        },
        9 => Command::RegisterTerminal {
            merchant: MerchantId(reader.u32()?),
            secret: reader.array()?,
        },
        10 => Command::SetTerminalStatus {
            terminal: TerminalId(reader.u32()?),
            status: status(&mut reader)?,
        },
        11 => Command::AdvanceTime { shard: reader.u32()? },
        12 => Command::RegisterDevice {
            account: AccountId(reader.u64()?),
            secret: reader.array()?,
        },
        13 => Command::OfferAnswer {
            offer: HoldId(reader.u64()?),
            payer: Some(reader.u64()?).filter(|payer| *payer != 0).map(AccountId),
            accept: flag(&mut reader)?,
            pin: pin(&mut reader)?,
        },
        14 => Command::DisputeOpen {
            hold: HoldId(reader.u64()?),
            amount: reader.u64()?,
            cause: reader.u8()?,
        },
        15 => Command::DisputeResolve {
            dispute: DisputeId(reader.u64()?),
            for_payer: flag(&mut reader)?,
        },
        16 => Command::StartHoldIds {
            shard: reader.u32()?,
            serial: reader.u64()?,
        },
        _ => {
            return Err(StateError {
                offset: 0,
                what: "unknown command tag",
            })
        }
    };
    if !reader.is_done() {
        return Err(StateError {
            offset: bytes.len(),
            what: "bytes after the command",
        });
    }
    Ok(command)
}

fn decode_op(reader: &mut Reader<'_>) -> Result<TerminalOp, StateError> {
    Ok(match reader.u8()? {
        1 => TerminalOp::Authorize {
            payer: AccountId(reader.u64()?),
            amount: reader.u64()?,
            currency: Currency(reader.u16()?),
            pin: pin(reader)?,
            lifetime_us: reader.u64()?,
        },
        2 => TerminalOp::Increment {
            hold: HoldId(reader.u64()?),
            amount: reader.u64()?,
        },
        3 => TerminalOp::Capture {
            hold: HoldId(reader.u64()?),
            amount: reader.u64()?,
            last: flag(reader)?,
            extras: extras(reader)?,
        },
        4 => TerminalOp::Void {
            hold: HoldId(reader.u64()?),
        },
        5 => TerminalOp::Purchase {
            payer: AccountId(reader.u64()?),
            amount: reader.u64()?,
            currency: Currency(reader.u16()?),
            pin: pin(reader)?,
            extras: extras(reader)?,
        },
        6 => TerminalOp::Refund {
            hold: HoldId(reader.u64()?),
            amount: reader.u64()?,
        },
        7 => TerminalOp::Reversal {
            payer: AccountId(reader.u64()?),
            original_request_id: reader.u64()?,
        },
        8 => TerminalOp::Offer {
            payer: AccountId(reader.u64()?),
            amount: reader.u64()?,
            currency: Currency(reader.u16()?),
            lifetime_us: reader.u64()?,
            reference: reader.reference()?,
        },
        9 => TerminalOp::OfferCancel {
            offer: HoldId(reader.u64()?),
        },
        10 => TerminalOp::ReportFailedProvisioning {
            hold: HoldId(reader.u64()?),
            amount: reader.u64()?,
            cause: reader.u8()?,
        },
        _ => {
            return Err(StateError {
                offset: 17,
                what: "unknown terminal op",
            })
        }
    })
}

fn limits(reader: &mut Reader<'_>) -> Result<Limits, StateError> {
    Ok(Limits {
        payment_max: reader.u64()?,
        day_amount_max: reader.u64()?,
        day_count_max: reader.u32()?,
        pin_above: reader.u64()?,
    })
}

fn status(reader: &mut Reader<'_>) -> Result<Status, StateError> {
    Status::from_u8(reader.u8()?).ok_or(StateError {
        offset: 0,
        what: "unknown status",
    })
}

fn flag(reader: &mut Reader<'_>) -> Result<bool, StateError> {
    match reader.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(StateError {
            offset: 0,
            what: "flag is neither 0 nor 1",
        }),
    }
}

fn pin(reader: &mut Reader<'_>) -> Result<Option<PinBlock>, StateError> {
    let present = flag(reader)?;
    let block = PinBlock(reader.array()?);
    match (present, block.0 == [0; 8]) {
        (true, _) => Ok(Some(block)),
        (false, true) => Ok(None),
        (false, false) => Err(StateError {
            offset: 0,
            what: "PIN bytes without the PIN flag",
        }),
    }
}

fn extras(reader: &mut Reader<'_>) -> Result<Extras, StateError> {
    Ok(Extras {
        product_details: flag(reader)?,
        loyalty_points: reader.u32()?,
    })
}
