//! Lifecycle log lines: one line per event on stderr, `key=value` pairs a log shipper can
//! parse, never one per request. Every line has `ts_us` (Unix microseconds), `level` and
//! `event`; values with spaces or quotes are quoted.

use std::fmt::Display;

/// How serious an event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Normal lifecycle.
    Info,
    /// Something the operator should look at.
    Warn,
    /// Something failed.
    Error,
}

/// The line for an event with its fields (without writing it).
pub fn line(level: Level, event: &str, fields: &[(&str, &dyn Display)]) -> String {
    let level = match level {
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    };
    let mut line = format!("ts_us={} level={level} event={event}", super::now_us());
    for (key, value) in fields {
        let value = value.to_string();
        if value.is_empty() || value.contains([' ', '"', '=']) {
            line.push_str(&format!(" {key}={value:?}"));
        } else {
            line.push_str(&format!(" {key}={value}"));
        }
    }
    line
}

/// Write an event's line to stderr.
pub fn log(level: Level, event: &str, fields: &[(&str, &dyn Display)]) {
    eprintln!("{}", line(level, event, fields));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_with_spaces_are_quoted_and_plain_ones_are_not() {
        let text = line(
            Level::Warn,
            "snapshot_failed",
            &[("path", &"/data/a b"), ("records", &12)],
        );
        assert!(
            text.contains(" level=warn event=snapshot_failed path=\"/data/a b\" records=12"),
            "{text}"
        );
        assert!(text.starts_with("ts_us="), "{text}");
    }
}
