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

/// What a [`sweep`] did.
#[derive(Debug, Default)]
pub struct Swept {
    /// Files removed.
    pub removed: usize,
    /// Bytes they held.
    pub bytes: u64,
    /// Files that could not be removed (tried again by the next sweep), and why.
    pub failed: Vec<WalError>,
    /// Files left for the next sweep because `keep_going` said to stop.
    pub left: usize,
    /// Segments kept for reuse instead of removed ([`super::reuse`]; counted by the caller).
    pub kept_for_reuse: usize,
}

/// Remove every file set aside in `dir`: at once without a `pace`, else cut
/// [`REMOVE_STEP_BYTES`] at a time at `pace` bytes a second. Asks `keep_going` before each
/// step, and on false leaves the rest for the next sweep. A file that cannot be cut is
/// unlinked at once; one that cannot be unlinked either is reported and skipped.
pub fn sweep(dir: &Path, pace: Option<NonZeroU64>, keep_going: impl Fn() -> bool) -> Result<Swept, WalError> {
    let mut swept = Swept::default();
    let paths = set_aside_in(dir)?;
    for (index, path) in paths.iter().enumerate() {
        match take_apart(path, pace, &keep_going) {
            Ok(Some(bytes)) => {
                swept.removed += 1;
                swept.bytes += bytes;
            }
            Ok(None) => {
                swept.left = paths.len() - index;
                break;
            }
            // Cut or not, it goes; if it cannot be unlinked either, that is the error to fix.
            Err(_) => match fs::remove_file(path) {
                Ok(()) => swept.removed += 1,
                Err(error) => swept.failed.push(WalError::io("remove", path, error)),
            },
        }
    }
    if swept.removed > 0 {
        sync_dir(dir).map_err(|error| WalError::io("sync", dir, error))?;
    }
    Ok(swept)
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

/// Cut `path` down step by step, each step taking its bytes' share of time at `pace`, then
/// unlink it. Returns the bytes it held, or `None` if `keep_going` said to stop first.
fn take_apart(
    path: &Path,
    pace: Option<NonZeroU64>,
    keep_going: &impl Fn() -> bool,
) -> Result<Option<u64>, WalError> {
    let io_error = |action, error| WalError::io(action, path, error);
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|error| io_error("open", error))?;
    let held = file.metadata().map_err(|error| io_error("stat", error))?.len();
    if let Some(pace) = pace {
        let mut len = held;
        while len > 0 {
            if !keep_going() {
                return Ok(None);
            }
            let began = Instant::now();
            let cut = len.min(REMOVE_STEP_BYTES);
            len -= cut;
            file.set_len(len).map_err(|error| io_error("truncate", error))?;
            let share = Duration::from_secs_f64(cut as f64 / pace.get() as f64);
            if let Some(left) = share.checked_sub(began.elapsed()) {
                std::thread::sleep(left);
            }
        }
    }
    fs::remove_file(path).map_err(|error| io_error("remove", error))?;
    Ok(Some(held))
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
        let lengths = std::cell::RefCell::new(Vec::new());
        let aside = dir.path().join(format!("wal-1.log{REMOVING_SUFFIX}"));
        let watch = || {
            lengths
                .borrow_mut()
                .push(fs::metadata(&aside).map(|meta| meta.len()).unwrap_or(0));
            true
        };
        let swept = sweep(dir.path(), pace, watch).expect("sweep");
        assert_eq!((swept.removed, swept.bytes), (1, 3 * REMOVE_STEP_BYTES));
        // Cut from the end a step at a time.
        let step = REMOVE_STEP_BYTES;
        assert_eq!(*lengths.borrow(), [3 * step, 2 * step, step]);
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
        // Stopped after the first step: the file stays aside, one step shorter.
        let asked = std::cell::Cell::new(0);
        let once = || {
            asked.set(asked.get() + 1);
            asked.get() == 1
        };
        let swept = sweep(dir.path(), NonZeroU64::new(u64::MAX), once).expect("sweep");
        assert_eq!((swept.removed, swept.left), (0, 1));
        let aside = dir.path().join(format!("snapshot-5.snap{REMOVING_SUFFIX}"));
        assert_eq!(
            fs::metadata(&aside).expect("still aside").len(),
            REMOVE_STEP_BYTES
        );
        assert!(!doomed.exists(), "not back under its name");
        assert_eq!(sweep(dir.path(), None, || true).expect("sweep").removed, 1);
        assert!(!aside.exists());
    }

    #[test]
    fn a_small_file_takes_its_own_bytes_share_of_time_not_a_whole_step() {
        let dir = tempfile::tempdir().expect("tempdir");
        for index in 0..20 {
            let doomed = file_of(dir.path(), &format!("wal-{index}.log"), 64 << 10);
            set_aside(&doomed).expect("set aside");
        }
        // 20 x 64 KiB at 10 MB/s is 0.13 s; charged a step each, 8.4 s.
        let started = Instant::now();
        let swept = sweep(dir.path(), NonZeroU64::new(10_000_000), || true).expect("sweep");
        assert_eq!(swept.removed, 20);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn what_cannot_be_cut_is_unlinked_and_what_cannot_be_removed_is_reported_and_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A dir can be neither opened for writing nor unlinked as a file.
        fs::create_dir(dir.path().join(format!("a{REMOVING_SUFFIX}"))).expect("mkdir");
        let doomed = file_of(dir.path(), "b.log", 10);
        set_aside(&doomed).expect("set aside");
        let swept = sweep(dir.path(), NonZeroU64::new(u64::MAX), || true).expect("sweep");
        assert_eq!((swept.removed, swept.failed.len()), (1, 1), "{swept:?}");
        assert!(!dir.path().join(format!("b.log{REMOVING_SUFFIX}")).exists());
    }
}
