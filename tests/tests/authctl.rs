//! authctl against the real authd (issue 5, section "authctl"; disputes and offers, issue 7):
//! each test runs the real binary and checks both what it prints and what the books say.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use authd_tests::{authctl_binary, balances, device, payer, shop, Authd};
use wire::client::{Client, ClientError};
use wire::logon::secret_to_hex;
use wire::messages::reply::{DISPUTES_PER_REPLY_MAX, OFFERS_PER_REPLY_MAX};
use wire::messages::terminal::{Offer, OfferCancel, Purchase};
use wire::types::{AccountNumber, OfferId, PayerRef, ShortText};
use wire::{Reply, Request, Role};

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

/// authctl, pointed at `authd` (its address and data dir).
fn authctl_command(authd: &Authd) -> Command {
    let mut command = Command::new(authctl_binary());
    command
        .arg("--connect")
        .arg(authd.addr.to_string())
        .arg("--data-dir")
        .arg(&authd.dir);
    command
}

/// Run authctl with `args` against `authd`.
fn authctl(authd: &Authd, args: &[&str]) -> Run {
    Run::of(authctl_command(authd).args(args).output().expect("run authctl"))
}

/// The number after `prefix` at the start of a line of `text`.
fn number_after(text: &str, prefix: &str) -> u64 {
    text.lines()
        .find_map(|line| line.trim().strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix:?} number in:\n{text}"))
}

/// The 32 bytes of 64 lowercase hex digits, as authctl prints a secret.
fn secret_from_hex(hex: &str) -> [u8; 32] {
    assert_eq!(hex, hex.to_lowercase(), "lowercase hex");
    wire::logon::secret_from_hex(hex).expect("64 hex digits")
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
fn amounts_take_the_decimals_of_the_accounts_currency() {
    // Books in yen (no decimals): 1500 typed is 1500 yen, and euro's two decimals are refused.
    let authd = Authd::start(&["--currency", "392"]);
    let account = open_account(&authd, &["--currency", "392"]);
    let account_text = account.to_string();
    let loaded = authctl(&authd, &["load", "--account", &account_text, "--amount", "1500"]).ok();
    assert!(loaded.contains("balance 1500"), "{loaded}");
    assert_eq!(balances(&mut authd.operator(), account).0, 1500);
    let shown = authctl(&authd, &["account", "--account", &account_text]).ok();
    assert_eq!(field(&shown, "balance"), "1500");
    let cents = authctl(&authd, &["load", "--account", &account_text, "--amount", "1.5"]);
    assert_eq!(cents.status, Some(1), "{}", cents.stderr);
    let forced = authctl(
        &authd,
        &[
            "--currency-exponent",
            "2",
            "load",
            "--account",
            &account_text,
            "--amount",
            "15.00",
        ],
    );
    assert_eq!(forced.status, Some(1), "{}", forced.stderr);
    assert!(
        forced.stderr.contains("currency 392 has 0 decimals"),
        "{}",
        forced.stderr
    );
    assert_eq!(
        balances(&mut authd.operator(), account).0,
        1500,
        "nothing more loaded"
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
fn an_alias_taken_is_named_in_the_decline() {
    let authd = Authd::start(&[]);
    let merchant = [
        "register-merchant",
        "--origin",
        "CAFE42",
        "--fee-bps",
        "150",
        "--fee-bps-with-product",
        "90",
    ];
    for args in [&merchant[..], &["open-account", "--mobile", "+33612345678"]] {
        authctl(&authd, args).ok();
        let again = authctl(&authd, args);
        assert_eq!(again.status, Some(3), "{}", again.stderr);
        let asked = format!(
            "{} {} {} declined: InvalidRequest (ISO 12)",
            args[0], args[1], args[2]
        );
        assert!(again.stderr.contains(&asked), "{}", again.stderr);
    }
}

#[test]
fn too_many_decimals_are_refused_with_the_rule() {
    let authd = Authd::start(&[]);
    let account = open_account(&authd, &[]).to_string();
    let run = authctl(&authd, &["load", "--account", &account, "--amount", "1.234"]);
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
    // What was registered before the failure is in the CSV: the terminal's secret is not lost.
    assert!(
        run.stderr.contains("holds what was registered before"),
        "{}",
        run.stderr
    );
    let csv = std::fs::read_to_string(&out).expect("the CSV of what was registered");
    assert_eq!(
        csv.lines().filter(|line| line.starts_with("merchant,")).count(),
        1,
        "{csv}"
    );
    // A failure starts nothing new but finishes what was started: the merchant gets its
    // terminal, whose secret is in the CSV.
    let terminals: Vec<&str> = csv.lines().filter(|line| line.starts_with("terminal,")).collect();
    assert_eq!(terminals.len(), 1, "{csv}");
    assert_eq!(terminals[0].split(',').nth(3).map(str::len), Some(64), "{csv}");
    assert!(
        !csv.contains(",33600000002,"),
        "the taken number is no payer of this run: {csv}"
    );
}

#[test]
fn provision_never_overwrites_a_csv_and_checks_the_fees_before_registering() {
    let authd = Authd::start(&[]);
    let out = authd.dir.join("terminals.csv");
    std::fs::write(&out, "an earlier run's secrets\n").expect("write");
    let out_arg = out.to_string_lossy().into_owned();
    let run = authctl(
        &authd,
        &["provision", "--payers", "1", "--balance", "1", "--out", &out_arg],
    );
    assert_ne!(run.status, Some(0));
    assert!(run.stderr.contains("never overwritten"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(&out).expect("read"),
        "an earlier run's secrets\n"
    );
    let fresh = authd.dir.join("fresh.csv").to_string_lossy().into_owned();
    let run = authctl(
        &authd,
        &[
            "provision",
            "--payers",
            "1",
            "--balance",
            "1",
            "--fee-bps",
            "30",
            "--out",
            &fresh,
        ],
    );
    assert_ne!(run.status, Some(0));
    assert!(run.stderr.contains("is above --fee-bps 30"), "{}", run.stderr);
    // Nothing was registered: the first merchant the operator registers is merchant 1.
    let mut operator = authd.operator();
    assert_eq!(shop(&mut operator, 0, 0).merchant, 1);
}

#[test]
fn provision_refuses_sizes_past_its_bounds_before_registering_anything() {
    let authd = Authd::start(&[]);
    let out = authd.dir.join("terminals.csv").to_string_lossy().into_owned();
    let base = ["provision", "--balance", "1", "--out", &out];
    for (extra, expected) in [
        (vec!["--payers", "10000001"], "is not in"),
        (vec!["--payers", "1", "--merchants", "900001"], "is not in"),
        (vec!["--payers", "1", "--merchants", "0"], "is not in"),
        (vec!["--payers", "1", "--terminals", "10001"], "is not in"),
        (vec!["--payers", "1", "--fee-bps", "10001"], "is not in"),
        (vec!["--payers", "1", "--currency", "1000"], "is not in"),
        (vec!["--payers", "1", "--in-flight", "0"], "is not in"),
        (vec!["--payers", "1", "--in-flight", "65537"], "is not in"),
        (
            vec!["--payers", "1", "--merchants", "101", "--terminals", "10000"],
            "1010000 terminals, above 1000000",
        ),
    ] {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let run = authctl(&authd, &args);
        assert_ne!(run.status, Some(0), "{extra:?}");
        assert!(run.stderr.contains(expected), "{extra:?}: {}", run.stderr);
    }
    // Nothing was registered: the first merchant the operator registers is merchant 1.
    let mut operator = authd.operator();
    assert_eq!(shop(&mut operator, 0, 0).merchant, 1);
}

/// A purchase of `amount_minor` by `payer` at `till`; its transaction (hold) id.
fn purchase(till: &mut Client, payer: u64, amount_minor: u64) -> u64 {
    purchase_in(till, payer, amount_minor, 978)
}

/// [`purchase`] in `currency`.
fn purchase_in(till: &mut Client, payer: u64, amount_minor: u64, currency: u16) -> u64 {
    let request = Request::Purchase(Purchase {
        payer: PayerRef::Account(AccountNumber(payer)),
        amount_minor,
        currency,
        pin: None,
        loyalty_points: 0,
        product: None,
    });
    let Reply::Purchase(reply) = till.call(&request).expect("purchase") else {
        panic!("purchase: unexpected reply");
    };
    assert_eq!(reply.code, 0, "purchase approved");
    reply.hold_id.0
}

/// The rows `dispute list` printed under its header: (dispute, hold, amount, cause, state).
fn dispute_rows(text: &str) -> Vec<(u64, u64, String, String, String)> {
    let mut lines = text.lines();
    assert!(
        lines.next().is_some_and(|header| header.starts_with("dispute")),
        "{text}"
    );
    lines
        .map(|line| {
            let mut words = line.split_whitespace();
            let mut next = || words.next().expect("column").to_string();
            let (dispute, hold, amount, cause) = (next(), next(), next(), next());
            let state = words.collect::<Vec<_>>().join(" ");
            let number = |text: String| text.parse::<u64>().expect("number");
            (number(dispute), number(hold), amount, cause, state)
        })
        .collect()
}

#[test]
fn dispute_open_resolve_and_list_move_the_money_and_show_each_state() {
    let authd = Authd::start(&[]);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, 200, 100);
    let account = payer(&mut operator, 0, 10_000);
    let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
    let game = purchase(&mut till, account, 1_000).to_string();
    let song = purchase(&mut till, account, 500).to_string();
    let settled = 1_500 - 30; // 2 % fee
    assert_eq!(balances(&mut operator, shop.settlement).0, settled);

    let open = |hold: &str, amount: &str, cause: &str| {
        let args = [
            "dispute", "open", "--hold", hold, "--amount", amount, "--cause", cause,
        ];
        let opened = authctl(&authd, &args).ok();
        assert!(opened.contains(&format!("on hold {hold}: ")), "{opened}");
        assert!(opened.contains(cause), "{opened}");
        number_after(&opened, "dispute").to_string()
    };
    let resolve = |dispute: &str, side: &str| {
        authctl(
            &authd,
            &["dispute", "resolve", "--dispute", dispute, "--for", side],
        )
    };

    let first = open(&game, "10.00", "defective");
    assert_eq!(
        balances(&mut operator, account),
        (9_500, 1_000, 8_500),
        "credited, held"
    );
    assert_eq!(balances(&mut operator, shop.settlement).0, settled - 1_000);
    let resolved = resolve(&first, "merchant").ok();
    assert!(resolved.contains("resolved for the merchant"), "{resolved}");
    assert_eq!(balances(&mut operator, account), (8_500, 0, 8_500), "moved back");
    assert_eq!(balances(&mut operator, shop.settlement).0, settled);
    let again = resolve(&first, "payer");
    assert_eq!(
        again.status,
        Some(3),
        "a resolved dispute stays resolved: {}",
        again.stderr
    );

    let second = open(&game, "4.00", "not-delivered");
    assert!(resolve(&second, "payer").ok().contains("the credit is final"));
    assert_eq!(
        balances(&mut operator, account),
        (8_900, 0, 8_900),
        "final for the payer"
    );
    assert_eq!(balances(&mut operator, shop.settlement).0, settled - 400);
    let third = open(&song, "5", "partial");
    assert_eq!(balances(&mut operator, account), (9_400, 500, 8_900));

    let rows = dispute_rows(&authctl(&authd, &["dispute", "list"]).ok());
    let expected = [
        (&first, &game, "10.00", "defective", "resolved for merchant"),
        (&second, &game, "4.00", "not-delivered", "resolved for payer"),
        (&third, &song, "5.00", "partial", "open"),
    ];
    let number = |text: &str| text.parse::<u64>().expect("number");
    let expected: Vec<_> = expected
        .iter()
        .map(|(id, hold, amount, cause, state)| {
            let texts = [amount, cause, state].map(|text| text.to_string());
            let [amount, cause, state] = texts;
            (number(id), number(hold), amount, cause, state)
        })
        .collect();
    assert_eq!(rows, expected, "oldest first");
    let after = dispute_rows(&authctl(&authd, &["dispute", "list", "--after", &second]).ok());
    assert_eq!(after, expected[2..]);
    let none = authctl(&authd, &["dispute", "list", "--after", &third]).ok();
    assert_eq!(none, "no disputes\n");
}

#[test]
fn dispute_list_pages_through_more_than_one_reply() {
    let authd = Authd::start(&[]);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, 0, 0);
    let account = payer(&mut operator, 0, 10_000);
    let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
    let count = DISPUTES_PER_REPLY_MAX * 2 + 1;
    let mut opened = Vec::with_capacity(count);
    for _ in 0..count {
        let hold = purchase(&mut till, account, 100).to_string();
        let args = [
            "dispute", "open", "--hold", &hold, "--amount", "1", "--cause", "other",
        ];
        opened.push(number_after(&authctl(&authd, &args).ok(), "dispute"));
    }
    opened.sort_unstable();
    let rows = dispute_rows(&authctl(&authd, &["dispute", "list"]).ok());
    let ids: Vec<u64> = rows.iter().map(|row| row.0).collect();
    assert_eq!(ids, opened, "every page, in id order");
    let fifth = opened[4].to_string();
    let rows = dispute_rows(&authctl(&authd, &["dispute", "list", "--after", &fifth]).ok());
    let ids: Vec<u64> = rows.iter().map(|row| row.0).collect();
    assert_eq!(ids, opened[5..]);
}

/// An offer of `amount_minor` from `till` to the payer with `mobile`; its id.
fn offer(till: &mut Client, mobile: u64, amount_minor: u64, reference: &str) -> u64 {
    let request = Request::Offer(Offer {
        payer: PayerRef::Mobile(mobile),
        amount_minor,
        currency: 978,
        expires_in_s: 120,
        reference: ShortText::new(reference).expect("short"),
    });
    let Reply::Offer(reply) = till.call(&request).expect("offer") else {
        panic!("offer: unexpected reply");
    };
    assert_eq!(reply.code, 0, "offer approved");
    reply.offer_id.0
}

#[test]
fn offers_lists_a_terminals_offers_as_the_payers_device_and_offer_prints_its_state() {
    let authd = Authd::start(&[]);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, 100, 50);
    let mobile = 33_612_000_001;
    let account = payer(&mut operator, mobile, 100_000);
    let (device_id, device_secret) = device(&mut operator, account);
    let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
    let first = offer(&mut till, mobile, 1_250, "order 8812");
    let more: Vec<u64> = (0..OFFERS_PER_REPLY_MAX)
        .map(|_| offer(&mut till, mobile, 100, "more"))
        .collect();

    let (device_text, device_hex) = (device_id.to_string(), secret_to_hex(&device_secret));
    let offers = || {
        authctl(
            &authd,
            &["offers", "--device", &device_text, "--device-secret", &device_hex],
        )
    };
    let listed = offers().ok();
    assert!(
        listed.starts_with(&format!(
            "{} pending offers for device {device_id}\n",
            1 + more.len()
        )),
        "every page: {listed}"
    );
    let line = listed
        .lines()
        .find(|line| line.starts_with(&format!("offer {first}:")))
        .unwrap_or_else(|| panic!("offer {first} missing:\n{listed}"));
    let origin_prefix = format!("offer {first}: merchant {} origin \"SHOP", shop.merchant);
    assert!(line.starts_with(&origin_prefix), "{line}");
    assert!(
        line.contains(", 12.50 (currency 978), reference \"order 8812\", "),
        "{line}"
    );
    let left: u32 = line
        .rsplit(", ")
        .next()
        .and_then(|tail| tail.strip_suffix(" s left"))
        .and_then(|s| s.parse().ok())
        .expect("seconds");
    assert!((100..=120).contains(&left), "{line}");

    let (terminal_text, terminal_hex) = (shop.terminal.to_string(), secret_to_hex(&shop.secret));
    let offer_state = |offer: u64| {
        let offer = offer.to_string();
        authctl(
            &authd,
            &[
                "offer",
                "--terminal",
                &terminal_text,
                "--terminal-secret",
                &terminal_hex,
                "--offer",
                &offer,
            ],
        )
    };
    let shown = offer_state(first).ok();
    assert_eq!(
        field(&shown, "state"),
        "offered: funds held, waiting for the payer",
        "{shown}"
    );
    assert!(shown.starts_with(&format!("offer {first}: 12.50\n")), "{shown}");
    let cancel = Request::OfferCancel(OfferCancel {
        offer_id: OfferId(first),
    });
    assert!(matches!(till.call(&cancel), Ok(Reply::OfferCancel(reply)) if reply.code == 0));
    let shown = offer_state(first).ok();
    assert_eq!(
        field(&shown, "state"),
        "cancelled by the merchant: funds released"
    );
    assert!(
        !offers().ok().contains(&format!("offer {first}:")),
        "no longer pending"
    );

    let other = shop_of_another_merchant(&mut operator);
    let foreign = authctl(
        &authd,
        &[
            "offer",
            "--terminal",
            &other.0.to_string(),
            "--terminal-secret",
            &secret_to_hex(&other.1),
            "--offer",
            &first.to_string(),
        ],
    );
    assert_eq!(
        foreign.status,
        Some(3),
        "another merchant's terminal sees nothing: {}",
        foreign.stderr
    );
    let mut wrong = device_secret;
    wrong[0] ^= 1;
    let refused = authctl(
        &authd,
        &[
            "offers",
            "--device",
            &device_text,
            "--device-secret",
            &secret_to_hex(&wrong),
        ],
    );
    assert_eq!(refused.status, Some(1));
    assert!(
        refused.stderr.contains("check --device and --device-secret"),
        "{}",
        refused.stderr
    );
}

/// A terminal of a second merchant: (id, secret).
fn shop_of_another_merchant(operator: &mut Client) -> (u32, [u8; 32]) {
    let other = shop(operator, 100, 50);
    (other.terminal, other.secret)
}

/// A server that completes any log-on and then answers nothing.
fn silent_server() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    use wire::logon::{Challenge, LogonOk};
    use wire::{Decoder, Frame, Logon, Message};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut decoder = Decoder::default();
                let mut buffer = bytes::BytesMut::new();
                let mut chunk = [0u8; 4096];
                for step in 0..2 {
                    // HELLO, then PROOF: each answered; then nothing more.
                    loop {
                        if let Ok(Some(_)) = decoder.decode(&mut buffer) {
                            break;
                        }
                        match stream.read(&mut chunk) {
                            Ok(count) if count > 0 => buffer.extend_from_slice(&chunk[..count]),
                            _ => return,
                        }
                    }
                    let message = match step {
                        0 => Message::Logon(Logon::Challenge(Challenge {
                            version: 1,
                            server_nonce: [0x33; 16],
                        })),
                        _ => Message::Logon(Logon::LogonOk(LogonOk {
                            frame_bytes_max: 4096,
                            requests_in_flight_max: 16,
                        })),
                    };
                    let mut out = bytes::BytesMut::new();
                    Frame {
                        request_id: 0,
                        message,
                    }
                    .encode(&mut out);
                    if stream.write_all(&out).is_err() {
                        return;
                    }
                }
                while stream.read(&mut chunk).is_ok_and(|count| count > 0) {}
            });
        }
    });
    address
}

#[test]
fn no_reply_in_time_says_the_request_may_have_been_applied() {
    let address = silent_server().to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("operator.key");
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).expect("key");
    let output = Command::new(authctl_binary())
        .args(["--connect", &address, "--timeout-s", "1", "--key"])
        .arg(&key)
        .args(["load", "--account", "1000000", "--amount", "5"])
        .output()
        .expect("run authctl");
    let run = Run::of(output);
    assert_eq!(run.status, Some(4), "{}", run.stderr);
    assert!(
        run.stderr.contains("may or may not have been applied"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_stopped_authd_gets_a_timeout_not_a_hang() {
    let authd = Authd::start(&[]);
    authd.signal("STOP");
    let started = std::time::Instant::now();
    let run = authctl(&authd, &["--timeout-s", "1", "stats"]);
    authd.signal("CONT");
    assert_eq!(run.status, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("no connection or log-on answer"),
        "{}",
        run.stderr
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn secrets_and_pins_can_come_on_standard_input() {
    let authd = Authd::start(&[]);
    let mut operator = authd.operator();
    let account = payer(&mut operator, 0, 100);
    let (device_id, secret) = device(&mut operator, account);
    let with_stdin = |args: &[&str], input: &str| {
        let mut child = authctl_command(&authd)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run authctl");
        let mut stdin = child.stdin.take().expect("stdin");
        std::io::Write::write_all(&mut stdin, input.as_bytes()).expect("write stdin");
        drop(stdin);
        Run::of(child.wait_with_output().expect("wait"))
    };
    let device_text = device_id.to_string();
    let listed = with_stdin(
        &["offers", "--device", &device_text, "--device-secret", "-"],
        &format!("{}\n", secret_to_hex(&secret)),
    )
    .ok();
    assert!(listed.starts_with("no pending offers"), "{listed}");
    let refused = with_stdin(
        &["offers", "--device", &device_text, "--device-secret", "-"],
        &format!("{}\n", secret_to_hex(&[0; 32])),
    );
    assert_eq!(refused.status, Some(1), "{}", refused.stderr);
    let account_text = account.to_string();
    with_stdin(&["set-pin", "--account", &account_text, "--pin", "-"], "4321\n").ok();
    let bad = with_stdin(&["set-pin", "--account", &account_text, "--pin", "-"], "12\n");
    assert_eq!(bad.status, Some(1), "{}", bad.stderr);
    assert!(bad.stderr.contains("--pin: "), "{}", bad.stderr);
}

#[test]
fn a_full_authd_is_reported_as_full_not_as_a_wrong_key() {
    let authd = Authd::start(&["--connections-max", "1"]);
    let _only = authd.operator();
    let run = authctl(&authd, &["stats"]);
    assert_eq!(run.status, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("at its connection limit"), "{}", run.stderr);
    assert!(!run.stderr.contains("another authd"), "{}", run.stderr);
}

#[test]
fn a_host_past_the_log_on_limit_is_told_to_wait_not_to_change_its_key() {
    let authd = Authd::start(&["--logon-failures-max", "1"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let wrong_key = dir.path().join("wrong.key");
    std::fs::write(&wrong_key, "ab".repeat(32)).expect("key");
    let wrong = Run::of(
        authctl_command(&authd)
            .arg("--key")
            .arg(&wrong_key)
            .arg("stats")
            .output()
            .expect("run authctl"),
    );
    assert_eq!(wrong.status, Some(1), "{}", wrong.stderr);
    assert!(wrong.stderr.contains("another authd"), "{}", wrong.stderr);
    // The right key now, within the window: refused, and the error says why.
    let limited = authctl(&authd, &["stats"]);
    assert_eq!(limited.status, Some(1), "{}", limited.stderr);
    assert!(
        limited.stderr.contains("LogonsLimited (ISO 75)"),
        "{}",
        limited.stderr
    );
    assert!(
        limited.stderr.contains("wait authd's --logon-failure-window-s"),
        "{}",
        limited.stderr
    );
    assert!(!limited.stderr.contains("another authd"), "{}", limited.stderr);
}

#[test]
fn dispute_amounts_take_the_decimals_of_the_books_currency() {
    // Yen books: a dispute of 500 is 500 yen, not 50,000.
    let authd = Authd::start(&["--currency", "392"]);
    let account = open_account(&authd, &["--currency", "392"]);
    let account_text = account.to_string();
    authctl(&authd, &["load", "--account", &account_text, "--amount", "10000"]).ok();
    let mut operator = authd.operator();
    let shop = shop(&mut operator, 0, 0);
    let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
    let hold = purchase_in(&mut till, account, 1_500, 392).to_string();
    let args = [
        "dispute",
        "open",
        "--hold",
        &hold,
        "--amount",
        "500",
        "--cause",
        "defective",
    ];
    authctl(&authd, &args).ok();
    assert_eq!(
        balances(&mut operator, account),
        (9_000, 500, 8_500),
        "500 yen, held"
    );
    let rows = dispute_rows(&authctl(&authd, &["dispute", "list"]).ok());
    assert_eq!(rows.first().map(|row| row.2.as_str()), Some("500"));
}
