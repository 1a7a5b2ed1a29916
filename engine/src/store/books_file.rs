//! The `BOOKS` file: the shape a data dir's books were created with (shard count and
//! currency), written the first time the dir is opened and checked at every open after.
//!
//! Account and hold ids encode their shard, so a log replayed into books with another shard
//! count would put its records in other places, and commands that found their accounts when
//! they were acknowledged would be declined on replay: the books would silently differ from
//! what was acknowledged. A snapshot carries the same check, but the first snapshot only comes
//! after `--snapshot-interval-s`; this file covers a dir from its first record.
//!
//! The file is lines of text, `shards N` then `currency C` (and `rules R`, below), so that an operator can read
//! it. It is written once the dir's books have opened (so a snapshot of another shape refuses
//! them before the file could record it), to `BOOKS.tmp`, synced, renamed and the dir synced:
//! a crash leaves either no file or a whole one. A dir written by an authd before this file
//! existed gets it at its next successful open, which needs a snapshot that vouches for the
//! shape and leaves nothing to replay; with a log and no snapshot, the open is refused until
//! the operator writes the shape's lines.
//!
//! A third line, `rules R`, names the rules the log was written under ([`RULES`]). Replay
//! re-executes commands, so a log tail written under older rules must not be replayed under
//! newer ones: the open is refused at the first such record, and the operator runs the older
//! build until it stops cleanly (it snapshots everything at a clean stop), then this one. A
//! file without the line, or a dir without the file, is of unknown rules (0): it opens only
//! if nothing is left to replay.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::StoreError;
use crate::books::BooksConfig;
use crate::wal::{self, WalError};

/// The file's name in the data dir.
pub const BOOKS_FILE: &str = "BOOKS";
/// Longest file accepted: the three lines with room to spare.
const BOOKS_FILE_BYTES_MAX: u64 = 256;

/// The rules this build decides by: raise it with any change that can give a command another
/// outcome on the same books (1: the rules of 2026-11-30, offers' holds answered only by
/// their payer, credits stopped at the balance ceiling).
pub const RULES: u32 = 1;

/// What the file records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shape {
    shards: u32,
    currency: u16,
    rules: u32,
}

impl Shape {
    fn of(config: &BooksConfig) -> Shape {
        Shape {
            shards: config.shards,
            currency: config.currency.0,
            rules: RULES,
        }
    }

    fn encode(self) -> String {
        format!(
            "shards {}\ncurrency {}\nrules {}\n",
            self.shards, self.currency, self.rules
        )
    }

    /// The lines [`Shape::encode`] writes; without the `rules` line, rules 0 (unknown).
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
        let rules = match lines.next() {
            None => 0,
            Some(line) => {
                let rules = line
                    .strip_prefix("rules ")
                    .ok_or_else(|| format!("unexpected line {line:?}"))?;
                rules
                    .parse()
                    .map_err(|_| format!("rules {rules:?} is not a number"))?
            }
        };
        if let Some(extra) = lines.next() {
            return Err(format!("unexpected line {extra:?}"));
        }
        Ok(Shape {
            shards,
            currency,
            rules,
        })
    }
}

/// Checks that the books of `dir` have the shape `config` gives them, and that no newer build
/// wrote it; returns the rules its log was written under. `None` if the dir has no `BOOKS`
/// file yet: [`write`] it once the books have opened (a snapshot of another shape must refuse
/// them first, or the file would record the wrong one). Call it holding the dir's lock,
/// before reading the log.
pub fn check(dir: &Path, config: &BooksConfig) -> Result<Option<u32>, StoreError> {
    let path = dir.join(BOOKS_FILE);
    let configured = Shape::of(config);
    let stored = match read(&path) {
        Ok(Some(text)) => Shape::decode(&text).map_err(|what| StoreError::BooksFile {
            path: path.clone(),
            what,
        })?,
        Ok(None) => return Ok(None),
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
    if stored.rules > RULES {
        return Err(StoreError::RulesNewer {
            dir: dir.to_path_buf(),
            stored: stored.rules,
            current: RULES,
        });
    }
    Ok(Some(stored.rules))
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

/// Records the shape of `config`, under this build's rules, as the books of `dir`, durably.
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
                rules: RULES,
            },
            Shape {
                shards: 4096,
                currency: u16::MAX,
                rules: 7,
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
            "shards 64\ncurrency 978\nrules one\n",
            "shards 64\ncurrency 978\nrules 1\nrules 2\n",
        ] {
            assert!(Shape::decode(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn a_file_without_rules_is_of_unknown_rules() {
        let shape = Shape::decode("shards 64\ncurrency 978\n").expect("two lines");
        assert_eq!(shape.rules, 0);
    }
}
