//! The books' commands in the write-ahead log: [`codec`] turns a command into a record payload
//! and back, and the [`Journal`] implementation for [`Wal`] appends it, with the command's
//! shard lock held, without allocating.

pub mod codec;

use crate::books::{Journal, JournalError};
use crate::command::Command;
use crate::ids::Lsn;
use crate::wal::Wal;

impl Journal for Wal {
    fn append(&self, timestamp_us: u64, command: &Command) -> Result<Lsn, JournalError> {
        let encoded = codec::encode(command);
        Wal::append(self, timestamp_us, encoded.as_bytes()).map_err(|error| JournalError(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::codec::{decode, encode, COMMAND_BYTES_MAX};
    use crate::command::{Command, Extras, Limits, Origin, TerminalOp};
    use crate::ids::{AccountId, Currency, HoldId, MerchantId, PinBlock, RequestKey, Status, TerminalId};

    fn limits() -> impl Strategy<Value = Limits> {
        (any::<u64>(), any::<u64>(), any::<u32>(), any::<u64>()).prop_map(|(a, b, c, d)| Limits {
            payment_max: a,
            day_amount_max: b,
            day_count_max: c,
            pin_above: d,
        })
    }

    fn pin() -> impl Strategy<Value = Option<PinBlock>> {
        prop::option::of(any::<[u8; 8]>().prop_map(PinBlock))
    }

    fn extras() -> impl Strategy<Value = Extras> {
        (any::<bool>(), any::<u32>()).prop_map(|(product_details, loyalty_points)| Extras {
            product_details,
            loyalty_points,
        })
    }

    fn status() -> impl Strategy<Value = Status> {
        prop_oneof![Just(Status::Active), Just(Status::Frozen), Just(Status::Closed)]
    }

    fn op() -> impl Strategy<Value = TerminalOp> {
        let id = any::<u64>;
        prop_oneof![
            (id(), id(), any::<u16>(), pin(), id()).prop_map(|(p, amount, c, pin, lifetime_us)| {
                TerminalOp::Authorize {
                    payer: AccountId(p),
                    amount,
                    currency: Currency(c),
                    pin,
                    lifetime_us,
                }
            }),
            (id(), id()).prop_map(|(h, amount)| TerminalOp::Increment {
                hold: HoldId(h),
                amount
            }),
            (id(), id(), any::<bool>(), extras()).prop_map(|(h, amount, last, extras)| TerminalOp::Capture {
                hold: HoldId(h),
                amount,
                last,
                extras
            }),
            id().prop_map(|h| TerminalOp::Void { hold: HoldId(h) }),
            (id(), id(), any::<u16>(), pin(), extras()).prop_map(|(p, amount, c, pin, extras)| {
                TerminalOp::Purchase {
                    payer: AccountId(p),
                    amount,
                    currency: Currency(c),
                    pin,
                    extras,
                }
            }),
            (id(), id()).prop_map(|(h, amount)| TerminalOp::Refund {
                hold: HoldId(h),
                amount
            }),
            (id(), id(), any::<u16>(), id(), "[a-z ]{0,32}").prop_map(|(p, amount, c, lifetime_us, text)| {
                TerminalOp::Offer {
                    payer: AccountId(p),
                    amount,
                    currency: Currency(c),
                    lifetime_us,
                    reference: crate::ids::Reference::new(&text).unwrap_or_default(),
                }
            }),
            id().prop_map(|o| TerminalOp::OfferCancel { offer: HoldId(o) }),
            (id(), id(), any::<u8>()).prop_map(|(h, amount, cause)| TerminalOp::ReportFailedProvisioning {
                hold: HoldId(h),
                amount,
                cause
            }),
            (id(), id()).prop_map(|(p, original_request_id)| TerminalOp::Reversal {
                payer: AccountId(p),
                original_request_id
            }),
        ]
    }

    fn command() -> impl Strategy<Value = Command> {
        let id = any::<u64>;
        prop_oneof![
            (any::<u32>(), any::<u32>(), id(), op()).prop_map(|(m, t, request_id, op)| Command::Terminal {
                origin: Origin {
                    merchant: MerchantId(m),
                    key: RequestKey {
                        terminal: TerminalId(t),
                        request_id
                    }
                },
                op
            }),
            (
                any::<u32>(),
                any::<u16>(),
                prop::option::of(1..u64::MAX),
                limits()
            )
                .prop_map(|(shard, c, mobile, limits)| Command::OpenAccount {
                    shard,
                    currency: Currency(c),
                    mobile,
                    limits
                }),
            (id(), id()).prop_map(|(a, amount)| Command::Load {
                account: AccountId(a),
                amount
            }),
            (id(), limits()).prop_map(|(a, limits)| Command::SetLimits {
                account: AccountId(a),
                limits
            }),
            (id(), any::<[u8; 8]>()).prop_map(|(a, p)| Command::SetPin {
                account: AccountId(a),
                pin: PinBlock(p)
            }),
            (id(), status()).prop_map(|(a, status)| Command::SetAccountStatus {
                account: AccountId(a),
                status
            }),
            (any::<u16>(), any::<u16>(), "[A-Z0-9]{0,11}").prop_map(
                |(fee_bps, fee_bps_with_details, origin)| {
                    Command::RegisterMerchant {
                        fee_bps,
                        fee_bps_with_details,
                        origin: crate::ids::Reference::new(&origin).unwrap_or_default(),
                    }
                }
            ),
            (any::<u32>(), status()).prop_map(|(m, status)| Command::SetMerchantStatus {
                merchant: MerchantId(m),
                status
            }),
            (any::<u32>(), any::<[u8; 32]>()).prop_map(|(m, secret)| Command::RegisterTerminal {
                merchant: MerchantId(m),
                secret
            }),
            (any::<u32>(), status()).prop_map(|(t, status)| Command::SetTerminalStatus {
                terminal: TerminalId(t),
                status
            }),
            any::<u32>().prop_map(|shard| Command::AdvanceTime { shard }),
            (any::<u32>(), any::<u64>()).prop_map(|(shard, serial)| Command::StartHoldIds { shard, serial }),
            (id(), prop::option::of(1..u64::MAX), any::<bool>(), pin()).prop_map(
                |(o, payer, accept, pin)| {
                    Command::OfferAnswer {
                        offer: HoldId(o),
                        payer: payer.map(AccountId),
                        accept,
                        pin,
                    }
                }
            ),
            (id(), id(), any::<u8>()).prop_map(|(h, amount, cause)| Command::DisputeOpen {
                hold: HoldId(h),
                amount,
                cause
            }),
            (id(), any::<bool>()).prop_map(|(d, for_payer)| Command::DisputeResolve {
                dispute: crate::ids::DisputeId(d),
                for_payer
            }),
            (id(), any::<[u8; 32]>()).prop_map(|(a, secret)| Command::RegisterDevice {
                account: AccountId(a),
                secret
            }),
        ]
    }

    proptest! {
        #[test]
        fn every_command_decodes_to_itself(command in command()) {
            let encoded = encode(&command);
            prop_assert!(encoded.as_bytes().len() <= COMMAND_BYTES_MAX);
            prop_assert_eq!(decode(encoded.as_bytes()), Ok(command));
        }

        #[test]
        fn random_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn every_truncation_of_a_command_is_an_error(command in command()) {
            let encoded = encode(&command);
            let bytes = encoded.as_bytes();
            for cut in 0..bytes.len() {
                prop_assert!(decode(&bytes[..cut]).is_err());
            }
        }
    }
}
