//! End to end: `loadgen --spawn` starts the debug authd, provisions itself, runs an open loop
//! at a low rate for two seconds with every flow kind, and the JSON report and the books check
//! must come out right. (Issue 6.)

mod support;

use std::path::Path;
use std::process::Command;

use support::loadgen_spawn;

/// What a run of `loadgen --spawn` printed and reported.
struct Run {
    stdout: String,
    /// The `--json` report as written.
    text: String,
    report: serde_json::Value,
}

/// Runs `loadgen --spawn` against this profile's authd with `args`, writing its JSON report
/// into `dir`; the run must succeed.
fn spawned_run(dir: &Path, args: &[&str]) -> Run {
    let json_path = dir.join("report.json");
    let output = loadgen_spawn(args, &json_path).output().expect("run loadgen");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "loadgen failed:\n{stdout}\n{stderr}");
    let text = std::fs::read_to_string(&json_path).expect("json written");
    let report = serde_json::from_str(&text).expect("valid json");
    Run { stdout, text, report }
}

#[test]
fn open_loop_run_reports_json_and_the_books_agree() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hgrm_path = dir.path().join("result.hgrm");
    let plot_path = dir.path().join("result.svg");
    let (hgrm, plot) = (hgrm_path.to_string_lossy(), plot_path.to_string_lossy());
    let mix = "purchase=25,authorize_capture=10,authorize_void=5,authorize_increment_capture=10,\
               refund=10,reversal=10,balance_check=5,echo=5,offer_cancel=5,offer_status=5,\
               failed_provisioning=10";
    let Run { stdout, text, report } = spawned_run(
        dir.path(),
        &[
            "--fsync",
            "always",
            "--authd-arg=--shards=4",
            "--authd-arg=--threads=1",
            "--rate",
            "400",
            "--duration",
            "2",
            "--warmup",
            "0.5",
            "--connections",
            "4",
            "--threads",
            "2",
            "--payers",
            "200",
            "--merchants",
            "3",
            "--mix",
            mix,
            "--distribution",
            "zipf:0.99",
            "--quiet",
            "--hgrm",
            &hgrm,
            "--plot",
            &plot,
        ],
    );
    assert!(stdout.contains("books check: OK"), "{stdout}");

    let ops_per_s = report["ops_per_s"].as_f64().expect("ops_per_s");
    // 400 flows/s, most of them two requests: well above 400 requests/s, and not absurd.
    assert!((400.0..2_000.0).contains(&ops_per_s), "ops_per_s {ops_per_s}");
    for key in ["p50", "p90", "p99", "p999", "p9999", "max"] {
        let value = report["latency_us"][key].as_f64().unwrap_or(-1.0);
        assert!(value > 0.0, "latency_us.{key} = {value}");
    }
    assert!(
        report["codes"]["00"].as_u64().unwrap_or(0) > 500,
        "{}",
        report["codes"]
    );
    assert_eq!(report["errors"].as_u64(), Some(0), "{text}");
    // Payers hold far more than the run spends: every request of every flow is approved,
    // the follow-ups (captures, voids, refunds, reversals, cancels, status, failed
    // provisioning) included.
    assert_eq!(report["declines"].as_u64(), Some(0), "{text}");
    assert_eq!(report["follow_ups_dropped"].as_u64(), Some(0), "{text}");
    assert_eq!(report["books"]["ok"].as_bool(), Some(true), "{text}");
    assert_eq!(report["books"]["exact_per_merchant"].as_bool(), Some(true));
    assert!(report["cpu"]["loadgen_us_per_request"].as_f64().unwrap_or(0.0) > 0.0);
    // How long each thread waited for a CPU, in milliseconds per second measured: at most
    // all of it, for the first load thread and for the spawned authd's writer and its loop.
    let waits = &report["cpu_wait_ms_per_s"];
    for (process, thread) in [
        ("loadgen", "loadgen-0"),
        ("authd", "wal-writer"),
        ("authd", "authd-loop-0"),
    ] {
        let ms_per_s = waits[process][thread].as_f64().unwrap_or(-1.0);
        assert!(
            (0.0..=1_000.0).contains(&ms_per_s),
            "{process}.{thread} = {ms_per_s}: {text}"
        );
    }
    assert!(
        stdout.contains("waiting for a CPU while ready to run (ms per second): authd "),
        "{stdout}"
    );
    // The machine's CPU time by state over the measured phase, steal included, sums to 100%;
    // and each measured second whose boundaries were read has its stolen share.
    let machine = &report["machine_cpu_pct"];
    let shares: Vec<f64> = ["busy", "idle", "iowait", "stolen"]
        .iter()
        .map(|key| machine[key].as_f64().unwrap_or(-1.0))
        .collect();
    assert!(
        shares.iter().all(|share| (0.0..=100.0).contains(share))
            && (shares.iter().sum::<f64>() - 100.0).abs() < 1e-6
            && shares[0] > 0.0,
        "{shares:?}: {text}"
    );
    assert!(
        stdout.contains("this machine's CPU time while measuring"),
        "{stdout}"
    );
    // And each CPU's stolen share of its own time, one entry a CPU.
    let by_cpu = machine["stolen_by_cpu"].as_object().expect("stolen_by_cpu");
    assert!(
        !by_cpu.is_empty()
            && by_cpu
                .values()
                .all(|pct| pct.as_f64().is_some_and(|pct| (0.0..=100.0).contains(&pct))),
        "{text}"
    );
    let seconds = report["timeline"].as_array().expect("timeline");
    assert!(
        seconds
            .iter()
            .filter(|second| second["stolen_pct"]
                .as_f64()
                .is_some_and(|pct| (0.0..=100.0).contains(&pct)))
            .count()
            >= seconds.len() / 2,
        "{text}"
    );
    // authd's own account of its log: with fsync always, every record was synced.
    let log = &report["authd_log"];
    let (records, syncs) = (
        log["records"].as_u64().unwrap_or(0),
        log["syncs"].as_u64().unwrap_or(0),
    );
    assert!(records > 500 && (1..=records).contains(&syncs), "{text}");
    let sync = |key: &str| log["sync_us"][key].as_u64().unwrap_or(0);
    assert!(
        0 < sync("p50") && sync("p50") <= sync("p99") && sync("p99") <= sync("max"),
        "{text}"
    );
    assert!(stdout.contains("fdatasync p50"), "{stdout}");
    assert!(log["sync_time_us"].as_u64().unwrap_or(0) > 0, "{text}");
    // Captures, refunds and echoes are sent at a reply or write no record: no disk floor.
    assert_eq!(report["disk_floor"], serde_json::Value::Null, "{text}");

    let hgrm = std::fs::read_to_string(&hgrm_path).expect("hgrm written");
    assert!(hgrm.contains("#[Max"), "{hgrm}");
    let svg = std::fs::read_to_string(&plot_path).expect("svg written");
    assert!(svg.starts_with("<svg") && svg.contains("latency by percentile"));
    // The seconds had their steal read (checked above): the lower chart has its right axis.
    assert!(svg.contains("stolen by the host (% of CPU time)"), "{svg}");
}

/// Offers: the gateway accepts each after the think time, the outcome push ends the flow, and
/// the accepted offers are in the books as captures.
#[test]
fn offers_are_accepted_after_the_think_time_and_booked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Run { stdout, text, report } = spawned_run(
        dir.path(),
        &[
            "--fsync",
            "always",
            "--authd-arg=--shards=4",
            "--authd-arg=--threads=1",
            "--rate",
            "200",
            "--duration",
            "1.5",
            "--warmup",
            "0.3",
            "--connections",
            "2",
            "--threads",
            "2",
            "--payers",
            "100",
            "--mix",
            "purchase=50,offer=50",
            "--think-time-us",
            "2000",
            "--quiet",
        ],
    );
    assert!(stdout.contains("offer to outcome"), "{stdout}");

    assert_eq!(report["think_time_us"].as_u64(), Some(2_000), "{text}");
    let offers = &report["offer_outcome_us"];
    let p50 = offers["p50"].as_f64().unwrap_or(0.0);
    assert!(
        p50 >= 2_000.0,
        "offer-to-outcome p50 {p50} below the think time: {text}"
    );
    for key in ["p99", "p999", "max"] {
        assert!(
            offers[key].as_f64().unwrap_or(0.0) >= p50,
            "offer_outcome_us.{key}: {text}"
        );
    }
    assert!(offers["count"].as_u64().unwrap_or(0) > 50, "{text}");
    // Purchases and offers, open loop, fsync always: a disk floor, a share per threshold,
    // beside the measured share.
    let floor = &report["disk_floor"];
    for shares in ["share_past_us", "measured_share_past_us"] {
        let mut shorter_threshold_share = 1.0;
        for key in ["1000", "2000", "5000", "10000", "20000"] {
            let share = floor[shares][key].as_f64().unwrap_or(-1.0);
            assert!(
                (0.0..=shorter_threshold_share).contains(&share),
                "disk_floor.{shares}.{key} = {share}, the shorter threshold's {shorter_threshold_share}: {text}"
            );
            shorter_threshold_share = share;
        }
    }
    assert!(
        stdout.contains("disk floor (what authd's fdatasyncs alone forced)"),
        "{stdout}"
    );
    assert_eq!(report["offers"]["outcomes_missing"].as_u64(), Some(0), "{text}");
    assert_eq!(report["offers"]["accept_declined"].as_u64(), Some(0), "{text}");
    assert_eq!(report["errors"].as_u64(), Some(0), "{text}");
    assert_eq!(report["books"]["ok"].as_bool(), Some(true), "{text}");
    assert_eq!(report["books"]["exact_per_merchant"].as_bool(), Some(true));
}

#[test]
fn closed_loop_on_a_hot_merchant_keeps_the_pipeline_full_and_the_books_agree() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Run { text, report, .. } = spawned_run(
        dir.path(),
        &[
            "--fsync",
            "never",
            "--authd-arg=--shards=4",
            "--authd-arg=--threads=1",
            "--connections",
            "3",
            "--pipeline",
            "8",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--payers",
            "50",
            "--merchants",
            "2",
            "--hot-merchant",
            "--quiet",
            "--mix",
            "purchase=60,authorize_capture=20,refund=10,reversal=10",
        ],
    );
    assert_eq!(report["mode"].as_str(), Some("closed"));
    assert!(report["requests"].as_u64().unwrap_or(0) > 100, "{text}");
    // fsync never: records written, none synced.
    assert!(
        report["authd_log"]["records"].as_u64().unwrap_or(0) > 100,
        "{text}"
    );
    assert_eq!(report["authd_log"]["syncs"].as_u64(), Some(0), "{text}");
    assert_eq!(
        report["disk_floor"],
        serde_json::Value::Null,
        "closed loop, no fdatasync"
    );
    assert_eq!(report["errors"].as_u64(), Some(0), "{text}");
    assert_eq!(report["books"]["ok"].as_bool(), Some(true), "{text}");
}

#[test]
fn a_missing_server_is_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--connect",
            "127.0.0.1:1",
            "--key",
            "/nonexistent/operator.key",
            "--duration",
            "1",
        ])
        .output()
        .expect("run loadgen");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--key FILE or --data-dir"), "{stderr}");
}
