//! How long an fdatasync takes on this machine, alone or while other threads keep its CPUs
//! busy. On the 2-vCPU VM authd is measured on, a busy vCPU holds up the disk: syncs that take
//! 0.1-0.2 ms stall for ~15 ms in most 100 ms periods (BENCHMARKS.md, "The disk waits for the
//! CPU"), and so does one that halts for less than ~0.2 ms at a time ("Short idles count as
//! busy"). This shows it without authd.
//!
//! Run: `cargo run --release -p bench --bin sync_probe -- [SECONDS] [HOGS] [BUSY-US] [IDLE-US]`
//! (defaults 8 s, no hog, 10000 us, 0 us). It writes 4 KiB with `pwrite` and `fdatasync`s, over
//! and over, cycling over 256 KiB (64 blocks, written once before timing) of a file in a
//! temporary dir under the current one (the disk authd's default `./authd-data` is on; a
//! killed run leaves its `.tmp*` dir behind), while HOGS threads spin for BUSY-US and sleep
//! for IDLE-US in turn (IDLE-US 0: spin throughout). Prints the share of the hogs' time spent
//! in their spin loops (wall time, so a hog preempted while spinning counts as spinning) and
//! how long their sleeps really lasted (a sleep overshoots by tens of microseconds: the timer's
//! slack and the wake-up), the syncs' percentiles, the share of the time spent in syncs over
//! 2 ms, and when the syncs over 10 ms began within each 100 ms counted from the probe's
//! start: the host's periods have another origin, so only whether the stalls bunch in one
//! window says anything, not which window it is. Last, how the machine's CPU time went while
//! probing, from `/proc/stat`: on a VM, the share its host stole (BENCHMARKS.md, "The host
//! steals the vCPUs").

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bench::argument;
use hdrhistogram::Histogram;
use loadgen::machine_cpu::CpuTicks;

const BLOCK_BYTES: usize = 4_096;
const BLOCKS: u64 = 64;
const LONG_US: u64 = 2_000;
const STALL_US: u64 = 10_000;
const PERIOD_MS: u64 = 100;

/// What a hog thread did: time spun, time asleep, and how many sleeps.
#[derive(Default)]
struct HogTime {
    busy: Duration,
    idle: Duration,
    sleeps: u64,
}

fn main() -> anyhow::Result<()> {
    let seconds = argument(1, 8);
    let hogs = argument(2, 0);
    let busy = Duration::from_micros(argument(3, 10_000));
    let idle = Duration::from_micros(argument(4, 0));

    let stop = Arc::new(AtomicBool::new(false));
    let hog_threads: Vec<_> = (0..hogs)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut spun = HogTime::default();
                while !stop.load(Ordering::Relaxed) {
                    let began = Instant::now();
                    while began.elapsed() < busy {
                        std::hint::spin_loop();
                    }
                    spun.busy += began.elapsed();
                    if !idle.is_zero() {
                        let slept = Instant::now();
                        std::thread::sleep(idle);
                        spun.idle += slept.elapsed();
                        spun.sleeps += 1;
                    }
                }
                spun
            })
        })
        .collect();

    let dir = tempfile::tempdir_in(".").context(
        "cannot make a temporary dir under the current one: run sync_probe from a writable dir \
         on the disk to probe",
    )?;
    let file = std::fs::File::create(dir.path().join("probe"))
        .with_context(|| format!("cannot create {}", dir.path().join("probe").display()))?;
    let block = [0x5a_u8; BLOCK_BYTES];
    // Written and synced once, so that no timed sync also grows the file.
    for index in 0..BLOCKS {
        file.write_at(&block, index * BLOCK_BYTES as u64)?;
    }
    file.sync_all()?;
    let mut syncs = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut long_us = 0u64;
    let mut stall_phases = [0u64; 10];
    let ticks_before = CpuTicks::read();
    let began = Instant::now();
    let end = began + Duration::from_secs(seconds);
    let mut index = 0u64;
    while Instant::now() < end {
        file.write_at(&block, (index % BLOCKS) * BLOCK_BYTES as u64)?;
        let start = Instant::now();
        file.sync_data()?;
        let took_us = start.elapsed().as_micros() as u64;
        syncs.saturating_record(took_us.max(1));
        if took_us > LONG_US {
            long_us += took_us;
        }
        if took_us > STALL_US {
            let phase_ms = start.duration_since(began).as_millis() as u64 % PERIOD_MS;
            stall_phases[(phase_ms / (PERIOD_MS / 10)) as usize] += 1;
        }
        index += 1;
    }
    let wall = began.elapsed();
    let ticks_after = CpuTicks::read();
    stop.store(true, Ordering::Relaxed);
    let mut spun = HogTime::default();
    for thread in hog_threads {
        if let Ok(time) = thread.join() {
            spun.busy += time.busy;
            spun.idle += time.idle;
            spun.sleeps += time.sleeps;
        }
    }
    if hogs > 0 && spun.sleeps == 0 {
        println!("hogs spun throughout");
    } else if hogs > 0 {
        let hog_wall = (spun.busy + spun.idle).as_secs_f64().max(f64::MIN_POSITIVE);
        println!(
            "hogs spun {:.0}% of their time, sleeps lasted {:.0} us on average ({} sleeps)",
            100.0 * spun.busy.as_secs_f64() / hog_wall,
            spun.idle.as_secs_f64() * 1e6 / spun.sleeps as f64,
            spun.sleeps,
        );
    }

    println!(
        "{hogs} hog(s), {} us busy / {} us idle: {} syncs ({:.0}/s): p50 {} us, p99 {} us, \
         p99.9 {} us, max {:.1} ms; syncs over {} ms: {}, {:.1}% of the time",
        busy.as_micros(),
        idle.as_micros(),
        syncs.len(),
        syncs.len() as f64 / wall.as_secs_f64(),
        syncs.value_at_quantile(0.5),
        syncs.value_at_quantile(0.99),
        syncs.value_at_quantile(0.999),
        syncs.max() as f64 / 1e3,
        LONG_US / 1_000,
        syncs.count_between(LONG_US + 1, u64::MAX),
        long_us as f64 / 1e4 / wall.as_secs_f64(),
    );
    let phases: Vec<String> = stall_phases
        .iter()
        .enumerate()
        .map(|(bucket, count)| {
            let width = PERIOD_MS / 10;
            let from = bucket as u64 * width;
            format!("{from}-{} ms: {count}", from + width)
        })
        .collect();
    println!(
        "syncs over {} ms, by when they began within each {PERIOD_MS} ms: {}",
        STALL_US / 1_000,
        phases.join(", ")
    );
    match ticks_before
        .zip(ticks_after)
        .and_then(|(before, after)| after.shares_since(&before))
    {
        Some(shares) => println!(
            "the machine's CPU time while probing (/proc/stat): {}",
            shares.shares()
        ),
        None => println!(
            "the machine's CPU time while probing: unknown (/proc/stat unreadable, or no tick passed)"
        ),
    }
    Ok(())
}
