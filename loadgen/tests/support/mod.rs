//! What loadgen's end-to-end tests share.

use std::path::Path;
use std::process::Command;

/// `loadgen --spawn` of this profile's authd with `args`, writing its JSON report to `json`.
pub fn loadgen_spawn(args: &[&str], json: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_loadgen"));
    command
        .arg("--spawn")
        .arg("--authd")
        .arg(authd_tests::authd_binary())
        .args(args)
        .arg("--json")
        .arg(json);
    command
}
