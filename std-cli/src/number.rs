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
