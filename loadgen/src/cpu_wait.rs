//! How long threads were ready to run but waited for a CPU: the kernel's run-queue wait
//! (the second field of `/proc/PID/task/TID/schedstat`), for loadgen's threads and a spawned
//! authd's. Where the two share a machine's cores, this is the part of a tail that is neither
//! the disk nor either program's own work: a reply waits while whichever thread commits its
//! record (the log's writer, or an event loop committing in place) does, and a request while
//! the load thread that sends it does.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::clock::now_ns;

/// Each thread's run-queue wait so far: thread id -> (thread name, nanoseconds), and when
/// it was read (loadgen's monotonic clock).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Waits {
    at_ns: u64,
    threads: BTreeMap<u32, (String, u64)>,
}

impl Waits {
    /// Reads every thread of process `pid`; `None` if none can be read (the process is gone,
    /// or the kernel keeps no schedstat).
    pub fn read(pid: u32) -> Option<Waits> {
        let at_ns = now_ns();
        let mut threads = BTreeMap::new();
        for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
            let Some(tid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<u32>().ok())
            else {
                continue;
            };
            // A thread may end between the listing and these reads: it is left out.
            let path = entry.path();
            let (Ok(schedstat), Ok(name)) = (
                std::fs::read_to_string(path.join("schedstat")),
                std::fs::read_to_string(path.join("comm")),
            ) else {
                continue;
            };
            if let Some(wait_ns) = run_queue_wait_ns(&schedstat) {
                threads.insert(tid, (name.trim_end().to_string(), wait_ns));
            }
        }
        (!threads.is_empty()).then_some(Waits { at_ns, threads })
    }

    /// [`Waits::since`] in milliseconds per second between the two readings.
    pub fn ms_per_s_since(&self, before: &Waits) -> BTreeMap<String, f64> {
        let span_ns = self.at_ns.saturating_sub(before.at_ns);
        self.since(before)
            .into_iter()
            .map(|(name, wait_ns)| (name, ms_per_s(wait_ns, span_ns)))
            .collect()
    }

    /// The wait since `before`, nanoseconds, by thread name (threads of one name summed), for
    /// the threads in both readings: one that started or ended between them is left out, and
    /// so is an id that changed its name (a new thread).
    pub fn since(&self, before: &Waits) -> BTreeMap<String, u64> {
        let mut by_name = BTreeMap::new();
        for (tid, (name, wait_ns)) in &self.threads {
            // The same id under another name is a new thread that reused it.
            let before = before
                .threads
                .get(tid)
                .filter(|(before_name, _)| before_name == name);
            if let Some((_, before_ns)) = before {
                *by_name.entry(name.clone()).or_insert(0) += wait_ns.saturating_sub(*before_ns);
            }
        }
        by_name
    }
}

/// The calling thread's run-queue wait so far, nanoseconds; `None` if the kernel keeps no
/// schedstat.
pub fn this_thread_ns() -> Option<u64> {
    run_queue_wait_ns(&std::fs::read_to_string("/proc/thread-self/schedstat").ok()?)
}

/// The calling thread's run-queue wait so far and when it was read, nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThreadWait {
    at_ns: u64,
    wait_ns: u64,
}

impl ThreadWait {
    /// Reads the calling thread's; `None` if the kernel keeps no schedstat.
    pub fn read() -> Option<ThreadWait> {
        this_thread_ns().map(|wait_ns| ThreadWait {
            at_ns: now_ns(),
            wait_ns,
        })
    }

    /// Milliseconds per second waited between `before` and this reading.
    pub fn ms_per_s_since(&self, before: &ThreadWait) -> f64 {
        ms_per_s(
            self.wait_ns.saturating_sub(before.wait_ns),
            self.at_ns.saturating_sub(before.at_ns),
        )
    }
}

/// `schedstat` is "time on a CPU, time waiting on a run queue, time slices", nanoseconds.
fn run_queue_wait_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().nth(1)?.parse().ok()
}

/// The run-queue waits of a measured phase, milliseconds per second measured, by thread.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuWait {
    /// loadgen's load threads (each reads its own at the start and the stop of measuring).
    pub loadgen: BTreeMap<String, f64>,
    /// A spawned authd's threads (read by loadgen's main thread), when they could be read.
    pub authd: Option<BTreeMap<String, f64>>,
}

/// Threads that waited less than this many milliseconds per second are left out of the summary
/// line (the JSON has them all).
const SUMMARY_MS_PER_S_MIN: f64 = 1.0;

/// `wait_ns` waited over `span_ns` as milliseconds per second.
fn ms_per_s(wait_ns: u64, span_ns: u64) -> f64 {
    wait_ns as f64 / 1e6 / (span_ns.max(1) as f64 / 1e9)
}

impl CpuWait {
    /// The waits of loadgen's load threads and of a spawned authd's threads, milliseconds per
    /// second; `None` if neither could be read.
    pub fn new(loadgen: BTreeMap<String, f64>, authd: Option<BTreeMap<String, f64>>) -> Option<CpuWait> {
        (!loadgen.is_empty() || authd.is_some()).then_some(CpuWait { loadgen, authd })
    }

    /// One line: milliseconds per second each process's threads waited, in all and by thread.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(authd) = &self.authd {
            parts.push(format!("authd {}", describe(authd)));
        }
        parts.push(format!("loadgen {}", describe(&self.loadgen)));
        format!(
            "waiting for a CPU while ready to run (ms per second): {}",
            parts.join("; ")
        )
    }

    /// `{"loadgen": {thread: ms per s}, "authd": {...} or null}`.
    pub fn to_json(&self) -> Value {
        json!({ "loadgen": self.loadgen, "authd": self.authd })
    }
}

/// "total (thread ms, ...)" naming the threads that waited at least `SUMMARY_MS_PER_S_MIN`.
fn describe(threads: &BTreeMap<String, f64>) -> String {
    let total: f64 = threads.values().sum();
    let named: Vec<String> = threads
        .iter()
        .filter(|(_, ms)| **ms >= SUMMARY_MS_PER_S_MIN)
        .map(|(name, ms)| format!("{name} {ms:.0}"))
        .collect();
    if named.is_empty() {
        format!("{total:.0}")
    } else {
        format!("{total:.0} ({})", named.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waits(threads: &[(u32, &str, u64)]) -> Waits {
        Waits {
            at_ns: 0,
            threads: threads
                .iter()
                .map(|(tid, name, wait_ns)| (*tid, (name.to_string(), *wait_ns)))
                .collect(),
        }
    }

    #[test]
    fn schedstat_gives_its_second_field() {
        assert_eq!(run_queue_wait_ns("1180448 821856 1\n"), Some(821_856));
        assert_eq!(run_queue_wait_ns("1180448\n"), None);
        assert_eq!(run_queue_wait_ns("1180448 lots 1\n"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let reading = Waits::read(std::process::id()).expect("own threads");
        assert!(!reading.threads.is_empty());
        assert_eq!(Waits::read(u32::MAX), None);
    }

    #[test]
    fn waits_since_a_reading_are_summed_by_name_over_threads_in_both() {
        let before = waits(&[
            (1, "loop", 100),
            (2, "loop", 200),
            (3, "writer", 50),
            (4, "gone", 7),
            (6, "old", 5),
        ]);
        let after = waits(&[
            (1, "loop", 1_100),
            (2, "loop", 2_200),
            (3, "writer", 550),
            (5, "new", 9),
            (6, "reused", 8),
        ]);
        let since = after.since(&before);
        assert_eq!(since.get("loop"), Some(&3_000));
        assert_eq!(since.get("writer"), Some(&500));
        assert_eq!(since.get("gone"), None);
        assert_eq!(since.get("new"), None);
        assert_eq!(since.get("reused"), None);
    }

    #[test]
    fn the_summary_names_threads_that_waited_a_millisecond_a_second() {
        let waits = |threads: &[(&str, u64)]| {
            threads
                .iter()
                .map(|(name, wait_ns)| (name.to_string(), ms_per_s(*wait_ns, 2_000_000_000)))
                .collect::<BTreeMap<_, _>>()
        };
        let wait = CpuWait::new(
            waits(&[("loadgen-0", 100_000_000), ("loadgen-1", 1_000)]),
            Some(waits(&[("wal-writer", 40_000_000), ("authd-loop-0", 60_000_000)])),
        )
        .expect("both read");
        assert_eq!(
            wait.summary(),
            "waiting for a CPU while ready to run (ms per second): \
             authd 50 (authd-loop-0 30, wal-writer 20); loadgen 50 (loadgen-0 50)"
        );
        let json = wait.to_json();
        assert_eq!(json["authd"]["wal-writer"], 20.0);
        assert_eq!(json["loadgen"]["loadgen-1"], 0.0005);
        let without_authd = CpuWait { authd: None, ..wait };
        assert_eq!(without_authd.to_json()["authd"], Value::Null);
        assert!(!without_authd.summary().contains("authd"));
        assert_eq!(CpuWait::new(BTreeMap::new(), None), None);
    }

    #[test]
    fn this_thread_can_be_read() {
        let before = this_thread_ns().expect("schedstat of this thread");
        std::thread::yield_now();
        assert!(this_thread_ns().expect("schedstat of this thread") >= before);
    }
}
