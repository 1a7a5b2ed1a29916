//! The `BOOKS` file: the shape a data dir's books were created with (shard count and
//! currency), written the first time the dir is opened and checked at every open after.
//!
//! Account and hold ids encode their shard, so a log replayed into books with another shard
//! count would put its records in other places, and commands that found their accounts when
//! they were acknowledged would be declined on replay: the books would silently differ from
//! what was acknowledged. A snapshot carries the same check, but the first snapshot only comes
//! after `--snapshot-interval-s`; this file covers a dir from its first record.
//!
//! The file is two lines of text, `shards N` then `currency C`, so that an operator can read
//! it. It is written once the dir's books have opened (so a snapshot of another shape refuses
//! them before the file could record it), to `BOOKS.tmp`, synced, renamed and the dir synced:
//! a crash leaves either no file or a whole one. A dir written by an authd before this file
//! existed gets it at its next successful open if a snapshot vouches for the shape; with a
//! log and no snapshot nothing can, and the open is refused until the operator writes it.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::StoreError;
use crate::books::BooksConfig;
use crate::wal::{self, WalError};

/// The file's name in the data dir.
pub const BOOKS_FILE: &str = "BOOKS";
/// Longest file accepted: the two lines with room to spare.
const BOOKS_FILE_BYTES_MAX: u64 = 256;

/// What the file records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shape {
    shards: u32,
    currency: u16,
}

impl Shape {
    fn of(config: &BooksConfig) -> Shape {
        Shape {
            shards: config.shards,
            currency: config.currency.0,
        }
    }

    fn encode(self) -> String {
        format!("shards {}\ncurrency {}\n", self.shards, self.currency)
    }

    /// Exactly the two lines [`Shape::encode`] writes.
    fn decode(text: &str) -> Result<Shape, String> {
        let mut lines = text.lines();
        let mut field = |name: &str| {
            let line = lines.next().ok_or_else(|| format!("no `{name}` line"))?;
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .ok_or_else(|| format!("expected `{name} <number>`, found {line:?}"))
        };
        let shards = field("shards")?;
        let shards = shards
            .parse()
            .map_err(|_| format!("shards {shards:?} is not a number"))?;
        let currency = field("currency")?;
        let currency = currency
            .parse()
            .map_err(|_| format!("currency {currency:?} is not a number"))?;
        if let Some(extra) = lines.next() {
            return Err(format!("unexpected line {extra:?}"));
        }
        Ok(Shape { shards, currency })
    }
}

/// Checks that the books of `dir` have the shape `config` gives them. Returns false if the dir
/// has no `BOOKS` file yet: [`write`] it once the books have opened (a snapshot of another
/// shape must refuse them first, or the file would record the wrong one). Call it holding the
/// dir's lock, before reading the log.
pub fn check(dir: &Path, config: &BooksConfig) -> Result<bool, StoreError> {
    let path = dir.join(BOOKS_FILE);
    let configured = Shape::of(config);
    let stored = match read(&path) {
        Ok(Some(text)) => Shape::decode(&text).map_err(|what| StoreError::BooksFile {
            path: path.clone(),
            what,
        })?,
        Ok(None) => return Ok(false),
        Err(error) => {
            return Err(StoreError::BooksFile {
                path,
                what: error.to_string(),
            })
        }
    };
    let differs = |stored: String, configured: String| StoreError::BooksDiffer {
        dir: dir.to_path_buf(),
        stored,
        configured,
    };
    if stored.shards != configured.shards {
        return Err(differs(
            format!("--shards {}", stored.shards),
            format!("--shards {}", configured.shards),
        ));
    }
    if stored.currency != configured.currency {
        return Err(differs(
            format!("--currency {}", stored.currency),
            format!("--currency {}", configured.currency),
        ));
    }
    Ok(true)
}

/// The file's text, `None` if there is none.
fn read(path: &Path) -> io::Result<Option<String>> {
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    if file.metadata()?.len() > BOOKS_FILE_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("longer than {BOOKS_FILE_BYTES_MAX} bytes"),
        ));
    }
    let mut text = String::new();
    io::Read::read_to_string(&mut io::Read::take(file, BOOKS_FILE_BYTES_MAX), &mut text)?;
    Ok(Some(text))
}

/// Records the shape of `config` as the books of `dir`, durably.
pub fn write(dir: &Path, config: &BooksConfig) -> Result<(), StoreError> {
    let path = dir.join(BOOKS_FILE);
    let shape = Shape::of(config);
    let temporary = dir.join(format!("{BOOKS_FILE}.tmp"));
    let mut file = fs::File::create(&temporary).map_err(|error| WalError::io("create", &temporary, error))?;
    file.write_all(shape.encode().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|error| WalError::io("write", &temporary, error))?;
    fs::rename(&temporary, &path).map_err(|error| WalError::io("rename", &temporary, error))?;
    wal::segment::sync_dir(dir).map_err(|error| WalError::io("sync", dir, error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shape_reads_back_as_written() {
        for shape in [
            Shape {
                shards: 64,
                currency: 978,
            },
            Shape {
                shards: 4096,
                currency: u16::MAX,
            },
        ] {
            assert_eq!(Shape::decode(&shape.encode()), Ok(shape));
        }
    }

    #[test]
    fn anything_but_the_two_lines_is_refused() {
        for text in [
            "",
            "shards 64\n",
            "currency 978\nshards 64\n",
            "shards  64\ncurrency 978\n",
            "shards 64\ncurrency 70000\n",
            "shards -1\ncurrency 978\n",
            "shards 64\ncurrency 978\n\n",
        ] {
            assert!(Shape::decode(text).is_err(), "{text:?}");
        }
    }
}
