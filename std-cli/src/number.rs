//! Parsing of number tokens: matrix values and the header's whole numbers.

use crate::problem::HeaderField;
use crate::tokens::Token;

/// Reason a token is not a valid matrix value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueProblem {
    /// `str::parse::<f64>` rejects the token.
    NotANumber,
    /// The token is a NaN (`nan` in any case, with an optional sign).
    NaN,
    /// The token is an infinity (`inf` or `infinity` in any case, with an optional sign).
    Infinity,
    /// The token looks finite but its magnitude exceeds `f64::MAX`, such as `1e999`.
    OutOfRange,
    /// The token is longer than [`MAX_TOKEN_BYTES`](crate::MAX_TOKEN_BYTES).
    TooLong,
}

/// Reason a token is not a valid header value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderProblem {
    /// The token is not a valid matrix value either.
    Value(ValueProblem),
    /// The token is a finite number with a fractional part.
    NotWhole,
    /// The value is below [`HeaderField::minimum`].
    BelowMinimum,
    /// The value does not fit in `u64`.
    TooLargeForU64,
    /// The value fits in `u64` but not in `usize` on this platform.
    TooLargeForUsize,
}

/// Parses a matrix value as `str::parse::<f64>` does, rejecting NaN, infinities and
/// values that overflow to infinity.
///
/// # Errors
///
/// The [`ValueProblem`] of the token.
pub fn parse_value(token: &Token<'_>) -> Result<f64, ValueProblem> {
    if token.is_cut {
        return Err(ValueProblem::TooLong);
    }
    if let Some(value) = parse_short_decimal(token.text.as_bytes()) {
        return Ok(value);
    }
    let value: f64 = token.text.parse().map_err(|_| ValueProblem::NotANumber)?;
    if value.is_finite() {
        Ok(value)
    } else if value.is_nan() {
        Err(ValueProblem::NaN)
    } else if is_infinity_literal(token.text) {
        Err(ValueProblem::Infinity)
    } else {
        Err(ValueProblem::OutOfRange)
    }
}

/// Exact powers of ten: every one up to `10^22` is a float64 without rounding.
const POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Parses the common short decimals (`-0.123456`, `12`, `3.5e-2`) with integer
/// arithmetic, or returns `None` to leave the token to `str::parse::<f64>`.
///
/// It accepts a sign, at most 19 digits with an optional point, and an optional
/// exponent of at most 3 digits, when the digits form an integer `m <= 2^53` and the
/// combined power of ten `t` is within `[-22, 22]`. Then `m` and `10^|t|` are both
/// exact float64 values, so the one division or multiplication `m / 10^-t` or
/// `m * 10^t` rounds correctly and gives the same bits as `str::parse` (Clinger's
/// fast path). Anything else, such as `nan` or a 30-digit value, returns `None`.
pub(crate) fn parse_short_decimal(text: &[u8]) -> Option<f64> {
    match scan_short_decimal(text) {
        Some((value, end)) if end == text.len() => Some(value),
        _ => None,
    }
}

/// Parses a short decimal at the start of `bytes`, up to the first ASCII
/// whitespace byte or the end, and returns it with the index where it ends.
///
/// The rules are those of [`parse_short_decimal`]; any other byte in the token,
/// including a non-ASCII one, returns `None`. Scanning and parsing in one pass is
/// what makes the tokenizer's fast path fast.
#[inline(always)]
pub(crate) fn scan_short_decimal(bytes: &[u8]) -> Option<(f64, usize)> {
    // The word scanner gives up on a long digit run near the end of the text as
    // well as on what is no short decimal. The byte scanner then decides.
    scan_short_decimal_words(bytes).or_else(|| scan_short_decimal_bytes(bytes))
}

/// Scans like [`scan_short_decimal`] one byte at a time, for what the word scanner
/// leaves.
#[cold]
#[inline(never)]
fn scan_short_decimal_bytes(bytes: &[u8]) -> Option<(f64, usize)> {
    let (negative, mut index) = match bytes.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };

    // Step 1: digits and an optional point, into an integer mantissa.
    let mut mantissa: u64 = 0;
    let mut digits = 0_u32;
    let mut fraction_digits = 0_i32;
    let mut seen_point = false;
    let mut exponent = 0_i32;
    while let Some(&byte) = bytes.get(index) {
        let digit = byte.wrapping_sub(b'0');
        if digit < 10 {
            digits += 1;
            if digits > 19 {
                return None;
            }
            mantissa = mantissa * 10 + u64::from(digit);
            fraction_digits += i32::from(seen_point);
        } else if byte == b'.' && !seen_point {
            seen_point = true;
        } else if byte == b'e' || byte == b'E' {
            // Step 2: an exponent with an optional sign and 1 to 3 digits.
            let (value, end) = scan_exponent(bytes, index + 1)?;
            exponent = value;
            index = end;
            break;
        } else if matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
            break;
        } else {
            return None;
        }
        index += 1;
    }
    if digits == 0 || mantissa > 1 << 53 {
        return None;
    }

    // Step 3: one correctly rounded operation on exact operands.
    let value = exact_decimal(mantissa, exponent - fraction_digits, negative)?;
    Some((value, index))
}

/// Scans like [`scan_short_decimal`], reading the digits 8 bytes at a time.
///
/// The sign, the integer digits and the fraction digits each take a few branches
/// that do not depend on the token's length, where a loop per byte mispredicts once
/// per token. A value it returns equals the one [`scan_short_decimal_bytes`] returns
/// (tested). It returns `None` more often, near the end of the text. It is inlined
/// into the tokenizer's loop, which keeps the value and the token's length in
/// registers.
#[inline(always)]
fn scan_short_decimal_words(bytes: &[u8]) -> Option<(f64, usize)> {
    let first = *bytes.first()?;
    let negative = first == b'-';
    let mut index = usize::from(negative || first == b'+');

    // Step 1: integer digits, then a point and fraction digits, 8 at a time.
    let (mut mantissa, integer_digits, mut index_after) = digit_run(bytes, index)?;
    index = index_after;
    let mut digits = integer_digits;
    let mut fraction_digits = 0;
    if bytes.get(index) == Some(&b'.') {
        let (fraction, count, after) = digit_run(bytes, index + 1)?;
        if digits + count > 19 {
            return None;
        }
        mantissa = mantissa
            .checked_mul(POWERS_OF_TEN_U64.get(count as usize).copied()?)?
            .checked_add(fraction)?;
        digits += count;
        fraction_digits = count as i32;
        index_after = after;
        index = after;
    }
    if digits == 0 || digits > 19 || mantissa > 1 << 53 {
        return None;
    }

    // Step 2: the end of the token, or an exponent.
    let mut exponent = 0_i32;
    match bytes.get(index_after) {
        Some(b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') | None => {}
        Some(b'e' | b'E') => {
            let (value, end) = scan_exponent(bytes, index + 1)?;
            exponent = value;
            index = end;
        }
        Some(_) => return None,
    }

    // Step 3: one correctly rounded operation on exact operands.
    let value = exact_decimal(mantissa, exponent - fraction_digits, negative)?;
    Some((value, index))
}

/// Returns `mantissa * 10^power` with the sign, rounded once.
///
/// The caller keeps `mantissa` at or below `2^53` so that it converts exactly.
/// Returns `None` when `10^|power|` is not exact in `f64` (beyond `10^22`).
#[inline(always)]
fn exact_decimal(mantissa: u64, power: i32, negative: bool) -> Option<f64> {
    let scale = *POWERS_OF_TEN.get(power.unsigned_abs() as usize)?;
    let magnitude = if power < 0 {
        mantissa as f64 / scale
    } else {
        mantissa as f64 * scale
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// Powers of ten as integers, for joining digit runs.
const POWERS_OF_TEN_U64: [u64; 20] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    100_000_000_000,
    1_000_000_000_000,
    10_000_000_000_000,
    100_000_000_000_000,
    1_000_000_000_000_000,
    10_000_000_000_000_000,
    100_000_000_000_000_000,
    1_000_000_000_000_000_000,
    10_000_000_000_000_000_000,
];

/// Reads the run of ASCII digits at `bytes[start..]`, at most 16 of them, and returns
/// its value, its length and the index after it. Longer runs return `None`, to go
/// the slow way.
#[inline(always)]
fn digit_run(bytes: &[u8], start: usize) -> Option<(u64, u32, usize)> {
    let (first, _) = bytes.get(start..)?.split_first_chunk::<8>()?;
    let word = u64::from_le_bytes(*first);
    let count = leading_digits(word);
    if count < 8 {
        return Some((eight_digits(word, count), count, start + count as usize));
    }
    let (second, _) = bytes.get(start + 8..)?.split_first_chunk::<8>()?;
    let word = u64::from_le_bytes(*second);
    let more = leading_digits(word);
    if more == 8 {
        return None;
    }
    let high = eight_digits(u64::from_le_bytes(*first), 8);
    let low = eight_digits(word, more);
    let value = high * POWERS_OF_TEN_U64.get(more as usize).copied()? + low;
    Some((value, 8 + more, start + 8 + more as usize))
}

/// Returns how many of the bytes of `word` (first byte lowest) are ASCII digits
/// before the first that is not.
#[inline(always)]
fn leading_digits(word: u64) -> u32 {
    // A byte is a digit when subtracting '0' leaves no borrow and adding 0x46 (to
    // push '9' + 1 past 0x7f) sets no top bit. Borrows and carries move only to
    // later bytes, which never change the first non-digit.
    let below = word.wrapping_sub(0x3030_3030_3030_3030);
    let above = word.wrapping_add(0x4646_4646_4646_4646);
    let non_digits = (below | above) & 0x8080_8080_8080_8080;
    non_digits.trailing_zeros() / 8
}

/// Returns the value of the first `count` bytes of `word`, which are ASCII digits,
/// the first the most significant.
#[inline(always)]
fn eight_digits(word: u64, count: u32) -> u64 {
    if count == 0 {
        return 0;
    }
    // Keep the digits' values, shifted up so the missing ones are leading zeros.
    let values = word.wrapping_sub(0x3030_3030_3030_3030);
    let values = values << (8 * (8 - count));
    // Combine neighbours: pairs, then quadruples, then the whole.
    let pairs = (values.wrapping_mul(10).wrapping_add(values >> 8)) & 0x00ff_00ff_00ff_00ff;
    let quads = (pairs.wrapping_mul(100).wrapping_add(pairs >> 16)) & 0x0000_ffff_0000_ffff;
    (quads.wrapping_mul(10_000).wrapping_add(quads >> 32)) & 0xffff_ffff
}

/// Parses an exponent starting at `bytes[start]` up to ASCII whitespace or the end,
/// and returns it with the index where it ends.
fn scan_exponent(bytes: &[u8], start: usize) -> Option<(i32, usize)> {
    let (negative, mut index) = match bytes.get(start) {
        Some(b'-') => (true, start + 1),
        Some(b'+') => (false, start + 1),
        _ => (false, start),
    };
    let first_digit = index;
    let mut exponent = 0_i32;
    while let Some(&byte) = bytes.get(index) {
        let digit = byte.wrapping_sub(b'0');
        if digit < 10 {
            if index - first_digit >= 3 {
                return None;
            }
            exponent = exponent * 10 + i32::from(digit);
        } else if matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
            break;
        } else {
            return None;
        }
        index += 1;
    }
    if index == first_digit {
        return None;
    }
    Some((if negative { -exponent } else { exponent }, index))
}

/// Returns whether `text` is one of the infinity spellings `str::parse::<f64>` accepts.
fn is_infinity_literal(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity")
}

/// Parses a header value: a finite whole number, read as `str::parse::<f64>` reads
/// numbers (`2`, `2.0`, `2e0` and `+2` are all 2), at least the field's minimum and
/// small enough for `usize`. `-0` is 0.
///
/// # Errors
///
/// The [`HeaderProblem`] of the token.
pub fn parse_header_value(token: &Token<'_>, field: HeaderField) -> Result<usize, HeaderProblem> {
    let value = parse_value(token).map_err(HeaderProblem::Value)?;
    if value.fract() != 0.0 {
        return Err(HeaderProblem::NotWhole);
    }

    // The comparisons are exact: every whole f64 below 2^64 converts to u64 exactly.
    const TWO_TO_THE_64: f64 = 18_446_744_073_709_551_616.0;
    if value < field.minimum() as f64 {
        return Err(HeaderProblem::BelowMinimum);
    }
    if value >= TWO_TO_THE_64 {
        return Err(HeaderProblem::TooLargeForU64);
    }
    let whole = value as u64;
    usize::try_from(whole).map_err(|_| HeaderProblem::TooLargeForUsize)
}

#[cfg(test)]
mod tests {
    use super::parse_short_decimal;

    /// The fast path must give exactly what `str::parse` gives, or step aside.
    fn assert_same(text: &str) {
        let expected: Result<f64, _> = text.parse::<f64>();
        if let Some(value) = parse_short_decimal(text.as_bytes()) {
            let expected =
                expected.unwrap_or_else(|_| panic!("{text:?} accepted by the fast path only"));
            assert_eq!(value.to_bits(), expected.to_bits(), "{text:?}");
        }
    }

    #[test]
    fn short_decimals_match_std_parse() {
        let cases = [
            "0",
            "-0",
            "+0",
            "-0.0",
            "1",
            "-1",
            "0.5",
            "-0.123456",
            "123456.789",
            ".5",
            "-.5",
            "3.",
            "+.25",
            "1e5",
            "1E-5",
            "2.5e+3",
            "-7.25e-10",
            "9007199254740992",
            "9007199254740993",
            "1234567890123456789",
            "12345678901234567890",
            "0.1",
            "0.3",
            "1e22",
            "1e23",
            "1e-22",
            "4.9e-324",
            "1.7976931348623157e308",
            ".",
            "-",
            "+",
            "e5",
            "1e",
            "1e+",
            "1.2.3",
            "1_0",
            "0x10",
            "nan",
            "inf",
            "1e1000",
            "00000000000000000001",
            "0.0000000000000000001",
        ];
        for text in cases {
            assert_same(text);
        }
    }

    #[test]
    fn random_decimals_match_std_parse() {
        let mut state = 0x1234_5678_9abc_def1_u64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let digits = (state % 18 + 1) as usize;
            let point = (state >> 8) as usize % (digits + 2);
            let mut text = String::new();
            if state & (1 << 20) != 0 {
                text.push('-');
            }
            let mut value = state >> 24;
            for index in 0..digits {
                if index == point {
                    text.push('.');
                }
                text.push(char::from(b'0' + (value % 10) as u8));
                value /= 10;
            }
            if state & (1 << 21) != 0 {
                text.push_str(&format!("e{}", (state >> 40) as i64 % 30 - 15));
            }
            assert_same(&text);
        }
    }

    #[test]
    fn word_scanner_matches_byte_scanner() {
        use super::{scan_short_decimal_bytes, scan_short_decimal_words};
        let mut state = 0x0bad_5eed_u64;
        let alphabet = b"0123456789012345678901234567890123456789.-+eE ab\t\n";
        for _ in 0..300_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 30) as usize;
            let mut text: Vec<u8> = (0..len)
                .map(|i| alphabet[((state >> (i % 50)) as usize + i * 7) % alphabet.len()])
                .collect();
            if state & 1 == 0 {
                // Typical tokens: sign, digits, point, digits, then a separator.
                let digits = format!("{}", state >> 20);
                let point = (state >> 8) as usize % (digits.len() + 1);
                text = format!(
                    "{}{}.{} 1.5 ",
                    if state & 2 == 0 { "-" } else { "" },
                    &digits[..point],
                    &digits[point..]
                )
                .into_bytes();
            }
            if state & 4 == 0 {
                text.resize(text.len().max(24), b' ');
            }
            let words = scan_short_decimal_words(&text);
            if words.is_some() {
                assert_eq!(
                    words,
                    scan_short_decimal_bytes(&text),
                    "{:?}",
                    String::from_utf8_lossy(&text)
                );
            }
        }
    }

    #[test]
    fn fast_path_takes_typical_tokens() {
        assert_eq!(parse_short_decimal(b"-0.123456"), Some(-0.123456));
        assert_eq!(parse_short_decimal(b"5e-3"), Some(0.005));
        assert_eq!(parse_short_decimal(b"nan"), None);
    }
}
