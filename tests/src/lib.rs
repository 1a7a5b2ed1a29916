//! The harness of the end-to-end tests: start the real `authd` binary on a free port with a
//! temporary data dir, wait for its ready line (never a sleep), and give tests an operator
//! client and helpers to provision merchants, terminals and payers.
//!
//! `CARGO_BIN_EXE_authd` is only set for the engine package's own tests, so the binary is
//! found next to this test executable (`target/<profile>/authd`) and built with cargo if it
//! is not there yet.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use wire::client::Client;
use wire::messages::operator::{LoadFunds, OpenAccount, RegisterDevice, RegisterMerchant, RegisterTerminal};
use wire::types::{AccountKind, AccountNumber, Limits, MerchantId, Role, ShortText};
use wire::{Reply, Request};

/// How long authd may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The authd binary, built once per test run if missing.
pub fn authd_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test executable path");
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("target/<profile>/deps/<test>");
            let binary = profile_dir.join("authd");
            if !binary.exists() || sources_newer_than(&binary) {
                let release = profile_dir.file_name().is_some_and(|name| name == "release");
                let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
                cargo.args(["build", "-p", "engine", "--bin", "authd"]);
                if release {
                    cargo.arg("--release");
                }
                let status = cargo.status().expect("run cargo build for authd");
                assert!(status.success(), "building authd failed");
            }
            binary
        })
        .clone()
}

/// True if a source file of the server is newer than `binary` (a stale build from an earlier
/// `cargo test -p authd-tests`; `cargo test --workspace` always builds authd first).
fn sources_newer_than(binary: &Path) -> bool {
    let Ok(built) = std::fs::metadata(binary).and_then(|meta| meta.modified()) else {
        return true;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut pending = vec![root.join("engine/src"), root.join("wire/src")];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if entry
                .metadata()
                .and_then(|meta| meta.modified())
                .is_ok_and(|modified| modified > built)
            {
                return true;
            }
        }
    }
    false
}

/// authd started on `listen` and `data_dir` with `flags`, for a start that must fail: its exit
/// code and what it wrote to stderr.
pub fn refused_start(listen: &str, data_dir: &Path, flags: &[&str]) -> (Option<i32>, String) {
    let output = std::process::Command::new(authd_binary())
        .args(["--listen", listen, "--data-dir"])
        .arg(data_dir)
        .args(flags)
        .output()
        .expect("run authd");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The value of `field` ("VmRSS", "Cpus_allowed_list") in the /proc status file at `path`,
/// trimmed; None if the file or the line is gone (a thread that ended).
pub fn proc_status(path: &Path, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(path).ok()?;
    let value = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?;
    Some(value.trim().to_owned())
}

/// The resident set of process `pid`, in kB (`VmRSS`).
pub fn rss_kb(pid: u32) -> u64 {
    proc_status(Path::new(&format!("/proc/{pid}/status")), "VmRSS")
        .and_then(|value| value.trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// A running authd.
pub struct Authd {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its data dir.
    pub dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    stderr: std::sync::Arc<Mutex<String>>,
}

impl Authd {
    /// Start on a fresh temporary data dir with extra flags.
    pub fn start(flags: &[&str]) -> Authd {
        Authd::in_temp_dir(|dir| Authd::start_in(dir, flags))
    }

    /// Start on a fresh temporary data dir with `flags` only: authd's own defaults for shards
    /// and threads, where [`Authd::start`] sets them.
    pub fn start_bare(flags: &[&str]) -> Authd {
        Authd::in_temp_dir(|dir| Authd::launch(dir, flags))
    }

    /// `start` on a fresh temporary data dir, removed when the authd is dropped.
    fn in_temp_dir(start: impl FnOnce(&Path) -> Authd) -> Authd {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut authd = start(temp.path());
        authd._temp = Some(temp);
        authd
    }

    /// Start on `dir` (kept after the test) with extra flags.
    pub fn start_in(dir: &Path, flags: &[&str]) -> Authd {
        let mut all = vec!["--shards", "4", "--threads", "2"];
        all.extend_from_slice(flags);
        Authd::launch(dir, &all)
    }

    fn launch(dir: &Path, flags: &[&str]) -> Authd {
        let mut child = Command::new(authd_binary())
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir)
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn authd");
        let stderr = std::sync::Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("piped stderr");
        let collected = std::sync::Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(count) = wire::client::read_some(&mut err, &mut buffer) {
                if count == 0 {
                    break;
                }
                if let Ok(mut text) = collected.lock() {
                    text.push_str(&String::from_utf8_lossy(&buffer[..count]));
                }
            }
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("authd listening on ") {
                    let _ = sender.send(addr.trim().to_string());
                }
            }
        });
        let addr = match receiver.recv_timeout(READY_TIMEOUT) {
            Ok(addr) => addr.parse().expect("ready line names an address"),
            Err(_) => {
                let _ = child.kill();
                let log = stderr.lock().map(|text| text.clone()).unwrap_or_default();
                panic!("authd did not become ready within {READY_TIMEOUT:?}; stderr:\n{log}");
            }
        };
        Authd {
            child,
            addr,
            dir: dir.to_path_buf(),
            _temp: None,
            stderr,
        }
    }

    /// What authd wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|text| text.clone()).unwrap_or_default()
    }

    /// The operator's secret from the data dir.
    pub fn operator_secret(&self) -> [u8; 32] {
        let text = std::fs::read_to_string(self.dir.join("operator.key")).expect("operator.key");
        let text = text.trim();
        let mut key = [0u8; 32];
        for (index, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).expect("hex");
        }
        key
    }

    /// A logged-on operator client.
    pub fn operator(&self) -> Client {
        self.client(Role::Operator, 1, self.operator_secret())
    }

    /// A logged-on client of any role.
    pub fn client(&self, role: Role, id: u32, secret: [u8; 32]) -> Client {
        let mut client = Client::connect(self.addr, role, id, secret).expect("log on");
        client
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        client
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send authd the signal `name` (`"TERM"`, `"STOP"`, `"CONT"`), by `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status();
        assert!(status.is_ok_and(|status| status.success()), "send SIG{name}");
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        self.signal("TERM");
        self.child.wait().expect("wait for authd")
    }

    /// SIGKILL, then reap.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Authd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A merchant with one terminal, as the operator set them up.
pub struct Shop {
    /// The merchant.
    pub merchant: u32,
    /// Its settlement account.
    pub settlement: u64,
    /// A terminal of it.
    pub terminal: u32,
    /// The terminal's secret.
    pub secret: [u8; 32],
}

/// Numbers shops so their origin addresses stay unique (authd refuses a booked origin).
static NEXT_SHOP: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// Register a merchant (fee bps, with product details) and one terminal.
pub fn shop(operator: &mut Client, fee_bps: u16, fee_bps_with_product: u16) -> Shop {
    let register = RegisterMerchant {
        fee_bps,
        fee_bps_with_product,
        origin: ShortText::new(&format!(
            "SHOP{}",
            NEXT_SHOP.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ))
        .expect("text"),
    };
    let Reply::RegisterMerchant(merchant) =
        operator.call(&Request::RegisterMerchant(register)).expect("call")
    else {
        panic!("register merchant: unexpected reply");
    };
    assert_eq!(merchant.code, 0, "register merchant");
    let terminal = add_terminal(operator, merchant.merchant_id.0);
    Shop {
        merchant: merchant.merchant_id.0,
        settlement: merchant.settlement_account.0,
        terminal: terminal.0,
        secret: terminal.1,
    }
}

/// Register one more terminal of `merchant`: (id, secret).
pub fn add_terminal(operator: &mut Client, merchant: u32) -> (u32, [u8; 32]) {
    let request = Request::RegisterTerminal(RegisterTerminal {
        merchant_id: MerchantId(merchant),
    });
    let Reply::RegisterTerminal(terminal) = operator.call(&request).expect("call") else {
        panic!("register terminal: unexpected reply");
    };
    assert_eq!(terminal.code, 0, "register terminal");
    (terminal.terminal_id.0, terminal.secret)
}

/// Open a payer (EUR, no limits, optional mobile) and load `balance`; returns the account.
pub fn payer(operator: &mut Client, mobile: u64, balance: u64) -> u64 {
    let open = OpenAccount {
        kind: AccountKind::Payer,
        currency: 978,
        mobile,
        limits: Limits::NONE,
    };
    let Reply::OpenAccount(account) = operator.call(&Request::OpenAccount(open)).expect("call") else {
        panic!("open account: unexpected reply");
    };
    assert_eq!(account.code, 0, "open account");
    if balance > 0 {
        let load = LoadFunds {
            account: account.account,
            amount_minor: balance,
        };
        let Reply::LoadFunds(loaded) = operator.call(&Request::LoadFunds(load)).expect("call") else {
            panic!("load: unexpected reply");
        };
        assert_eq!(loaded.code, 0, "load");
    }
    account.account.0
}

/// Register a payer device for `account`: (id, secret).
pub fn device(operator: &mut Client, account: u64) -> (u32, [u8; 32]) {
    let request = Request::RegisterDevice(RegisterDevice {
        account: AccountNumber(account),
    });
    let Reply::RegisterDevice(device) = operator.call(&request).expect("call") else {
        panic!("register device: unexpected reply");
    };
    assert_eq!(device.code, 0, "register device");
    (device.device_id.0, device.secret)
}

/// An account's (balance, held, available) as the operator sees it; ledger balances signed.
pub fn balances(operator: &mut Client, account: u64) -> (i64, u64, u64) {
    let request = Request::AccountInfo(wire::messages::operator::AccountInfo {
        account: AccountNumber(account),
    });
    let Reply::AccountInfo(info) = operator.call(&request).expect("call") else {
        panic!("account info: unexpected reply");
    };
    assert_eq!(info.code, 0, "account info of {account}");
    (info.balance_minor as i64, info.held_minor, info.available_minor)
}

/// The authctl binary (next to authd), built once per test run if missing. Like `authd_binary`
/// it does not rebuild a stale binary: `cargo test --workspace` does (engine's own integration
/// tests need engine's binaries); before `cargo test -p authd-tests` alone, run
/// `cargo build -p engine --bins`.
pub fn authctl_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let authd = authd_binary();
            let profile_dir = authd.parent().expect("target/<profile>");
            let binary = profile_dir.join("authctl");
            if !binary.exists() || sources_newer_than(&binary) {
                let release = profile_dir.file_name().is_some_and(|name| name == "release");
                let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
                cargo.args(["build", "-p", "engine", "--bin", "authctl"]);
                if release {
                    cargo.arg("--release");
                }
                let status = cargo.status().expect("run cargo build for authctl");
                assert!(status.success(), "building authctl failed");
            }
            binary
        })
        .clone()
}
