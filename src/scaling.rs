//! Adapter scales derived from the rank.

use crate::error::Error;
use crate::real::Real;

/// The scaling of the adapter term `s * B A`.
///
/// The first three kinds derive `s` from the rank, so the scale cannot drift from the
/// rank it was meant for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scaling<T> {
    /// `s = 1`: the adapted weight is `W + B A`.
    One,
    /// `s = alpha / rank`, the usual LoRA convention.
    AlphaOverRank {
        /// The numerator `alpha`.
        alpha: T,
    },
    /// `s = alpha / sqrt(rank)`, rank-stabilised LoRA (rsLoRA).
    AlphaOverSqrtRank {
        /// The numerator `alpha`.
        alpha: T,
    },
    /// A given `s`, for adapters whose scale was computed elsewhere.
    Factor(T),
}

impl<T: Real> Scaling<T> {
    /// Computes the scale `s` for an adapter of rank `rank`.
    ///
    /// Rank 0 has no adapter term, so its scale is 0 whatever the kind.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidScale`] when `alpha` or the factor is NaN or infinite, or when
    /// the scale overflows.
    ///
    /// # Example
    ///
    /// ```
    /// use lora_attention::Scaling;
    ///
    /// assert_eq!(Scaling::AlphaOverRank { alpha: 16.0_f64 }.scale(8), Ok(2.0));
    /// assert_eq!(Scaling::AlphaOverSqrtRank { alpha: 8.0_f64 }.scale(4), Ok(4.0));
    /// assert_eq!(Scaling::<f64>::One.scale(0), Ok(0.0));
    /// ```
    pub fn scale(self, rank: usize) -> Result<T, Error> {
        if rank == 0 {
            return Ok(T::zero());
        }
        let rank = T::from(rank).ok_or(Error::InvalidScale)?;
        let scale = match self {
            Scaling::One => T::one(),
            Scaling::AlphaOverRank { alpha } => alpha / rank,
            Scaling::AlphaOverSqrtRank { alpha } => alpha / rank.sqrt(),
            Scaling::Factor(factor) => factor,
        };
        if scale.is_finite() {
            Ok(scale)
        } else {
            Err(Error::InvalidScale)
        }
    }
}
