//! The result of a run: the summary printed at the end, the `--json` document, the `--hgrm`
//! percentile distribution (HdrHistogram's text format, readable by its plotter), and the
//! per-second timeline the progress lines and the plot share.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::authd_log::{AuthdLog, DiskFloor};
use crate::books::BooksCheck;
use crate::cpu_wait::CpuWait;
use crate::machine_cpu::CpuShares;
use crate::recorder::{Errors, OfferCounts};

/// One second of the run, all threads together.
#[derive(Clone, Debug, PartialEq)]
pub struct Second {
    /// Seconds since the start (warm-up included), at the end of this one.
    pub second: u64,
    /// Replies in it.
    pub replies: u64,
    /// Declines in it.
    pub declines: u64,
    /// Errors in it.
    pub errors: u64,
    /// Median latency, microseconds; `None` in a second without replies (a stall, not zero).
    pub p50_us: Option<f64>,
    /// 99th percentile, microseconds; `None` in a second without replies.
    pub p99_us: Option<f64>,
    /// True while warming up.
    pub warmup: bool,
    /// The share of the machine's CPU time its host stole in this second, percent; `None`
    /// where `/proc/stat` has no steal or the second's boundaries were not both read.
    pub stolen_pct: Option<f64>,
}

impl Second {
    /// The progress line.
    pub fn line(&self) -> String {
        let shown = |us: Option<f64>| us.map_or_else(|| "-".to_string(), |us| format!("{us:.1}"));
        format!(
            "[{:>4}s] {:>10} req/s  p50 {:>9} us  p99 {:>9} us  declines {:>6}  errors {:>4}{}{}",
            self.second,
            self.replies,
            shown(self.p50_us),
            shown(self.p99_us),
            self.declines,
            self.errors,
            self.stolen_pct
                .map_or_else(String::new, |pct| format!("  stolen {pct:>4.1}%")),
            if self.warmup { "  (warm-up)" } else { "" }
        )
    }
}

/// Everything a run measured.
#[derive(Debug)]
pub struct Report {
    /// "closed" or "open".
    pub mode: &'static str,
    /// What was asked for, for the record (flags as given).
    pub settings: Value,
    /// Seconds of warm-up before the measured ones.
    pub warmup_s: f64,
    /// Seconds measured (warm-up excluded).
    pub measured_s: f64,
    /// Replies measured.
    pub requests: u64,
    /// Flows started, whole run.
    pub flows_started: u64,
    /// Latency from the intended send time, nanoseconds.
    pub latency: Histogram<u64>,
    /// Latency from the actual send, nanoseconds (differs from `latency` in the open loop).
    pub service: Histogram<u64>,
    /// Replies by ISO code.
    pub codes: Vec<(u8, u64)>,
    /// Errors.
    pub errors: Errors,
    /// The books check, if asked for: its result, or why it could not run.
    pub books: Option<Result<BooksCheck, String>>,
    /// loadgen's CPU time per measured request, nanoseconds.
    pub loadgen_cpu_ns_per_request: f64,
    /// A spawned authd's CPU time per measured request, nanoseconds.
    pub authd_cpu_ns_per_request: Option<f64>,
    /// Most flows due and not yet sent at once (open loop: the generator fell behind).
    pub backlog_max: u64,
    /// Follow-up requests (capture, void, refund...) that found their connection's write
    /// buffer full and were not sent: their flows ended early, so the mix ran lighter.
    pub follow_ups_dropped: u64,
    /// Measured requests without a reply at the drain deadline, in `latency` at the time
    /// they had waited by then (a lower bound).
    pub lower_bounds: u64,
    /// Measured requests answered after the stop, while draining: counted in `requests` and
    /// `ops_per_s`, though the CPU and authd's counters are read at the stop.
    pub answered_after_stop: u64,
    /// Per second.
    pub timeline: Vec<Second>,
    /// Offer flows (when the mix has them): from the OFFER's intended send to the OFFER_OUTCOME
    /// push, nanoseconds.
    pub offer_outcome: Option<Histogram<u64>>,
    /// Offer flows: the gateway's ACCEPT_OFFER round trip from its due time, nanoseconds.
    pub accept: Histogram<u64>,
    /// Offer flows: presentations, accepts, outcomes.
    pub offers: OfferCounts,
    /// Offer flows: the simulated payer's think time, microseconds.
    pub think_time_us: u64,
    /// authd's log during the run, from its STATS counters (needs the operator key).
    pub authd_log: Option<AuthdLog>,
    /// Every measured request is the first of its flow and writes a record (the mix has only
    /// purchases and offers), so the disk floor holds for it.
    pub floor_holds: bool,
    /// How long loadgen's and a spawned authd's threads waited for a CPU while measuring.
    pub cpu_wait: Option<CpuWait>,
    /// The machine's CPU time by state while measuring, steal included.
    pub machine_cpu: Option<CpuShares>,
}

/// Percentiles of the offer-to-outcome latency, as (JSON key, quantile).
pub const OFFER_PERCENTILES: [(&str, f64); 3] = [("p50", 0.5), ("p99", 0.99), ("p999", 0.999)];

/// Percentiles reported, as (JSON key, quantile).
pub const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p999", 0.999),
    ("p9999", 0.9999),
];

fn us(ns: u64) -> f64 {
    ns as f64 / 1_000.0
}

impl Report {
    /// Requests per second over the measured time.
    pub fn ops_per_s(&self) -> f64 {
        if self.measured_s > 0.0 {
            self.requests as f64 / self.measured_s
        } else {
            0.0
        }
    }

    /// The disk floor: only for an open loop (requests arrive evenly only there) in which
    /// every measured request is the first of its flow, sent when due, and writes a record
    /// (`floor_holds`), against an authd with fsync always.
    pub fn disk_floor(&self) -> Option<DiskFloor> {
        if self.mode != "open" || !self.floor_holds {
            return None;
        }
        let mut floor = self.authd_log.as_ref()?.disk_floor()?;
        if !self.latency.is_empty() {
            floor.measured_past = Some(
                wire::counter::LOG_HELD_PAST
                    .map(|(_, threshold_us)| 1.0 - self.latency.quantile_below(threshold_us * 1_000)),
            );
        }
        Some(floor)
    }

    /// Declined replies (code != 0).
    pub fn declines(&self) -> u64 {
        self.codes
            .iter()
            .filter(|(code, _)| *code != 0)
            .map(|(_, count)| count)
            .sum()
    }

    fn latency_json(histogram: &Histogram<u64>) -> Value {
        let mut latency = serde_json::Map::new();
        for (key, quantile) in PERCENTILES {
            latency.insert(key.into(), json!(us(histogram.value_at_quantile(quantile))));
        }
        latency.insert("max".into(), json!(us(histogram.max())));
        latency.insert("mean".into(), json!(histogram.mean() / 1_000.0));
        Value::Object(latency)
    }

    fn offer_json(&self) -> Value {
        match &self.offer_outcome {
            Some(histogram) => Report::short_latency_json(histogram),
            None => Value::Null,
        }
    }

    fn short_latency_json(histogram: &Histogram<u64>) -> Value {
        let mut latency = serde_json::Map::new();
        for (key, quantile) in OFFER_PERCENTILES {
            latency.insert(key.into(), json!(us(histogram.value_at_quantile(quantile))));
        }
        latency.insert("max".into(), json!(us(histogram.max())));
        latency.insert("count".into(), json!(histogram.len()));
        Value::Object(latency)
    }

    /// The `--json` document.
    pub fn to_json(&self) -> Value {
        let codes: serde_json::Map<String, Value> = self
            .codes
            .iter()
            .map(|(code, count)| (format!("{code:02}"), json!(count)))
            .collect();
        json!({
            "mode": self.mode,
            "settings": self.settings,
            "warmup_s": self.warmup_s,
            "measured_s": self.measured_s,
            "requests": self.requests,
            "flows_started": self.flows_started,
            "ops_per_s": self.ops_per_s(),
            "latency_us": Report::latency_json(&self.latency),
            "service_time_us": Report::latency_json(&self.service),
            "codes": codes,
            "declines": self.declines(),
            "errors": self.errors.total(),
            "errors_by_cause": {
                "busy": self.errors.busy,
                "protocol": self.errors.protocol,
                "bad_reply": self.errors.bad_reply,
                "connections_lost": self.errors.connections_lost,
                "unanswered": self.errors.unanswered,
                "not_sent": self.errors.not_sent,
            },
            "latency_lower_bounds": self.lower_bounds,
            "answered_after_stop": self.answered_after_stop,
            "follow_ups_dropped": self.follow_ups_dropped,
            "books": self.books.as_ref().map(|books| match books {
                Err(error) => json!({"ok": false, "error": error}),
                Ok(books) => json!({
                "ok": books.ok,
                "payers_checked": books.payers_checked,
                "merchants_checked": books.merchants_checked,
                "exact_per_merchant": books.exact_per_merchant,
                "unknown_outcomes": books.unknown_outcomes,
                "mismatch_count": books.mismatch_count,
                "mismatches": books.mismatches,
            })}),
            "cpu": {
                "loadgen_us_per_request": self.loadgen_cpu_ns_per_request / 1_000.0,
                "authd_us_per_request": self.authd_cpu_ns_per_request.map(|ns| ns / 1_000.0),
            },
            "cpu_wait_ms_per_s": self.cpu_wait.as_ref().map(CpuWait::to_json),
            "machine_cpu_pct": self.machine_cpu.as_ref().map(CpuShares::to_json),
            "backlog_max": self.backlog_max,
            "authd_log": self.authd_log.as_ref().map(AuthdLog::to_json),
            "disk_floor": self.disk_floor().as_ref().map(DiskFloor::to_json),
            "offer_outcome_us": self.offer_json(),
            "think_time_us": self.offer_outcome.as_ref().map(|_| self.think_time_us),
            "offers": self.offer_outcome.as_ref().map(|_| json!({
                "presented": self.offers.presented,
                "accepted": self.offers.accepted,
                "accept_declined": self.offers.accept_declined,
                "outcomes_accepted": self.offers.outcomes_accepted,
                "outcomes_other": self.offers.outcomes_other,
                "outcomes_missing": self.offers.outcomes_missing,
                "accept_us": Report::short_latency_json(&self.accept),
            })),
            "timeline": self.timeline.iter().map(|second| json!({
                "second": second.second,
                "replies": second.replies,
                "declines": second.declines,
                "errors": second.errors,
                "p50_us": second.p50_us,
                "p99_us": second.p99_us,
                "warmup": second.warmup,
                "stolen_pct": second.stolen_pct,
            })).collect::<Vec<_>>(),
        })
    }

    /// The final summary.
    pub fn summary(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "\n{} loop: {} requests in {:.2} s = {:.0} requests/s ({} flows started)",
            self.mode,
            self.requests,
            self.measured_s,
            self.ops_per_s(),
            self.flows_started
        );
        let mut line = String::from("latency (us, from the intended send time):");
        for (key, quantile) in PERCENTILES {
            let _ = write!(line, " {key} {:.1}", us(self.latency.value_at_quantile(quantile)));
        }
        let _ = writeln!(text, "{line} max {:.1}", us(self.latency.max()));
        if self.mode == "open" {
            let _ = writeln!(
                text,
                "service time (us, from the actual send): p50 {:.1} p99 {:.1} max {:.1}; generator backlog max {}; \
                 answered after the stop (while draining) {}",
                us(self.service.value_at_quantile(0.5)),
                us(self.service.value_at_quantile(0.99)),
                us(self.service.max()),
                self.backlog_max,
                self.answered_after_stop
            );
        }
        if let Some(histogram) = &self.offer_outcome {
            let mut line = format!(
                "offer to outcome (us, from the OFFER's intended send, think time {} us):",
                self.think_time_us
            );
            for (key, quantile) in OFFER_PERCENTILES {
                let _ = write!(line, " {key} {:.1}", us(histogram.value_at_quantile(quantile)));
            }
            let offers = &self.offers;
            let _ = writeln!(
                text,
                "{line} max {:.1} ({} measured)\n\
                 accept round trip (us, from its due time): p50 {:.1} p99 {:.1} max {:.1}\n\
                 offers: {} presented, {} accepted ({} accepts declined); outcomes {} accepted, {} other, {} missing",
                us(histogram.max()),
                histogram.len(),
                us(self.accept.value_at_quantile(0.5)),
                us(self.accept.value_at_quantile(0.99)),
                us(self.accept.max()),
                offers.presented,
                offers.accepted,
                offers.accept_declined,
                offers.outcomes_accepted,
                offers.outcomes_other,
                offers.outcomes_missing
            );
            if offers.outcomes_missing > 0 {
                let _ = writeln!(
                    text,
                    "offer flows whose outcome never came count in offer to outcome as waiting until \
                     the drain deadline: for them it is a lower bound"
                );
            }
        }
        let codes: Vec<String> = self
            .codes
            .iter()
            .map(|(code, count)| format!("{code:02}: {count}"))
            .collect();
        let _ = writeln!(text, "response codes: {}", codes.join(", "));
        let errors = &self.errors;
        let _ = writeln!(
            text,
            "errors: {} (busy {}, protocol {}, bad reply {}, connections lost {}, unanswered {}, not sent {})",
            errors.total(),
            errors.busy,
            errors.protocol,
            errors.bad_reply,
            errors.connections_lost,
            errors.unanswered,
            errors.not_sent
        );
        if errors.busy > 0 {
            let _ = writeln!(
                text,
                "{} requests were refused Busy (authd shedding load, nothing executed) and are not in \
                 the latency above, which describes the requests served",
                errors.busy
            );
        }
        if self.lower_bounds > 0 {
            let _ = writeln!(
                text,
                "latency above counts {} measured requests that had no reply by the drain deadline \
                 (unanswered, or due and never sent) as waiting until then: for them it is a lower bound",
                self.lower_bounds
            );
        }
        if self.follow_ups_dropped > 0 {
            let _ = writeln!(
                text,
                "follow-up requests not sent (write buffer full): {}; their flows ended early, so the \
                 mix ran lighter than asked (lower --pipeline or --in-flight-max)",
                self.follow_ups_dropped
            );
        }
        let mut cpu = format!(
            "CPU per request: loadgen {:.2} us",
            self.loadgen_cpu_ns_per_request / 1_000.0
        );
        if let Some(authd) = self.authd_cpu_ns_per_request {
            let _ = write!(cpu, ", authd {:.2} us", authd / 1_000.0);
        }
        let _ = writeln!(text, "{cpu}");
        if let Some(wait) = &self.cpu_wait {
            let _ = writeln!(text, "{}", wait.summary());
        }
        match &self.machine_cpu {
            Some(machine) => {
                let _ = writeln!(text, "{}", machine.summary());
            }
            None => {
                let _ = writeln!(
                    text,
                    "this machine's CPU time while measuring: unknown (/proc/stat unreadable, or \
                     without a steal field: not Linux 2.6.11 or later?)"
                );
            }
        }
        if let Some(log) = &self.authd_log {
            let _ = writeln!(text, "{}", log.summary());
        }
        if let Some(floor) = self.disk_floor() {
            let _ = writeln!(text, "{}", floor.summary());
            // An offer's outcome is pushed once the ACCEPT's record is durable, and so its
            // OFFER's too (the log is durable in lsn order): at least the OFFER's own wait,
            // though authd shows the offer to the device before that wait ends.
            if let (Some(_), Some(floor_us)) = (&self.offer_outcome, floor.percentile_at_least_us(0.01)) {
                let _ = writeln!(
                    text,
                    "disk floor of offer to outcome: p99 >= {} ms (the OFFER's own wait for the log)",
                    floor_us / 1_000
                );
            }
        }
        match &self.books {
            Some(Err(error)) => {
                let _ = writeln!(
                    text,
                    "books check: could not run: {error} (the figures above stand; is authd still \
                     running and reachable?)"
                );
            }
            Some(Ok(books)) if books.ok => {
                let _ = writeln!(
                    text,
                    "books check: OK ({} sampled payers' balances and holds, {} merchants{}, the fee \
                     account; nothing lost, nothing doubled in what was read)",
                    books.payers_checked,
                    books.merchants_checked,
                    if books.exact_per_merchant {
                        ", exact per merchant"
                    } else {
                        ", merchants in total"
                    }
                );
            }
            Some(Ok(books)) => {
                let _ = writeln!(
                    text,
                    "books check: FAILED, {} mismatches ({} requests with unknown outcome, which \
                     authd may or may not have executed: with any, a mismatch may be theirs):",
                    books.mismatch_count, books.unknown_outcomes
                );
                for mismatch in &books.mismatches {
                    let _ = writeln!(text, "  {mismatch}");
                }
            }
            None => {
                let _ = writeln!(
                    text,
                    "books check: not run (it needs the operator key: --data-dir or --key, and \
                     --books-sample above 0)"
                );
            }
        }
        text
    }

    /// HdrHistogram's percentile distribution text (values in microseconds).
    pub fn hgrm(&self) -> String {
        hgrm(&self.latency)
    }
}

/// `histogram` (nanoseconds) as HdrHistogram's percentile distribution, microseconds.
pub fn hgrm(histogram: &Histogram<u64>) -> String {
    let mut text = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    // TotalCount is cumulative: the values recorded up to this line's.
    let mut total = 0u64;
    for value in histogram.iter_quantiles(5) {
        total += value.count_since_last_iteration();
        let quantile = value.quantile_iterated_to();
        let inverse = if quantile < 1.0 {
            format!("{:.2}", 1.0 / (1.0 - quantile))
        } else {
            String::new()
        };
        let _ = writeln!(
            text,
            "{:12.3} {:14.12} {:10} {:>14}",
            us(value.value_iterated_to()),
            quantile,
            total,
            inverse
        );
    }
    let _ = writeln!(
        text,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        histogram.mean() / 1_000.0,
        histogram.stdev() / 1_000.0
    );
    let _ = writeln!(
        text,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        us(histogram.max()),
        histogram.len()
    );
    let _ = writeln!(
        text,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        histogram.buckets(),
        histogram.distinct_values()
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::latency_histogram;

    fn report() -> Report {
        let mut latency = latency_histogram();
        for value in 1..=1000u64 {
            latency.record(value * 1_000).expect("record");
        }
        Report {
            mode: "closed",
            settings: json!({"connections": 1}),
            warmup_s: 0.0,
            measured_s: 2.0,
            requests: 1000,
            flows_started: 1000,
            service: latency.clone(),
            latency,
            codes: vec![(0, 990), (51, 10)],
            errors: Errors::default(),
            books: Some(Ok(BooksCheck {
                ok: true,
                ..BooksCheck::default()
            })),
            loadgen_cpu_ns_per_request: 1_500.0,
            authd_cpu_ns_per_request: None,
            backlog_max: 0,
            follow_ups_dropped: 0,
            lower_bounds: 0,
            answered_after_stop: 0,
            timeline: vec![],
            offer_outcome: None,
            accept: crate::recorder::latency_histogram(),
            offers: OfferCounts::default(),
            think_time_us: 1_000,
            authd_log: None,
            floor_holds: true,
            cpu_wait: None,
            machine_cpu: None,
        }
    }

    #[test]
    fn json_has_the_documented_shape() {
        let value = report().to_json();
        assert_eq!(value["ops_per_s"], json!(500.0));
        for key in ["p50", "p90", "p99", "p999", "p9999", "max"] {
            assert!(value["latency_us"][key].is_f64(), "latency_us.{key}");
        }
        assert!((value["latency_us"]["p50"].as_f64().unwrap_or(0.0) - 500.0).abs() < 1.0);
        assert_eq!(value["latency_us"]["max"].as_f64().map(f64::round), Some(1000.0));
        assert_eq!(value["codes"]["00"], json!(990));
        assert_eq!(value["codes"]["51"], json!(10));
        assert_eq!(value["errors"], json!(0));
        assert_eq!(value["books"]["ok"], json!(true));
        assert_eq!(value["cpu"]["loadgen_us_per_request"], json!(1.5));
        assert_eq!(value["declines"], json!(10));
    }

    #[test]
    fn the_machines_cpu_time_and_its_steal_are_in_the_json_and_the_summary() {
        let mut report = report();
        assert_eq!(report.to_json()["machine_cpu_pct"], Value::Null);
        assert!(report
            .summary()
            .contains("this machine's CPU time while measuring: unknown (/proc/stat unreadable"));
        report.machine_cpu = Some(CpuShares {
            busy_pct: 42.0,
            idle_pct: 40.0,
            iowait_pct: 12.5,
            stolen_pct: 5.5,
            stolen_by_cpu: vec![(0, 3.0), (1, 8.0)],
        });
        report.timeline = vec![Second {
            second: 1,
            replies: 10,
            declines: 0,
            errors: 0,
            p50_us: Some(1.0),
            p99_us: Some(2.0),
            warmup: false,
            stolen_pct: Some(7.5),
        }];
        let value = report.to_json();
        assert_eq!(value["machine_cpu_pct"]["stolen"], json!(5.5));
        assert_eq!(value["machine_cpu_pct"]["busy"], json!(42.0));
        assert_eq!(value["timeline"][0]["stolen_pct"], json!(7.5));
        let text = report.summary();
        assert!(
            text.contains("stolen by the host 5.5% (cpu0 3.0%, cpu1 8.0%)"),
            "{text}"
        );
        assert_eq!(value["machine_cpu_pct"]["stolen_by_cpu"]["cpu1"], json!(8.0));
        assert!(
            text.contains("stolen: the host ran something else while a vCPU had work"),
            "{text}"
        );
    }

    #[test]
    fn offer_latency_is_in_the_json_and_the_summary_when_offers_ran() {
        let mut report = report();
        assert_eq!(report.to_json()["offer_outcome_us"], Value::Null);
        let mut offers = crate::recorder::latency_histogram();
        for value in 1..=100u64 {
            offers.record(1_000_000 + value * 10_000).expect("record");
        }
        report.offer_outcome = Some(offers);
        let value = report.to_json();
        for key in ["p50", "p99", "p999", "max"] {
            assert!(
                value["offer_outcome_us"][key].as_f64().unwrap_or(0.0) > 1_000.0,
                "{key}"
            );
        }
        assert_eq!(value["think_time_us"], json!(1_000));
        assert!(report.summary().contains("offer to outcome"));
    }

    #[test]
    fn the_disk_floor_is_reported_for_an_open_loop_only() {
        let mut report = report();
        report.authd_log = Some(AuthdLog {
            read_at_ns: 2_000_000_000,
            ..AuthdLog::from_counters([
                (wire::counter::LOG_SYNCS, 100),
                (wire::counter::LOG_FSYNC_ALWAYS, 1),
                (wire::counter::LOG_HELD_PAST_1MS_US, 60_000),
                (wire::counter::LOG_HELD_PAST_2MS_US, 40_000),
            ])
        });
        assert_eq!(report.to_json()["disk_floor"], Value::Null);
        assert!(!report.summary().contains("disk floor"));
        report.mode = "open";
        // 40 ms past 2 ms over the 2 s run: 2% of evenly arriving requests. Measured: the
        // latencies are 1..=1000 us, none past 1 ms.
        let json = report.to_json();
        assert_eq!(json["disk_floor"]["share_past_us"]["2000"], json!(0.02));
        assert_eq!(json["disk_floor"]["measured_share_past_us"]["1000"], json!(0.0));
        let text = report.summary();
        assert!(text.contains("; measured 0.000%, 0.000%"), "{text}");
        assert!(
            text.contains("disk floor (what authd's fdatasyncs alone forced"),
            "{text}"
        );
        assert!(text.contains("p99 >= 2 ms"), "{text}");
        assert!(!text.contains("offer to outcome"), "{text}");
        report.floor_holds = false;
        assert_eq!(
            report.to_json()["disk_floor"],
            Value::Null,
            "a mix the floor does not hold for"
        );
        report.floor_holds = true;
        report.offer_outcome = Some(crate::recorder::latency_histogram());
        let text = report.summary();
        assert!(
            text.contains("disk floor of offer to outcome: p99 >= 2 ms (the OFFER's own wait for the log)"),
            "{text}"
        );
    }

    #[test]
    fn hgrm_ends_with_the_footer_hdrhistogram_plotters_read() {
        let text = report().hgrm();
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
        assert!(text.contains("#[Max     ="));
        assert!(text.contains("Total count    =         1000]"));
        let last_value_line = text.lines().rfind(|line| !line.starts_with('#')).unwrap_or("");
        assert!(last_value_line.contains("1.000000000000"), "{last_value_line}");
        // TotalCount (third column) is cumulative: it grows line by line to every value.
        let totals: Vec<u64> = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_whitespace().nth(2)?.parse().ok())
            .collect();
        assert!(totals.len() > 10, "{text}");
        assert!(totals.windows(2).all(|pair| pair[0] <= pair[1]), "{totals:?}");
        assert_eq!(totals.last(), Some(&1000));
    }

    #[test]
    fn summary_names_the_figures() {
        let text = report().summary();
        assert!(text.contains("500 requests/s"));
        assert!(text.contains("51: 10"));
        assert!(text.contains("books check: OK"));
        assert!(text.contains("CPU per request: loadgen 1.50 us"));
        let unchecked = Report {
            books: None,
            ..report()
        };
        assert!(unchecked
            .summary()
            .contains("books check: not run (it needs the operator key: --data-dir or --key"));
        let unreadable = Report {
            books: Some(Err("server closed the connection".into())),
            ..report()
        };
        assert!(unreadable
            .summary()
            .contains("books check: could not run: server closed the connection"));
        assert_eq!(unreadable.to_json()["books"]["ok"], json!(false));
        assert!(
            !text.contains("lower bound") && !text.contains("follow-up"),
            "{text}"
        );
        let mut stalled = report();
        stalled.lower_bounds = 7;
        stalled.follow_ups_dropped = 3;
        stalled.errors.not_sent = 5;
        stalled.errors.busy = 2;
        let text = stalled.summary();
        assert!(
            text.contains("counts 7 measured requests that had no reply by the drain deadline"),
            "{text}"
        );
        assert!(
            text.contains("follow-up requests not sent (write buffer full): 3"),
            "{text}"
        );
        assert!(text.contains("unanswered 0, not sent 5)"), "{text}");
        assert!(text.contains("2 requests were refused Busy"), "{text}");
        let value = stalled.to_json();
        assert_eq!(value["errors"], json!(7));
        assert_eq!(value["errors_by_cause"]["not_sent"], json!(5));
        assert_eq!(value["latency_lower_bounds"], json!(7));
        assert_eq!(value["follow_ups_dropped"], json!(3));
    }

    #[test]
    fn a_second_without_replies_shows_no_latency_rather_than_zero() {
        let stalled = Second {
            second: 7,
            replies: 0,
            declines: 0,
            errors: 0,
            p50_us: None,
            p99_us: None,
            warmup: false,
            stolen_pct: None,
        };
        assert!(
            stalled.line().contains("p50         - us  p99         - us"),
            "{}",
            stalled.line()
        );
        let busy = Second {
            p50_us: Some(12.5),
            p99_us: Some(40.0),
            replies: 1000,
            ..stalled
        };
        assert!(
            busy.line().contains("p50      12.5 us  p99      40.0 us"),
            "{}",
            busy.line()
        );
        assert!(!busy.line().contains("stolen"), "{}", busy.line());
        let stolen = Second {
            stolen_pct: Some(3.26),
            warmup: true,
            ..busy
        };
        assert!(
            stolen.line().ends_with("errors    0  stolen  3.3%  (warm-up)"),
            "{}",
            stolen.line()
        );
    }
}
