//! Removing big files without holding the log's fdatasyncs.
//!
//! Where the file system discards freed blocks (ext4 mounted with `discard`, as on this
//! machine), unlinking gigabytes at once sends the disk gigabytes of discards, and every log
//! fdatasync waits behind them: 5 GB of files unlinked during a run at 500,000 purchases/s held
//! replies up to 185 ms; unlinked one 64 MiB file every 100 ms, 15-18 ms for as long as it
//! lasted; cut 4 MiB at a time at 256 MB/s, no more than without it (BENCHMARKS.md). A snapshot
//! at 500,000/s every 300 s leaves about 12 GB of log segments to remove.
//!
//! So a file to remove is set aside ([`set_aside`]: renamed `<name>.removing`, which no reader
//! takes for a segment or a snapshot), and [`sweep`] cuts every file set aside in the dir
//! [`REMOVE_STEP_BYTES`] at a time from its end, at a pace, then unlinks it. What a stop or a
//! crash leaves aside is taken apart by the next sweep.

use std::fs::{self, OpenOptions};
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::segment::sync_dir;
use super::WalError;

/// A file is cut this much at a time when paced.
pub const REMOVE_STEP_BYTES: u64 = 4 << 20;
/// What a file set aside for removal is called: its name and this.
pub const REMOVING_SUFFIX: &str = ".removing";

/// Rename `path` aside, for [`sweep`] to remove.
pub fn set_aside(path: &Path) -> Result<(), WalError> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(REMOVING_SUFFIX);
    fs::rename(path, &aside).map_err(|error| WalError::io("rename", path, error))
}

/// Remove every file set aside in `dir`: at once without a `pace`, else cut
/// [`REMOVE_STEP_BYTES`] at a time at `pace` bytes a second. Asks `keep_going` before each
/// step, and on false leaves the rest for the next sweep. Returns how many it removed.
pub fn sweep(dir: &Path, pace: Option<NonZeroU64>, keep_going: impl Fn() -> bool) -> Result<usize, WalError> {
    let mut removed = 0;
    for path in set_aside_in(dir)? {
        if !take_apart(&path, pace, &keep_going)? {
            break;
        }
        removed += 1;
    }
    if removed > 0 {
        sync_dir(dir).map_err(|error| WalError::io("sync", dir, error))?;
    }
    Ok(removed)
}

/// The files set aside in `dir`, by name.
fn set_aside_in(dir: &Path) -> Result<Vec<PathBuf>, WalError> {
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(|error| WalError::io("list", dir, error))? {
        let entry = entry.map_err(|error| WalError::io("list", dir, error))?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.ends_with(REMOVING_SUFFIX))
        {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(paths)
}

/// Cut `path` down step by step, then unlink it; false if `keep_going` said to stop first.
fn take_apart(
    path: &Path,
    pace: Option<NonZeroU64>,
    keep_going: &impl Fn() -> bool,
) -> Result<bool, WalError> {
    let io_error = |action, error| WalError::io(action, path, error);
    if let Some(pace) = pace {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|error| io_error("open", error))?;
        let mut len = file.metadata().map_err(|error| io_error("stat", error))?.len();
        let step_time = Duration::from_secs_f64(REMOVE_STEP_BYTES as f64 / pace.get() as f64);
        while len > 0 {
            if !keep_going() {
                return Ok(false);
            }
            let began = Instant::now();
            len = len.saturating_sub(REMOVE_STEP_BYTES);
            file.set_len(len).map_err(|error| io_error("truncate", error))?;
            if let Some(left) = step_time.checked_sub(began.elapsed()) {
                std::thread::sleep(left);
            }
        }
    }
    fs::remove_file(path).map_err(|error| io_error("remove", error))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_of(dir: &Path, name: &str, bytes: usize) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, vec![7u8; bytes]).expect("write");
        path
    }

    #[test]
    fn a_paced_sweep_takes_its_steps_over_time_and_removes_only_what_was_set_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let doomed = file_of(dir.path(), "wal-1.log", 3 * REMOVE_STEP_BYTES as usize);
        let kept = file_of(dir.path(), "wal-2.log", 10);
        set_aside(&doomed).expect("set aside");
        let pace = NonZeroU64::new(200_000_000);
        let started = Instant::now();
        assert_eq!(sweep(dir.path(), pace, || true).expect("sweep"), 1);
        // Three steps, each its share of time.
        let floor = Duration::from_secs_f64(3.0 * REMOVE_STEP_BYTES as f64 / 200e6);
        assert!(started.elapsed() >= floor, "{:?} < {floor:?}", started.elapsed());
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(names, [kept.file_name().expect("name").to_owned()]);
    }

    #[test]
    fn a_sweep_told_to_stop_leaves_the_rest_aside_for_the_next() {
        let dir = tempfile::tempdir().expect("tempdir");
        let doomed = file_of(dir.path(), "snapshot-5.snap", 2 * REMOVE_STEP_BYTES as usize);
        set_aside(&doomed).expect("set aside");
        assert_eq!(
            sweep(dir.path(), NonZeroU64::new(u64::MAX), || false).expect("sweep"),
            0
        );
        let aside = dir.path().join(format!("snapshot-5.snap{REMOVING_SUFFIX}"));
        assert!(aside.exists(), "still aside");
        assert!(!doomed.exists(), "not back under its name");
        assert_eq!(sweep(dir.path(), None, || true).expect("sweep"), 1);
        assert!(!aside.exists());
    }
}
