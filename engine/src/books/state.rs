//! The canonical byte form of the books: what the state digest hashes and what a snapshot
//! stores. Little-endian, fixed widths, in a fixed order (shard by shard, slot by slot, hold by
//! hold, the idempotency window oldest first), so equal books give equal bytes. Derived
//! structures (the mobile alias map, the expiry timer) are rebuilt on load, not stored.
//!
//! Layout of one shard (`ShardImage::encode`):
//!
//! | field | bytes |
//! |---|---|
//! | shard index, shard bits | u32, u32 |
//! | payer count N, then N payers | u32, N x 121 |
//! | first hold sequence, hold count H, then H holds | u64, u32, H x 82 |
//! | stripe count S, then S stripes | u32, S x i128 |
//! | window entry count W, then W entries | u32, W x 47 |
//! | offer reference count R, then R x (hold sequence u64, length u8, 32 bytes) | u32, R x 41 |
//! | dispute count D, then D x (hold sequence u64, payer slot u32, merchant u32, amount u64, cause u8, state u8) | u32, D x 26 |
//! | hold id run count J, then J x (first hold sequence u64, its id serial u64) (`hold_ids`; from books format 2) | u32, J x 16 |
//!
//! A payer: balance, held (u64, u64); limits: payment max, day amount max (u64, u64), day
//! count max (u32), PIN above (u64); day amount (u64), day count (u32), day (u32), loyalty
//! (u64), currency (u16), status (u8), PIN failures (u8), mobile (u64, 0 = none), verifier
//! flag (u8) and verifier (32 bytes, zero when none), opening log position (u64).

use sha2::{Digest, Sha256};

use crate::books::account::{Payer, PayerCold};
use crate::books::dispute::{Dispute, DisputeState};
use crate::books::hold::{Hold, HoldState, HoldTable};
use crate::books::hold_ids::{HoldIds, Run};
use crate::books::idempotency::Entry;
use crate::books::registry::{Fees, Registry};
use crate::books::shard::Shard;
use crate::command::{Limits, Outcome};
use crate::ids::{
    AccountId, Currency, DeviceId, MerchantId, Reference, RequestKey, Status, TerminalId, REFERENCE_BYTES_MAX,
};
use crate::reason::Reason;

/// Bytes of one encoded payer.
pub const PAYER_BYTES: usize = 121;
/// Bytes of one encoded hold.
pub const HOLD_BYTES: usize = 82;
/// Bytes of one encoded window entry.
pub const ENTRY_BYTES: usize = 47;

/// The bytes do not form a valid state; says where.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid books state at byte {offset}: {what}")]
pub struct StateError {
    /// Offset in the section.
    pub offset: usize,
    /// What was wrong.
    pub what: &'static str,
}

/// A shard's state, copied while its lock is held and encoded after it is released.
///
/// Encoding a full shard field by field (262,144 holds, 82 bytes each) takes ~120 ms; under
/// the lock that held every payment of the shard, and so, within a millisecond, every event
/// loop, for a snapshot's whole run: seconds without an answer. Copying is memory copies
/// (a few milliseconds for a full shard), into buffers reused from shard to shard.
#[derive(Debug, Default)]
pub struct ShardImage {
    index: u32,
    shard_bits: u32,
    payers: Vec<Payer>,
    cold: Vec<PayerCold>,
    first_sequence: u64,
    holds: Vec<Hold>,
    stripes: Vec<i128>,
    window: Vec<Entry>,
    references: Vec<(u64, Reference)>,
    disputes: Vec<Dispute>,
    hold_id_runs: Vec<Run>,
}

/// How much of a shard to make room for before copying it.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShardSize {
    payers: usize,
    holds: usize,
    stripes: usize,
    window: usize,
    references: usize,
    disputes: usize,
}

impl ShardSize {
    /// The sizes of `shard`'s tables now.
    pub fn of(shard: &Shard) -> ShardSize {
        ShardSize {
            payers: shard.payers.len(),
            holds: shard.holds.len(),
            stripes: shard.stripes.len(),
            window: shard.window.len(),
            references: shard.references.len(),
            disputes: shard.disputes.len(),
        }
    }
}

/// Grow `buffer` to hold `len` items, with room for what arrives before the copy, and write
/// over the new room once: the copy made under a shard's lock then takes no page faults
/// (~60 ms for a full shard's fresh buffers on this machine's VM).
fn make_room<T>(buffer: &mut Vec<T>, len: usize) {
    let wanted = len + len / 8 + 1024;
    if buffer.capacity() >= wanted {
        return;
    }
    // A new buffer rather than a grown one: growing would copy the old contents and may
    // double the capacity past what is wanted.
    *buffer = Vec::with_capacity(wanted);
    for slot in buffer.spare_capacity_mut() {
        *slot = std::mem::MaybeUninit::zeroed();
    }
    std::hint::black_box(buffer.spare_capacity_mut());
}

impl ShardImage {
    /// Make room for a shard of `size`, outside its lock.
    pub fn make_room(&mut self, size: ShardSize) {
        make_room(&mut self.payers, size.payers);
        make_room(&mut self.cold, size.payers);
        make_room(&mut self.holds, size.holds);
        make_room(&mut self.stripes, size.stripes);
        make_room(&mut self.window, size.window);
        make_room(&mut self.references, size.references);
        make_room(&mut self.disputes, size.disputes);
    }

    /// Copy `shard` (replacing what was copied before).
    pub fn capture(&mut self, shard: &Shard) {
        self.index = shard.index;
        self.shard_bits = shard.shard_bits;
        self.payers.clear();
        self.payers.extend_from_slice(&shard.payers);
        self.cold.clear();
        self.cold.extend_from_slice(&shard.cold);
        self.first_sequence = shard.holds.first_sequence();
        shard.holds.copy_into(&mut self.holds);
        self.stripes.clear();
        self.stripes.extend_from_slice(&shard.stripes);
        self.window.clear();
        self.window.extend(shard.window.iter());
        self.references.clear();
        self.references.extend(
            shard
                .references
                .iter()
                .map(|(sequence, reference)| (*sequence, *reference)),
        );
        self.disputes.clear();
        self.disputes.extend_from_slice(&shard.disputes);
        self.hold_id_runs.clear();
        self.hold_id_runs.extend_from_slice(shard.hold_ids.runs());
    }

    /// The length of the encoded form.
    pub fn encoded_len(&self) -> usize {
        12 + self.payers.len() * PAYER_BYTES
            + 12
            + self.holds.len() * HOLD_BYTES
            + 4
            + self.stripes.len() * 16
            + 4
            + self.window.len() * ENTRY_BYTES
            + 4
            + self.references.len() * (9 + REFERENCE_BYTES_MAX)
            + 4
            + self.disputes.len() * 26
            + 4
            + self.hold_id_runs.len() * 16
    }

    /// Append the canonical form of the copied shard.
    pub fn encode(&mut self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&self.shard_bits.to_le_bytes());
        out.extend_from_slice(&(self.payers.len() as u32).to_le_bytes());
        for (payer, cold) in self.payers.iter().zip(&self.cold) {
            encode_payer(payer, cold, out);
        }
        out.extend_from_slice(&self.first_sequence.to_le_bytes());
        out.extend_from_slice(&(self.holds.len() as u32).to_le_bytes());
        for hold in &self.holds {
            encode_hold(hold, out);
        }
        out.extend_from_slice(&(self.stripes.len() as u32).to_le_bytes());
        for stripe in &self.stripes {
            out.extend_from_slice(&stripe.to_le_bytes());
        }
        out.extend_from_slice(&(self.window.len() as u32).to_le_bytes());
        for entry in &self.window {
            encode_entry(entry, out);
        }
        self.references.sort_unstable_by_key(|(sequence, _)| *sequence);
        out.extend_from_slice(&(self.references.len() as u32).to_le_bytes());
        for (sequence, reference) in &self.references {
            out.extend_from_slice(&sequence.to_le_bytes());
            out.push(reference.len);
            out.extend_from_slice(&reference.bytes);
        }
        out.extend_from_slice(&(self.disputes.len() as u32).to_le_bytes());
        for dispute in &self.disputes {
            out.extend_from_slice(&dispute.hold_sequence.to_le_bytes());
            out.extend_from_slice(&dispute.payer_slot.to_le_bytes());
            out.extend_from_slice(&dispute.merchant.to_le_bytes());
            out.extend_from_slice(&dispute.amount.to_le_bytes());
            out.push(dispute.cause);
            out.push(dispute.state as u8);
        }
        out.extend_from_slice(&(self.hold_id_runs.len() as u32).to_le_bytes());
        for run in &self.hold_id_runs {
            out.extend_from_slice(&run.sequence.to_le_bytes());
            out.extend_from_slice(&run.serial.to_le_bytes());
        }
    }
}

fn encode_payer(payer: &Payer, cold: &PayerCold, out: &mut Vec<u8>) {
    let start = out.len();
    for value in [payer.balance, payer.held, payer.payment_max, payer.day_amount_max] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out.extend_from_slice(&payer.day_count_max.to_le_bytes());
    out.extend_from_slice(&payer.pin_above.to_le_bytes());
    out.extend_from_slice(&payer.day_amount.to_le_bytes());
    out.extend_from_slice(&payer.day_count.to_le_bytes());
    out.extend_from_slice(&payer.day.to_le_bytes());
    out.extend_from_slice(&cold.loyalty_points.to_le_bytes());
    out.extend_from_slice(&payer.currency.0.to_le_bytes());
    out.push(payer.status as u8);
    out.push(payer.pin_failures);
    out.extend_from_slice(&cold.mobile.unwrap_or(0).to_le_bytes());
    out.push(u8::from(cold.pin_verifier.is_some()));
    out.extend_from_slice(&cold.pin_verifier.unwrap_or([0; 32]));
    out.extend_from_slice(&cold.opened_lsn.to_le_bytes());
    debug_assert_eq!(out.len() - start, PAYER_BYTES);
}

fn encode_hold(hold: &Hold, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&hold.payer_slot.to_le_bytes());
    out.extend_from_slice(&hold.merchant.to_le_bytes());
    out.extend_from_slice(&hold.terminal.to_le_bytes());
    out.push(hold.state as u8);
    out.push(hold.offer);
    out.extend_from_slice(&hold.loyalty_points.to_le_bytes());
    let amounts = [hold.held, hold.authorized, hold.captured, hold.refunded, hold.fee];
    for value in amounts
        .into_iter()
        .chain([hold.created_us, hold.expires_us, hold.finished_us])
    {
        out.extend_from_slice(&value.to_le_bytes());
    }
    debug_assert_eq!(out.len() - start, HOLD_BYTES);
}

fn encode_entry(entry: &Entry, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&entry.key.terminal.0.to_le_bytes());
    out.extend_from_slice(&entry.key.request_id.to_le_bytes());
    out.extend_from_slice(&entry.fingerprint.to_le_bytes());
    out.push(entry.kind);
    out.push(entry.outcome.reason as u8);
    out.extend_from_slice(&entry.outcome.id.to_le_bytes());
    out.extend_from_slice(&entry.outcome.amount.to_le_bytes());
    out.extend_from_slice(&entry.at_us.to_le_bytes());
    out.push(u8::from(entry.reversed));
    debug_assert_eq!(out.len() - start, ENTRY_BYTES);
}

/// Append the canonical form of the registry.
pub fn encode_registry(registry: &Registry, out: &mut Vec<u8>) {
    let merchants = registry.merchant_count();
    out.extend_from_slice(&merchants.to_le_bytes());
    for id in 1..=merchants {
        let view = registry
            .merchant_view(MerchantId(id))
            .expect("ids below the count are registered");
        out.push(view.status as u8);
        out.extend_from_slice(&view.fees.bps.to_le_bytes());
        out.extend_from_slice(&view.fees.bps_with_details.to_le_bytes());
        let origin = registry
            .merchant(MerchantId(id))
            .map(|merchant| merchant.origin)
            .unwrap_or_default();
        out.push(origin.len);
        out.extend_from_slice(&origin.bytes);
    }
    let terminals = registry.terminal_count();
    out.extend_from_slice(&terminals.to_le_bytes());
    for id in 1..=terminals {
        let terminal = registry
            .terminal(TerminalId(id))
            .expect("ids below the count are registered");
        out.extend_from_slice(&terminal.merchant.0.to_le_bytes());
        out.push(terminal.status() as u8);
        out.extend_from_slice(&terminal.secret);
    }
    let devices = registry.device_count();
    out.extend_from_slice(&devices.to_le_bytes());
    for id in 1..=devices {
        let device = registry
            .device(DeviceId(id))
            .expect("ids below the count are registered");
        out.extend_from_slice(&device.account.0.to_le_bytes());
        out.push(device.status() as u8);
        out.extend_from_slice(&device.secret);
    }
}

/// SHA-256 over the registry and every shard in canonical form.
pub fn digest<'a>(registry: &Registry, shards: impl Iterator<Item = &'a Shard>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let mut buffer = Vec::new();
    encode_registry(registry, &mut buffer);
    hasher.update(&buffer);
    let mut image = ShardImage::default();
    for shard in shards {
        buffer.clear();
        image.capture(shard);
        image.encode(&mut buffer);
        hasher.update(&buffer);
    }
    hasher.finalize().into()
}

/// A bounds-checked little-endian reader: every read of stored bytes goes through it.
pub struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    /// Read from the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, offset: 0 }
    }

    fn error(&self, what: &'static str) -> StateError {
        StateError {
            offset: self.offset,
            what,
        }
    }

    /// The next `N` bytes.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], StateError> {
        let rest = self.bytes.get(self.offset..).unwrap_or_default();
        let (head, _) = rest
            .split_first_chunk::<N>()
            .ok_or_else(|| self.error("truncated"))?;
        self.offset += N;
        Ok(*head)
    }

    /// A byte.
    pub fn u8(&mut self) -> Result<u8, StateError> {
        Ok(self.array::<1>()?[0])
    }

    /// A u16.
    pub fn u16(&mut self) -> Result<u16, StateError> {
        self.array().map(u16::from_le_bytes)
    }

    /// A u32.
    pub fn u32(&mut self) -> Result<u32, StateError> {
        self.array().map(u32::from_le_bytes)
    }

    /// A u64.
    pub fn u64(&mut self) -> Result<u64, StateError> {
        self.array().map(u64::from_le_bytes)
    }

    /// An i128.
    pub fn i128(&mut self) -> Result<i128, StateError> {
        self.array().map(i128::from_le_bytes)
    }

    /// A count of items of `item_bytes` each that must fit in what is left.
    pub fn count(&mut self, item_bytes: usize) -> Result<usize, StateError> {
        let count = self.u32()? as usize;
        if count.saturating_mul(item_bytes) > self.bytes.len() - self.offset {
            return Err(self.error("count larger than the bytes left"));
        }
        Ok(count)
    }

    /// A reference or origin: its length byte, then the whole field. The length must fit and
    /// the bytes after it be zero (as `Reference` keeps them), so stored bytes decode to one
    /// reference only.
    pub fn reference(&mut self) -> Result<Reference, StateError> {
        let len = self.u8()?;
        let bytes: [u8; REFERENCE_BYTES_MAX] = self.array()?;
        let padding = bytes.get(usize::from(len)..);
        if !padding.is_some_and(|padding| padding.iter().all(|byte| *byte == 0)) {
            return Err(self.error("reference length or padding invalid"));
        }
        Ok(Reference { bytes, len })
    }

    /// True when every byte was read.
    pub fn is_done(&self) -> bool {
        self.offset == self.bytes.len()
    }
}

/// Rebuild a shard from its canonical form; `window_entries` and `holds_max` come from the
/// configuration, not the bytes. Books format 1 had no hold id runs (`with_runs` false).
pub fn decode_shard(
    bytes: &[u8],
    window_entries: u32,
    holds_max: u32,
    with_runs: bool,
) -> Result<Shard, StateError> {
    let mut reader = Reader::new(bytes);
    let index = reader.u32()?;
    let shard_bits = reader.u32()?;
    let mut shard = Shard::new(index, shard_bits, window_entries, holds_max);
    let payers = reader.count(PAYER_BYTES)?;
    shard.payers.reserve_exact(payers);
    shard.cold.reserve_exact(payers);
    for _ in 0..payers {
        let (payer, cold) = decode_payer(&mut reader)?;
        shard.payers.push(payer);
        shard.cold.push(cold);
    }
    let first_sequence = reader.u64()?;
    let holds = reader.count(HOLD_BYTES)?;
    let mut kept = Vec::with_capacity(holds);
    for _ in 0..holds {
        let hold = decode_hold(&mut reader)?;
        if hold.payer_slot as usize >= shard.payers.len() {
            return Err(reader.error("hold of an unknown payer slot"));
        }
        kept.push(hold);
    }
    shard.holds = HoldTable::restore(first_sequence, kept);
    let pending: Vec<(u64, u32)> = shard
        .holds
        .iter()
        .filter(|(_, hold)| hold.offer != 0 && hold.state == HoldState::Active)
        .map(|(sequence, hold)| (sequence, hold.payer_slot))
        .collect();
    for (sequence, slot) in pending {
        shard.index_offer(sequence, slot, true);
    }
    let stripes = reader.count(16)?;
    shard.stripes = (0..stripes).map(|_| reader.i128()).collect::<Result<_, _>>()?;
    let entries = reader.count(ENTRY_BYTES)?;
    for _ in 0..entries {
        let entry = decode_entry(&mut reader)?;
        if shard.window.get(&entry.key).is_some() {
            return Err(reader.error("duplicate idempotency key"));
        }
        shard.window.insert(entry);
    }
    let references = reader.count(41)?;
    for _ in 0..references {
        let sequence = reader.u64()?;
        let reference = reader.reference()?;
        shard.references.insert(sequence, reference);
    }
    let disputes = reader.count(26)?;
    for _ in 0..disputes {
        let hold_sequence = reader.u64()?;
        let payer_slot = reader.u32()?;
        let merchant = reader.u32()?;
        let amount = reader.u64()?;
        let cause = reader.u8()?;
        let state =
            DisputeState::from_u8(reader.u8()?).ok_or_else(|| reader.error("unknown dispute state"))?;
        if payer_slot as usize >= shard.payers.len() {
            return Err(reader.error("dispute of an unknown payer slot"));
        }
        if merchant == 0 || merchant > crate::limits::MERCHANTS_MAX {
            return Err(reader.error("dispute of a merchant id out of range"));
        }
        shard.disputes.push(Dispute {
            hold_sequence,
            payer_slot,
            merchant,
            amount,
            cause,
            state,
        });
    }
    if with_runs {
        shard.hold_ids = decode_hold_ids(&mut reader, &shard)?;
    }
    if !reader.is_done() {
        return Err(reader.error("bytes after the shard"));
    }
    Ok(shard)
}

/// The hold id runs of `shard` (whose holds are decoded), checked against them.
fn decode_hold_ids(reader: &mut Reader<'_>, shard: &Shard) -> Result<HoldIds, StateError> {
    let count = reader.count(16)?;
    let runs = (0..count)
        .map(|_| {
            Ok(Run {
                sequence: reader.u64()?,
                serial: reader.u64()?,
            })
        })
        .collect::<Result<Vec<_>, StateError>>()?;
    if runs
        .last()
        .is_some_and(|run| run.sequence > shard.holds.next_sequence())
    {
        return Err(reader.error("hold id run past the next hold"));
    }
    HoldIds::restore(runs, crate::books::hold_ids::serial_max(shard.shard_bits))
        .map_err(|what| reader.error(what))
}

fn decode_payer(reader: &mut Reader<'_>) -> Result<(Payer, PayerCold), StateError> {
    let balance = reader.u64()?;
    let held = reader.u64()?;
    let limits = Limits {
        payment_max: reader.u64()?,
        day_amount_max: reader.u64()?,
        day_count_max: reader.u32()?,
        pin_above: reader.u64()?,
    };
    let mut payer = Payer::new(Currency(0), limits);
    payer.balance = balance;
    payer.held = held;
    payer.day_amount = reader.u64()?;
    payer.day_count = reader.u32()?;
    payer.day = reader.u32()?;
    let loyalty_points = reader.u64()?;
    payer.currency = Currency(reader.u16()?);
    payer.status = Status::from_u8(reader.u8()?).ok_or_else(|| reader.error("unknown account status"))?;
    payer.pin_failures = reader.u8()?;
    if payer.held > payer.balance {
        return Err(reader.error("held above balance"));
    }
    let mobile = Some(reader.u64()?).filter(|number| *number != 0);
    let has_verifier = reader.u8()?;
    let verifier = reader.array::<32>()?;
    let pin_verifier = match has_verifier {
        0 => None,
        1 => Some(verifier),
        _ => return Err(reader.error("verifier flag is neither 0 nor 1")),
    };
    let opened_lsn = reader.u64()?;
    Ok((
        payer,
        PayerCold {
            mobile,
            pin_verifier,
            opened_lsn,
            loyalty_points,
        },
    ))
}

fn decode_hold(reader: &mut Reader<'_>) -> Result<Hold, StateError> {
    let payer_slot = reader.u32()?;
    let merchant = reader.u32()?;
    let terminal = reader.u32()?;
    let state = HoldState::from_u8(reader.u8()?).ok_or_else(|| reader.error("unknown hold state"))?;
    let offer = reader.u8()?;
    if offer > crate::books::hold::OFFER_CANCELLED {
        return Err(reader.error("unknown offer flag"));
    }
    let loyalty_points = reader.u32()?;
    if merchant == 0 || merchant > crate::limits::MERCHANTS_MAX {
        // A merchant's ledger stripe is sized by its id: an absurd id would allocate without end.
        return Err(reader.error("hold of a merchant id out of range"));
    }
    let hold = Hold {
        payer_slot,
        merchant,
        terminal,
        state,
        offer,
        loyalty_points,
        held: reader.u64()?,
        authorized: reader.u64()?,
        captured: reader.u64()?,
        refunded: reader.u64()?,
        fee: reader.u64()?,
        created_us: reader.u64()?,
        expires_us: reader.u64()?,
        finished_us: reader.u64()?,
    };
    if hold.refunded > hold.captured {
        return Err(reader.error("hold refunded above captured"));
    }
    Ok(hold)
}

fn decode_entry(reader: &mut Reader<'_>) -> Result<Entry, StateError> {
    let key = RequestKey {
        terminal: TerminalId(reader.u32()?),
        request_id: reader.u64()?,
    };
    let fingerprint = reader.u64()?;
    let kind = reader.u8()?;
    let reason = Reason::from_u8(reader.u8()?).ok_or_else(|| reader.error("unknown reason"))?;
    let outcome = Outcome {
        reason,
        id: reader.u64()?,
        amount: reader.u64()?,
    };
    let at_us = reader.u64()?;
    let reversed = match reader.u8()? {
        0 => false,
        1 => true,
        _ => return Err(reader.error("reversed flag is neither 0 nor 1")),
    };
    Ok(Entry {
        key,
        fingerprint,
        kind,
        outcome,
        at_us,
        reversed,
    })
}

/// Rebuild the registry from its canonical form.
pub fn decode_registry(bytes: &[u8]) -> Result<Registry, StateError> {
    let mut reader = Reader::new(bytes);
    let registry = Registry::default();
    let merchants = reader.count(38)?;
    for _ in 0..merchants {
        let status = Status::from_u8(reader.u8()?).ok_or_else(|| reader.error("unknown merchant status"))?;
        let fees = Fees {
            bps: reader.u16()?,
            bps_with_details: reader.u16()?,
        };
        if fees.bps > crate::limits::FEE_BPS_MAX || fees.bps_with_details > crate::limits::FEE_BPS_MAX {
            // A fee above the amount would underflow every capture's settlement.
            return Err(reader.error("merchant fee above 10000 basis points"));
        }
        let origin = reader.reference()?;
        registry
            .add_merchant(status, fees, origin)
            .map_err(|_| reader.error("more merchants than the registry takes"))?;
    }
    let terminals = reader.count(37)?;
    for _ in 0..terminals {
        let merchant = MerchantId(reader.u32()?);
        if merchant.0 == 0 || merchant.0 as usize > merchants {
            return Err(reader.error("terminal of an unknown merchant"));
        }
        let status = Status::from_u8(reader.u8()?).ok_or_else(|| reader.error("unknown terminal status"))?;
        registry
            .add_terminal(merchant, status, reader.array::<32>()?)
            .map_err(|_| reader.error("more terminals than the registry takes"))?;
    }
    let devices = reader.count(41)?;
    for _ in 0..devices {
        let account = AccountId(reader.u64()?);
        let status = Status::from_u8(reader.u8()?).ok_or_else(|| reader.error("unknown device status"))?;
        registry
            .add_device(account, status, reader.array::<32>()?)
            .map_err(|_| reader.error("more devices than the registry takes"))?;
    }
    if !reader.is_done() {
        return Err(reader.error("bytes after the registry"));
    }
    Ok(registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(len: u8, bytes: [u8; REFERENCE_BYTES_MAX]) -> Vec<u8> {
        let mut stored = vec![len];
        stored.extend_from_slice(&bytes);
        stored
    }

    #[test]
    fn a_stored_reference_decodes_only_with_a_fitting_length_and_zero_padding() {
        let reference = Reference::new("limit 50").expect("fits");
        let bytes = stored(reference.len, reference.bytes);
        let mut reader = Reader::new(&bytes);
        assert_eq!(
            reader.reference().map(|decoded| decoded.as_str().to_owned()),
            Ok("limit 50".into())
        );
        assert!(reader.is_done());

        let full = Reference::new(&"x".repeat(REFERENCE_BYTES_MAX)).expect("fits exactly");
        let bytes = stored(full.len, full.bytes);
        assert!(
            Reader::new(&bytes).reference().is_ok(),
            "a full field has no padding"
        );

        let too_long = stored(REFERENCE_BYTES_MAX as u8 + 1, full.bytes);
        let mut dirty = reference.bytes;
        dirty[REFERENCE_BYTES_MAX - 1] = b'!';
        for bytes in [too_long, stored(reference.len, dirty)] {
            let error = Reader::new(&bytes).reference().expect_err("refused");
            assert_eq!(error.what, "reference length or padding invalid");
        }
        let cut = Reader::new(&[3, 1, 2]).reference().expect_err("cut short");
        assert_eq!(cut.what, "truncated");
    }

    /// `shard`'s canonical form.
    fn encoded(shard: &Shard) -> Vec<u8> {
        let mut image = ShardImage::default();
        image.capture(shard);
        let mut bytes = Vec::new();
        image.encode(&mut bytes);
        bytes
    }

    #[test]
    fn hold_id_runs_round_trip_and_a_books_format_1_shard_reads_without_them() {
        let mut shard = Shard::new(1, 1, 16, 64);
        assert!(shard.start_hold_ids(5).reason.is_approved());
        let bytes = encoded(&shard);
        let read = decode_shard(&bytes, 16, 64, true).expect("decodes");
        assert_eq!(read.hold_ids, shard.hold_ids);
        assert_eq!(read.hold_id(1), crate::ids::HoldId((5 << 1) | 1));
        assert_eq!(
            decode_shard(&bytes, 16, 64, false)
                .expect_err("runs read as format 1")
                .what,
            "bytes after the shard"
        );
        // Format 1 ended before the run count (4 bytes) and the one run (16).
        let format_1 = &bytes[..bytes.len() - 20];
        let read = decode_shard(format_1, 16, 64, false).expect("a format 1 shard decodes");
        assert!(read.hold_ids.is_empty());
        assert!(decode_shard(format_1, 16, 64, true).is_err());
    }

    #[test]
    fn stored_hold_id_runs_past_the_next_hold_or_overlapping_are_refused() {
        let mut shard = Shard::new(0, 1, 16, 64);
        assert!(shard.start_hold_ids(1).reason.is_approved());
        let bytes = encoded(&shard);
        let at = bytes.len() - 16;
        let mut past = bytes.clone();
        past[at..at + 8].copy_from_slice(&2u64.to_le_bytes());
        assert_eq!(
            decode_shard(&past, 16, 64, true).expect_err("refused").what,
            "hold id run past the next hold"
        );
        let mut below = bytes;
        below[at + 8..].copy_from_slice(&0u64.to_le_bytes());
        assert_eq!(
            decode_shard(&below, 16, 64, true).expect_err("refused").what,
            "hold id run overlapping the one before"
        );
    }
}
