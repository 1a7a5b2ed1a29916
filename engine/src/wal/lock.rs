//! The data dir's `LOCK` file: one process at a time.
//!
//! `flock(LOCK_EX | LOCK_NB)` on `<dir>/LOCK`, held for as long as the [`DirLock`] lives (the
//! kernel drops it when the process dies, even by SIGKILL, so a stale file never blocks a
//! restart). The holder writes its pid into the file so that a second opener can say who
//! holds it: `data dir /x is locked by pid 123; stop it or pass --data-dir`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

use super::{LockHolder, WalError};

/// Name of the lock file inside the data dir.
pub const LOCK_FILE_NAME: &str = "LOCK";
/// Most bytes read from a lock file when reporting its holder.
const LOCK_FILE_BYTES_MAX: u64 = 64;

/// Exclusive hold on a data dir; released on drop.
#[derive(Debug)]
pub struct DirLock {
    dir: PathBuf,
    _file: File,
}

impl DirLock {
    /// Creates `dir` if needed and locks it, or says who holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock, WalError> {
        std::fs::create_dir_all(dir).map_err(|error| WalError::io("create dir", dir, error))?;
        let path = dir.join(LOCK_FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|error| WalError::io("open", &path, error))?;
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(WalError::Locked {
                    dir: dir.to_path_buf(),
                    holder: read_holder(&mut file),
                })
            }
            Err(error) => return Err(WalError::io("lock", &path, error.into())),
        }
        write_pid(&mut file).map_err(|error| WalError::io("write", &path, error))?;
        Ok(DirLock {
            dir: dir.to_path_buf(),
            _file: file,
        })
    }

    /// The locked dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    let line = format!("{}\n", std::process::id());
    std::os::unix::fs::FileExt::write_all_at(file, line.as_bytes(), 0)?;
    file.flush()?;
    file.sync_data()
}

fn read_holder(file: &mut File) -> LockHolder {
    let mut text = String::new();
    let read = Read::by_ref(file)
        .take(LOCK_FILE_BYTES_MAX)
        .read_to_string(&mut text);
    LockHolder(read.ok().and_then(|_| text.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_file_holds_the_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _lock = DirLock::acquire(dir.path()).expect("first lock");
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE_NAME)).expect("read");
        assert_eq!(text, format!("{}\n", std::process::id()));
    }
}
