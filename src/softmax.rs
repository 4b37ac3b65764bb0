//! The numerically stable softmax of one row.

use crate::error::{Error, Operand};
use crate::real::Real;

/// Replaces a row of scores by its softmax, `exp(s_j - max) / sum_k exp(s_k - max)`.
///
/// Subtracting the row maximum first keeps every exponent at or below zero, so no
/// `exp` overflows and the sum is at least 1 (the maximum contributes `exp(0)`): there
/// is no 0/0, however large or negative the scores. Negative infinity is a masked
/// score and gets probability 0. A weight `exp(s - max)` that would be subnormal
/// (below `T::MIN_POSITIVE`) is 0 instead, which moves no probability by more than
/// `T::MIN_POSITIVE`. An empty row is left empty.
///
/// # Errors
///
/// - [`Error::NonFiniteInput`] naming [`Operand::Scores`] when a score is NaN or
///   positive infinity.
/// - [`Error::AllScoresMasked`] when every score is negative infinity.
///
/// The row is unchanged after an error.
///
/// # Example
///
/// ```
/// use lora_attention::softmax_in_place;
///
/// let mut row = [1000.0_f64, 1000.0, f64::NEG_INFINITY];
/// softmax_in_place(&mut row)?;
/// assert_eq!(row, [0.5, 0.5, 0.0]);
/// # Ok::<(), lora_attention::Error>(())
/// ```
pub fn softmax_in_place<T: Real>(row: &mut [T]) -> Result<(), Error> {
    if let Some(index) = row
        .iter()
        .position(|&score| score.is_nan() || score == T::infinity())
    {
        return Err(Error::NonFiniteInput {
            operand: Operand::Scores,
            index,
        });
    }
    let max = row
        .iter()
        .fold(T::neg_infinity(), |max, &score| max.max(score));
    if max == T::neg_infinity() {
        return if row.is_empty() {
            Ok(())
        } else {
            Err(Error::AllScoresMasked)
        };
    }
    softmax_finite_max(row, max);
    Ok(())
}

/// Returns the exponent below which `exp` is subnormal for `T`: `ln(MIN_POSITIVE)`,
/// about -87.3 for `f32` and -708.4 for `f64`.
///
/// `MIN_POSITIVE` is a power of two, so its base-2 logarithm comes from its bits.
/// No `ln` is evaluated, which keeps this cheap enough to call per row.
pub(crate) fn underflow_cutoff<T: Real>() -> T {
    let (mantissa, exponent, _) = T::min_positive_value().integer_decode();
    let log2 = i32::from(exponent) + mantissa.trailing_zeros() as i32;
    let ln_2 = T::from(core::f64::consts::LN_2).unwrap_or_else(T::zero);
    T::from(log2).unwrap_or_else(T::neg_infinity) * ln_2
}

/// Returns `exp(exponent)` for `exponent <= 0`, or zero where that would be
/// subnormal (below `cutoff`, from [`underflow_cutoff`]).
///
/// A subnormal weight changes no sum it enters by more than `T::MIN_POSITIVE`, far
/// below the rounding of any normal result, while multiplying by it can cost a
/// hundred cycles on x86 cores and a slow path in `exp`.
#[inline]
pub(crate) fn exp_or_zero<T: Real>(exponent: T, cutoff: T) -> T {
    if exponent < cutoff {
        T::zero()
    } else {
        exponent.exp()
    }
}

/// Replaces `row` by its softmax, given its finite maximum.
///
/// Scores may be negative infinity (they become 0) but not NaN or positive infinity.
pub(crate) fn softmax_finite_max<T: Real>(row: &mut [T], max: T) {
    let cutoff = underflow_cutoff::<T>();
    let mut sum = T::zero();
    for score in row.iter_mut() {
        *score = exp_or_zero(*score - max, cutoff);
        sum = sum + *score;
    }
    for probability in row.iter_mut() {
        *probability = *probability / sum;
    }
}

#[cfg(test)]
mod tests {
    use super::underflow_cutoff;

    #[test]
    fn underflow_cutoff_is_log_of_min_positive() {
        // ln(2^-126) and ln(2^-1022), from the exponents of the smallest normals.
        assert!((underflow_cutoff::<f32>() - (-87.336_54_f32)).abs() < 1e-4);
        assert!((underflow_cutoff::<f64>() - (-708.396_418_532_264_1_f64)).abs() < 1e-9);
        assert!(f64::from(underflow_cutoff::<f32>()).exp() >= f64::from(f32::MIN_POSITIVE) * 0.999);
    }
}
