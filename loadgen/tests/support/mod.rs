//! What loadgen's end-to-end tests share.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The authd binary of this profile, built if missing (`CARGO_BIN_EXE_authd` is only set for
/// the engine package's own tests).
pub fn authd_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let binary = profile_dir.join("authd");
    if !binary.exists() {
        let release = profile_dir.file_name().is_some_and(|name| name == "release");
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo.args(["build", "-p", "engine", "--bin", "authd"]);
        if release {
            cargo.arg("--release");
        }
        assert!(
            cargo.status().expect("run cargo build").success(),
            "building authd failed"
        );
    }
    binary
}
