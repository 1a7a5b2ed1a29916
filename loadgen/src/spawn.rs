//! `--spawn`: start a release authd on a temporary data dir, wait for its ready line, and stop
//! it with SIGTERM afterwards (sent with the `kill` command: no unsafe, no signal crate).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long authd may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long authd may take to stop after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// The `authd` binary: `explicit` if given, else next to this executable (`target/<profile>/`,
/// or its parent when running from `deps/` as tests do).
pub fn locate_authd(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        if path.is_file() {
            return Ok(path.to_path_buf());
        }
        bail!("--authd {} does not exist", path.display());
    }
    let exe = std::env::current_exe().context("cannot find loadgen's own path")?;
    let mut candidates = Vec::new();
    if let Some(dir) = exe.parent() {
        candidates.push(dir.join("authd"));
        if let Some(parent) = dir.parent() {
            candidates.push(parent.join("authd"));
        }
    }
    if let Some(found) = candidates.iter().find(|path| path.is_file()) {
        return Ok(found.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|path| path.display().to_string()).collect();
    bail!(
        "no authd binary next to loadgen (looked at {}); build it with \
         `cargo build --release -p engine --bin authd`, or pass --authd PATH",
        looked.join(", ")
    )
}

/// A running authd that loadgen started.
pub struct Spawned {
    child: Child,
    /// Where it listens.
    pub address: SocketAddr,
    /// Its data dir (removed when this is dropped).
    pub data_dir: tempfile::TempDir,
}

/// The snapshot flags a spawned authd gets: off, unless `extra` sets them (authd refuses a
/// flag given twice).
fn snapshot_flags(extra: &[String]) -> &'static [&'static str] {
    let given = extra
        .iter()
        .any(|arg| arg == "--snapshot-interval-s" || arg.starts_with("--snapshot-interval-s="));
    if given {
        &[]
    } else {
        &["--snapshot-interval-s", "0"]
    }
}

impl Spawned {
    /// Starts `binary` on a fresh temporary data dir listening on a free loopback port, with
    /// `--fsync fsync` and `extra` flags; returns once it printed its ready line. Snapshots
    /// are off unless `extra` turns them on: the data dir is thrown away, and the snapshot
    /// authd writes at a clean stop would take seconds after a run of millions of holds.
    pub fn start(binary: &Path, fsync: &str, extra: &[String]) -> anyhow::Result<Spawned> {
        let data_dir = tempfile::Builder::new()
            .prefix("loadgen-authd-")
            .tempdir()
            .context("cannot create a temporary data dir for authd")?;
        let mut child = Command::new(binary)
            .args(["--listen", "127.0.0.1:0", "--fsync", fsync, "--data-dir"])
            .arg(data_dir.path())
            .args(snapshot_flags(extra))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("authd's stdout")?;
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = line.strip_prefix("authd listening on ") {
                    let _ = sender.send(address.trim().to_string());
                }
            }
        });
        let address = match receiver.recv_timeout(READY_TIMEOUT) {
            Ok(address) => address,
            Err(error) => {
                // Disconnected: its stdout closed, so it exited (bad flag, data dir in use...).
                if let (mpsc::RecvTimeoutError::Disconnected, Ok(status)) = (error, child.wait()) {
                    bail!(
                        "authd ({}) exited with {status} before it was ready; see its messages above",
                        binary.display()
                    );
                }
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "authd ({}) did not print its ready line within {READY_TIMEOUT:?}; see its messages above",
                    binary.display()
                );
            }
        };
        let address = address
            .parse()
            .with_context(|| format!("authd's ready line names '{address}', not an address"))?;
        Ok(Spawned {
            child,
            address,
            data_dir,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The operator key file authd wrote.
    pub fn operator_key(&self) -> PathBuf {
        self.data_dir.path().join("operator.key")
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("cannot run `kill` to stop authd")?;
        if !status.success() {
            bail!("`kill -TERM {pid}` failed");
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("authd exited with {status} after SIGTERM");
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                bail!("authd did not stop within {STOP_TIMEOUT:?} of SIGTERM; killed it");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod snapshot_flag_tests {
    use super::snapshot_flags;

    #[test]
    fn snapshots_are_off_unless_the_extra_flags_set_them() {
        let extra = |args: &[&str]| args.iter().map(|arg| arg.to_string()).collect::<Vec<_>>();
        assert_eq!(snapshot_flags(&extra(&[])), ["--snapshot-interval-s", "0"]);
        assert_eq!(
            snapshot_flags(&extra(&["--threads=1"])),
            ["--snapshot-interval-s", "0"]
        );
        assert!(snapshot_flags(&extra(&["--snapshot-interval-s=60"])).is_empty());
        assert!(snapshot_flags(&extra(&["--snapshot-interval-s", "60"])).is_empty());
    }
}
