//! CPU lists as `taskset -c` and /proc write them ("0,2-3"), and pinning authd to one.
//!
//! On a small VM, where authd runs (and where its clients run) decides whether a vCPU is ever
//! left to halt for long, and so how much of the host's time the VM spends (BENCHMARKS.md,
//! "Short idles count as busy"). `authd --cpus` pins the process before any thread starts.

use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};

/// One past the largest CPU number a list may name: the size of the kernel's affinity mask.
pub const CPUS_MAX: usize = CpuSet::MAX_CPU;

/// CPUs `first..=last`, one item of a list: "3" or "2-5".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuRange {
    pub first: usize,
    pub last: usize,
}

impl CpuRange {
    /// "N" or "N-M", with N <= M < [`CPUS_MAX`]; the error says what is expected.
    pub fn parse(text: &str) -> Result<CpuRange, String> {
        let number = |part: &str| match part.trim().parse::<usize>() {
            Ok(cpu) if cpu < CPUS_MAX => Ok(cpu),
            _ => Err(format!(
                "{text:?} is not a CPU (0 to {}) or a range of them such as 2-5",
                CPUS_MAX - 1
            )),
        };
        let (first, last) = match text.split_once('-') {
            Some((first, last)) => (number(first)?, number(last)?),
            None => {
                let cpu = number(text)?;
                (cpu, cpu)
            }
        };
        if first > last {
            return Err(format!("{text:?}: a range goes up, as in {last}-{first}"));
        }
        Ok(CpuRange { first, last })
    }

    fn cpus(self) -> std::ops::RangeInclusive<usize> {
        self.first..=self.last
    }
}

/// As a list writes it: "3" or "2-5".
impl std::fmt::Display for CpuRange {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(out, "{}", self.first)
        } else {
            write!(out, "{}-{}", self.first, self.last)
        }
    }
}

/// The CPUs as a list, consecutive ones as a range: "0-2,5" for 0, 1, 2, 5. `cpus` ascending.
pub fn list(cpus: impl IntoIterator<Item = usize>) -> String {
    let mut ranges: Vec<CpuRange> = Vec::new();
    for cpu in cpus {
        match ranges.last_mut() {
            Some(range) if range.last + 1 == cpu => range.last = cpu,
            _ => ranges.push(CpuRange {
                first: cpu,
                last: cpu,
            }),
        }
    }
    let items: Vec<String> = ranges.iter().map(CpuRange::to_string).collect();
    items.join(",")
}

/// Why the process could not be pinned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "authd cannot run on {missing} here (offline, absent, or outside its cpuset); it may run on {allowed}"
)]
pub struct PinError {
    /// The CPUs asked for that the kernel would not give, "CPU 7" or "CPUs 7-9".
    pub missing: String,
    /// The CPUs it may run on, as a list.
    pub allowed: String,
}

/// Pins the calling thread, and so every thread it starts afterwards, to the CPUs of `ranges`;
/// returns them as a list. A CPU the kernel would quietly drop (offline, or outside the
/// process's cpuset) fails the whole pin, naming it and the CPUs allowed; the affinity is then
/// left wider than asked, for the caller to stop.
pub fn pin_process(ranges: &[CpuRange]) -> Result<String, PinError> {
    let mut wanted: Vec<usize> = ranges.iter().flat_map(|range| range.cpus()).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut set = CpuSet::new();
    for &cpu in &wanted {
        set.set(cpu);
    }
    // The kernel keeps what it can of a set and refuses only one left empty: read it back.
    let kept = sched_setaffinity(None, &set).and_then(|()| sched_getaffinity(None));
    let missing: Vec<usize> = match &kept {
        Ok(kept) => wanted.iter().copied().filter(|&cpu| !kept.is_set(cpu)).collect(),
        Err(_) => wanted.clone(),
    };
    if missing.is_empty() {
        return Ok(list(wanted));
    }
    // What authd may use: ask for every CPU and read back what the kernel kept.
    let mut every = CpuSet::new();
    for cpu in 0..CPUS_MAX {
        every.set(cpu);
    }
    let allowed = match sched_setaffinity(None, &every).and_then(|()| sched_getaffinity(None)) {
        Ok(allowed) => list((0..CPUS_MAX).filter(|&cpu| allowed.is_set(cpu))),
        Err(error) => format!("CPUs the kernel would not list ({error})"),
    };
    let noun = if missing.len() == 1 { "CPU" } else { "CPUs" };
    Err(PinError {
        missing: format!("{noun} {}", list(missing)),
        allowed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_parse_as_one_cpu_or_a_range_up_to_the_mask() {
        assert_eq!(CpuRange::parse("3"), Ok(CpuRange { first: 3, last: 3 }));
        assert_eq!(CpuRange::parse("2-5"), Ok(CpuRange { first: 2, last: 5 }));
        let last = CPUS_MAX - 1;
        assert_eq!(
            CpuRange::parse(&format!("0-{last}")),
            Ok(CpuRange { first: 0, last })
        );
        for bad in [
            "",
            "x",
            "-1",
            "1-",
            "2--3",
            &CPUS_MAX.to_string(),
            &format!("0-{CPUS_MAX}"),
        ] {
            let error = CpuRange::parse(bad).expect_err(bad);
            let expected = format!("is not a CPU (0 to {last})");
            assert!(error.contains(&expected), "{bad}: {error}");
        }
        assert_eq!(
            CpuRange::parse("5-2"),
            Err("\"5-2\": a range goes up, as in 2-5".to_owned())
        );
    }

    #[test]
    fn lists_write_consecutive_cpus_as_ranges() {
        assert_eq!(list([0, 1, 2, 5]), "0-2,5");
        assert_eq!(list([7]), "7");
        assert_eq!(list([1, 3, 4]), "1,3-4");
        assert_eq!(list([]), "");
    }

    /// The CPUs this thread may run on now.
    fn current() -> Vec<usize> {
        let set = sched_getaffinity(None).expect("sched_getaffinity");
        (0..CPUS_MAX).filter(|&cpu| set.is_set(cpu)).collect()
    }

    #[test]
    fn a_pin_holds_for_threads_started_after_it_and_a_missing_cpu_is_named() {
        // A thread of its own, so the test harness's threads keep their CPUs.
        std::thread::spawn(|| {
            let first = current()[0];
            let range = CpuRange { first, last: first };
            assert_eq!(pin_process(&[range, range]), Ok(first.to_string()));
            assert_eq!(current(), [first]);
            let child = std::thread::spawn(current).join().expect("child");
            assert_eq!(child, [first], "inherited");

            let absent = CpuRange {
                first: CPUS_MAX - 2,
                last: CPUS_MAX - 1,
            };
            let error = pin_process(&[range, absent]).expect_err("no machine here has them");
            assert_eq!(error.missing, format!("CPUs {}-{}", absent.first, absent.last));
            assert!(error.allowed.contains(&first.to_string()), "{error}");
            assert!(pin_process(&[absent]).is_err());
        })
        .join()
        .expect("pinning thread");
    }
}
