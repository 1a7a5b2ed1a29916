//! Log-on: the first exchange on every connection, and the HMAC both sides compute.
//!
//! ```text
//! client                                   server
//! LOGON_HELLO(role, id, versions, client nonce) ->
//!                                       <- LOGON_CHALLENGE(version, server nonce)
//! LOGON_PROOF(HMAC-SHA256(secret, "authd-logon-v1" || role || id || client nonce || server nonce)) ->
//!                                       <- LOGON_OK(limits)   or   LOGON_FAILED(code, reason) + close
//! ```
//! The secret never travels. The server's fresh nonce makes an old proof useless (no replay);
//! the client's nonce keeps a fake server from collecting proofs over chosen challenges for a
//! fixed input. Log-on frames carry header version 1 whatever version is negotiated.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::layout::wire_struct;
use crate::types::Role;

/// Domain separation prefix of the log-on MAC.
pub const LOGON_CONTEXT: &[u8] = b"authd-logon-v1";
/// Size of a log-on secret.
pub const SECRET_BYTES: usize = 32;
/// Size of each nonce.
pub const NONCE_BYTES: usize = 16;

/// A terminal's, payer device's or operator's log-on secret.
pub type Secret = [u8; SECRET_BYTES];
/// A log-on nonce.
pub type Nonce = [u8; NONCE_BYTES];

wire_struct! {
    /// Client's first frame.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Hello {
        /// Who logs on.
        role: Role,
        /// Lowest protocol version the client speaks.
        version_min: u8,
        /// Highest protocol version the client speaks.
        version_max: u8,
        /// Terminal id, device id or operator id, per the role.
        id: u32,
        /// 16 random bytes from the client.
        client_nonce: [u8; 16],
    }
}

wire_struct! {
    /// Server's answer to HELLO.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Challenge {
        /// Version chosen: the highest both sides speak. Every frame after LOGON_OK uses it.
        version: u8,
        /// 16 random bytes from the server, fresh for each connection.
        server_nonce: [u8; 16],
    }
}

wire_struct! {
    /// Client's proof that it holds the secret.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Proof {
        /// HMAC-SHA256 as described above.
        mac: [u8; 32],
    }
}

wire_struct! {
    /// Log-on succeeded; the server's limits for this connection follow.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct LogonOk {
        /// Largest frame the server accepts, length prefix included.
        frame_bytes_max: u32,
        /// Most requests the connection may have unanswered.
        requests_in_flight_max: u32,
    }
}

wire_struct! {
    /// Log-on refused; the server closes the connection after sending it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct LogonFailed {
        /// ISO 8583 response code.
        code: u8,
        /// authd reason.
        reason: u8,
    }
}

/// HMAC-SHA256(secret, "authd-logon-v1" || role u8 || id u32 LE || client nonce || server nonce).
pub fn logon_mac(
    secret: &Secret,
    role: Role,
    id: u32,
    client_nonce: &Nonce,
    server_nonce: &Nonce,
) -> [u8; 32] {
    let mac = new_mac(secret, role, id, client_nonce, server_nonce);
    mac.finalize().into_bytes().into()
}

/// True if `proof` is the log-on MAC for these inputs (constant-time comparison).
pub fn verify_logon_mac(
    secret: &Secret,
    role: Role,
    id: u32,
    client_nonce: &Nonce,
    server_nonce: &Nonce,
    proof: &[u8; 32],
) -> bool {
    let mac = new_mac(secret, role, id, client_nonce, server_nonce);
    mac.verify_slice(proof).is_ok()
}

fn new_mac(secret: &Secret, role: Role, id: u32, client_nonce: &Nonce, server_nonce: &Nonce) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail; a 32-byte key is used as is.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| {
        unreachable!("HMAC-SHA256 accepts keys of every length");
    });
    mac.update(LOGON_CONTEXT);
    mac.update(&[role as u8]);
    mac.update(&id.to_le_bytes());
    mac.update(client_nonce);
    mac.update(server_nonce);
    mac
}

/// The version both sides speak, if any: the highest in both ranges.
pub fn choose_version(client_min: u8, client_max: u8, server_min: u8, server_max: u8) -> Option<u8> {
    let high = client_max.min(server_max);
    let low = client_min.max(server_min);
    (low <= high).then_some(high)
}

/// Why a text is not a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretTextError {
    /// Not 64 characters (after trimming whitespace).
    #[error("a secret is 64 hex digits, got {0} characters")]
    Length(usize),
    /// 64 characters, not all hex digits.
    #[error("a secret is 64 hex digits, and these are not all hex digits")]
    NotHex,
}

/// A secret as text: 64 lowercase hex digits, as `operator.key`, authctl and the
/// credentials CSV hold it.
pub fn secret_to_hex(secret: &Secret) -> String {
    hex::encode(secret)
}

/// A secret from its text: 64 hex digits in either case; whitespace around them (a line's
/// newline) is ignored.
pub fn secret_from_hex(text: &str) -> Result<Secret, SecretTextError> {
    let text = text.trim();
    if text.len() != 2 * SECRET_BYTES {
        return Err(SecretTextError::Length(text.chars().count()));
    }
    let mut secret = [0u8; SECRET_BYTES];
    hex::decode_to_slice(text, &mut secret).map_err(|_| SecretTextError::NotHex)?;
    Ok(secret)
}

/// Longest key file read: 64 hex digits and a line end, with room for whitespace around them.
pub const SECRET_FILE_BYTES_MAX: u64 = 1_024;

/// The text of a key file, for [`secret_from_hex`]. Reads at most [`SECRET_FILE_BYTES_MAX`]
/// bytes: a longer file (or `/dev/zero` passed by mistake) is refused, not read into memory.
pub fn read_secret_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(SECRET_FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > SECRET_FILE_BYTES_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("longer than {SECRET_FILE_BYTES_MAX} bytes: not a key file"),
        ));
    }
    Ok(text)
}

/// 16 random bytes from the operating system (for nonces), by the `getrandom` system call:
/// it needs no file descriptor, so a process out of them still gets its nonces.
pub fn random_nonce() -> std::io::Result<Nonce> {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce)?;
    Ok(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_read_up_to_its_limit_and_no_further() {
        let dir = std::env::temp_dir().join(format!("wire-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("key");
        let key = "ab".repeat(32) + "\n";
        std::fs::write(&path, &key).expect("write");
        assert_eq!(read_secret_file(&path).expect("read"), key);
        std::fs::write(&path, " ".repeat(SECRET_FILE_BYTES_MAX as usize)).expect("write");
        assert!(read_secret_file(&path).is_ok(), "exactly the limit is read");
        std::fs::write(&path, " ".repeat(SECRET_FILE_BYTES_MAX as usize + 1)).expect("write");
        let error = read_secret_file(&path).expect_err("one byte more is refused");
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
        assert!(read_secret_file(std::path::Path::new("/dev/zero")).is_err());
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn mac_matches_a_known_vector() {
        // Computed independently: python3 -c "import hmac,hashlib;print(hmac.new(bytes(range(32)),
        // b'authd-logon-v1'+bytes([1])+(7).to_bytes(4,'little')+bytes([0xAA]*16)+bytes([0xBB]*16),
        // hashlib.sha256).hexdigest())"
        let mac = logon_mac(
            &std::array::from_fn(|i| i as u8),
            Role::Terminal,
            7,
            &[0xAA; 16],
            &[0xBB; 16],
        );
        assert_eq!(hex::encode(mac), KNOWN_MAC_HEX);
    }

    const KNOWN_MAC_HEX: &str = "18109d23ea8465152acd7a6189007c58c2677ad90afd2bfee83416dc74fa41ac";

    #[test]
    fn a_secret_round_trips_through_its_text_and_bad_text_is_refused() {
        let secret: Secret = std::array::from_fn(|i| (i * 8) as u8);
        let text = secret_to_hex(&secret);
        assert_eq!(&text[..8], "00081018");
        assert_eq!(text.len(), 64);
        assert_eq!(secret_from_hex(&text), Ok(secret));
        assert_eq!(secret_from_hex(&format!("{}\n", text.to_uppercase())), Ok(secret));
        assert_eq!(secret_from_hex(&text[..62]), Err(SecretTextError::Length(62)));
        assert_eq!(
            secret_from_hex(&format!("{text}00")),
            Err(SecretTextError::Length(66))
        );
        // from_str_radix would take "+f" as 15: a sign is not a hex digit.
        let signed = format!("+f{}", &text[2..]);
        assert_eq!(secret_from_hex(&signed), Err(SecretTextError::NotHex));
        let accented = format!("é{}", &text[2..]);
        assert!(secret_from_hex(&accented).is_err());
    }

    #[test]
    fn verify_accepts_the_mac_and_refuses_any_change() {
        let secret = [7u8; 32];
        let mac = logon_mac(&secret, Role::Operator, 1, &[1; 16], &[2; 16]);
        assert!(verify_logon_mac(
            &secret,
            Role::Operator,
            1,
            &[1; 16],
            &[2; 16],
            &mac
        ));
        assert!(!verify_logon_mac(
            &secret,
            Role::Operator,
            2,
            &[1; 16],
            &[2; 16],
            &mac
        ));
        assert!(!verify_logon_mac(
            &secret,
            Role::Terminal,
            1,
            &[1; 16],
            &[2; 16],
            &mac
        ));
        assert!(!verify_logon_mac(
            &secret,
            Role::Operator,
            1,
            &[1; 16],
            &[3; 16],
            &mac
        ));
    }

    #[test]
    fn version_choice_is_the_highest_common() {
        assert_eq!(choose_version(1, 3, 1, 2), Some(2));
        assert_eq!(choose_version(3, 4, 1, 2), None);
    }
}
