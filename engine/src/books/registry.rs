//! Merchants and their terminals: read by every payment, changed rarely by the operator.
//!
//! Entries live in append-only vectors (`boxcar`) with their mutable fields in atomics, so a
//! payment reads them without a lock and two cores paying one merchant share its cache line
//! read-only. Changes are made by [`crate::Books`] while it holds every shard lock, which
//! orders them in the log against all payments; that is why plain relaxed atomics suffice.

use std::sync::atomic::{AtomicU16, AtomicU8, Ordering};

use crate::ids::{AccountId, DeviceId, MerchantId, Reference, Status, TerminalId};
use crate::limits::{DEVICES_MAX, MERCHANTS_MAX, TERMINALS_MAX};
use crate::reason::Reason;

/// A merchant (payee).
#[derive(Debug)]
pub struct Merchant {
    /// Its origin address (empty for none), shown on its offers.
    pub origin: Reference,
    status: AtomicU8,
    fee_bps: AtomicU16,
    fee_bps_with_details: AtomicU16,
}

/// A merchant's terminal.
#[derive(Debug)]
pub struct Terminal {
    /// The merchant it belongs to, for ever.
    pub merchant: MerchantId,
    status: AtomicU8,
    /// The secret it logs on with.
    pub secret: [u8; 32],
}

/// A payer's device: it logs on for that payer only.
#[derive(Debug)]
pub struct Device {
    /// The payer account it acts for, for ever.
    pub account: AccountId,
    status: AtomicU8,
    /// The secret it logs on with.
    pub secret: [u8; 32],
}

impl Device {
    /// Its status.
    pub fn status(&self) -> Status {
        Status::from_u8(self.status.load(Ordering::Relaxed)).unwrap_or(Status::Closed)
    }
}

/// The fees a merchant pays, in basis points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fees {
    /// On a capture without product details.
    pub bps: u16,
    /// On a capture with product details (never above `bps`).
    pub bps_with_details: u16,
}

impl Fees {
    /// The fee on `amount`, rounded down.
    pub fn on(&self, amount: u64, product_details: bool) -> u64 {
        let bps = if product_details {
            self.bps_with_details
        } else {
            self.bps
        };
        let fee = u128::from(amount) * u128::from(bps) / 10_000;
        // bps <= 10,000, so the fee is at most the amount.
        debug_assert!(fee <= u128::from(amount));
        fee as u64
    }
}

/// All merchants and terminals.
#[derive(Debug)]
pub struct Registry {
    merchants: boxcar::Vec<Merchant>,
    terminals: boxcar::Vec<Terminal>,
    devices: boxcar::Vec<Device>,
    caps: Caps,
}

/// How many of each the registry takes.
#[derive(Clone, Copy, Debug)]
struct Caps {
    merchants: u32,
    terminals: u32,
    devices: u32,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry::with_caps(Caps {
            merchants: MERCHANTS_MAX,
            terminals: TERMINALS_MAX,
            devices: DEVICES_MAX,
        })
    }
}

/// A merchant or terminal as the operator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MerchantView {
    /// Its status.
    pub status: Status,
    /// Its fees.
    pub fees: Fees,
}

/// Append `item` to `list` unless it holds `cap` already; its id (from 1) or `CapacityExceeded`.
/// The caller holds every shard lock, so the count does not move meanwhile.
fn push_capped<T>(list: &boxcar::Vec<T>, cap: u32, item: T) -> Result<u32, Reason> {
    if list.count() >= cap as usize {
        return Err(Reason::CapacityExceeded);
    }
    Ok(list.push(item) as u32 + 1)
}

impl Registry {
    /// An empty registry taking at most `caps` (the limits' constants but in tests).
    fn with_caps(caps: Caps) -> Registry {
        Registry {
            merchants: boxcar::Vec::new(),
            terminals: boxcar::Vec::new(),
            devices: boxcar::Vec::new(),
            caps,
        }
    }

    /// Merchants registered.
    pub fn merchant_count(&self) -> u32 {
        self.merchants.count() as u32
    }

    /// Terminals registered.
    pub fn terminal_count(&self) -> u32 {
        self.terminals.count() as u32
    }

    /// Add a merchant; the caller holds every shard lock. Returns its id (from 1), or
    /// `CapacityExceeded` with [`MERCHANTS_MAX`] registered.
    pub fn add_merchant(&self, status: Status, fees: Fees, origin: Reference) -> Result<MerchantId, Reason> {
        let merchant = Merchant {
            origin,
            status: AtomicU8::new(status as u8),
            fee_bps: AtomicU16::new(fees.bps),
            fee_bps_with_details: AtomicU16::new(fees.bps_with_details),
        };
        push_capped(&self.merchants, self.caps.merchants, merchant).map(MerchantId)
    }

    /// Add a terminal; the caller holds every shard lock. Returns its id (from 1), or
    /// `CapacityExceeded` with [`TERMINALS_MAX`] registered.
    pub fn add_terminal(
        &self,
        merchant: MerchantId,
        status: Status,
        secret: [u8; 32],
    ) -> Result<TerminalId, Reason> {
        let terminal = Terminal {
            merchant,
            status: AtomicU8::new(status as u8),
            secret,
        };
        push_capped(&self.terminals, self.caps.terminals, terminal).map(TerminalId)
    }

    /// Devices registered.
    pub fn device_count(&self) -> u32 {
        self.devices.count() as u32
    }

    /// Add a payer device; the caller holds every shard lock. Returns its id (from 1), or
    /// `CapacityExceeded` with [`DEVICES_MAX`] registered.
    pub fn add_device(
        &self,
        account: AccountId,
        status: Status,
        secret: [u8; 32],
    ) -> Result<DeviceId, Reason> {
        let device = Device {
            account,
            status: AtomicU8::new(status as u8),
            secret,
        };
        push_capped(&self.devices, self.caps.devices, device).map(DeviceId)
    }

    /// A device by id.
    pub fn device(&self, device: DeviceId) -> Option<&Device> {
        self.devices.get(device.0.checked_sub(1)? as usize)
    }

    /// The merchant with this (non-empty) origin address.
    pub fn merchant_by_origin(&self, origin: &Reference) -> Option<MerchantId> {
        self.merchants
            .iter()
            .find(|(_, merchant)| merchant.origin.len > 0 && merchant.origin == *origin)
            .map(|(index, _)| MerchantId(index as u32 + 1))
    }

    /// A merchant by id.
    pub fn merchant(&self, merchant: MerchantId) -> Option<&Merchant> {
        self.merchants.get(merchant.0.checked_sub(1)? as usize)
    }

    /// A terminal by id.
    pub fn terminal(&self, terminal: TerminalId) -> Option<&Terminal> {
        self.terminals.get(terminal.0.checked_sub(1)? as usize)
    }

    /// The merchant's status and fees.
    pub fn merchant_view(&self, merchant: MerchantId) -> Option<MerchantView> {
        let entry = self.merchant(merchant)?;
        Some(MerchantView {
            status: entry.status(),
            fees: entry.fees(),
        })
    }

    /// The payee half of the decision pipeline: the merchant exists and is active, the terminal
    /// exists, is active and belongs to it. Returns the merchant's fees.
    pub fn admit_payee(&self, merchant: MerchantId, terminal: TerminalId) -> Result<Fees, Reason> {
        let merchant_entry = self.merchant(merchant).ok_or(Reason::MerchantInvalid)?;
        if merchant_entry.status() != Status::Active {
            return Err(Reason::MerchantInvalid);
        }
        let terminal_entry = self.terminal(terminal).ok_or(Reason::TerminalInvalid)?;
        if terminal_entry.merchant != merchant || terminal_entry.status() != Status::Active {
            return Err(Reason::TerminalInvalid);
        }
        Ok(merchant_entry.fees())
    }
}

impl Merchant {
    /// Its status.
    pub fn status(&self) -> Status {
        Status::from_u8(self.status.load(Ordering::Relaxed)).unwrap_or(Status::Closed)
    }

    /// Change its status; the caller holds every shard lock.
    pub fn set_status(&self, status: Status) {
        self.status.store(status as u8, Ordering::Relaxed);
    }

    /// Its fees.
    pub fn fees(&self) -> Fees {
        Fees {
            bps: self.fee_bps.load(Ordering::Relaxed),
            bps_with_details: self.fee_bps_with_details.load(Ordering::Relaxed),
        }
    }
}

impl Terminal {
    /// Its status.
    pub fn status(&self) -> Status {
        Status::from_u8(self.status.load(Ordering::Relaxed)).unwrap_or(Status::Closed)
    }

    /// Change its status; the caller holds every shard lock.
    pub fn set_status(&self, status: Status) {
        self.status.store(status as u8, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fee_rounds_down_and_details_lower_it() {
        let fees = Fees {
            bps: 250,
            bps_with_details: 100,
        };
        assert_eq!(fees.on(1_000, false), 25);
        assert_eq!(fees.on(1_000, true), 10);
        assert_eq!(fees.on(39, false), 0);
        assert_eq!(
            Fees {
                bps: 10_000,
                bps_with_details: 0
            }
            .on(u64::MAX, false),
            u64::MAX
        );
    }

    #[test]
    fn payee_checks_follow_the_seed_order() {
        let registry = Registry::default();
        let fees = Fees {
            bps: 100,
            bps_with_details: 50,
        };
        let shop = registry
            .add_merchant(Status::Active, fees, Reference::default())
            .expect("room");
        let other = registry
            .add_merchant(Status::Active, fees, Reference::default())
            .expect("room");
        let till = registry
            .add_terminal(shop, Status::Active, [7; 32])
            .expect("room");
        assert_eq!(registry.admit_payee(shop, till), Ok(fees));
        assert_eq!(
            registry.admit_payee(MerchantId(9), till),
            Err(Reason::MerchantInvalid)
        );
        assert_eq!(registry.admit_payee(other, till), Err(Reason::TerminalInvalid));
        assert_eq!(
            registry.admit_payee(shop, TerminalId(0)),
            Err(Reason::TerminalInvalid)
        );
        registry
            .terminal(till)
            .expect("registered")
            .set_status(Status::Frozen);
        assert_eq!(registry.admit_payee(shop, till), Err(Reason::TerminalInvalid));
        registry
            .merchant(shop)
            .expect("registered")
            .set_status(Status::Frozen);
        assert_eq!(registry.admit_payee(shop, till), Err(Reason::MerchantInvalid));
    }

    #[test]
    fn each_kind_is_registered_up_to_its_cap_then_declined() {
        // The caps themselves (tens of millions of terminals and devices) are too many to
        // register in a test; small ones run the same checks.
        let registry = Registry::with_caps(Caps {
            merchants: 2,
            terminals: 3,
            devices: 1,
        });
        let fees = Fees {
            bps: 0,
            bps_with_details: 0,
        };
        let merchants: Vec<_> = (0..2)
            .map(|_| registry.add_merchant(Status::Active, fees, Reference::default()))
            .collect();
        assert_eq!(merchants, vec![Ok(MerchantId(1)), Ok(MerchantId(2))]);
        assert_eq!(
            registry.add_merchant(Status::Active, fees, Reference::default()),
            Err(Reason::CapacityExceeded)
        );
        assert_eq!(registry.merchant_count(), 2);
        for id in 1..=3 {
            assert_eq!(
                registry.add_terminal(MerchantId(1), Status::Active, [0; 32]),
                Ok(TerminalId(id))
            );
        }
        assert_eq!(
            registry.add_terminal(MerchantId(2), Status::Active, [0; 32]),
            Err(Reason::CapacityExceeded)
        );
        assert_eq!(registry.terminal_count(), 3);
        assert_eq!(
            registry.add_device(AccountId(0), Status::Active, [0; 32]),
            Ok(DeviceId(1))
        );
        assert_eq!(
            registry.add_device(AccountId(0), Status::Active, [0; 32]),
            Err(Reason::CapacityExceeded)
        );
        assert_eq!(registry.device_count(), 1);
    }
}
