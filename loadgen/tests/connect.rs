//! End to end, the README's walk-through: `authctl provision` writes the terminals'
//! credentials, and `loadgen --connect` drives an authd already running with them, checking
//! the books with the operator key from its data dir. (Issue 6.)

use std::process::Command;

use authd_tests::{authctl_binary, Authd};

#[test]
fn loadgen_drives_a_running_authd_with_the_credentials_authctl_wrote() {
    let authd = Authd::start(&["--fsync", "never"]);
    let (addr, dir) = (authd.addr.to_string(), authd.dir.to_string_lossy().into_owned());
    let csv = authd.dir.join("terminals.csv");
    let provisioned = Command::new(authctl_binary())
        .args(["--connect", &addr, "--data-dir", &dir, "provision"])
        .args([
            "--payers",
            "300",
            "--merchants",
            "2",
            "--terminals",
            "2",
            "--balance",
            "100",
        ])
        .args(["--fee-bps", "70", "--out"])
        .arg(&csv)
        .output()
        .expect("run authctl");
    assert!(
        provisioned.status.success(),
        "{}",
        String::from_utf8_lossy(&provisioned.stderr)
    );
    let json = authd.dir.join("report.json");
    let run = |fee_bps: &str| {
        Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(["--connect", &addr, "--data-dir", &dir, "--credentials"])
            .arg(&csv)
            .args([
                "--fee-bps",
                fee_bps,
                "--rate",
                "300",
                "--duration",
                "1",
                "--warmup",
                "0",
            ])
            .args([
                "--connections",
                "4",
                "--amount-min",
                "100",
                "--amount-max",
                "500",
                "--quiet",
            ])
            .args(["--mix", "purchase=60,authorize_capture=20,refund=20", "--json"])
            .arg(&json)
            .output()
            .expect("run loadgen")
    };
    let output = run("70");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let context = format!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{context}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written")).expect("valid json");
    assert_eq!(report["settings"]["terminals"].as_u64(), Some(4), "{context}");
    assert_eq!(report["settings"]["payers"].as_u64(), Some(300), "{context}");
    assert_eq!(
        report["requests"].as_u64().map(|n| n >= 300),
        Some(true),
        "{context}"
    );
    assert_eq!(report["errors"].as_u64(), Some(0), "{context}");
    // The fee provision used, passed again: the merchants' books are checked one by one.
    assert_eq!(report["books"]["ok"].as_bool(), Some(true), "{context}");
    assert_eq!(
        report["books"]["exact_per_merchant"].as_bool(),
        Some(true),
        "{context}"
    );
    // A wrong fee makes each merchant's net disagree: the check can fail.
    let wrong = run("25");
    let stdout = String::from_utf8_lossy(&wrong.stdout);
    assert!(!wrong.status.success(), "{stdout}");
    assert!(stdout.contains("books check: FAILED"), "{stdout}");
}
