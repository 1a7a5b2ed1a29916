//! wire's reason table must equal the engine's (`engine/src/reason.rs`): same names, values and
//! ISO codes. wire cannot depend on engine, so this test reads the engine's source text.

use std::collections::BTreeMap;

fn engine_source() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../engine/src/reason.rs");
    std::fs::read_to_string(path).expect("engine/src/reason.rs (the reason table's source of truth)")
}

/// `Name = 12,` lines of the enum: name -> value.
fn engine_values(source: &str) -> BTreeMap<String, u8> {
    source
        .lines()
        .filter_map(|line| {
            let (name, value) = line.trim().strip_suffix(',')?.split_once(" = ")?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// `Reason::Name => 51,` lines of `iso_code`: name -> ISO code.
fn engine_iso_codes(source: &str) -> BTreeMap<String, u8> {
    source
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("Reason::")?;
            let (name, code) = rest.strip_suffix(',')?.split_once(" => ")?;
            Some((name.to_string(), code.parse().ok()?))
        })
        .collect()
}

#[test]
fn wire_reason_table_equals_the_engines() {
    let source = engine_source();
    let values = engine_values(&source);
    let iso_codes = engine_iso_codes(&source);
    assert_eq!(values.len(), wire::reason::REASONS.len(), "engine has {values:?}");
    for reason in wire::reason::REASONS {
        assert_eq!(
            values.get(reason.name),
            Some(&reason.value),
            "value of {}",
            reason.name
        );
        assert_eq!(
            iso_codes.get(reason.name),
            Some(&reason.iso_code),
            "ISO code of {}",
            reason.name
        );
    }
}
