//! Clocks: the monotonic clock every timestamp uses (the same one timerfd counts in), and CPU
//! time, loadgen's own and a spawned authd's, to say what each request costs each side.

use rustix::time::{clock_gettime, ClockId, Timespec};

/// Monotonic nanoseconds (CLOCK_MONOTONIC, a vDSO read).
#[inline]
pub fn now_ns() -> u64 {
    to_ns(clock_gettime(ClockId::Monotonic))
}

/// CPU time this process used so far, all threads, nanoseconds.
pub fn process_cpu_ns() -> u64 {
    to_ns(clock_gettime(ClockId::ProcessCPUTime))
}

/// A monotonic nanosecond value as a `Timespec` (for timerfd).
pub fn timespec(ns: u64) -> Timespec {
    Timespec {
        tv_sec: (ns / 1_000_000_000) as i64,
        tv_nsec: (ns % 1_000_000_000) as _,
    }
}

fn to_ns(time: Timespec) -> u64 {
    (time.tv_sec.max(0) as u64) * 1_000_000_000 + time.tv_nsec.max(0) as u64
}

/// Ticks per second of /proc's CPU times (USER_HZ, 100 on every Linux port that matters).
const USER_HZ: u64 = 100;

/// CPU time of another process (user + system), nanoseconds, from `/proc/PID/stat`; `None` if
/// it cannot be read.
pub fn other_process_cpu_ns(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after its closing ')' are plain.
    let after_name = stat.rsplit_once(')')?.1;
    let mut fields = after_name.split_whitespace();
    // After ')': state is field 3; utime is field 14 and stime 15, so skip 11.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * (1_000_000_000 / USER_HZ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_move_forward_and_proc_stat_parses() {
        let before = now_ns();
        let cpu_before = process_cpu_ns();
        let mut spin = 0u64;
        for index in 0..1_000_000u64 {
            spin = spin.wrapping_add(index * index);
        }
        assert!(spin > 0);
        assert!(now_ns() > before);
        assert!(process_cpu_ns() > cpu_before);
        assert!(other_process_cpu_ns(std::process::id()).is_some());
        assert_eq!(timespec(1_500_000_000).tv_sec, 1);
    }
}
