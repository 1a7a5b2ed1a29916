//! `--cpus`: authd runs every thread on the CPUs given, one event loop per CPU unless
//! `--threads` says otherwise, and refuses a CPU it cannot run on by name, with the CPUs it
//! may use, before it writes anything.

use authd_tests::{proc_status, refused_start, Authd};

/// The CPUs a thread may run on, as /proc lists them ("0-1"), from its status file; None if
/// the thread has ended.
fn allowed(status: &std::path::Path) -> Option<String> {
    proc_status(status, "Cpus_allowed_list")
}

/// Each thread of `pid` still running: its name and the CPUs it may run on.
fn threads(pid: u32) -> Vec<(String, String)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("list /proc/PID/task");
    tasks
        .filter_map(|task| {
            // A short-lived thread (the log's segment preparer) may end while this reads.
            let task = task.ok()?.path();
            let name = std::fs::read_to_string(task.join("comm")).ok()?;
            Some((name.trim().to_owned(), allowed(&task.join("status"))?))
        })
        .collect()
}

fn loops(threads: &[(String, String)]) -> usize {
    threads
        .iter()
        .filter(|(name, _)| name.starts_with("authd-loop-"))
        .count()
}

/// The event loops of `pid`, counted once every thread but the main one has its name (or after
/// 5 s): a thread takes its name when it first runs, which on a loaded machine may be after
/// authd says it listens, and until then it shows the process's name.
fn named_loops(pid: u32) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let threads = threads(pid);
        let unnamed = threads.iter().filter(|(name, _)| name == "authd").count();
        if unnamed <= 1 || std::time::Instant::now() > deadline {
            return loops(&threads);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The first CPU this test may run on (not always 0: under `taskset -c 1`, or in a cpuset).
fn first_cpu() -> String {
    let list = allowed(std::path::Path::new("/proc/self/status")).expect("own status");
    let first = list.split(|c: char| !c.is_ascii_digit()).next().expect("a CPU");
    first.to_owned()
}

#[test]
fn every_thread_runs_on_the_cpus_given_with_one_loop_per_cpu() {
    let cpu = first_cpu();
    let authd = Authd::start_bare(&["--cpus", &cpu]);
    // It serves: the operator logs on.
    drop(authd.operator());
    let pinned = threads(authd.pid());
    assert!(
        pinned.len() >= 3,
        "main, a loop and the ticker at least: {pinned:?}"
    );
    for (name, allowed) in &pinned {
        assert_eq!(allowed, &cpu, "thread {name}");
    }
    assert_eq!(loops(&pinned), 1, "{pinned:?}");
    let said = format!("event=cpus_pinned cpus={cpu}");
    assert!(authd.stderr().contains(&said), "{}", authd.stderr());

    // Without --cpus: the CPUs it was started with, one loop for each.
    let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    let unpinned = Authd::start_bare(&[]);
    assert_eq!(named_loops(unpinned.pid()), cores);

    // --threads still decides when given.
    let two = Authd::start_bare(&["--cpus", &cpu, "--threads", "2"]);
    assert_eq!(named_loops(two.pid()), 2);
}

#[test]
fn a_cpu_authd_cannot_run_on_is_refused_by_name_before_anything_is_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let cpu = first_cpu();
    // 1022 and 1023 are the last CPUs the flag takes; no machine this runs on has them.
    let asked = format!("{cpu},1022-1023");
    let (code, stderr) = refused_start("127.0.0.1:0", &data_dir, &["--cpus", &asked]);
    assert_eq!(code, Some(1), "{stderr}");
    let said = format!("--cpus {asked}: authd cannot run on CPUs 1022-1023 here");
    assert!(stderr.contains(&said), "{stderr}");
    assert!(
        stderr.contains("; it may run on ") && stderr.contains("pass CPUs among those, or leave --cpus out"),
        "{stderr}"
    );
    let (code, stderr) = refused_start("127.0.0.1:0", &data_dir, &["--cpus", "1023"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot run on CPU 1023 here"), "{stderr}");
    // Outside the mask, or not a list: refused as the flag is read.
    for bad in ["1024", "3-1", "one"] {
        let (code, stderr) = refused_start("127.0.0.1:0", &data_dir, &["--cpus", bad]);
        assert_eq!(code, Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("invalid value"), "{bad}: {stderr}");
    }
    assert!(!data_dir.exists(), "{stderr}");
}
