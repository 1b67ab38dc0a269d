//! Numbers exactly as the source wrote them (docs/configuration.md#numbers). serde_json is built
//! with `arbitrary_precision`, so a number is its text: `100000000000000000001`, `1e400` and `-0`
//! are stored and sent as written. What compares them, hashes them and makes keys of them is
//! their canonical text, here. Pure.
//!
//! Two numbers are the same when their values are, whatever the notation: `1`, `1.0`, `1e0`
//! and `10e-1` are one number, as are `1e2` and `100`, and `-0` and `0`. Values are compared
//! exactly, never through a float: `100000000000000000001` and `100000000000000000002` are two.

use serde_json::Number;
use std::borrow::Cow;

/// The canonical text of a number: one text per value, and that value written exactly (so
/// two values never share one).
///
/// Where earlier versions (which read numbers as `u64`, `i64` or `f64`) kept a value exactly,
/// this is the text they hashed it with and keyed items by, so that the state they stored
/// still compares equal after an upgrade: integers within `i64`/`u64` as their digits, other
/// values that are the shortest text of an `f64` as that text (`4.35`, `1e+20`). A value
/// they rounded (`100000000000000000001` was `1e+20`, `0.1000000000000000055511` was `0.1`),
/// or could not read (`1e400`), has a text of its own: its digits, or `1e+400`; so does an
/// integer from 2^53 up written with a fraction or an exponent (`1e16`, which they read as a
/// float and wrote `1e+16`), now the integer it is. An item that holds such a number is
/// reported updated once after the upgrade (from its rounded value to its real one).
///
/// An exponent beyond 17 digits (`1e1000000000000000000`) is not normalised: such a number is
/// its text as written (`1e1000000000000000000` and `10e999999999999999999` differ). Two
/// different values still never share a text.
pub fn canonical(n: &Number) -> Cow<'_, str> {
    canonical_text(n.as_str())
}

/// As [`canonical`], for the text of a JSON number.
pub fn canonical_text(text: &str) -> Cow<'_, str> {
    if is_plain_integer(text) {
        return Cow::Borrowed(text);
    }
    if let Some(short) = short_decimal(text) {
        return Cow::Borrowed(short);
    }
    let Some(d) = Decimal::parse(text) else {
        return Cow::Borrowed(text);
    };
    if let Some(i) = d.integer() {
        return Cow::Owned(i.to_string());
    }
    if let Some(short) = text
        .parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(|n| n.to_string())
    {
        if Decimal::parse(&short).as_ref() == Some(&d) {
            return Cow::Owned(short);
        }
    }
    Cow::Owned(d.exact())
}

/// The order of two numbers' values, exactly (`10` > `9.99`, `1e2` = `100`). None when one
/// has an exponent too long to normalise.
pub fn compare(a: &Number, b: &Number) -> Option<std::cmp::Ordering> {
    let (a, b) = (Decimal::parse(a.as_str())?, Decimal::parse(b.as_str())?);
    Some(a.order(&b))
}

/// Whether two numbers have the same value.
#[cfg(test)]
pub fn same(a: &Number, b: &Number) -> bool {
    a.as_str() == b.as_str() || canonical(a) == canonical(b)
}

/// An integer of at most 18 digits, written plainly: its own canonical text (the common case,
/// taken without parsing). Not `-0`.
fn is_plain_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty()
        && digits.len() <= 18
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" && digits.len() == text.len() || !digits.starts_with('0'))
}

/// A plain decimal with a fraction (`12.50`, `-0.125`), at most 15 significant digits, from
/// 0.001 to below 10^15: its canonical text is itself without the fraction's trailing zeros
/// (no float text is shorter, and these are written plainly). The common case of a price or
/// a ratio, taken without parsing. None for any other text, and for an integral value.
fn short_decimal(text: &str) -> Option<&str> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = digits.split_once('.')?;
    let frac = frac.trim_end_matches('0');
    let plain = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || frac.is_empty() || !plain(int) || !plain(frac) {
        return None;
    }
    let significant = if int == "0" {
        let leading = frac.len() - frac.trim_start_matches('0').len();
        if leading > 2 {
            return None;
        }
        frac.len() - leading
    } else if int.starts_with('0') {
        return None;
    } else {
        int.len() + frac.len()
    };
    if significant > 15 {
        return None;
    }
    let end = text.len() - (digits.len() - int.len() - 1 - frac.len());
    Some(&text[..end])
}

/// A number as `digits × 10^exp`: `digits` without leading or trailing zeros (empty for zero,
/// which is never negative).
#[derive(Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: String,
    exp: i64,
}

/// Exponents of at most this many digits are normalised: far from overflowing an `i64`
/// whatever the length of the digits before them.
const EXP_DIGITS: usize = 17;

impl Decimal {
    /// The order of the values: by sign, then by the place of the first digit, then digit by
    /// digit (digits carry no leading or trailing zeros, so text order is value order).
    fn order(&self, other: &Decimal) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        let sign = |d: &Decimal| match (d.digits.is_empty(), d.negative) {
            (true, _) => 0,
            (false, true) => -1,
            (false, false) => 1,
        };
        let by_sign = sign(self).cmp(&sign(other));
        if by_sign != Ordering::Equal || sign(self) == 0 {
            return by_sign;
        }
        let place = |d: &Decimal| i128::from(d.exp) + d.digits.len() as i128;
        let size = place(self)
            .cmp(&place(other))
            .then_with(|| self.digits.cmp(&other.digits));
        if self.negative { size.reverse() } else { size }
    }

    /// The JSON number `text`, or None if it is not one (or its exponent is too long).
    fn parse(text: &str) -> Option<Decimal> {
        let (negative, rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text),
        };
        let (mantissa, exp_text) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !all_digits(int) || !all_digits(frac) {
            return None;
        }
        let mut exp: i64 = match exp_text {
            None => 0,
            Some(e) => {
                let (minus, magnitude) = match e.as_bytes().first() {
                    Some(b'-') => (true, &e[1..]),
                    Some(b'+') => (false, &e[1..]),
                    _ => (false, e),
                };
                if magnitude.is_empty() || !all_digits(magnitude) {
                    return None;
                }
                let magnitude = magnitude.trim_start_matches('0');
                if magnitude.len() > EXP_DIGITS {
                    return None;
                }
                let m: i64 = if magnitude.is_empty() {
                    0
                } else {
                    magnitude.parse().ok()?
                };
                if minus { -m } else { m }
            }
        };
        let joined = format!("{int}{frac}");
        let leading = joined.trim_start_matches('0');
        let digits = leading.trim_end_matches('0');
        if digits.is_empty() {
            return Some(Decimal {
                negative: false,
                digits: String::new(),
                exp: 0,
            });
        }
        let frac_len = i64::try_from(frac.len()).ok()?;
        let trailing = i64::try_from(leading.len() - digits.len()).ok()?;
        exp = exp.checked_sub(frac_len)?.checked_add(trailing)?;
        Some(Decimal {
            negative,
            digits: digits.to_string(),
            exp,
        })
    }

    /// The value as an integer, if it is one within `i64::MIN..=u64::MAX`.
    fn integer(&self) -> Option<i128> {
        if self.digits.is_empty() {
            return Some(0);
        }
        let exp = usize::try_from(self.exp).ok()?;
        if self.digits.len() + exp > 20 {
            return None;
        }
        let mut v: i128 = self.digits.parse().ok()?;
        for _ in 0..exp {
            v = v.checked_mul(10)?;
        }
        if self.negative {
            v = -v;
        }
        (i128::from(i64::MIN)..=i128::from(u64::MAX))
            .contains(&v)
            .then_some(v)
    }

    /// The value written exactly: plainly when that is short (`100000000000000000001`,
    /// `0.10000000000000000001`), else in scientific notation (`1e+400`, `-1.5e-400`).
    fn exact(&self) -> String {
        let sign = if self.negative { "-" } else { "" };
        let d = &self.digits;
        let len = d.len() as i64;
        // The power of ten of the first digit.
        let first = self.exp.saturating_add(len - 1);
        if (-7..40).contains(&first) {
            if self.exp >= 0 {
                return format!("{sign}{d}{}", "0".repeat(self.exp as usize));
            }
            if first >= 0 {
                let (int, frac) = d.split_at(first as usize + 1);
                return format!("{sign}{int}.{frac}");
            }
            return format!("{sign}0.{}{d}", "0".repeat((-first - 1) as usize));
        }
        let (head, tail) = d.split_at(1);
        let dot = if tail.is_empty() { "" } else { "." };
        let esign = if first < 0 { '-' } else { '+' };
        format!("{sign}{head}{dot}{tail}e{esign}{}", first.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(text: &str) -> Number {
        serde_json::from_str(text).unwrap()
    }

    fn canon(text: &str) -> String {
        canonical(&num(text)).into_owned()
    }

    #[test]
    fn one_text_per_value_whatever_the_notation() {
        let same_values: &[&[&str]] = &[
            &["1", "1.0", "1e0", "10e-1", "0.1e1", "1.000", "1E0", "1e+0"],
            &["0", "-0", "0.0", "-0.0", "0e10", "-0e-10"],
            &["100", "1e2", "1E2", "100.00", "0.001e5"],
            &["-5", "-5.0", "-0.5e1"],
            &["4.35", "4.350", "435e-2", "0.435e1"],
            &["1e400", "10e399", "0.1e401", "1.0e400"],
            &["-1e309", "-0.1e310"],
            &[
                "100000000000000000001",
                "100000000000000000001.0",
                "1.00000000000000000001e20",
            ],
            &["100000000000000000000", "1e20", "1.0e20"],
            &["9007199254740993", "9007199254740993.0"],
            &["18446744073709551615", "1.8446744073709551615e19"],
        ];
        for values in same_values {
            let first = canon(values[0]);
            for v in *values {
                assert_eq!(canon(v), first, "{v} vs {}", values[0]);
                assert!(same(&num(v), &num(values[0])));
            }
        }
        // Every pair of groups differs.
        let firsts: Vec<String> = same_values.iter().map(|v| canon(v[0])).collect();
        for (i, a) in firsts.iter().enumerate() {
            for b in &firsts[i + 1..] {
                assert_ne!(a, b);
            }
        }
        for (a, b) in [
            ("100000000000000000001", "100000000000000000002"),
            ("0.1", "0.1000000000000000055511151231257827"),
            ("1e400", "1e401"),
            ("1e400", "-1e400"),
            ("5e-324", "4e-324"),
            ("1e-400", "0"),
        ] {
            assert_ne!(canon(a), canon(b), "{a} {b}");
            assert!(!same(&num(a), &num(b)));
        }
    }

    /// The texts the versions before exact numbers hashed and keyed by, for values they kept
    /// exactly (printed by that version from the same input).
    #[test]
    fn values_kept_exactly_before_keep_their_old_text() {
        for (text, old) in [
            ("1", "1"),
            ("-5", "-5"),
            ("-0", "0"),
            ("0.0", "0"),
            ("1.0", "1"),
            ("1.5", "1.5"),
            ("0.1", "0.1"),
            ("1e2", "100"),
            ("1e20", "1e+20"),
            ("100000000000000000000", "1e+20"),
            ("12345678901234567890", "12345678901234567890"),
            ("18446744073709551615", "18446744073709551615"),
            ("-9223372036854775808", "-9223372036854775808"),
            ("9007199254740993", "9007199254740993"),
            ("1e-7", "1e-7"),
            ("3.14159", "3.14159"),
            ("2.5e300", "2.5e+300"),
            ("123456.789", "123456.789"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("5e-324", "5e-324"),
            ("0.30000000000000004", "0.30000000000000004"),
            ("1e15", "1000000000000000"),
            ("1e21", "1e+21"),
            ("-1.5e-10", "-1.5e-10"),
            ("4.35", "4.35"),
            ("0.1e1", "1"),
            ("99.99", "99.99"),
            ("1700000000.123", "1700000000.123"),
        ] {
            assert_eq!(canon(text), old, "{text}");
        }
    }

    #[test]
    fn values_rounded_or_refused_before_are_written_exactly() {
        for (text, exact) in [
            ("100000000000000000001", "100000000000000000001"),
            ("-100000000000000000001", "-100000000000000000001"),
            ("1e400", "1e+400"),
            ("-1e309", "-1e+309"),
            ("1.5e-400", "1.5e-400"),
            ("1.23456789012345678901", "1.23456789012345678901"),
            ("0.1000000000000000055511", "0.1000000000000000055511"),
            ("-9223372036854775809", "-9223372036854775809"),
            ("18446744073709551616", "18446744073709551616"),
            ("9007199254740993.0", "9007199254740993"),
            ("1e40", "1e+40"),
            // Integers from 2^53 up written as floats were floats (`1e+16`): now integers.
            ("1e16", "10000000000000000"),
            ("9007199254740992.0", "9007199254740992"),
            ("123e37", "1.23e+39"),
            ("0.00000001234567890123456789", "1.234567890123456789e-8"),
        ] {
            assert_eq!(canon(text), exact, "{text}");
        }
        // Exponents too long to normalise: as written, still distinct.
        let long = num("1e1000000000000000000000");
        assert_eq!(canonical(&long), long.as_str());
        assert_ne!(
            canon("1e1000000000000000000000"),
            canon("1e1000000000000000000001")
        );
    }

    /// The shortcut for short decimals gives what the full way does.
    #[test]
    fn short_decimals_take_a_shortcut_to_the_same_text() {
        let mut texts = vec![
            "0.001",
            "0.00100",
            "-0.001",
            "0.999999999999999",
            "999999999999999.9",
            "99999999999999.99",
            "123.45",
            "-123.450",
            "0.1",
            "1.5",
            "4.35",
            "0.125",
            "12345678.1234567",
        ];
        let generated: Vec<String> = (1..20_000u64)
            .flat_map(|i| {
                let x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let digits = (x % 15 + 1) as usize;
                let int_len = (x >> 8) as usize % (digits + 1);
                let all = format!("{:015}", x % 1_000_000_000_000_000);
                let (int, frac) = all[15 - digits..].split_at(int_len);
                let int = int.trim_start_matches('0');
                let int = if int.is_empty() { "0" } else { int };
                let zeros = "0".repeat((x >> 20) as usize % 3);
                [format!("{int}.{zeros}{frac}"), format!("-{int}.{frac}00")]
            })
            .collect();
        texts.extend(generated.iter().map(String::as_str));
        let mut taken = 0;
        for t in texts {
            // The way every other number takes (with no float text, the exact one).
            let d = Decimal::parse(t).unwrap();
            let full = match d.integer() {
                Some(i) => i.to_string(),
                None => {
                    let short = Number::from_f64(t.parse().unwrap()).unwrap().to_string();
                    if Decimal::parse(&short).as_ref() == Some(&d) {
                        short
                    } else {
                        d.exact()
                    }
                }
            };
            assert_eq!(canonical_text(t), full, "{t}");
            taken += usize::from(short_decimal(t).is_some());
        }
        assert!(taken > 10_000, "{taken}");
        for t in [
            "1.0",
            "0.0001",
            "1234567890123456.5",
            "0.1234567890123456",
            "01.5",
            "1.5e3",
            ".5",
        ] {
            assert_eq!(short_decimal(t), None, "{t}");
        }
    }

    #[test]
    fn plain_integers_are_their_own_text() {
        for t in ["0", "7", "-7", "123456789012345678", "-123456789012345678"] {
            assert!(is_plain_integer(t), "{t}");
            assert!(matches!(canonical_text(t), Cow::Borrowed(_)));
        }
        for t in ["-0", "01", "", "-", "1.0", "1e2", "1234567890123456789"] {
            assert!(!is_plain_integer(t), "{t}");
        }
    }

    #[test]
    fn numbers_order_by_value_exactly() {
        use std::cmp::Ordering::*;
        let n = |t: &str| serde_json::from_str::<Number>(t).unwrap();
        for (a, b, o) in [
            ("10", "9.99", Greater),
            ("1e2", "100", Equal),
            ("-0", "0", Equal),
            ("-1", "0", Less),
            ("-10", "-9", Less),
            ("0.001", "0.01", Less),
            ("100000000000000000001", "100000000000000000002", Less),
            ("1.5e3", "1499.999", Greater),
            ("2", "10", Less),
        ] {
            assert_eq!(compare(&n(a), &n(b)), Some(o), "{a} vs {b}");
            assert_eq!(compare(&n(b), &n(a)), Some(o.reverse()), "{b} vs {a}");
        }
    }
}
