//! authctl against the real authd (issue 5, section "authctl"): each test runs the real binary
//! and checks both what it prints and what the books say.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use authd_tests::{authctl_binary, balances, Authd};
use wire::client::{Client, ClientError};
use wire::Role;

/// What authctl printed, and how it exited.
struct Run {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn of(output: Output) -> Run {
        Run {
            status: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// stdout, after checking authctl succeeded.
    fn ok(self) -> String {
        assert_eq!(
            self.status,
            Some(0),
            "authctl failed:\n{}{}",
            self.stdout,
            self.stderr
        );
        self.stdout
    }
}

/// Run authctl with `args` against `authd`.
fn authctl(authd: &Authd, args: &[&str]) -> Run {
    let output = Command::new(authctl_binary())
        .arg("--connect")
        .arg(authd.addr.to_string())
        .arg("--data-dir")
        .arg(&authd.dir)
        .args(args)
        .output()
        .expect("run authctl");
    Run::of(output)
}

/// The number after `prefix` at the start of a line of `text`.
fn number_after(text: &str, prefix: &str) -> u64 {
    text.lines()
        .find_map(|line| line.trim().strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix:?} number in:\n{text}"))
}

/// The 32 bytes of 64 hex digits.
fn secret_from_hex(hex: &str) -> [u8; 32] {
    assert_eq!(hex.len(), 64, "{hex}");
    assert_eq!(hex, hex.to_lowercase(), "lowercase hex");
    std::array::from_fn(|index| u8::from_str_radix(&hex[index * 2..index * 2 + 2], 16).expect("hex"))
}

/// The value printed for `field` by `authctl account`.
fn field<'a>(text: &'a str, field: &str) -> &'a str {
    text.lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix(field)
                .filter(|rest| rest.starts_with(' '))
        })
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {field} in:\n{text}"))
}

fn open_account(authd: &Authd, flags: &[&str]) -> u64 {
    let mut args = vec!["open-account"];
    args.extend_from_slice(flags);
    number_after(&authctl(authd, &args).ok(), "opened payer account")
}

#[test]
fn open_account_load_and_account_show_the_balance_in_major_units() {
    let authd = Authd::start(&[]);
    let account = open_account(&authd, &["--mobile", "+33612345678", "--limit-day", "50"]);
    let loaded = authctl(
        &authd,
        &["load", "--account", &account.to_string(), "--amount", "12.50"],
    )
    .ok();
    assert!(loaded.contains("loaded 12.50 into account"), "{loaded}");
    assert!(loaded.contains("balance 12.50, available 12.50"), "{loaded}");

    let shown = authctl(&authd, &["account", "--account", &account.to_string()]).ok();
    assert_eq!(field(&shown, "kind"), "payer");
    assert_eq!(field(&shown, "status"), "active");
    assert_eq!(field(&shown, "balance"), "12.50");
    assert_eq!(field(&shown, "held"), "0.00");
    assert_eq!(field(&shown, "available"), "12.50");
    assert_eq!(field(&shown, "mobile"), "+33612345678");
    assert_eq!(field(&shown, "loyalty"), "0 points");
    assert_eq!(
        field(&shown, "limits"),
        "per payment none, per day 50.00, payments per day none, PIN above none"
    );
    assert_eq!(
        balances(&mut authd.operator(), account),
        (1250, 0, 1250),
        "the books agree"
    );
}

#[test]
fn the_currency_exponent_scales_typed_and_printed_amounts() {
    let authd = Authd::start(&[]);
    let account = open_account(&authd, &[]);
    let account_text = account.to_string();
    let exponent = ["--currency-exponent", "3"];
    let loaded = authctl(
        &authd,
        &[
            &exponent[..],
            &["load", "--account", &account_text, "--amount", "1.5"],
        ]
        .concat(),
    );
    assert!(loaded.ok().contains("balance 1.500"));
    assert_eq!(balances(&mut authd.operator(), account).0, 1500);
    let shown = authctl(&authd, &["account", "--account", &account_text]).ok();
    assert_eq!(
        field(&shown, "balance"),
        "15.00",
        "the same 1500 minor units with exponent 2"
    );
}

#[test]
fn limits_change_only_the_flags_given_and_freeze_shows_in_account() {
    let authd = Authd::start(&[]);
    let account = open_account(&authd, &["--limit-day", "50", "--limit-count", "10"]).to_string();
    let set = authctl(
        &authd,
        &[
            "limits",
            "--account",
            &account,
            "--limit-payment",
            "5",
            "--limit-count",
            "none",
        ],
    );
    assert_eq!(
        set.ok().trim(),
        format!("limits of account {account}: per payment 5.00, per day 50.00, payments per day none, PIN above none")
    );
    authctl(&authd, &["freeze", "--account", &account]).ok();
    let shown = authctl(&authd, &["account", "--account", &account]).ok();
    assert_eq!(field(&shown, "status"), "frozen");
    assert_eq!(
        field(&shown, "limits"),
        "per payment 5.00, per day 50.00, payments per day none, PIN above none"
    );
    authctl(&authd, &["unfreeze", "--account", &account]).ok();
    authctl(&authd, &["set-pin", "--account", &account, "--pin", "1234"]).ok();
    let shown = authctl(&authd, &["account", "--account", &account]).ok();
    assert_eq!(field(&shown, "status"), "active");
}

#[test]
fn register_terminal_prints_a_secret_that_logs_on() {
    let authd = Authd::start(&[]);
    let merchant = authctl(
        &authd,
        &[
            "register-merchant",
            "--fee-bps",
            "150",
            "--fee-bps-with-product",
            "100",
        ],
    )
    .ok();
    let merchant_id = number_after(&merchant, "merchant");
    let settlement = number_after(&merchant, "settlement account");
    let terminal = authctl(
        &authd,
        &["register-terminal", "--merchant", &merchant_id.to_string()],
    )
    .ok();
    assert!(terminal.contains("shown once only"), "{terminal}");
    let terminal_id = number_after(&terminal, "terminal") as u32;
    let secret = secret_from_hex(field(&terminal, "secret"));
    authd.client(Role::Terminal, terminal_id, secret);
    let mut wrong = secret;
    wrong[0] ^= 1;
    assert!(matches!(
        Client::connect(authd.addr, Role::Terminal, terminal_id, wrong),
        Err(ClientError::LogonRefused { .. })
    ));

    let shown = authctl(&authd, &["account", "--account", &settlement.to_string()]).ok();
    assert_eq!(field(&shown, "kind"), "merchant settlement");
    assert_eq!(field(&shown, "balance"), "0.00");
}

#[test]
fn register_device_prints_a_secret_that_logs_on() {
    let authd = Authd::start(&[]);
    let account = open_account(&authd, &[]);
    let device = authctl(&authd, &["register-device", "--account", &account.to_string()]).ok();
    let device_id = number_after(&device, "device") as u32;
    let secret = secret_from_hex(field(&device, "secret"));
    authd.client(Role::PayerDevice, device_id, secret);
}

#[test]
fn a_decline_prints_the_reason_and_iso_code_and_exits_3() {
    let authd = Authd::start(&[]);
    let run = authctl(&authd, &["load", "--account", "999999", "--amount", "1"]);
    assert_eq!(run.status, Some(3), "{}", run.stderr);
    assert!(run.stderr.contains("AccountUnknown (ISO 14)"), "{}", run.stderr);

    let stats = authctl(&authd, &["stats"]).ok();
    assert_eq!(field(&stats, "replies AccountUnknown (ISO 14)"), "1", "{stats}");
    assert!(number_after(&stats, "connections accepted") >= 2, "{stats}");
    assert!(authctl(&authd, &["echo"]).ok().contains("answered echo"));
}

#[test]
fn too_many_decimals_are_refused_with_the_rule() {
    let authd = Authd::start(&[]);
    let run = authctl(&authd, &["load", "--account", "5", "--amount", "1.234"]);
    assert_eq!(run.status, Some(1));
    assert!(
        run.stderr.contains("1.234 has 3 decimals but the currency has 2"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_missing_key_file_says_which_flag_to_pass() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(authctl_binary())
        .args(["--connect", "127.0.0.1:9", "--data-dir"])
        .arg(dir.path())
        .arg("stats")
        .output()
        .expect("run authctl");
    let run = Run::of(output);
    assert_eq!(run.status, Some(1));
    let expected = format!(
        "no operator key at {}; pass --data-dir of the authd data dir or --key",
        dir.path().join("operator.key").display()
    );
    assert!(run.stderr.contains(&expected), "{}", run.stderr);
}

#[test]
fn a_refused_connection_asks_whether_authd_is_running() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("key");
    std::fs::write(&key, "ab".repeat(32)).expect("key");
    let address = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").to_string()
    };
    let output = Command::new(authctl_binary())
        .args(["--connect", &address, "--key"])
        .arg(&key)
        .arg("echo")
        .output()
        .expect("run authctl");
    let run = Run::of(output);
    assert_eq!(run.status, Some(1));
    let expected = format!("cannot connect to {address}; is authd running? pass --connect");
    assert!(run.stderr.contains(&expected), "{}", run.stderr);
}

/// The CSV's data rows by kind.
fn read_csv(path: &Path) -> BTreeMap<String, Vec<(u64, u64, String)>> {
    let text = std::fs::read_to_string(path).expect("csv");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("# authd provision v1"));
    assert_eq!(lines.next(), Some("kind,id,owner,secret_hex"));
    let mut rows: BTreeMap<String, Vec<(u64, u64, String)>> = BTreeMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 4, "{line}");
        let number = |text: &str| text.parse::<u64>().expect("number");
        rows.entry(fields[0].to_string()).or_default().push((
            number(fields[1]),
            number(fields[2]),
            fields[3].to_string(),
        ));
    }
    rows
}

#[test]
fn provision_writes_a_csv_whose_terminals_log_on_and_payers_exist_with_their_balance() {
    let authd = Authd::start(&[]);
    let out = authd.dir.join("terminals.csv");
    let out_text = out.to_string_lossy().into_owned();
    let mut args = vec![
        "provision",
        "--out",
        &out_text,
        "--payers",
        "301",
        "--merchants",
        "2",
    ];
    args.extend(["--terminals", "3", "--balance", "10.25", "--connections", "3"]);
    let summary = authctl(&authd, &args).ok();
    assert!(summary.contains("payers/s"), "{summary}");
    assert!(
        summary.contains("2 merchants, 6 terminals, 301 payers with 10.25 each"),
        "{summary}"
    );

    let rows = read_csv(&out);
    let merchants = &rows["merchant"];
    assert_eq!(merchants.len(), 2);
    let terminals = &rows["terminal"];
    assert_eq!(terminals.len(), 6);
    let mut operator = authd.operator();
    for (merchant, settlement, secret) in merchants {
        assert!(secret.is_empty());
        assert_eq!(terminals.iter().filter(|row| row.1 == *merchant).count(), 3);
        assert_eq!(
            balances(&mut operator, *settlement).0,
            0,
            "settlement account exists"
        );
    }
    for (terminal, _, secret) in terminals {
        authd.client(Role::Terminal, *terminal as u32, secret_from_hex(secret));
    }
    let payers = &rows["payer"];
    assert_eq!(payers.len(), 301);
    for (index, (account, mobile, secret)) in payers.iter().enumerate() {
        assert!(secret.is_empty());
        assert_eq!(*mobile, 33_600_000_000 + index as u64);
        assert_eq!(balances(&mut operator, *account), (1025, 0, 1025));
    }
}

#[test]
fn provision_into_taken_mobile_numbers_names_the_reason() {
    let authd = Authd::start(&[]);
    open_account(&authd, &["--mobile", "+33600000002"]);
    let out = authd.dir.join("terminals.csv").to_string_lossy().into_owned();
    let run = authctl(
        &authd,
        &["provision", "--payers", "5", "--balance", "1", "--out", &out],
    );
    assert_eq!(run.status, Some(3), "{}", run.stderr);
    assert!(
        run.stderr.contains("opening payer #2 (mobile +33600000002)"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("InvalidRequest (ISO 12)"), "{}", run.stderr);
}
