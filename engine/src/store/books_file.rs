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
//!
//! Three more lines, `idempotency-window N`, `holds-per-shard-max N` and `hold-retention-us N`,
//! record the settings the log's decisions depend on. Replayed with a smaller idempotency
//! window, a retry that was recognised (and charged nothing) would be charged; with fewer holds
//! per shard or a shorter retention, an approved authorization or refund would be declined.
//! So a log tail is replayed only under the settings it was written with, and the settings
//! change only where nothing is left to replay (after a clean stop, which snapshots
//! everything); the lines are then rewritten. A file without them (from an authd before
//! them) is of unknown settings, like unknown rules.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::StoreError;
use crate::books::BooksConfig;
use crate::wal::{self, WalError};

/// The file's name in the data dir.
pub const BOOKS_FILE: &str = "BOOKS";
/// Longest file accepted: the six lines with room to spare.
const BOOKS_FILE_BYTES_MAX: u64 = 512;

/// The rules this build decides by: raise it with any change that can give a command another
/// outcome on the same books (1: the rules of 2026-11-30, offers' holds answered only by
/// their payer, credits stopped at the balance ceiling; 2: a payer's day never goes back, so a
/// command stamped before the daily counters' day counts into it; 3: a released hold gives
/// back the day's usage it never captured, a capture pays what the fee of the hold's captures
/// grows by at its rate, an offer is accepted only while payer and merchant are active, an
/// increment past the PIN threshold of a hold at most the threshold needs a PIN).
pub const RULES: u32 = 3;

/// The settings replay must decide by, besides the rules: the fields of [`BooksConfig`] an
/// outcome depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// [`BooksConfig::idempotency_window`].
    pub idempotency_window: u32,
    /// [`BooksConfig::holds_per_shard_max`].
    pub holds_per_shard_max: u32,
    /// [`BooksConfig::hold_retention_us`].
    pub hold_retention_us: u64,
}

impl Settings {
    /// The settings of `config`.
    pub fn of(config: &BooksConfig) -> Settings {
        Settings {
            idempotency_window: config.idempotency_window,
            holds_per_shard_max: config.holds_per_shard_max,
            hold_retention_us: config.hold_retention_us,
        }
    }

    /// The settings that differ from `other`'s, as the flags would name them.
    pub fn differences(&self, other: &Settings) -> String {
        let mut named = Vec::new();
        if self.idempotency_window != other.idempotency_window {
            named.push(format!("--idempotency-window {}", self.idempotency_window));
        }
        if self.holds_per_shard_max != other.holds_per_shard_max {
            named.push(format!("--holds-per-shard-max {}", self.holds_per_shard_max));
        }
        if self.hold_retention_us != other.hold_retention_us {
            // Not a flag: builds differ in it only by their default.
            named.push(format!(
                "a hold retention of {} us (an authd built with that default)",
                self.hold_retention_us
            ));
        }
        named.join(", ")
    }
}

/// What a data dir's `BOOKS` file records about its log, beyond the shape the flags must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The rules its log was written under (0: unknown).
    pub rules: u32,
    /// The settings its log was written with (`None`: unknown).
    pub settings: Option<Settings>,
}

impl std::fmt::Display for Recorded {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "rules {}", self.rules)?;
        match self.settings {
            None => write!(formatter, ", settings unknown"),
            Some(settings) => write!(
                formatter,
                ", idempotency-window {}, holds-per-shard-max {}, hold-retention-us {}",
                settings.idempotency_window, settings.holds_per_shard_max, settings.hold_retention_us
            ),
        }
    }
}

impl Recorded {
    /// What this build, configured with `config`, would record.
    pub fn of(config: &BooksConfig) -> Recorded {
        Recorded {
            rules: RULES,
            settings: Some(Settings::of(config)),
        }
    }
}

/// What the file records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shape {
    shards: u32,
    currency: u16,
    recorded: Recorded,
}

impl Shape {
    fn of(config: &BooksConfig) -> Shape {
        Shape {
            shards: config.shards,
            currency: config.currency.0,
            recorded: Recorded::of(config),
        }
    }

    fn encode(self) -> String {
        let mut text = format!(
            "shards {}\ncurrency {}\nrules {}\n",
            self.shards, self.currency, self.recorded.rules
        );
        if let Some(settings) = self.recorded.settings {
            text.push_str(&format!(
                "idempotency-window {}\nholds-per-shard-max {}\nhold-retention-us {}\n",
                settings.idempotency_window, settings.holds_per_shard_max, settings.hold_retention_us
            ));
        }
        text
    }

    /// The lines [`Shape::encode`] writes; without the `rules` line, rules 0 (unknown); without
    /// the settings' lines, settings unknown.
    fn decode(text: &str) -> Result<Shape, String> {
        let lines: Vec<&str> = text.lines().collect();
        if !matches!(lines.len(), 2 | 3 | 6) {
            return Err(format!(
                "{} lines, expected `shards`, `currency`, then `rules` and the settings' three",
                lines.len()
            ));
        }
        let field = |index: usize, name: &str| -> Result<u64, String> {
            let line = lines[index];
            let value = line
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .ok_or_else(|| format!("expected `{name} <number>`, found {line:?}"))?;
            value
                .parse()
                .map_err(|_| format!("{name} {value:?} is not a number"))
        };
        let narrow = |index: usize, name: &str| -> Result<u32, String> {
            let value = field(index, name)?;
            u32::try_from(value).map_err(|_| format!("{name} {value} is out of range"))
        };
        let currency = field(1, "currency")?;
        let rules = match lines.len() {
            2 => 0,
            _ => narrow(2, "rules")?,
        };
        let settings = match lines.len() {
            6 => Some(Settings {
                idempotency_window: narrow(3, "idempotency-window")?,
                holds_per_shard_max: narrow(4, "holds-per-shard-max")?,
                hold_retention_us: field(5, "hold-retention-us")?,
            }),
            _ => None,
        };
        Ok(Shape {
            shards: narrow(0, "shards")?,
            currency: u16::try_from(currency).map_err(|_| format!("currency {currency} is out of range"))?,
            recorded: Recorded { rules, settings },
        })
    }
}

/// Checks that the books of `dir` have the shape `config` gives them, and that no newer build
/// wrote it; returns the rules and settings its log was written under. `None` if the dir has no `BOOKS`
/// file yet: [`write`] it once the books have opened (a snapshot of another shape must refuse
/// them first, or the file would record the wrong one). Call it holding the dir's lock,
/// before reading the log.
pub fn check(dir: &Path, config: &BooksConfig) -> Result<Option<Recorded>, StoreError> {
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
    if stored.recorded.rules > RULES {
        return Err(StoreError::RulesNewer {
            dir: dir.to_path_buf(),
            stored: stored.recorded.rules,
            current: RULES,
        });
    }
    Ok(Some(stored.recorded))
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

/// Records the shape and settings of `config`, under this build's rules, as the books of `dir`,
/// durably.
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
        let settings = Settings {
            idempotency_window: u32::MAX,
            holds_per_shard_max: 1,
            hold_retention_us: u64::MAX,
        };
        for (shards, currency, rules, settings) in [
            (64, 978, RULES, Some(Settings::of(&BooksConfig::default()))),
            (4096, u16::MAX, 7, Some(settings)),
            (1, 0, 1, None),
        ] {
            let shape = Shape {
                shards,
                currency,
                recorded: Recorded { rules, settings },
            };
            assert_eq!(Shape::decode(&shape.encode()), Ok(shape));
        }
    }

    #[test]
    fn anything_but_the_lines_in_order_is_refused() {
        let settings = "idempotency-window 32768\nholds-per-shard-max 262144\nhold-retention-us 1\n";
        for text in [
            "",
            "shards 64\n",
            "currency 978\nshards 64\n",
            "shards  64\ncurrency 978\n",
            "shards 64\ncurrency 70000\n",
            "shards -1\ncurrency 978\n",
            "shards 4294967296\ncurrency 978\n",
            "shards 64\ncurrency 978\n\n",
            "shards 64\ncurrency 978\nrules one\n",
            "shards 64\ncurrency 978\nrules 1\nrules 2\n",
            "shards 64\ncurrency 978\nrules 1\nidempotency-window 32768\n",
            &format!("shards 64\ncurrency 978\n{settings}"),
            &format!("shards 64\ncurrency 978\nrules 1\n{settings}rules 1\n"),
            "shards 64\ncurrency 978\nrules 1\nidempotency-window 4294967296\nholds-per-shard-max 1\nhold-retention-us 1\n",
            "shards 64\ncurrency 978\nrules 1\nholds-per-shard-max 1\nidempotency-window 1\nhold-retention-us 1\n",
        ] {
            assert!(Shape::decode(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn a_file_without_rules_or_settings_has_them_unknown() {
        let shape = Shape::decode("shards 64\ncurrency 978\n").expect("two lines");
        assert_eq!(
            shape.recorded,
            Recorded {
                rules: 0,
                settings: None
            }
        );
        let shape = Shape::decode("shards 64\ncurrency 978\nrules 1\n").expect("three lines");
        assert_eq!(
            shape.recorded,
            Recorded {
                rules: 1,
                settings: None
            }
        );
    }

    #[test]
    fn differences_name_the_flags_of_the_settings_that_differ() {
        let recorded = Settings::of(&BooksConfig::default());
        let mut configured = recorded;
        assert_eq!(recorded.differences(&configured), "");
        configured.idempotency_window = 1;
        configured.hold_retention_us = 2;
        assert_eq!(
            recorded.differences(&configured),
            format!(
                "--idempotency-window {}, a hold retention of {} us (an authd built with that default)",
                recorded.idempotency_window, recorded.hold_retention_us
            )
        );
    }
}
