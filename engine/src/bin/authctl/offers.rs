//! `offers` and `offer`: what the protocol lets an operator see of offers. Version 1 has no
//! operator request for them, so these log on in the role that may ask: `offers` as a payer's
//! device (or a gateway, a device registered for account 0, which sees every payer's offers)
//! and lists its pending offers; `offer` as the merchant's terminal and asks one offer's state.

use std::fmt::Write as _;

use anyhow::bail;
use wire::messages::device::ListOffers;
use wire::messages::reply::OfferSummary;
use wire::messages::terminal::OfferStatus;
use wire::types::{OfferId, OfferState};
use wire::{Reply, Request, Role};

use crate::amount::{format_minor, Exponents};
use crate::operator::Operator;

/// Most pages `offers` asks for in one run (8 offers a page: 800,000 offers).
pub const LIST_PAGES_MAX: u32 = 100_000;

/// `offers`: every pending offer the device `device` may answer, oldest first.
pub fn list(address: &str, exponents: Exponents, device: u32, secret: [u8; 32]) -> anyhow::Result<String> {
    let flags = "--device and --device-secret (as register-device printed them)";
    let mut session = Operator::connect_as(address, Role::PayerDevice, device, secret, flags)?;
    let mut offers: Vec<OfferSummary> = Vec::new();
    let mut cursor = 0;
    for _ in 0..LIST_PAGES_MAX {
        let request = Request::ListOffers(ListOffers {
            after_offer_id: OfferId(cursor),
        });
        let Reply::ListOffers(page) = session.call("list offers", &request)? else {
            bail!("authd answered list offers with another reply type");
        };
        let entries = page.offers.as_slice();
        if let Some(last) = entries.last() {
            if last.offer_id.0 <= cursor {
                bail!(
                    "authd listed offer {} after {cursor}; its list does not advance",
                    last.offer_id.0
                );
            }
            cursor = last.offer_id.0;
        }
        offers.extend_from_slice(entries);
        if !page.more || entries.is_empty() {
            return Ok(offer_lines(device, &offers, exponents));
        }
    }
    bail!(
        "stopped after {LIST_PAGES_MAX} pages ({} offers); authd keeps offering faster than it lists",
        offers.len()
    )
}

/// A count, then a line per offer. Origin and reference are the merchant's text: printed
/// quoted and escaped, so they cannot move the terminal's cursor.
fn offer_lines(device: u32, offers: &[OfferSummary], exponents: Exponents) -> String {
    let mut text = match offers.len() {
        0 => return format!("no pending offers for device {device}\n"),
        1 => format!("1 pending offer for device {device}\n"),
        count => format!("{count} pending offers for device {device}\n"),
    };
    for offer in offers {
        let _ = writeln!(
            text,
            "offer {}: merchant {} origin {:?}, {} (currency {}), reference {:?}, {} s left",
            offer.offer_id.0,
            offer.merchant_id.0,
            offer.origin.as_str(),
            // Each in its own currency's decimals.
            format_minor(offer.amount_minor, exponents.for_display(offer.currency)),
            offer.currency,
            offer.reference.as_str(),
            offer.expires_in_s
        );
    }
    text
}

/// `offer`: where one of the terminal's merchant's offers stands.
pub fn status(
    address: &str,
    exponent: u8,
    terminal: u32,
    secret: [u8; 32],
    offer: u64,
) -> anyhow::Result<String> {
    let flags = "--terminal and --terminal-secret (as register-terminal printed them)";
    let mut session = Operator::connect_as(address, Role::Terminal, terminal, secret, flags)?;
    let request = Request::OfferStatus(OfferStatus {
        offer_id: OfferId(offer),
    });
    let what =
        format!("offer status of offer {offer} (authd shows a terminal its own merchant's offers only)");
    let Reply::OfferStatus(reply) = session.call(&what, &request)? else {
        bail!("authd answered offer status with another reply type");
    };
    let state = match reply.state {
        OfferState::Offered => "offered: funds held, waiting for the payer".to_string(),
        OfferState::Accepted => format!(
            "accepted: captured as hold {} (refund it like any purchase)",
            reply.hold_id.0
        ),
        OfferState::Rejected => "rejected by the payer: funds released".to_string(),
        OfferState::Expired => "expired unanswered: funds released".to_string(),
        OfferState::Cancelled => "cancelled by the merchant: funds released".to_string(),
        OfferState::Unknown => "unknown".to_string(),
    };
    Ok(format!(
        "offer {offer}: {}\n  state {state}\n",
        format_minor(reply.amount_minor, exponent)
    ))
}

#[cfg(test)]
mod tests {
    use wire::types::{MerchantId, ShortText};

    use super::*;

    #[test]
    fn offers_print_a_line_each_with_the_merchant_text_escaped() {
        let offer = OfferSummary {
            offer_id: OfferId(7),
            merchant_id: MerchantId(3),
            origin: ShortText::new("CAFE42").expect("fits"),
            amount_minor: 1250,
            currency: 978,
            expires_in_s: 118,
            reference: ShortText::new("order\u{1b}[2J").expect("fits"),
        };
        assert_eq!(
            offer_lines(5, &[offer], Exponents { given: None }),
            "1 pending offer for device 5\n\
             offer 7: merchant 3 origin \"CAFE42\", 12.50 (currency 978), reference \"order\\u{1b}[2J\", 118 s left\n"
        );
        assert_eq!(
            offer_lines(5, &[], Exponents { given: None }),
            "no pending offers for device 5\n"
        );
    }
}
