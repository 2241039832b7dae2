//! Memory sizes as people type them (`512M`, `1.5G`, `2048`) and as tables show them.
//! Everything is a whole number of MiB, the unit the API speaks; parsing never rounds a size
//! silently, it refuses one that is not a whole MiB.

use thiserror::Error;

const KIB_PER_MIB: u128 = 1024;

/// Why a size was refused. The messages name the rule; the caller names the field.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SizeError {
    #[error("'{0}' is not a size (use e.g. 512M, 4G)")]
    NotASize(String),
    #[error("'{0}' is not a whole number of MiB")]
    NotWholeMib(String),
    #[error("must be at least 1 MiB")]
    TooSmall,
    #[error("'{0}' is too large")]
    TooLarge(String),
}

/// Parses a size into MiB: a decimal number with an optional unit K, M, G or T (powers of
/// 1024, case-insensitive, optionally followed by `iB` or `B`). A bare number means MiB.
pub fn parse_mib(text: &str) -> Result<u64, SizeError> {
    let not_a_size = || SizeError::NotASize(text.to_string());
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let kib_per_unit: u128 = match unit.trim().to_ascii_lowercase().as_str() {
        "k" | "kb" | "kib" => 1,
        "" | "m" | "mb" | "mib" => 1024,
        "g" | "gb" | "gib" => 1024 * 1024,
        "t" | "tb" | "tib" => 1024 * 1024 * 1024,
        _ => return Err(not_a_size()),
    };

    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(not_a_size());
    }
    let fraction = fraction.trim_end_matches('0');
    let too_large = || SizeError::TooLarge(text.to_string());
    // Thirty digits either side is far beyond any real size and still parses as a u128.
    if whole.len() > 30 || fraction.len() > 30 {
        return Err(too_large());
    }
    let digits = |s: &str| -> u128 { s.parse().unwrap_or(0) };
    let scale = 10u128.pow(fraction.len() as u32);

    // KiB = (whole + fraction / scale) * kib_per_unit, computed exactly.
    let kib_scaled = digits(whole)
        .checked_mul(scale)
        .and_then(|w| w.checked_add(digits(fraction)))
        .and_then(|n| n.checked_mul(kib_per_unit))
        .ok_or_else(too_large)?;
    if !kib_scaled.is_multiple_of(scale) {
        return Err(SizeError::NotWholeMib(text.to_string()));
    }
    let kib = kib_scaled / scale;
    if kib < KIB_PER_MIB {
        return Err(SizeError::TooSmall);
    }
    if !kib.is_multiple_of(KIB_PER_MIB) {
        return Err(SizeError::NotWholeMib(text.to_string()));
    }
    u64::try_from(kib / KIB_PER_MIB).map_err(|_| too_large())
}

/// Shows a size the way a person would write it: whole GiB as `4 GiB`, anything else in MiB.
pub fn format_mib(mib: u64) -> String {
    if mib >= 1024 && mib.is_multiple_of(1024) {
        format!("{} GiB", mib / 1024)
    } else {
        format!("{mib} MiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_plain_numbers() {
        assert_eq!(parse_mib("512M"), Ok(512));
        assert_eq!(parse_mib("1G"), Ok(1024));
        assert_eq!(parse_mib("1.5G"), Ok(1536));
        assert_eq!(parse_mib("2048"), Ok(2048));
        assert_eq!(parse_mib("1T"), Ok(1024 * 1024));
        assert_eq!(parse_mib("2048K"), Ok(2));
        assert_eq!(parse_mib("1.5"), Err(SizeError::NotWholeMib("1.5".into())));
    }

    #[test]
    fn suffixes_are_case_insensitive_with_optional_ib_or_b() {
        for text in ["4g", "4G", "4GB", "4gb", "4GiB", "4gib", "4 GiB", " 4G "] {
            assert_eq!(parse_mib(text), Ok(4096), "{text}");
        }
        assert_eq!(parse_mib("256mib"), Ok(256));
        assert_eq!(parse_mib(".5G"), Ok(512));
        assert_eq!(parse_mib("1.G"), Ok(1024));
        assert_eq!(parse_mib("1.50000G"), Ok(1536));
        assert_eq!(parse_mib("0.0009765625T"), Ok(1024));
    }

    #[test]
    fn refuses_what_is_not_a_size() {
        for text in ["abc", "", " ", "-1G", "1X", "G", ".", "1.2.3G", "1e3", "+1G", "1GG"] {
            assert_eq!(parse_mib(text), Err(SizeError::NotASize(text.to_string())), "{text:?}");
        }
    }

    #[test]
    fn refuses_sizes_below_one_mib_or_not_whole() {
        assert_eq!(parse_mib("0"), Err(SizeError::TooSmall));
        assert_eq!(parse_mib("0G"), Err(SizeError::TooSmall));
        assert_eq!(parse_mib("512K"), Err(SizeError::TooSmall));
        assert_eq!(parse_mib("0.5M"), Err(SizeError::TooSmall));
        assert_eq!(parse_mib("1.1G"), Err(SizeError::NotWholeMib("1.1G".into())));
        assert_eq!(parse_mib("1500K"), Err(SizeError::NotWholeMib("1500K".into())));
    }

    #[test]
    fn refuses_sizes_too_large() {
        let huge = "99999999999999999999T";
        assert_eq!(parse_mib(huge), Err(SizeError::TooLarge(huge.into())));
        let long = "1".repeat(30);
        assert_eq!(parse_mib(&long), Err(SizeError::TooLarge(long.clone())));
    }

    #[test]
    fn messages_name_the_rule() {
        assert_eq!(parse_mib("abc").unwrap_err().to_string(), "'abc' is not a size (use e.g. 512M, 4G)");
        assert_eq!(parse_mib("0").unwrap_err().to_string(), "must be at least 1 MiB");
    }

    #[test]
    fn formats_whole_gib_and_otherwise_mib() {
        assert_eq!(format_mib(1024), "1 GiB");
        assert_eq!(format_mib(4096), "4 GiB");
        assert_eq!(format_mib(1536), "1536 MiB");
        assert_eq!(format_mib(512), "512 MiB");
    }
}
