//! Mobile numbers: the one normal form every store key and token uses, and
//! their calling codes (from libphonenumber's data).

use crate::api::ApiError;

const RULE: &str = "must be 7-15 digits with an optional leading +";

/// Normalizes a mobile number: separators (space, `-`, `.`, parentheses)
/// dropped; numbers without `+` get `default_country_code` when one is set.
/// The result is `+digits` or, without any country code, `digits`.
pub fn normalize(input: &str, default_country_code: Option<&str>) -> Result<String, ApiError> {
    let compact: String = input
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let (international, digits) = match compact.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, compact.as_str()),
    };
    if !(7..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid("mobile", RULE));
    }
    match (international, default_country_code) {
        (true, _) => Ok(format!("+{digits}")),
        (false, Some(code)) => {
            let full = format!("{code}{digits}");
            if full.len() - 1 > 15 {
                return Err(ApiError::invalid(
                    "mobile",
                    "is too long once the default country code is added",
                ));
            }
            Ok(full)
        }
        (false, None) => Ok(digits.to_owned()),
    }
}

/// The E.164 calling code (1, 44, 91, ...) of a normalized mobile, as
/// libphonenumber's data assigns it; `None` without a `+` or when no calling
/// code starts the number.
pub fn calling_code(mobile: &str) -> Option<u16> {
    if !mobile.starts_with('+') {
        return None;
    }
    phonenumber::parse(None, mobile)
        .ok()
        .map(|number| number.code().value())
}

/// The last four digits only, for logs.
pub fn masked(mobile: &str) -> String {
    let keep = mobile.len().saturating_sub(4);
    format!("***{}", &mobile[keep..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_applies_the_country_code() {
        assert_eq!(
            normalize("+1 (555) 010-9999", None).unwrap(),
            "+15550109999"
        );
        assert_eq!(
            normalize("9876543210", Some("+91")).unwrap(),
            "+919876543210"
        );
        assert_eq!(
            normalize("+919876543210", Some("+91")).unwrap(),
            "+919876543210"
        );
        assert_eq!(normalize("9876543210", None).unwrap(), "9876543210");
    }

    #[test]
    fn refuses_what_is_not_a_number() {
        for bad in [
            "",
            "+",
            "123456",
            "1234567890123456",
            "98765abc10",
            "++9876543210",
            "+91 98765 4321x",
        ] {
            assert!(normalize(bad, None).is_err(), "{bad:?} accepted");
        }
        assert!(normalize("987654321012345", Some("+91")).is_err());
    }

    #[test]
    fn calling_codes_come_from_the_number_plan() {
        for (mobile, code) in [
            ("+15550001111", Some(1)),
            ("+447700900123", Some(44)),
            ("+919876543210", Some(91)),
            ("+12425550123", Some(1)),
            ("+3544211234", Some(354)),
            ("+8613800138000", Some(86)),
            ("9876543210", None),
            ("+9991234567", None),
        ] {
            assert_eq!(calling_code(mobile), code, "{mobile}");
        }
    }

    #[test]
    fn masks_all_but_the_last_four() {
        assert_eq!(masked("+919876543210"), "***3210");
        assert_eq!(masked("12"), "***12");
    }
}
