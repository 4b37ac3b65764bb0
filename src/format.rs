//! The judge task's output text, so that firmware prints what the program prints.

use core::fmt;

use crate::real::Real;

/// Values below this magnitude take the integer fast path: `2^50 * 10^4 < 2^64`.
const FAST_PATH_LIMIT: f64 = 1_125_899_906_842_624.0;

/// A value formatted with exactly four decimals, as the judge task prints it.
///
/// The decimal is the exact binary value rounded half to even, as Rust's `{:.4}` and
/// Python's `f"{v:.4f}"` round it (`0.03125` prints `0.0312`), except that a value
/// that rounds to zero prints without a sign (`0.0000`, never `-0.0000`).
///
/// # Special cases
///
/// NaN and the infinities print as `{:.4}` prints them (`NaN`, `inf`, `-inf`).
///
/// # Example
///
/// ```
/// use lora_attention::Fixed4;
///
/// assert_eq!(Fixed4(0.03125).to_string(), "0.0312");
/// assert_eq!(Fixed4(-0.00004).to_string(), "0.0000");
/// assert_eq!(Fixed4(-2.5).to_string(), "-2.5000");
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fixed4(pub f64);

impl fmt::Display for Fixed4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_fixed4(f, self.0)
    }
}

/// Writes `value` with four decimals, exactly as [`Fixed4`] displays it.
///
/// Values below `2^50` in magnitude are rounded with integer arithmetic, which is
/// exact and avoids core's general float formatting; larger ones use `{:.4}`.
///
/// # Errors
///
/// Only the errors of `out`.
pub fn write_fixed4<W: fmt::Write + ?Sized>(out: &mut W, value: f64) -> fmt::Result {
    let magnitude = value.abs();
    if magnitude.is_nan() || magnitude >= FAST_PATH_LIMIT {
        // Large or non-finite: core's exact formatting. A value this large never
        // rounds to zero, so the sign is always right.
        return write!(out, "{value:.4}");
    }

    let ten_thousandths = round_to_ten_thousandths(magnitude);
    let mut text = [0_u8; 24];
    let mut start = text.len();
    let mut push = |byte: u8| {
        if let Some(slot) = start.checked_sub(1).and_then(|index| text.get_mut(index)) {
            *slot = byte;
            start -= 1;
        }
    };

    // Step 1: the four decimals, then the point, then the integer digits, right to left.
    let mut rest = ten_thousandths;
    for _ in 0..4 {
        push(b'0' + (rest % 10) as u8);
        rest /= 10;
    }
    push(b'.');
    loop {
        push(b'0' + (rest % 10) as u8);
        rest /= 10;
        if rest == 0 {
            break;
        }
    }

    // Step 2: a sign only for a value that does not round to zero.
    if value.is_sign_negative() && ten_thousandths != 0 {
        push(b'-');
    }
    let digits = text.get(start..).unwrap_or_default();
    out.write_str(core::str::from_utf8(digits).map_err(|_| fmt::Error)?)
}

/// Returns `magnitude * 10^4` rounded half to even, for `0 <= magnitude < 2^50`.
///
/// `magnitude` is `m * 2^e` exactly. The product `m * 10^4` fits in 67 bits, so a
/// `u128` shift by `-e` gives the quotient and the remainder decides the rounding.
fn round_to_ten_thousandths(magnitude: f64) -> u64 {
    let bits = magnitude.to_bits();
    let exponent_bits = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1_u64 << 52) - 1);
    let (mantissa, exponent) = if exponent_bits == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1_u64 << 52), exponent_bits - 1075)
    };
    let scaled = u128::from(mantissa) * 10_000;

    if exponent >= 0 {
        // An integer below 2^50, so the shifted product stays below 2^64.
        return (scaled << exponent) as u64;
    }
    let shift = exponent.unsigned_abs();
    if shift >= 128 {
        // Below 2^-74: far less than half of 10^-4.
        return 0;
    }
    let quotient = scaled >> shift;
    let remainder = scaled & ((1_u128 << shift) - 1);
    let half = 1_u128 << (shift - 1);
    let round_up = remainder > half || (remainder == half && quotient & 1 == 1);
    (quotient + u128::from(round_up)) as u64
}

/// Writes a judge line: every value with four decimals ([`Fixed4`]), separated by
/// one space, then a newline.
///
/// # Errors
///
/// Only the errors of `out`.
///
/// # Example
///
/// ```
/// use lora_attention::write_judge_line;
///
/// let mut line = String::new();
/// write_judge_line(&mut line, &[0.5_f32, -0.00001, 2.0])?;
/// assert_eq!(line, "0.5000 0.0000 2.0000\n");
/// # Ok::<(), core::fmt::Error>(())
/// ```
pub fn write_judge_line<T: Real, W: fmt::Write + ?Sized>(out: &mut W, values: &[T]) -> fmt::Result {
    for (index, value) in values.iter().enumerate() {
        if index > 0 {
            out.write_char(' ')?;
        }
        write_fixed4(out, value.to_f64().unwrap_or(f64::NAN))?;
    }
    out.write_char('\n')
}
