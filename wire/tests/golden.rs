//! Golden vectors and PROTOCOL.md drift checks.
//!
//! `tests/vectors/<name>.hex` holds one frame per file (a `#` comment line, then hex). Each is
//! decoded, compared with the example it was made from, and re-encoded byte for byte.
//! PROTOCOL.md carries generated blocks between `<!-- generated:KEY -->` and `<!-- end -->`:
//! byte tables, value tables, the reason table and the hex examples; the test fails if any block
//! differs from what the code generates. After a deliberate change, regenerate both with
//! `WIRE_BLESS=1 cargo test -p wire --test golden` and review the diff.

#[allow(dead_code)]
mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use bytes::BytesMut;
use wire::layout::{markdown_table, FieldLayout};
use wire::message::Message;
use wire::messages::reply::{Counter, DisputeSummary, ProtocolError};
use wire::types::{
    AccountKind, AccountStatus, DisputeCause, DisputeOutcome, DisputeState, Limits, OfferState,
    ProductDetails, Role,
};
use wire::Decoder;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn blessing() -> bool {
    std::env::var_os("WIRE_BLESS").is_some()
}

fn encode(frame: &wire::Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame.encode(&mut out);
    out.to_vec()
}

#[test]
fn every_message_type_has_a_golden_vector() {
    let covered: BTreeSet<u8> = support::examples()
        .iter()
        .map(|(_, _, frame)| frame.message.message_type())
        .collect();
    for spec in Message::specs() {
        assert!(
            covered.contains(&spec.message_type),
            "no vector for {}",
            spec.name
        );
    }
}

#[test]
fn vectors_decode_to_their_example_and_reencode_byte_for_byte() {
    for (name, description, frame) in support::examples() {
        let path = crate_dir().join("tests/vectors").join(format!("{name}.hex"));
        let expected = encode(&frame);
        if blessing() {
            let text = format!("# {description}\n{}\n", support::hex_dump(&expected));
            std::fs::write(&path, text).expect("write vector");
        }
        let text = std::fs::read_to_string(&path).expect("vector file (bless to create)");
        let bytes = support::parse_hex(&text);
        assert_eq!(bytes, expected, "{name}: file differs from the example");
        let mut buffer = BytesMut::from(&bytes[..]);
        let decoded = Decoder::default().decode(&mut buffer);
        assert_eq!(decoded, Ok(Some(frame.clone())), "{name}");
        assert!(buffer.is_empty(), "{name}: bytes left over");
        assert_eq!(encode(&frame), bytes, "{name}: re-encoding differs");
    }
}

fn enum_table(values: &[(u8, &str, &str)]) -> String {
    let mut table = String::from("| value | name | meaning |\n|---|---|---|\n");
    for (value, name, meaning) in values {
        table.push_str(&format!("| {value} | {name} | {} |\n", meaning.trim()));
    }
    table
}

fn reason_table() -> String {
    let mut table = String::from("| reason | name | ISO 8583 code | meaning |\n|---|---|---|---|\n");
    for reason in wire::reason::REASONS {
        table.push_str(&format!(
            "| {} | {} | {:02} | {} |\n",
            reason.value, reason.name, reason.iso_code, reason.meaning
        ));
    }
    table
}

/// "OfferCancel" -> "OFFER_CANCEL": the names PROTOCOL.md's prose uses.
fn screaming_snake(name: &str) -> String {
    let mut out = String::new();
    for (index, character) in name.chars().enumerate() {
        if character.is_uppercase() && index > 0 {
            out.push('_');
        }
        out.push(character.to_ascii_uppercase());
    }
    out
}

fn type_table() -> String {
    let mut table = String::from("| type | name | kind | body |\n|---|---|---|---|\n");
    let kinds: [(&str, &[wire::message::MessageSpec]); 4] = [
        ("log-on", wire::Logon::SPECS),
        ("request", wire::Request::SPECS),
        ("reply", wire::Reply::SPECS),
        ("push", wire::Push::SPECS),
    ];
    for (kind, specs) in kinds {
        for spec in specs {
            let mut name = screaming_snake(spec.name);
            match kind {
                "log-on" if !name.starts_with("LOGON") => name = format!("LOGON_{name}"),
                "reply" if name == "ERROR" => {}
                "reply" => name.push_str(" reply"),
                _ => {}
            }
            table.push_str(&format!(
                "| 0x{:02X} | {name} | {kind} | [{}](#{}) |\n",
                spec.message_type,
                spec.body,
                spec.body.to_lowercase()
            ));
        }
    }
    table
}

fn body_layout(name: &str) -> Option<&'static [FieldLayout]> {
    let extra: [(&str, &'static [FieldLayout]); 4] = [
        ("Limits", Limits::LAYOUT),
        ("ProductDetails", ProductDetails::LAYOUT),
        ("Counter", Counter::LAYOUT),
        ("DisputeSummary", DisputeSummary::LAYOUT),
    ];
    Message::specs()
        .find(|spec| spec.body == name)
        .map(|spec| spec.layout)
        .or_else(|| {
            extra
                .iter()
                .find(|(extra, _)| *extra == name)
                .map(|(_, layout)| *layout)
        })
}

/// The content a generated block must hold.
fn generate(key: &str) -> Option<String> {
    let (kind, name) = key.split_once(':').unwrap_or((key, ""));
    let content = match kind {
        "types" => type_table(),
        "reasons" => reason_table(),
        "body" => markdown_table(body_layout(name)?),
        "enum" => enum_table(match name {
            "Role" => Role::VALUES,
            "AccountKind" => AccountKind::VALUES,
            "AccountStatus" => AccountStatus::VALUES,
            "OfferState" => OfferState::VALUES,
            "DisputeCause" => DisputeCause::VALUES,
            "DisputeState" => DisputeState::VALUES,
            "DisputeOutcome" => DisputeOutcome::VALUES,
            "ProtocolError" => ProtocolError::VALUES,
            _ => return None,
        }),
        "vector" => {
            let (_, description, frame) = support::examples()
                .into_iter()
                .find(|(stem, _, _)| *stem == name)?;
            format!(
                "```text\n# {description}\n{}\n```\n",
                support::hex_dump(&encode(&frame))
            )
        }
        _ => return None,
    };
    Some(content)
}

const OPEN: &str = "<!-- generated:";
const CLOSE: &str = "<!-- end -->";

/// PROTOCOL.md with every generated block recomputed, and the keys seen.
fn regenerate(document: &str) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut keys = Vec::new();
    let mut rest = document;
    while let Some(start) = rest.find(OPEN) {
        let after_open = &rest[start + OPEN.len()..];
        let key_end = after_open.find(" -->").expect("marker closes");
        let key = &after_open[..key_end];
        let content_start = start + OPEN.len() + key_end + " -->\n".len();
        let close = rest[content_start..].find(CLOSE).expect("block has an end") + content_start;
        out.push_str(&rest[..content_start]);
        out.push_str(&generate(key).unwrap_or_else(|| panic!("unknown generated key {key}")));
        keys.push(key.to_string());
        rest = &rest[close..];
    }
    out.push_str(rest);
    (out, keys)
}

#[test]
fn protocol_md_generated_blocks_match_the_code() {
    let path = crate_dir().join("../PROTOCOL.md");
    let document = std::fs::read_to_string(&path).expect("PROTOCOL.md");
    let (regenerated, keys) = regenerate(&document);
    if blessing() {
        std::fs::write(&path, &regenerated).expect("write PROTOCOL.md");
    }
    assert!(
        regenerated == document,
        "PROTOCOL.md drifted from the code; run WIRE_BLESS=1 cargo test -p wire --test golden"
    );
    for (name, _, _) in support::examples() {
        assert!(
            keys.contains(&format!("vector:{name}")),
            "PROTOCOL.md lacks vector {name}"
        );
    }
    for spec in Message::specs() {
        assert!(
            keys.contains(&format!("body:{}", spec.body)),
            "PROTOCOL.md lacks body {}",
            spec.body
        );
    }
}
