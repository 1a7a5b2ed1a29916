//! Crash test (issue 4): a child process (this test binary, re-executed) appends from several
//! threads and prints each lsn only once it is durable; the parent SIGKILLs it at random
//! moments, reopens the log and checks that every printed lsn is there with its exact payload
//! and that the log is contiguous. The same data dir is reused across kills, so each child
//! also recovers from the previous crash. Before each child, two segments are put up for
//! reuse (`engine::wal::reuse`), which it writes over: one of random bytes, and a copy of the
//! oldest segment (old records, as a snapshot's leftovers are).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use engine::wal::{read_log, reuse, segment, DirLock, Lsn, ReadOptions, Wal, WalConfig, WalError};

const CHILD_DIR_ENV: &str = "AUTHD_WAL_CRASH_CHILD_DIR";
const CHILD_ITERATION_ENV: &str = "AUTHD_WAL_CRASH_CHILD_ITERATION";
const CHILD_THREADS: u64 = 4;
const CHILD_RECORDS_PER_WAIT: u64 = 8;
/// A child that is never killed stops by itself after this long.
const CHILD_LIFETIME_MAX: Duration = Duration::from_secs(20);
const ITERATIONS: u64 = 30;
const TEST_BUDGET: Duration = Duration::from_secs(15);
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const SEGMENT_BYTES: u64 = 256 << 10;

/// The payload of the `counter`th record of `thread` in child `iteration`: its identity, then
/// filler of a length that varies from record to record.
fn payload(iteration: u64, thread: u64, counter: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    for word in [iteration, thread, counter] {
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    let filler = ((iteration * 131 + thread * 17 + counter * 7) % 300) as usize;
    bytes.extend((0..filler).map(|index| (index as u64 ^ counter ^ (thread << 5)) as u8));
    bytes
}

/// Entry point of the child; does nothing in a normal test run.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let iteration = std::env::var(CHILD_ITERATION_ENV)
        .ok()
        .and_then(|text| text.parse().ok())
        .expect("iteration");
    run_child(Path::new(&dir), iteration);
}

fn run_child(dir: &Path, iteration: u64) {
    let lock = DirLock::acquire(dir).expect("lock");
    let mut config = WalConfig::new(dir);
    config.segment_bytes = SEGMENT_BYTES;
    let options = ReadOptions::default();
    let (wal, report) =
        Wal::open(config, lock, 0, &options, |_, _, _| Ok::<(), WalError>(())).expect("recover and open");
    // A leading newline ends the harness's "test crash_child ... " line.
    print_line(&format!("\nready {}\n", report.next_lsn));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..CHILD_THREADS {
            let wal = &wal;
            scope.spawn(move || {
                let mut counter = 0;
                while started.elapsed() < CHILD_LIFETIME_MAX {
                    let mut batch = Vec::new();
                    for _ in 0..CHILD_RECORDS_PER_WAIT {
                        let bytes = payload(iteration, thread, counter);
                        batch.push((wal.append(counter, &bytes).expect("append"), counter));
                        counter += 1;
                    }
                    let last = batch.last().map_or(0, |(lsn, _)| *lsn);
                    wal.wait_durable(last).expect("durable");
                    let mut lines = String::new();
                    for (lsn, counter) in batch {
                        lines.push_str(&format!("durable {lsn} {iteration} {thread} {counter}\n"));
                    }
                    print_line(&lines);
                }
            });
        }
    });
}

/// Writes straight to fd 1 (bypassing the test harness's capture) in one call.
fn print_line(text: &str) {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes()).expect("stdout");
    stdout.flush().expect("stdout");
}

/// xorshift64*: a seeded generator, so a failure can be replayed.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound
    }
}

/// Acknowledged records: lsn -> (iteration, thread, counter).
type Acknowledged = BTreeMap<Lsn, (u64, u64, u64)>;

/// Puts two segments up for reuse in `dir`: random bytes, and a copy of the oldest segment.
fn offer_segments_for_reuse(dir: &Path, iteration: u64, random: &mut Random) {
    let free = |index: u64| {
        let name = segment::segment_file_name(1_000_000_000_000 + iteration * 2 + index);
        dir.join(format!("{name}{}", reuse::FREE_SUFFIX))
    };
    let noise: Vec<u8> = (0..SEGMENT_BYTES).map(|_| random.below(256) as u8).collect();
    std::fs::write(free(0), noise).expect("write a free segment");
    if let Some(oldest) = segment::list_segments(dir).expect("list").first() {
        if std::fs::metadata(&oldest.path).expect("stat").len() == SEGMENT_BYTES {
            std::fs::copy(&oldest.path, free(1)).expect("copy a free segment");
        }
    }
}

/// Runs one child, kills it, and adds what it acknowledged.
fn crash_once(dir: &Path, iteration: u64, random: &mut Random, acknowledged: &mut Acknowledged) {
    offer_segments_for_reuse(dir, iteration, random);
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .args(["crash_child", "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_ITERATION_ENV, iteration.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let (sender, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    if random.below(5) == 0 {
        // Kill during startup: recovery, sealing, segment creation.
        std::thread::sleep(Duration::from_micros(random.below(5_000)));
    } else {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let line = lines.recv_timeout(deadline.saturating_duration_since(Instant::now()));
            match line {
                Ok(line) if line.starts_with("ready ") => break,
                Ok(line) => record_line(&line, acknowledged),
                Err(_) => panic!("child {iteration} never got ready: {}", child_stderr(&mut child)),
            }
        }
        std::thread::sleep(Duration::from_micros(random.below(40_000)));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    reader.join().expect("reader");
    for line in lines.try_iter() {
        record_line(&line, acknowledged);
    }
}

fn child_stderr(child: &mut std::process::Child) -> String {
    let _ = child.kill();
    let mut text = String::new();
    if let Some(stderr) = child.stderr.as_mut() {
        let _ = stderr.read_to_string(&mut text);
    }
    text
}

fn record_line(line: &str, acknowledged: &mut Acknowledged) {
    let Some(fields) = line.strip_prefix("durable ") else {
        return;
    };
    let numbers: Vec<u64> = fields
        .split(' ')
        .map(|field| field.parse().expect("number"))
        .collect();
    let [lsn, iteration, thread, counter] = numbers[..] else {
        panic!("malformed line {line:?}");
    };
    let previous = acknowledged.insert(lsn, (iteration, thread, counter));
    assert!(
        previous.is_none(),
        "lsn {lsn} acknowledged twice: {previous:?} and {line}"
    );
}

/// Every acknowledged lsn is in the log with its exact payload; the log is contiguous.
fn verify(dir: &Path, acknowledged: &Acknowledged) -> u64 {
    let mut previous = 0;
    let mut found = 0;
    read_log(dir, 0, &ReadOptions::default(), |lsn, timestamp_us, bytes| {
        assert_eq!(lsn, previous + 1, "the log is contiguous");
        previous = lsn;
        if let Some(&(iteration, thread, counter)) = acknowledged.get(&lsn) {
            assert_eq!(bytes, payload(iteration, thread, counter), "payload of lsn {lsn}");
            assert_eq!(timestamp_us, counter);
            found += 1;
        }
        Ok::<(), WalError>(())
    })
    .expect("the log reads back after a crash");
    assert_eq!(
        found,
        acknowledged.len() as u64,
        "an acknowledged record is missing"
    );
    previous
}

#[test]
fn acknowledged_records_survive_sigkill_at_random_moments() {
    if std::env::var_os(CHILD_DIR_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = 0x5EED_0000_0000_0004;
    let mut random = Random(seed);
    let mut acknowledged = Acknowledged::new();
    let started = Instant::now();
    let mut iterations = 0;
    while iterations < ITERATIONS && started.elapsed() < TEST_BUDGET {
        crash_once(dir.path(), iterations, &mut random, &mut acknowledged);
        verify(dir.path(), &acknowledged);
        iterations += 1;
    }
    assert!(iterations >= 5, "only {iterations} iterations fit the budget");
    assert!(
        acknowledged.len() > 100,
        "children acknowledged only {}",
        acknowledged.len()
    );
    let last = verify(dir.path(), &acknowledged);
    eprintln!(
        "seed {seed:#x}: {iterations} kills, {} acknowledged records, log reaches lsn {last}",
        acknowledged.len()
    );
}
