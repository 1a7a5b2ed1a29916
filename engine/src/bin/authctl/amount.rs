//! Amounts as people type and read them: major units with the currency's exponent.
//!
//! authd keeps money as `u64` minor units. The operator types `12.50` and reads `12.50`; with
//! `--currency-exponent 2` that is 1250 minor units. Parsing is exact decimal arithmetic on the
//! digits (never `f64`), and a value with more decimals than the exponent is refused rather than
//! rounded: a silent rounding of money is worse than an error.

use std::fmt;
use std::str::FromStr;

/// Largest currency exponent: 10^18 still fits a `u64`, 10^19 does not.
pub const EXPONENT_MAX: u8 = 18;

/// Why an amount could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Not of the form `123` or `123.45`.
    #[error("{text:?} is not an amount; write major units like 12 or 12.50")]
    Syntax {
        /// What was typed.
        text: String,
    },
    /// More decimals than the currency has.
    #[error(
        "{text} has {decimals} decimals but the currency has {exponent}; \
         give at most {exponent}"
    )]
    TooManyDecimals {
        /// What was typed.
        text: String,
        /// Decimals typed.
        decimals: usize,
        /// The currency's exponent.
        exponent: u8,
    },
    /// Above what a `u64` of minor units holds.
    #[error("{text} is too large: at most {} minor units", u64::MAX)]
    TooLarge {
        /// What was typed.
        text: String,
    },
}

/// An amount as typed, in major units, checked for syntax; [`MajorAmount::minor`] applies the
/// exponent (known only once all flags are parsed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MajorAmount {
    whole: String,
    fraction: String,
}

impl FromStr for MajorAmount {
    type Err = AmountError;

    fn from_str(text: &str) -> Result<MajorAmount, AmountError> {
        let syntax = || AmountError::Syntax {
            text: text.to_string(),
        };
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) {
            return Err(syntax());
        }
        if text.ends_with('.') {
            return Err(syntax());
        }
        Ok(MajorAmount {
            whole: whole.to_string(),
            fraction: fraction.to_string(),
        })
    }
}

impl fmt::Display for MajorAmount {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.fraction.is_empty() {
            write!(formatter, "{}", self.whole)
        } else {
            write!(formatter, "{}.{}", self.whole, self.fraction)
        }
    }
}

impl MajorAmount {
    /// Minor units for a currency with `exponent` decimals.
    pub fn minor(&self, exponent: u8) -> Result<u64, AmountError> {
        debug_assert!(exponent <= EXPONENT_MAX);
        if self.fraction.len() > usize::from(exponent) {
            return Err(AmountError::TooManyDecimals {
                text: self.to_string(),
                decimals: self.fraction.len(),
                exponent,
            });
        }
        let too_large = || AmountError::TooLarge {
            text: self.to_string(),
        };
        let padded = format!("{:0<width$}", self.fraction, width = usize::from(exponent));
        let mut minor: u64 = 0;
        for byte in self.whole.bytes().chain(padded.bytes()) {
            let digit = u64::from(byte - b'0');
            minor = minor
                .checked_mul(10)
                .and_then(|value| value.checked_add(digit))
                .ok_or_else(too_large)?;
        }
        Ok(minor)
    }
}

/// A limit as typed: an amount, or `none` for no limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitAmount {
    /// No limit (the wire's maximum).
    None,
    /// A limit in major units.
    Amount(MajorAmount),
}

impl FromStr for LimitAmount {
    type Err = AmountError;

    fn from_str(text: &str) -> Result<LimitAmount, AmountError> {
        if text.eq_ignore_ascii_case("none") {
            return Ok(LimitAmount::None);
        }
        text.parse().map(LimitAmount::Amount)
    }
}

impl LimitAmount {
    /// Minor units; `none` is `u64::MAX`, which the wire reads as "no limit".
    pub fn minor(&self, exponent: u8) -> Result<u64, AmountError> {
        match self {
            LimitAmount::None => Ok(u64::MAX),
            LimitAmount::Amount(amount) => amount.minor(exponent),
        }
    }
}

/// A count limit as typed: a number, or `none`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitCount(pub u32);

impl FromStr for LimitCount {
    type Err = String;

    fn from_str(text: &str) -> Result<LimitCount, String> {
        if text.eq_ignore_ascii_case("none") {
            return Ok(LimitCount(u32::MAX));
        }
        text.parse::<u32>()
            .map(LimitCount)
            .map_err(|_| format!("{text:?} is not a count; give a whole number or none"))
    }
}

/// `minor` in major units: `1250` with exponent 2 is `12.50`.
pub fn format_minor(minor: u64, exponent: u8) -> String {
    format_signed(i128::from(minor), exponent)
}

/// A signed ledger balance (the issuer's funding account goes negative) in major units.
pub fn format_signed(minor: i128, exponent: u8) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let digits = minor.unsigned_abs().to_string();
    let exponent = usize::from(exponent);
    if exponent == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = exponent + 1);
    let (whole, fraction) = padded.split_at(padded.len() - exponent);
    format!("{sign}{whole}.{fraction}")
}

/// A limit for reading: `none` for the wire's maximum.
pub fn format_limit(minor: u64, exponent: u8) -> String {
    if minor == u64::MAX {
        "none".to_string()
    } else {
        format_minor(minor, exponent)
    }
}

/// The decimals amounts are typed and printed with: `--currency-exponent` if given (and, where
/// ISO 4217 knows the currency, equal to its), else the currency's own. On books in yen, 100
/// typed with euro's two decimals would load 10,000 yen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exponents {
    /// `--currency-exponent`, if given.
    pub given: Option<u8>,
}

impl Exponents {
    /// The decimals of `currency` (ISO 4217 numeric).
    pub fn of(&self, currency: u16) -> anyhow::Result<u8> {
        match (self.given, iso_exponent(currency)) {
            (Some(given), Some(iso)) if given != iso => anyhow::bail!(
                "--currency-exponent {given}, but currency {currency} has {iso} decimals (ISO 4217): drop the flag, or pass --currency-exponent {iso}"
            ),
            (Some(given), _) => Ok(given),
            (None, Some(iso)) => Ok(iso),
            (None, None) => anyhow::bail!(
                "authctl does not know how many decimals currency {currency} has: pass --currency-exponent"
            ),
        }
    }

    /// Where no currency is at hand (a terminal's view of an offer): the flag, else 2.
    pub fn or_default(&self) -> u8 {
        self.given.unwrap_or(2)
    }

    /// For printing an amount in `currency`: ISO 4217's decimals where it knows the currency,
    /// else the flag, else 2 (never an error: it only prints).
    pub fn for_display(&self, currency: u16) -> u8 {
        iso_exponent(currency).unwrap_or(self.or_default())
    }
}

/// The decimals ISO 4217 gives `currency` (numeric code), if it knows them.
fn iso_exponent(currency: u16) -> Option<u8> {
    iso_currency::Currency::from_numeric(currency)
        .and_then(iso_currency::Currency::exponent)
        .and_then(|exponent| u8::try_from(exponent).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minor(text: &str, exponent: u8) -> Result<u64, AmountError> {
        text.parse::<MajorAmount>()?.minor(exponent)
    }

    #[test]
    fn major_units_become_minor_units() {
        assert_eq!(minor("12.50", 2), Ok(1250));
        assert_eq!(minor("12.5", 2), Ok(1250));
        assert_eq!(minor("12", 2), Ok(1200));
        assert_eq!(minor("0.01", 2), Ok(1));
        assert_eq!(minor("0", 2), Ok(0));
        assert_eq!(minor("007.10", 2), Ok(710));
        assert_eq!(minor("12", 0), Ok(12));
        assert_eq!(minor("1.234", 3), Ok(1234));
    }

    #[test]
    fn more_decimals_than_the_exponent_is_refused_not_rounded() {
        let error = minor("12.505", 2).expect_err("three decimals");
        assert!(matches!(
            error,
            AmountError::TooManyDecimals {
                decimals: 3,
                exponent: 2,
                ..
            }
        ));
        assert!(error.to_string().contains("at most 2"), "{error}");
        assert!(minor("1.0", 0).is_err(), "exponent 0 takes no decimals at all");
    }

    #[test]
    fn malformed_amounts_are_refused() {
        for text in [
            "", ".5", "5.", "-1", "+1", "1,50", "1.2.3", "12 ", "1e3", "abc", "１",
        ] {
            assert!(
                matches!(text.parse::<MajorAmount>(), Err(AmountError::Syntax { .. })),
                "{text:?} should be refused"
            );
        }
    }

    #[test]
    fn amounts_beyond_u64_are_refused() {
        assert_eq!(minor("184467440737095516.15", 2), Ok(u64::MAX));
        assert!(matches!(
            minor("184467440737095516.16", 2),
            Err(AmountError::TooLarge { .. })
        ));
        assert!(matches!(
            minor("99999999999999999999", 0),
            Err(AmountError::TooLarge { .. })
        ));
    }

    #[test]
    fn minor_units_print_in_major_units() {
        assert_eq!(format_minor(1250, 2), "12.50");
        assert_eq!(format_minor(5, 2), "0.05");
        assert_eq!(format_minor(0, 2), "0.00");
        assert_eq!(format_minor(12, 0), "12");
        assert_eq!(format_minor(1, 3), "0.001");
        assert_eq!(format_signed(-1250, 2), "-12.50");
        assert_eq!(format_signed(-5, 2), "-0.05");
        assert_eq!(format_limit(u64::MAX, 2), "none");
    }

    #[test]
    fn printing_then_parsing_gives_the_same_minor_units() {
        for value in [0, 1, 99, 100, 1250, 123_456_789, u64::MAX] {
            for exponent in [0, 2, 3, EXPONENT_MAX] {
                assert_eq!(minor(&format_minor(value, exponent), exponent), Ok(value));
            }
        }
    }

    #[test]
    fn limits_accept_none() {
        assert_eq!(
            "none".parse::<LimitAmount>().and_then(|limit| limit.minor(2)),
            Ok(u64::MAX)
        );
        assert_eq!(
            "5".parse::<LimitAmount>().and_then(|limit| limit.minor(2)),
            Ok(500)
        );
        assert_eq!("none".parse::<LimitCount>(), Ok(LimitCount(u32::MAX)));
        assert_eq!("7".parse::<LimitCount>(), Ok(LimitCount(7)));
        assert!("-7".parse::<LimitCount>().is_err());
    }

    #[test]
    fn the_decimals_are_the_currencys_unless_the_flag_says_otherwise_where_iso_does_not_know() {
        let default = Exponents { given: None };
        assert_eq!(default.of(978).ok(), Some(2), "EUR");
        assert_eq!(default.of(392).ok(), Some(0), "JPY");
        assert_eq!(default.of(48).ok(), Some(3), "BHD");
        assert!(default.of(1).is_err(), "no ISO currency: the flag is needed");
        let two = Exponents { given: Some(2) };
        assert_eq!(two.of(978).ok(), Some(2));
        let wrong = two.of(392).expect_err("yen has no decimals");
        assert!(wrong.to_string().contains("--currency-exponent 0"), "{wrong}");
        assert_eq!(two.of(1).ok(), Some(2), "the flag decides where ISO is silent");
        assert_eq!((default.or_default(), two.or_default()), (2, 2));
        assert_eq!(two.for_display(392), 0, "printing follows ISO 4217 first");
        assert_eq!(Exponents { given: Some(3) }.for_display(1), 3);
    }
}
