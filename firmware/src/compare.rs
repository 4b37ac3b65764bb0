//! Numeric agreement with expected values, without formatting any float.

use lora_attention::Real;

/// Returns `max |actual - expected| / magnitude`.
///
/// Infinity stands for any disagreement that no tolerance can accept: different
/// lengths, or a NaN in `actual`.
pub fn relative_error<T: Real, E: Real>(actual: &[T], expected: &[E], magnitude: f64) -> f64 {
    if actual.len() != expected.len() {
        return f64::INFINITY;
    }
    let mut worst = 0.0_f64;
    for (&value, &expected) in actual.iter().zip(expected) {
        let expected = expected.to_f64().unwrap_or(f64::NAN);
        let difference = (value.to_f64().unwrap_or(f64::NAN) - expected).abs();
        if difference.is_nan() {
            return f64::INFINITY;
        }
        worst = worst.max(difference);
    }
    worst / magnitude
}

/// Returns the largest magnitude in `values`, the scale the tolerances refer to.
pub fn magnitude<T: Real>(values: &[T]) -> f64 {
    values.iter().fold(0.0_f64, |max, value| {
        max.max(value.to_f64().unwrap_or(f64::NAN).abs())
    })
}
