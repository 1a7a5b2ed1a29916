//! Mobile numbers: typed as E.164 (`+33612345678`), carried on the wire as the digits' number.

/// Most digits an E.164 number has.
pub const MOBILE_DIGITS_MAX: usize = 15;

/// The wire number of `+33612345678` (or `33612345678`): 33612345678.
pub fn parse_mobile(text: &str) -> Result<u64, String> {
    let digits = text.strip_prefix('+').unwrap_or(text);
    let valid = !digits.is_empty()
        && digits.len() <= MOBILE_DIGITS_MAX
        && digits.bytes().all(|byte| byte.is_ascii_digit())
        && !digits.starts_with('0');
    if !valid {
        return Err(format!(
            "{text:?} is not a mobile number; write it in E.164 like +33612345678 \
             (country code first, up to {MOBILE_DIGITS_MAX} digits)"
        ));
    }
    digits
        .parse()
        .map_err(|_| format!("{text:?} is not a mobile number"))
}

/// `+33612345678`, or `none` for 0.
pub fn format_mobile(mobile: u64) -> String {
    if mobile == 0 {
        "none".to_string()
    } else {
        format!("+{mobile}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_numbers_become_their_digits() {
        assert_eq!(parse_mobile("+33612345678"), Ok(33_612_345_678));
        assert_eq!(parse_mobile("33612345678"), Ok(33_612_345_678));
        assert_eq!(format_mobile(33_612_345_678), "+33612345678");
        assert_eq!(format_mobile(0), "none");
    }

    #[test]
    fn malformed_numbers_are_refused() {
        for text in ["", "+", "+0612", "06 12", "+3361234567890123", "+33-6"] {
            assert!(parse_mobile(text).is_err(), "{text:?} should be refused");
        }
    }
}
