//! The operator's log-on secret: `operator.key` in the data dir, 64 hex digits, mode 0600,
//! created on first start. `authctl` reads the same file.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use wire::logon::{secret_from_hex, secret_to_hex};

/// The key file's name in the data dir.
pub const FILE_NAME: &str = "operator.key";

/// Why the key could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the file failed.
    #[error("{path}: {cause}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The error: told in the message, so not a `source` too (a chain printed whole
        /// would repeat it).
        cause: io::Error,
    },
    /// The file is not 64 hex digits.
    #[error("{path} is not an operator key (64 hex digits); restore it, or remove it to have authd create a new one")]
    Malformed {
        /// The key file.
        path: PathBuf,
    },
}

/// Read the key at `path`.
pub fn read(path: &Path) -> Result<[u8; 32], KeyError> {
    let text = wire::logon::read_secret_file(path).map_err(|cause| KeyError::Io {
        path: path.to_path_buf(),
        cause,
    })?;
    secret_from_hex(&text).map_err(|_| KeyError::Malformed {
        path: path.to_path_buf(),
    })
}

/// Read the data dir's key, creating it (0600) with `fresh` if there is none.
pub fn load_or_create(dir: &Path, fresh: [u8; 32]) -> Result<[u8; 32], KeyError> {
    let path = dir.join(FILE_NAME);
    if path.exists() {
        let key = read(&path)?;
        let mode = fs::metadata(&path)
            .map(|meta| meta.permissions().mode() & 0o077)
            .unwrap_or(0);
        if mode != 0 {
            eprintln!(
                "authd: warning: {} is readable by others; chmod 600 it",
                path.display()
            );
        }
        return Ok(key);
    }
    let io_error = |cause| KeyError::Io {
        path: path.clone(),
        cause,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_error)?;
    file.write_all(format!("{}\n", secret_to_hex(&fresh)).as_bytes())
        .map_err(io_error)?;
    file.sync_all().map_err(io_error)?;
    Ok(fresh)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_key_reads_back_and_is_private() {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = load_or_create(dir.path(), [0xab; 32]).expect("create");
        assert_eq!(key, [0xab; 32]);
        assert_eq!(
            load_or_create(dir.path(), [0x01; 32]).expect("reread"),
            [0xab; 32],
            "an existing key is kept"
        );
        let mode = fs::metadata(dir.path().join(FILE_NAME))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_malformed_key_says_what_to_do() {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join(FILE_NAME), "not hex").expect("write");
        let error = read(&dir.path().join(FILE_NAME)).expect_err("malformed");
        assert!(error.to_string().contains("remove it"), "{error}");
    }
}
