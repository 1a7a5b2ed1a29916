//! This machine's CPU time by state, from the aggregate `cpu` line of `/proc/stat`: how much of
//! its CPUs' time was busy, idle, waiting for I/O, or stolen.
//!
//! Steal is time a virtual machine's vCPU had work but its host ran something else: another
//! guest, its own work for the VM's devices, or nothing while the VM was over a CPU quota.
//! Whatever runs on a stolen vCPU stops, an event loop or the log's writer, and the requests it
//! holds wait out the pause. The share says how much time was lost, not in how many pauses, so
//! it is a lead to follow, not a verdict: loadgen reports it for each second and for the
//! measured phase, beside the latency it measured. A machine that is not a VM reports none.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::schedule::NS_PER_S;

/// Ticks (`USER_HZ`, usually 100 a second) the machine's CPUs spent in each state so far,
/// summed over its CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTicks {
    /// User, nice, system, interrupts and softirqs (the time this machine's own guests ran is
    /// in user and nice already, so guest and guest_nice are not added).
    busy: u64,
    idle: u64,
    iowait: u64,
    steal: u64,
}

impl CpuTicks {
    /// Reads `/proc/stat`; `None` where it cannot be read or parsed (not Linux).
    pub fn read() -> Option<CpuTicks> {
        CpuTicks::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// The aggregate line: `cpu user nice system idle iowait irq softirq steal [guest
    /// guest_nice]`. Kernels before 2.6.11 have no steal field: `None`.
    fn parse(stat: &str) -> Option<CpuTicks> {
        let line = stat.lines().find(|line| line.starts_with("cpu "))?;
        CpuTicks::parse_fields(line)
    }

    /// The numbers after a `cpu` or `cpuN` line's name.
    fn parse_fields(line: &str) -> Option<CpuTicks> {
        let fields = line
            .split_whitespace()
            .skip(1)
            .map(str::parse)
            .collect::<Result<Vec<u64>, _>>()
            .ok()?;
        let [user, nice, system, idle, iowait, irq, softirq, steal, ..] = fields[..] else {
            return None;
        };
        Some(CpuTicks {
            busy: user
                .saturating_add(nice)
                .saturating_add(system)
                .saturating_add(irq)
                .saturating_add(softirq),
            idle,
            iowait,
            steal,
        })
    }

    /// The shares of each state between `before` and this reading; `None` if no tick passed.
    pub fn shares_since(&self, before: &CpuTicks) -> Option<CpuShares> {
        let busy = self.busy.saturating_sub(before.busy);
        let idle = self.idle.saturating_sub(before.idle);
        let iowait = self.iowait.saturating_sub(before.iowait);
        let steal = self.steal.saturating_sub(before.steal);
        let total = busy
            .saturating_add(idle)
            .saturating_add(iowait)
            .saturating_add(steal);
        let pct = |ticks: u64| ticks as f64 * 100.0 / total as f64;
        (total > 0).then(|| CpuShares {
            busy_pct: pct(busy),
            idle_pct: pct(idle),
            iowait_pct: pct(iowait),
            stolen_pct: pct(steal),
            stolen_by_cpu: Vec::new(),
        })
    }
}

/// The aggregate line of `/proc/stat` and each CPU's (`cpuN`), read at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatTicks {
    all: CpuTicks,
    /// CPU number -> its ticks, in the file's order.
    each: Vec<(u32, CpuTicks)>,
}

impl StatTicks {
    /// Reads `/proc/stat`; `None` where the aggregate line cannot be read (a CPU line that
    /// cannot be parsed is left out).
    pub fn read() -> Option<StatTicks> {
        StatTicks::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    fn parse(stat: &str) -> Option<StatTicks> {
        let each = stat
            .lines()
            .filter_map(|line| {
                let number = line
                    .split_whitespace()
                    .next()?
                    .strip_prefix("cpu")?
                    .parse()
                    .ok()?;
                Some((number, CpuTicks::parse_fields(line)?))
            })
            .collect();
        Some(StatTicks {
            all: CpuTicks::parse(stat)?,
            each,
        })
    }

    /// The machine's shares between `before` and this reading, with each CPU's stolen share
    /// of its own time (CPUs in both readings only).
    pub fn shares_since(&self, before: &StatTicks) -> Option<CpuShares> {
        let mut shares = self.all.shares_since(&before.all)?;
        shares.stolen_by_cpu = self
            .each
            .iter()
            .filter_map(|(number, after)| {
                let (_, before) = before.each.iter().find(|(earlier, _)| earlier == number)?;
                Some((*number, after.shares_since(before)?.stolen_pct))
            })
            .collect();
        Some(shares)
    }
}

/// Readings taken at a run's whole seconds, to give each second its stolen share.
#[derive(Debug)]
pub struct BySecond {
    start_ns: u64,
    /// Whole seconds since `start_ns` -> the reading taken at the first poll within that
    /// second (a poll late by some milliseconds shifts the second's window by as much).
    readings: BTreeMap<u64, CpuTicks>,
}

impl BySecond {
    /// Seconds counted from `start_ns` (loadgen's monotonic clock), as the progress lines count.
    pub fn new(start_ns: u64) -> BySecond {
        BySecond {
            start_ns,
            readings: BTreeMap::new(),
        }
    }

    /// Reads the machine if a whole second began since the last reading. Called every few
    /// milliseconds; a boundary passed over between two calls has no reading, and the seconds
    /// on either side of it no share.
    pub fn poll(&mut self, now_ns: u64) {
        if let Some(second) = self.unread_second(now_ns) {
            if let Some(ticks) = CpuTicks::read() {
                self.readings.insert(second, ticks);
            }
        }
    }

    /// The whole second `now_ns` falls in, if it began after the start and has no reading yet.
    fn unread_second(&self, now_ns: u64) -> Option<u64> {
        let second = now_ns.checked_sub(self.start_ns)? / NS_PER_S;
        let read = self
            .readings
            .last_key_value()
            .is_some_and(|(last, _)| *last >= second);
        (!read).then_some(second)
    }

    /// The stolen share of the second that ended at `second` seconds (the progress lines'
    /// numbering), polling first: its line prints just after it ends. Lines print in order, so
    /// the readings before this second's are dropped: a day's run keeps two, not 86,400.
    pub fn stolen_pct(&mut self, second: u64, now_ns: u64) -> Option<f64> {
        self.poll(now_ns);
        let share = self.stolen_pct_read(second);
        self.readings = self.readings.split_off(&second);
        share
    }

    /// The stolen share between the readings that began second `second` - 1 and `second`.
    fn stolen_pct_read(&self, second: u64) -> Option<f64> {
        let before = self.readings.get(&second.checked_sub(1)?)?;
        let after = self.readings.get(&second)?;
        after.shares_since(before).map(|shares| shares.stolen_pct)
    }
}

/// Stolen shares from this percentage up get a line of explanation in the summary: on a
/// machine of 2 vCPUs it is 20 ms of every second.
const STOLEN_EXPLAINED_PCT: f64 = 1.0;

/// How the machine's CPU time was spent over a span, percent of all its CPUs' time.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuShares {
    /// Running anything: loadgen, authd, the kernel, other programs.
    pub busy_pct: f64,
    /// Idle with nothing waiting on I/O.
    pub idle_pct: f64,
    /// Idle while a task waited on I/O (authd's fdatasyncs, among others).
    pub iowait_pct: f64,
    /// Taken by the host from the machine's vCPUs while they had work.
    pub stolen_pct: f64,
    /// Each CPU's stolen share of its own time, by CPU number (empty when not read): where
    /// loadgen and authd are pinned apart, which of them lost the time.
    pub stolen_by_cpu: Vec<(u32, f64)>,
}

impl CpuShares {
    /// One line, and a second explaining steal from `STOLEN_EXPLAINED_PCT` up.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "this machine's CPU time while measuring (/proc/stat): {}",
            self.shares()
        );
        if self.stolen_by_cpu.len() > 1 {
            let each: Vec<String> = self
                .stolen_by_cpu
                .iter()
                .map(|(number, pct)| format!("cpu{number} {pct:.1}%"))
                .collect();
            let _ = write!(text, " ({})", each.join(", "));
        }
        if self.stolen_pct >= STOLEN_EXPLAINED_PCT {
            text.push_str(
                "\n  stolen: the host ran something else while a vCPU had work; nothing on it ran, and \
                 requests it held waited out the pause (the progress lines show steal by second)",
            );
        }
        text
    }

    /// "busy B%, waiting for I/O W%, idle I%, stolen by the host S%" (a tenth each).
    pub fn shares(&self) -> String {
        format!(
            "busy {:.1}%, waiting for I/O {:.1}%, idle {:.1}%, stolen by the host {:.1}%",
            self.busy_pct, self.iowait_pct, self.idle_pct, self.stolen_pct
        )
    }

    /// `{"busy", "idle", "iowait", "stolen", "stolen_by_cpu": {"cpu0": ...}}`, percent.
    pub fn to_json(&self) -> Value {
        let by_cpu: serde_json::Map<String, Value> = self
            .stolen_by_cpu
            .iter()
            .map(|(number, pct)| (format!("cpu{number}"), json!(pct)))
            .collect();
        json!({
            "busy": self.busy_pct,
            "idle": self.idle_pct,
            "iowait": self.iowait_pct,
            "stolen": self.stolen_pct,
            "stolen_by_cpu": by_cpu,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VM's `/proc/stat`, as read here, cut short.
    const STAT: &str = "cpu  3472211 8419 1431511 9817312 1050506 17 310146 229980 0 0\n\
                        cpu0 1736105 4209 715755 4908656 525253 0 155073 114990 0 0\n\
                        intr 123 0 0\nctxt 456\n";

    #[test]
    fn the_aggregate_line_gives_each_state() {
        let ticks = CpuTicks::parse(STAT).expect("parsed");
        assert_eq!(
            ticks,
            CpuTicks {
                busy: 3_472_211 + 8_419 + 1_431_511 + 17 + 310_146,
                idle: 9_817_312,
                iowait: 1_050_506,
                steal: 229_980,
            }
        );
        // No steal field (an old kernel), no aggregate line, or a field that is not a number.
        assert_eq!(CpuTicks::parse("cpu  1 2 3 4 5 6 7\n"), None);
        assert_eq!(CpuTicks::parse("cpu0 1 2 3 4 5 6 7 8\n"), None);
        assert_eq!(CpuTicks::parse("cpu  1 2 3 4 x 6 7 8\n"), None);
    }

    #[test]
    fn shares_are_of_every_tick_between_two_readings() {
        let before = CpuTicks::parse(STAT).expect("parsed");
        let after = CpuTicks {
            busy: before.busy + 80,
            idle: before.idle + 70,
            iowait: before.iowait + 30,
            steal: before.steal + 20,
        };
        let shares = after.shares_since(&before).expect("ticks passed");
        assert_eq!(
            shares,
            CpuShares {
                busy_pct: 40.0,
                idle_pct: 35.0,
                iowait_pct: 15.0,
                stolen_pct: 10.0,
                stolen_by_cpu: Vec::new(),
            }
        );
        assert_eq!(before.shares_since(&before), None, "no tick: no shares");
        // Counters that went back count 0 (proc(5): iowait can decrease, and idle has on
        // tickless kernels).
        assert_eq!(before.shares_since(&after), None);
        let json = shares.to_json();
        assert_eq!(json["stolen"], 10.0);
        assert_eq!(json["iowait"], 15.0);
        assert_eq!(json["stolen_by_cpu"], json!({}));
    }

    #[test]
    fn each_cpu_gets_its_own_stolen_share() {
        let before = StatTicks::parse(
            "cpu  100 0 0 100 0 0 0 0 0 0\ncpu0 50 0 0 50 0 0 0 0 0 0\n\
             cpu1 50 0 0 50 0 0 0 0 0 0\ncpu2 not a cpu line\nintr 1 2\n",
        )
        .expect("parsed");
        assert_eq!(
            before.each.iter().map(|(number, _)| *number).collect::<Vec<_>>(),
            [0, 1]
        );
        // cpu0 lost 10 of its 100 ticks, cpu1 30 of 100; cpu3 appeared (hot-plugged): left out.
        let after = StatTicks::parse(
            "cpu  170 0 0 190 0 0 0 40 0 0\ncpu0 90 0 0 100 0 0 0 10 0 0\n\
             cpu1 80 0 0 90 0 0 0 30 0 0\ncpu3 5 0 0 5 0 0 0 5 0 0\n",
        )
        .expect("parsed");
        let shares = after.shares_since(&before).expect("ticks passed");
        assert_eq!(shares.stolen_pct, 20.0);
        assert_eq!(shares.stolen_by_cpu, [(0, 10.0), (1, 30.0)]);
        assert!(
            shares
                .summary()
                .contains("stolen by the host 20.0% (cpu0 10.0%, cpu1 30.0%)\n"),
            "{}",
            shares.summary()
        );
        assert_eq!(
            shares.to_json()["stolen_by_cpu"],
            json!({"cpu0": 10.0, "cpu1": 30.0})
        );
        assert_eq!(
            StatTicks::parse("cpu0 1 2 3 4 5 6 7 8\n"),
            None,
            "no aggregate line"
        );
        assert!(StatTicks::read().is_some_and(|ticks| !ticks.each.is_empty()));
    }

    #[test]
    fn the_summary_explains_steal_from_one_percent() {
        let shares = |stolen_pct| CpuShares {
            busy_pct: 50.0,
            idle_pct: 30.0,
            iowait_pct: 20.0 - stolen_pct,
            stolen_pct,
            stolen_by_cpu: vec![(0, stolen_pct)],
        };
        let calm = shares(0.9).summary();
        assert_eq!(
            calm,
            "this machine's CPU time while measuring (/proc/stat): busy 50.0%, waiting for I/O 19.1%, \
             idle 30.0%, stolen by the host 0.9%"
        );
        let stolen = shares(1.0).summary();
        assert!(stolen.starts_with("this machine's CPU time"), "{stolen}");
        assert!(
            stolen.contains("stolen by the host 1.0%\n  stolen: the host ran"),
            "{stolen}"
        );
    }

    #[test]
    fn each_second_gets_the_share_between_its_boundaries() {
        let mut by_second = BySecond::new(1_000 * NS_PER_S);
        let at = |second: u64, ms: u64| (1_000 + second) * NS_PER_S + ms * 1_000_000;
        assert_eq!(
            by_second.unread_second(999 * NS_PER_S),
            None,
            "nothing before the start"
        );
        assert_eq!(by_second.unread_second(at(0, 5)), Some(0));
        by_second.readings.insert(0, CpuTicks::default());
        assert_eq!(by_second.unread_second(at(0, 900)), None, "one reading a second");
        // Boundary 1 passed over (no poll in second 1): seconds 1 and 2 get no share.
        assert_eq!(by_second.unread_second(at(2, 5)), Some(2));
        let busy = |busy, steal| CpuTicks {
            busy,
            steal,
            ..CpuTicks::default()
        };
        by_second.readings.insert(2, busy(180, 20));
        assert_eq!(by_second.stolen_pct_read(1), None);
        assert_eq!(by_second.stolen_pct_read(2), None);
        // Boundary 3, read as second 3's line prints: second 3 has its share.
        assert_eq!(by_second.unread_second(at(3, 1)), Some(3));
        by_second.readings.insert(3, busy(330, 70));
        assert_eq!(by_second.stolen_pct_read(3), Some(25.0));
        assert_eq!(by_second.stolen_pct_read(0), None, "second 0 has no line");
        assert_eq!(by_second.stolen_pct_read(4), None, "not read yet");
    }

    #[test]
    fn a_line_printed_early_in_the_next_second_reads_its_boundary() {
        let mut live = BySecond::new(0);
        live.poll(NS_PER_S / 2);
        assert_eq!(live.readings.keys().collect::<Vec<_>>(), [&0]);
        // The line of the second ending at 1 s prints 1 ms after it: the reading at 1 s is
        // taken then, and the one at 0 is no longer needed.
        let _ = live.stolen_pct(1, NS_PER_S + 1_000_000);
        assert_eq!(live.readings.keys().collect::<Vec<_>>(), [&1]);
        live.poll(2 * NS_PER_S);
        let _ = live.stolen_pct(2, 2 * NS_PER_S + 1);
        assert_eq!(
            live.readings.keys().collect::<Vec<_>>(),
            [&2],
            "one kept, whatever the length"
        );
    }

    #[test]
    fn this_machine_can_be_read_and_its_ticks_only_grow() {
        let before = CpuTicks::read().expect("/proc/stat with a steal field");
        // Burn a few ticks (10 ms each) so that the two readings differ.
        let spin_until = std::time::Instant::now() + std::time::Duration::from_millis(50);
        while std::time::Instant::now() < spin_until {
            std::hint::spin_loop();
        }
        let after = CpuTicks::read().expect("/proc/stat");
        assert!(after.busy >= before.busy);
        let shares = after.shares_since(&before).expect("50 ms passed");
        let sum = shares.busy_pct + shares.idle_pct + shares.iowait_pct + shares.stolen_pct;
        assert!((sum - 100.0).abs() < 1e-9, "{shares:?}");
        assert!(shares.busy_pct > 0.0, "the spin was busy: {shares:?}");
    }
}
