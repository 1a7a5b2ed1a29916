//! Crash test of the books with their log (issue 4): a child process (this test binary,
//! re-executed) runs payments from several threads through a [`Store`] and prints each command
//! with its outcome only once the outcome's record is durable, as a server releases a reply.
//! The parent SIGKILLs it at a random moment, reopens the data dir and checks that
//!
//! - the invariants hold (double entry, held = active holds, nothing negative);
//! - the recovered digest equals that of an independent replay of the surviving log;
//! - every acknowledged command, retried, gets its original outcome (idempotency survived).
//!
//! Run without the child variable, the child's workload runs in-process to completion as a
//! plain test of the same claims without a crash.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use engine::journal::codec;
use engine::store::{Store, StoreConfig};
use engine::wal::{read_log, ReadOptions, WalConfig, WalError};
use engine::{
    AccountId, Books, BooksConfig, Command, Currency, Extras, HoldId, Limits, MerchantId, Origin, Outcome,
    Reason, RequestKey, TerminalId, TerminalOp,
};

const CHILD_DIR_ENV: &str = "AUTHD_STORE_CRASH_DIR";
const CHILD_ITERATION_ENV: &str = "AUTHD_STORE_CRASH_ITERATION";
const THREADS: u32 = 3;
const PAYERS: u64 = 12;
const EUR: Currency = Currency(978);
const START_US: u64 = 1_795_435_200_000_000;
const ITERATIONS: u64 = 12;
const TEST_BUDGET: Duration = Duration::from_secs(25);
const CHILD_OPERATIONS_MAX: u64 = 100_000;

fn config(dir: &Path) -> StoreConfig {
    let mut wal = WalConfig::new(dir);
    wal.segment_bytes = 128 << 10;
    let books = BooksConfig {
        shards: 4,
        ..BooksConfig::default()
    };
    StoreConfig {
        books,
        wal,
        read: ReadOptions::default(),
    }
}

/// Merchant 1 with one terminal per thread and `PAYERS` loaded payers, set up once per dir.
fn set_up(store: &Store) -> Vec<AccountId> {
    if store.books().merchant(MerchantId(1)).is_none() {
        let register = Command::RegisterMerchant {
            fee_bps: 150,
            fee_bps_with_details: 50,
            origin: engine::Reference::default(),
        };
        durable(store, &register);
        for thread in 0..THREADS {
            durable(
                store,
                &Command::RegisterTerminal {
                    merchant: MerchantId(1),
                    secret: [thread as u8; 32],
                },
            );
        }
        for index in 0..PAYERS {
            let shard = (index % 4) as u32;
            let open = Command::OpenAccount {
                shard,
                currency: EUR,
                mobile: None,
                limits: Limits::NONE,
            };
            let account = AccountId(durable(store, &open).id);
            durable(
                store,
                &Command::Load {
                    account,
                    amount: 1_000_000,
                },
            );
        }
    }
    (0..PAYERS).map(payer).collect()
}

/// The id of the `index`th payer set up: round robin over 4 shards, slots in order.
fn payer(index: u64) -> AccountId {
    AccountId(engine::limits::PAYER_ID_BASE + ((index / 4) << 2 | (index % 4)))
}

fn durable(store: &Store, command: &Command) -> Outcome {
    let executed = store.execute(command, START_US);
    store.wal().wait_durable(executed.lsn).expect("log works");
    executed.outcome
}

/// One thread's workload; calls `acknowledge` with each durable command and outcome.
fn run_thread(
    store: &Store,
    iteration: u64,
    thread: u32,
    operations: u64,
    acknowledge: &dyn Fn(&Command, Outcome),
) {
    let mut state = (iteration * 7_919 + u64::from(thread) * 104_729) | 1;
    let mut next = move |bound: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound
    };
    let terminal = TerminalId(thread + 1);
    let mut holds: Vec<u64> = Vec::new();
    let mut sent: Vec<Command> = Vec::new();
    for counter in 0..operations {
        let request_id = iteration << 32 | counter;
        let payer = payer(next(PAYERS));
        let amount = 1 + next(5_000);
        let op = match next(10) {
            0..=3 => TerminalOp::Purchase {
                payer,
                amount,
                currency: EUR,
                pin: None,
                extras: Extras::default(),
            },
            4..=5 => TerminalOp::Authorize {
                payer,
                amount,
                currency: EUR,
                pin: None,
                lifetime_us: 0,
            },
            6 if !holds.is_empty() => {
                let hold = HoldId(holds.swap_remove(next(holds.len() as u64) as usize));
                TerminalOp::Capture {
                    hold,
                    amount: 1 + next(amount),
                    last: next(2) == 0,
                    extras: Extras::default(),
                }
            }
            7 if !holds.is_empty() => TerminalOp::Refund {
                hold: HoldId(holds[next(holds.len() as u64) as usize]),
                amount: 1 + next(100),
            },
            8 if counter > 0 => TerminalOp::Reversal {
                payer,
                original_request_id: iteration << 32 | next(counter + 3),
            },
            _ if !sent.is_empty() => {
                // A retry of an earlier request, as a terminal resends after a timeout.
                let earlier = sent[next(sent.len() as u64) as usize];
                let executed = store.execute(&earlier, START_US + counter);
                store.wal().wait_durable(executed.lsn).expect("log works");
                acknowledge(&earlier, executed.outcome);
                continue;
            }
            _ => TerminalOp::Void { hold: HoldId(1) },
        };
        let command = Command::Terminal {
            origin: Origin {
                merchant: MerchantId(1),
                key: RequestKey { terminal, request_id },
            },
            op,
        };
        let executed = store.execute(&command, START_US + counter);
        if store.wal().wait_durable(executed.lsn).is_err() {
            return;
        }
        if matches!(op, TerminalOp::Authorize { .. }) && executed.outcome.reason == Reason::Approved {
            holds.push(executed.outcome.id);
        }
        sent.push(command);
        acknowledge(&command, executed.outcome);
    }
}

/// An acknowledgement line: the command's record bytes, then the outcome.
fn ack_line(command: &Command, outcome: Outcome) -> String {
    format!(
        "ack {} {} {} {}",
        hex::encode(codec::encode(command).as_bytes()),
        outcome.reason as u8,
        outcome.id,
        outcome.amount
    )
}

fn parse_ack(line: &str) -> Option<(Command, Outcome)> {
    let mut fields = line.strip_prefix("ack ")?.split(' ');
    let command = codec::decode(&hex::decode(fields.next()?).ok()?).ok()?;
    let reason = Reason::from_u8(fields.next()?.parse().ok()?)?;
    let id = fields.next()?.parse().ok()?;
    let amount = fields.next()?.parse().ok()?;
    Some((command, Outcome { reason, id, amount }))
}

#[test]
fn crash_child_workload_runs_clean_without_a_crash() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, _) = Store::open(config(dir.path())).expect("open");
        set_up(&store);
        let acks = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let (store, acks) = (&store, &acks);
                scope.spawn(move || {
                    run_thread(store, 1, thread, 300, &|c, o| {
                        acks.lock().expect("acks").push((*c, o))
                    })
                });
            }
        });
        let acks = acks.into_inner().expect("acks");
        assert_eq!(acks.len(), 900);
        store.close().expect("close");
        drop(store);
        check_recovery(dir.path(), &acks);
        return;
    };
    let iteration: u64 = std::env::var(CHILD_ITERATION_ENV)
        .ok()
        .and_then(|text| text.parse().ok())
        .expect("iteration");
    let (store, _) = Store::open(config(Path::new(&dir))).expect("child opens the store");
    set_up(&store);
    println!("\nready");
    let print = |command: &Command, outcome: Outcome| println!("{}", ack_line(command, outcome));
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let store = &store;
            scope.spawn(move || run_thread(store, iteration, thread, CHILD_OPERATIONS_MAX, &print));
        }
    });
}

/// Reopen `dir` and check everything the test promises about the acknowledged commands.
fn check_recovery(dir: &Path, acks: &[(Command, Outcome)]) {
    let independent = Books::new(config(dir).books).expect("config");
    read_log(dir, 0, &ReadOptions::default(), |lsn, timestamp_us, payload| {
        let command = codec::decode(payload).expect("every record is a command");
        independent.replay(&command, timestamp_us, lsn);
        Ok::<(), WalError>(())
    })
    .expect("the surviving log reads");
    let (store, recovered) = Store::open(config(dir)).expect("reopen after the crash");
    assert!(
        recovered.log.cut.is_none(),
        "a crash never leaves corruption: {:?}",
        recovered.log.cut
    );
    if let Err(broken) = store.books().check_invariants() {
        panic!("invariant broken after recovery: {broken}");
    }
    assert_eq!(
        store.books().digest(),
        independent.digest(),
        "recovery equals an independent replay of the log"
    );
    for (command, outcome) in acks {
        let retried = store.execute(command, START_US + 1_000_000);
        // An approved authorization, increment or purchase may have been reversed since (by
        // an acknowledged reversal, or one the crash caught in flight): its retry is told so.
        let reversible = matches!(
            command,
            Command::Terminal {
                op: TerminalOp::Authorize { .. } | TerminalOp::Increment { .. } | TerminalOp::Purchase { .. },
                ..
            }
        );
        let told_reversed = reversible
            && outcome.reason.is_approved()
            && retried.outcome == Outcome::declined(Reason::Reversed);
        assert!(
            retried.outcome == *outcome || told_reversed,
            "a retry of an acknowledged {command:?} after the crash: {:?}, first {outcome:?}",
            retried.outcome
        );
    }
    store.close().expect("close");
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let mut seed = 0x5eed_u64;
    for iteration in 1..=ITERATIONS {
        if started.elapsed() > TEST_BUDGET {
            break;
        }
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let acks_before_kill = 1 + (seed >> 33) % 400;
        let mut child = Process::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "crash_child_workload_runs_clean_without_a_crash",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, dir.path())
            .env(CHILD_ITERATION_ENV, iteration.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut acks = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(ack) = parse_ack(line.trim()) {
                acks.push(ack);
                if acks.len() as u64 >= acks_before_kill {
                    break;
                }
            }
        }
        child.kill().expect("SIGKILL the child");
        child.wait().expect("reap the child");
        assert!(
            !acks.is_empty(),
            "iteration {iteration}: the child acknowledged nothing"
        );
        check_recovery(dir.path(), &acks);
    }
}
