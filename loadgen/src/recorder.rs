//! What one worker thread measures: latency histograms (whole run and the current second),
//! counts by response code, errors. Recording is a histogram increment and an array add: no
//! allocation, no formatting, no lock.

use hdrhistogram::Histogram;

/// Largest latency recorded, nanoseconds (30 hours): longer than a run can last (warm-up,
/// duration and drain at their limits), so that no latency, a lower bound at the drain
/// deadline included, is clamped.
pub const LATENCY_NS_MAX: u64 = 30 * 3_600 * 1_000_000_000;
/// Significant decimal digits of the histograms.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// A latency histogram in nanoseconds.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, SIGNIFICANT_DIGITS)
        .unwrap_or_else(|error| unreachable!("constant histogram bounds are valid: {error}"))
}

/// Error counts by cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Errors {
    /// ERROR replies `Busy`: the request was not executed.
    pub busy: u64,
    /// Other ERROR replies (malformed request: a loadgen bug).
    pub protocol: u64,
    /// Replies to ids not in flight, or of the wrong type.
    pub bad_reply: u64,
    /// Connections lost during the run.
    pub connections_lost: u64,
    /// Requests never answered (connection lost or drain timeout), and offer flows whose
    /// outcome never came.
    pub unanswered: u64,
    /// Open loop: flows due before the stop time and still not sent at the drain deadline
    /// (every connection full or lost): the server fell that far behind.
    pub not_sent: u64,
}

impl Errors {
    /// All errors.
    pub fn total(&self) -> u64 {
        self.busy + self.protocol + self.bad_reply + self.connections_lost + self.unanswered + self.not_sent
    }

    /// Adds another's counts.
    pub fn add(&mut self, other: &Errors) {
        self.busy += other.busy;
        self.protocol += other.protocol;
        self.bad_reply += other.bad_reply;
        self.connections_lost += other.connections_lost;
        self.unanswered += other.unanswered;
        self.not_sent += other.not_sent;
    }
}

/// What the offer flows' devices and outcomes did, whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OfferCounts {
    /// OFFER_PRESENTED pushes of this thread's offers the gateway received.
    pub presented: u64,
    /// ACCEPT_OFFER replies approved.
    pub accepted: u64,
    /// ACCEPT_OFFER replies declined (or ERROR).
    pub accept_declined: u64,
    /// OFFER_OUTCOME pushes that ended an offer flow accepted.
    pub outcomes_accepted: u64,
    /// OFFER_OUTCOME pushes that ended an offer flow otherwise (rejected, expired, cancelled).
    pub outcomes_other: u64,
    /// Offer flows given up waiting for their outcome (drain deadline, connection lost).
    pub outcomes_missing: u64,
}

impl OfferCounts {
    /// Adds another's counts.
    pub fn add(&mut self, other: &OfferCounts) {
        self.presented += other.presented;
        self.accepted += other.accepted;
        self.accept_declined += other.accept_declined;
        self.outcomes_accepted += other.outcomes_accepted;
        self.outcomes_other += other.outcomes_other;
        self.outcomes_missing += other.outcomes_missing;
    }
}

/// One second of one thread, sent to the main thread for the progress line and the plot.
#[derive(Debug)]
pub struct Interval {
    /// Seconds since the start (warm-up included), the second this covers ends at.
    pub second: u64,
    /// Replies in that second.
    pub replies: u64,
    /// Declined replies (code != 0).
    pub declines: u64,
    /// Errors.
    pub errors: u64,
    /// Latencies of that second.
    pub latency: Histogram<u64>,
}

/// One thread's measurements.
#[derive(Debug)]
pub struct Recorder {
    /// Latency from the intended time (due time in the open loop), measured phase only.
    pub latency: Histogram<u64>,
    /// Latency from the actual send (service time), measured phase only.
    pub service: Histogram<u64>,
    /// Replies by ISO code, measured phase only.
    pub codes: [u64; 256],
    /// Replies in the measured phase.
    pub replies: u64,
    /// Errors over the whole run.
    pub errors: Errors,
    /// Offer flows: from the OFFER's intended send to the OFFER_OUTCOME push, measured phase.
    pub offer_outcome: Histogram<u64>,
    /// Offer flows: ACCEPT_OFFER round trip, from its due time (presentation plus think time)
    /// to its reply, measured phase.
    pub accept: Histogram<u64>,
    /// Offer flows: counts, whole run.
    pub offers: OfferCounts,
    /// Measured requests with no reply by the drain deadline (unanswered, or due and never
    /// sent), recorded in `latency` at the time from when they were due to the deadline: a
    /// lower bound of what they would have waited.
    pub lower_bounds: u64,
    /// Measured requests answered after the stop time, while draining.
    pub answered_after_stop: u64,
    interval: Histogram<u64>,
    interval_replies: u64,
    interval_declines: u64,
    interval_errors_base: u64,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder::new()
    }
}

impl Recorder {
    /// Empty histograms and counts.
    pub fn new() -> Recorder {
        Recorder {
            latency: latency_histogram(),
            service: latency_histogram(),
            codes: [0; 256],
            replies: 0,
            errors: Errors::default(),
            offer_outcome: latency_histogram(),
            accept: latency_histogram(),
            offers: OfferCounts::default(),
            lower_bounds: 0,
            answered_after_stop: 0,
            interval: latency_histogram(),
            interval_replies: 0,
            interval_declines: 0,
            interval_errors_base: 0,
        }
    }

    /// Records one reply.
    #[inline]
    pub fn reply(&mut self, latency_ns: u64, service_ns: u64, code: u8, measured: bool) {
        let latency_ns = latency_ns.max(1);
        self.interval.saturating_record(latency_ns);
        self.interval_replies += 1;
        self.interval_declines += u64::from(code != 0);
        if measured {
            self.latency.saturating_record(latency_ns);
            self.service.saturating_record(service_ns.max(1));
            self.codes[usize::from(code)] += 1;
            self.replies += 1;
        }
    }

    /// Records `count` measured requests still without a reply when loadgen gave up on them,
    /// due `latency_ns` before that (the longest of them; they were due `spacing_ns` apart, as
    /// the open loop's schedule spaces them, or 0 when they all share one latency): their
    /// latency is at least that. Not a reply: no code, no service time.
    pub fn given_up(&mut self, latency_ns: u64, count: u64, spacing_ns: u64) {
        if count == 0 {
            return;
        }
        self.lower_bounds += count;
        if spacing_ns == 0 {
            self.latency.saturating_record_n(latency_ns.max(1), count);
            return;
        }
        // At most this many histogram writes, each standing for a run of equal-enough values.
        const STEPS_MAX: u64 = 65_536;
        let per_step = count.div_ceil(STEPS_MAX);
        let mut done = 0;
        while done < count {
            let run = per_step.min(count - done);
            // The run's middle request.
            let offset = (done + run / 2).saturating_mul(spacing_ns);
            self.latency
                .saturating_record_n(latency_ns.saturating_sub(offset).max(1), run);
            done += run;
        }
    }

    /// Records one offer flow's outcome, `latency_ns` after the OFFER was due.
    #[inline]
    pub fn offer_outcome(&mut self, latency_ns: u64, accepted: bool, measured: bool) {
        if accepted {
            self.offers.outcomes_accepted += 1;
        } else {
            self.offers.outcomes_other += 1;
        }
        if measured {
            self.offer_outcome.saturating_record(latency_ns.max(1));
        }
    }

    /// Closes the current second: returns its figures and starts the next.
    pub fn take_interval(&mut self, second: u64) -> Interval {
        let errors = self.errors.total();
        let interval = Interval {
            second,
            replies: self.interval_replies,
            declines: self.interval_declines,
            errors: errors - self.interval_errors_base,
            latency: self.interval.clone(),
        };
        self.interval.reset();
        self.interval_replies = 0;
        self.interval_declines = 0;
        self.interval_errors_base = errors;
        interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_replies_count_in_the_second_but_not_in_the_result() {
        let mut recorder = Recorder::new();
        recorder.reply(1_000, 900, 0, false);
        recorder.reply(2_000, 1_900, 51, true);
        assert_eq!(recorder.replies, 1);
        assert_eq!(recorder.codes[51], 1);
        assert_eq!(recorder.latency.len(), 1);
        recorder.errors.busy += 2;
        let interval = recorder.take_interval(1);
        assert_eq!((interval.replies, interval.declines, interval.errors), (2, 1, 2));
        assert_eq!(interval.latency.len(), 2);
        let next = recorder.take_interval(2);
        assert_eq!((next.replies, next.errors), (0, 0));
    }

    #[test]
    fn requests_given_up_count_in_the_latency_at_least_as_long_as_they_waited() {
        let mut recorder = Recorder::new();
        recorder.reply(1_000_000, 900_000, 0, true);
        // Three unanswered, each due 2 s before the deadline.
        recorder.given_up(2_000_000_000, 3, 0);
        // Ten never sent, due 1 ms apart, the oldest 1 s before the deadline.
        recorder.given_up(1_000_000_000, 10, 1_000_000);
        assert_eq!((recorder.replies, recorder.lower_bounds), (1, 13));
        assert_eq!(recorder.latency.len(), 14);
        assert_eq!(recorder.service.len(), 1);
        assert!(recorder.latency.equivalent(recorder.latency.max(), 2_000_000_000));
        // The youngest never-sent one waited 0.991 s.
        assert!(recorder
            .latency
            .equivalent(recorder.latency.value_at_quantile(0.1), 991_000_000));
        assert_eq!(recorder.latency.count_between(990_000_000, 1_001_000_000), 10);
        // Millions given up are recorded in a bounded number of steps, all of them.
        recorder.given_up(10_000_000_000, 5_000_000, 1_000);
        assert_eq!(recorder.latency.len(), 14 + 5_000_000);
        assert_eq!(
            recorder.latency.count_between(4_990_000_000, 10_010_000_000),
            5_000_000
        );
    }
}
