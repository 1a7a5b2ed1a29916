//! `sync_probe` end to end: a one-second probe with one hog prints its syncs, when the long ones
//! began, and the machine's CPU time by state.

use std::process::Command;

#[test]
fn a_short_probe_reports_its_syncs_and_the_machines_cpu_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_sync_probe"))
        .args(["1", "1"])
        .current_dir(dir.path())
        .output()
        .expect("run sync_probe");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("hogs spun throughout"), "{stdout}");
    let syncs: u64 = stdout
        .split_once("1 hog(s), 10000 us busy / 0 us idle: ")
        .and_then(|(_, rest)| rest.split_once(" syncs"))
        .and_then(|(count, _)| count.parse().ok())
        .unwrap_or_else(|| panic!("no sync count: {stdout}"));
    assert!(syncs > 0, "{stdout}");
    assert!(
        stdout.contains("by when they began within each 100 ms: 0-10 ms: "),
        "{stdout}"
    );
    let machine = stdout
        .lines()
        .find_map(|line| line.strip_prefix("the machine's CPU time while probing (/proc/stat): "))
        .unwrap_or_else(|| panic!("no CPU time line: {stdout}"));
    let shares: Vec<f64> = machine
        .split(", ")
        .map(|part| {
            part.rsplit_once(' ')
                .and_then(|(_, pct)| pct.strip_suffix('%'))
                .and_then(|pct| pct.parse().ok())
                .unwrap_or_else(|| panic!("not a share: {part:?} in {machine}"))
        })
        .collect();
    assert_eq!(shares.len(), 4, "busy, I/O wait, idle, stolen: {machine}");
    // Rounded to a tenth each; the hog alone kept a vCPU busy.
    assert!((shares.iter().sum::<f64>() - 100.0).abs() <= 0.25, "{machine}");
    assert!(shares[0] > 0.0, "{machine}");
    // The probe's file was made under the current dir, and removed.
    assert_eq!(std::fs::read_dir(dir.path()).expect("read dir").count(), 0);
}
