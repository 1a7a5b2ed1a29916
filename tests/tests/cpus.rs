//! `--cpus`: authd runs every thread on the CPUs given, one event loop per CPU unless
//! `--threads` says otherwise, and refuses a CPU it cannot run on by name, before it writes
//! anything.

use std::path::Path;

use authd_tests::Authd;

/// Each thread of `pid`: its name and the CPUs it may run on, as /proc lists them ("0-1").
fn threads(pid: u32) -> Vec<(String, String)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("list /proc/PID/task");
    tasks
        .map(|task| {
            let task = task.expect("task entry").path();
            let name = std::fs::read_to_string(task.join("comm")).expect("comm");
            let status = std::fs::read_to_string(task.join("status")).expect("status");
            let allowed = status
                .lines()
                .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
                .expect("Cpus_allowed_list in status")
                .trim()
                .to_owned();
            (name.trim().to_owned(), allowed)
        })
        .collect()
}

fn loops(threads: &[(String, String)]) -> usize {
    threads
        .iter()
        .filter(|(name, _)| name.starts_with("authd-loop-"))
        .count()
}

#[test]
fn every_thread_runs_on_the_cpus_given_with_one_loop_per_cpu() {
    let authd = Authd::start_bare(&["--cpus", "0"]);
    // It serves: the operator logs on.
    drop(authd.operator());
    let pinned = threads(authd.pid());
    assert!(
        pinned.len() >= 3,
        "main, a loop and the ticker at least: {pinned:?}"
    );
    for (name, allowed) in &pinned {
        assert_eq!(allowed, "0", "thread {name}");
    }
    assert_eq!(loops(&pinned), 1, "{pinned:?}");
    assert!(
        authd.stderr().contains("event=cpus_pinned cpus=0"),
        "{}",
        authd.stderr()
    );

    // Without --cpus: the CPUs it was started with, one loop for each.
    let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    let unpinned = Authd::start_bare(&[]);
    assert_eq!(loops(&threads(unpinned.pid())), cores);

    // --threads still decides when given.
    let two = Authd::start_bare(&["--cpus", "0", "--threads", "2"]);
    assert_eq!(loops(&threads(two.pid())), 2);
}

/// authd started with `flags` for a start that must fail: its exit code and its stderr.
fn refused(data_dir: &Path, flags: &[&str]) -> (Option<i32>, String) {
    let output = std::process::Command::new(authd_tests::authd_binary())
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(flags)
        .output()
        .expect("run authd");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

#[test]
fn a_cpu_authd_cannot_run_on_is_refused_by_name_before_anything_is_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    // 1023 is the last CPU the flag takes; no machine this runs on has it.
    let (code, stderr) = refused(&data_dir, &["--cpus", "0,1023"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("--cpus 0,1023: authd cannot run on CPU 1023 here")
            && stderr.contains("`taskset -cp $$` lists the CPUs"),
        "{stderr}"
    );
    let (code, stderr) = refused(&data_dir, &["--cpus", "1023"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("authd may run on none of them here"), "{stderr}");
    assert!(!data_dir.exists(), "{stderr}");
}
