//! Hold ids that a crash never hands out twice.
//!
//! A shard numbers its holds by a dense sequence: their place in the hold table. Their ids
//! (`serial << shard_bits | shard index`) follow the sequence, one serial each, except that at
//! every start of the server the next serial skips ahead ([`HOLD_SERIAL_SKIP`]), logged before
//! anything is listened to. The server shows an offer to the payer's devices before its record
//! is durable; a crash may then lose the offer while a device holds it. The next start replays
//! the log, whose sequences end before that offer, and the skip puts every new id past any the
//! crashed run could have shown: a stale answer names an id nobody has, never another offer.
//!
//! The skips are kept as runs: from `sequence` on, holds get serials from `serial` on, until
//! the next run. Before the first run, a hold's serial is its sequence (books from before the
//! first start of a server, and holds of older versions, which skipped nothing). Runs are
//! kept after their holds are pruned (a dispute names its capture's id for good): a run is
//! added only by a start that follows new holds, 16 bytes each.

/// How far the next serial moves at a start: more holds than a run can have handed out
/// without their records being durable. With fsync `always` that is what the log has not yet
/// synced: its pending buffer (64 MiB at most) and the batch being written. With fsync `never`
/// it is what the page cache held at a power loss. 2^32 hold records are hundreds of GiB.
pub const HOLD_SERIAL_SKIP: u64 = 1 << 32;

/// The largest serial a start may give in a shard of books with `shard_bits`: the largest an
/// id can carry, less a skip's room for the holds of the run it starts.
pub const fn serial_max(shard_bits: u32) -> u64 {
    (u64::MAX >> shard_bits) - HOLD_SERIAL_SKIP
}

/// From `sequence` on, holds get serials from `serial` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// The first hold sequence of the run.
    pub sequence: u64,
    /// Its serial.
    pub serial: u64,
}

/// The runs of a shard's hold serials, oldest first: sequences and serials both increase.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HoldIds {
    runs: Vec<Run>,
}

/// The run before any recorded one: serial = sequence.
const IDENTITY: Run = Run {
    sequence: 0,
    serial: 0,
};

impl HoldIds {
    /// Runs read from a snapshot, checked: each must start past the serials of the one before,
    /// at a serial no start could pass (`serial_max`).
    pub fn restore(runs: Vec<Run>, serial_max: u64) -> Result<HoldIds, &'static str> {
        let mut previous = IDENTITY;
        for (index, run) in runs.iter().enumerate() {
            if index > 0 && run.sequence <= previous.sequence {
                return Err("hold id runs out of order");
            }
            // Serials stay at or above sequences: a lookup by serial never overflows.
            let reached = previous.serial.checked_add(run.sequence - previous.sequence);
            if reached.is_none_or(|reached| run.serial < reached) {
                return Err("hold id run overlapping the one before");
            }
            if run.serial > serial_max {
                return Err("hold id run past the largest serial");
            }
            previous = *run;
        }
        Ok(HoldIds { runs })
    }

    /// The runs, oldest first.
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// True until the first start of a server recorded a run.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The run whose `key` (its first sequence, or its first serial) is the last at or below
    /// `at`, and the run after it, if any. Recent holds are in the last run: one comparison on
    /// the hot path, a binary search for older ones.
    fn runs_around(&self, at: u64, key: fn(&Run) -> u64) -> (Run, Option<Run>) {
        match self.runs.last() {
            Some(last) if key(last) <= at => (*last, None),
            _ => {
                let index = self.runs.partition_point(|run| key(run) <= at);
                let run = index.checked_sub(1).map_or(IDENTITY, |index| self.runs[index]);
                (run, self.runs.get(index).copied())
            }
        }
    }

    /// The serial of the hold at `sequence`.
    pub fn serial(&self, sequence: u64) -> u64 {
        let (run, _) = self.runs_around(sequence, |run| run.sequence);
        run.serial + (sequence - run.sequence)
    }

    /// The sequence whose serial is `serial`, if a run gives it one (a serial skipped over
    /// names no hold).
    pub fn sequence(&self, serial: u64) -> Option<u64> {
        let (run, next) = self.runs_around(serial, |run| run.serial);
        let sequence = run.sequence + (serial - run.serial);
        match next {
            Some(next) if sequence >= next.sequence => None,
            _ => Some(sequence),
        }
    }

    /// The first sequence whose serial is above `serial` (a page of a list starts there).
    pub fn first_sequence_after(&self, serial: u64) -> u64 {
        let (run, next) = self.runs_around(serial, |run| run.serial);
        let after = run.sequence.saturating_add(serial - run.serial).saturating_add(1);
        match next {
            Some(next) => after.min(next.sequence),
            None => after,
        }
    }

    /// The serial a start gives the hold at `next_sequence`: past every serial a run may have
    /// shown, or, at the first start, the sequence itself (nothing was shown ahead before).
    pub fn next_start(&self, next_sequence: u64) -> u64 {
        let serial = self.serial(next_sequence);
        match self.is_empty() {
            true => serial,
            false => serial.saturating_add(HOLD_SERIAL_SKIP),
        }
    }

    /// From `next_sequence` on, holds get serials from `serial` on. Refused (false) if that
    /// would give a serial twice, or exceed `serial_max`.
    pub fn start(&mut self, next_sequence: u64, serial: u64, serial_max: u64) -> bool {
        if serial < self.serial(next_sequence) || serial > serial_max {
            return false;
        }
        let run = Run {
            sequence: next_sequence,
            serial,
        };
        match self.runs.last_mut() {
            // No hold took a serial of the last run: it is replaced, so that starts without
            // holds between them (a crash loop) do not grow the list.
            Some(last) if last.sequence == next_sequence => *last = run,
            _ => self.runs.push(run),
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs as three starts leave them: serials 1..=9 for sequences 1..=9, then a skip at
    /// sequence 10 and another at 15.
    fn three_starts() -> HoldIds {
        let mut ids = HoldIds::default();
        assert!(ids.start(1, 1, u64::MAX));
        assert!(ids.start(10, ids.next_start(10), u64::MAX));
        assert!(ids.start(15, ids.next_start(15), u64::MAX));
        ids
    }

    #[test]
    fn the_first_start_keeps_serials_equal_to_sequences_and_later_ones_skip() {
        let ids = three_starts();
        assert_eq!(ids.serial(9), 9);
        assert_eq!(ids.serial(10), 10 + HOLD_SERIAL_SKIP);
        assert_eq!(ids.serial(14), 14 + HOLD_SERIAL_SKIP);
        assert_eq!(ids.serial(15), 15 + 2 * HOLD_SERIAL_SKIP);
        for sequence in 1..20 {
            assert_eq!(
                ids.sequence(ids.serial(sequence)),
                Some(sequence),
                "sequence {sequence}"
            );
        }
    }

    #[test]
    fn serials_skipped_over_name_no_hold() {
        let ids = three_starts();
        // What a crashed run may have shown from sequence 10 on, before the second start.
        for serial in [10, 11, 14, 15, 100, HOLD_SERIAL_SKIP + 9, HOLD_SERIAL_SKIP + 15] {
            assert_eq!(ids.sequence(serial), None, "serial {serial}");
        }
        assert_eq!(ids.sequence(HOLD_SERIAL_SKIP + 14), Some(14));
    }

    #[test]
    fn a_list_after_a_serial_goes_on_at_the_next_hold() {
        let ids = three_starts();
        assert_eq!(ids.first_sequence_after(0), 1);
        assert_eq!(ids.first_sequence_after(5), 6);
        assert_eq!(ids.first_sequence_after(9), 10);
        assert_eq!(ids.first_sequence_after(1_000), 10, "a skipped serial");
        assert_eq!(ids.first_sequence_after(HOLD_SERIAL_SKIP + 12), 13);
        assert_eq!(ids.first_sequence_after(HOLD_SERIAL_SKIP + 14), 15);
        assert_eq!(
            ids.first_sequence_after(u64::MAX),
            u64::MAX - 2 * HOLD_SERIAL_SKIP + 1
        );
    }

    #[test]
    fn a_start_may_not_give_a_serial_twice_nor_pass_the_maximum() {
        let mut ids = three_starts();
        let next = ids.serial(20);
        assert!(!ids.start(20, next - 1, u64::MAX));
        assert!(!ids.start(20, next + 1, next));
        assert!(ids.start(20, next, next));
        assert_eq!(ids, {
            let mut expected = three_starts();
            expected.runs.push(Run {
                sequence: 20,
                serial: next,
            });
            expected
        });
    }

    #[test]
    fn starts_without_holds_between_them_replace_the_last_run() {
        let mut ids = three_starts();
        for _ in 0..5 {
            assert!(ids.start(15, ids.next_start(15), u64::MAX));
        }
        assert_eq!(ids.runs().len(), 3);
        assert_eq!(ids.serial(15), 15 + 7 * HOLD_SERIAL_SKIP);
    }

    #[test]
    fn restored_runs_must_not_overlap() {
        let runs = three_starts().runs().to_vec();
        let last = runs[2].serial;
        assert_eq!(HoldIds::restore(runs.clone(), last), Ok(three_starts()));
        assert_eq!(
            HoldIds::restore(runs.clone(), last - 1),
            Err("hold id run past the largest serial")
        );
        let mut overlapping = runs.clone();
        overlapping[2].serial = overlapping[1].serial + 4;
        assert!(HoldIds::restore(overlapping, u64::MAX).is_err());
        let mut backwards = runs;
        backwards[2].sequence = 10;
        assert!(HoldIds::restore(backwards, u64::MAX).is_err());
        let below = vec![Run {
            sequence: 5,
            serial: 4,
        }];
        assert!(HoldIds::restore(below, u64::MAX).is_err());
    }
}
