//! The steps of the straightforward path, each usable on its own.
//!
//! [`attention`](crate::attention) runs them in this order: merge the adapter
//! ([`merge_adapter`](crate::merge_adapter)), [`project`] three times, then for each
//! row [`score`], [`softmax_in_place`](crate::softmax_in_place) and [`weighted_sum`].

use crate::adapter::{check_finite, check_len, check_result};
use crate::attention::{attend_in_blocks, poison_on_error};
use crate::error::{Error, Operand};
use crate::linalg::{matmul, matmul_transposed};
use crate::real::Real;
use crate::shape::Shape;

/// Returns `1 / sqrt(dim)`, the factor applied to every score.
pub(crate) fn inverse_sqrt<T: Real>(dim: usize) -> Result<T, Error> {
    let dim = T::from(dim).ok_or(Error::SizeOverflow)?;
    Ok(T::one() / dim.sqrt())
}

/// Checks `shape` and returns `(seq_len * dim, dim * dim)`.
fn shape_lengths(shape: Shape) -> Result<(usize, usize), Error> {
    shape.validate()?;
    let input_len = shape.input_len().ok_or(Error::SizeOverflow)?;
    let weight_len = shape.weight_len().ok_or(Error::SizeOverflow)?;
    Ok((input_len, weight_len))
}

/// Computes a projection `out = x W^T`: row `i` of `out` is `W` times row `i` of `x`.
///
/// `x` and `out` are `seq_len x dim`, `W` is `dim x dim`, all row-major. The rank of
/// `shape` is not used.
///
/// # Errors
///
/// - [`Error::ZeroDimension`], [`Error::SizeOverflow`] or [`Error::LengthMismatch`]
///   when the slices do not match `shape`, and [`Error::NonFiniteInput`] when `x` or
///   `W` contains NaN or an infinity. Nothing is written then.
/// - [`Error::NonFiniteResult`] naming [`Operand::Output`] when a product overflows;
///   `out` then contains the products, the non-finite ones included.
///
/// # Example
///
/// ```
/// use lora_attention::{project, Shape};
///
/// let shape = Shape::new(1, 2, 0);
/// let mut out = [0.0; 2];
/// project(shape, &[1.0, 2.0], &[1.0, 1.0, 0.0, -1.0], &mut out)?;
/// assert_eq!(out, [3.0, -2.0]);
/// # Ok::<(), lora_attention::Error>(())
/// ```
pub fn project<T: Real>(shape: Shape, x: &[T], weight: &[T], out: &mut [T]) -> Result<(), Error> {
    let (input_len, weight_len) = shape_lengths(shape)?;
    check_len(Operand::Input, input_len, x.len())?;
    check_len(Operand::ProjectionWeight, weight_len, weight.len())?;
    check_len(Operand::Output, input_len, out.len())?;
    check_finite(Operand::Input, x)?;
    check_finite(Operand::ProjectionWeight, weight)?;

    matmul_transposed(x, weight, shape.dim, shape.dim, out);
    check_result(Operand::Output, out)
}

/// Computes scaled scores for a block of query rows: `out = (q k^T) * (1 / sqrt(dim))`.
///
/// `q` contains whole rows of `dim` values, `k` is `seq_len x dim`, `out` one row of
/// `seq_len` scores per row of `q`. Lengths are the caller's to check.
pub(crate) fn score_rows<T: Real>(
    q: &[T],
    k: &[T],
    dim: usize,
    seq_len: usize,
    inverse_sqrt_dim: T,
    out: &mut [T],
) {
    matmul_transposed(q, k, dim, seq_len, out);
    for score in out.iter_mut() {
        *score = *score * inverse_sqrt_dim;
    }
}

/// Computes the scaled score matrix `S = (Q K^T) * (1 / sqrt(dim))`.
///
/// `Q` and `K` are `seq_len x dim`, `S` is `seq_len x seq_len`, all row-major: `S[i][j]`
/// is how strongly query `i` attends to key `j` before the softmax. The product is
/// formed first and then multiplied by `1 / sqrt(dim)`, in that order.
///
/// # Errors
///
/// - [`Error::ZeroDimension`], [`Error::SizeOverflow`] or [`Error::LengthMismatch`]
///   when the slices do not match `shape`, and [`Error::NonFiniteInput`] when `Q` or
///   `K` contains NaN or an infinity. Nothing is written then.
/// - [`Error::NonFiniteResult`] naming [`Operand::Scores`] when a score overflows;
///   `S` then contains every score, the non-finite ones included.
///
/// # Example
///
/// ```
/// use lora_attention::{score, Shape};
///
/// let shape = Shape::new(2, 4, 0);
/// let q = [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 2.0];
/// let k = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
/// let mut s = [0.0; 4];
/// score(shape, &q, &k, &mut s)?;
/// assert_eq!(s, [0.5, 0.5, 0.0, 1.0]);
/// # Ok::<(), lora_attention::Error>(())
/// ```
pub fn score<T: Real>(shape: Shape, q: &[T], k: &[T], scores: &mut [T]) -> Result<(), Error> {
    let (input_len, _) = shape_lengths(shape)?;
    let scores_len = shape.scores_len().ok_or(Error::SizeOverflow)?;
    check_len(Operand::Query, input_len, q.len())?;
    check_len(Operand::Key, input_len, k.len())?;
    check_len(Operand::Scores, scores_len, scores.len())?;
    check_finite(Operand::Query, q)?;
    check_finite(Operand::Key, k)?;

    let inverse_sqrt_dim = inverse_sqrt(shape.dim)?;
    score_rows(q, k, shape.dim, shape.seq_len, inverse_sqrt_dim, scores);
    check_result(Operand::Scores, scores)
}

/// Computes the attention output `O = P V`: row `i` of `O` is the average of the rows
/// of `V` weighted by row `i` of `P`.
///
/// `P` is `seq_len x seq_len` (normally softmax probabilities, though any finite
/// weights are accepted), `V` and `O` are `seq_len x dim`, all row-major.
///
/// # Errors
///
/// - [`Error::ZeroDimension`], [`Error::SizeOverflow`] or [`Error::LengthMismatch`]
///   when the slices do not match `shape`, and [`Error::NonFiniteInput`] when `P` or
///   `V` contains NaN or an infinity. Nothing is written then.
/// - [`Error::NonFiniteResult`] naming [`Operand::Output`] when a sum overflows; `O`
///   then contains every sum, the non-finite ones included.
///
/// # Example
///
/// ```
/// use lora_attention::{weighted_sum, Shape};
///
/// let shape = Shape::new(2, 1, 0);
/// let p = [0.25, 0.75, 1.0, 0.0];
/// let v = [4.0, 8.0];
/// let mut o = [0.0; 2];
/// weighted_sum(shape, &p, &v, &mut o)?;
/// assert_eq!(o, [7.0, 4.0]);
/// # Ok::<(), lora_attention::Error>(())
/// ```
pub fn weighted_sum<T: Real>(
    shape: Shape,
    probabilities: &[T],
    v: &[T],
    out: &mut [T],
) -> Result<(), Error> {
    let (input_len, _) = shape_lengths(shape)?;
    let scores_len = shape.scores_len().ok_or(Error::SizeOverflow)?;
    check_len(Operand::Probabilities, scores_len, probabilities.len())?;
    check_len(Operand::Value, input_len, v.len())?;
    check_len(Operand::Output, input_len, out.len())?;
    check_finite(Operand::Probabilities, probabilities)?;
    check_finite(Operand::Value, v)?;

    matmul(probabilities, v, shape.seq_len, shape.dim, out);
    check_result(Operand::Output, out)
}

/// Computes `out = softmax(q K^T / sqrt(dim)) V` for any number of query rows against
/// all `seq_len` keys and values: the second half of [`attention`](crate::attention).
///
/// Callers that split the work, for example across threads, project their share of
/// the rows with [`project`] (a [`Shape`] with their row count), then call this
/// with their rows of `q` and the whole `K` and `V`. Each score, probability and
/// output element is computed exactly as [`attention`](crate::attention) computes
/// it, so the split does not change the result.
///
/// `q` and `out` hold `m` rows of `dim` values for any `m >= 1`; `K` and `V` are
/// `seq_len x dim`. `scores` is scratch for whole rows of `seq_len` scores: a
/// `block_rows * seq_len` slice computes `block_rows` query rows at a time (a longer
/// slice is fine, and the excess is not touched).
///
/// # Errors
///
/// - [`Error::ZeroDimension`], [`Error::SizeOverflow`] or [`Error::LengthMismatch`]
///   when the slices do not match `shape`: `q` or `out` is not a whole number of rows,
///   or they contain different numbers of rows. Nothing is written then.
/// - [`Error::ScratchTooSmall`] when `scores` contains less than one row, and
///   [`Error::NonFiniteInput`] for NaN or infinity in `q`, `K` or `V`. Nothing is
///   written then either.
/// - [`Error::NonFiniteResult`] naming [`Operand::Scores`] (indexed as
///   `row * seq_len + key` over this call's rows) or [`Operand::Output`]. `out` is
///   then filled with NaN.
///
/// # Example
///
/// ```
/// use lora_attention::{attend, Shape};
///
/// // Two keys; one query that scores them 0 and sqrt(2) * ln(3) / sqrt(2) = ln(3).
/// let shape = Shape::new(2, 2, 0);
/// let k = [0.0, 0.0, 1.0, 1.0];
/// let v = [4.0, 0.0, 0.0, 8.0];
/// let q = [3.0_f64.ln() / 2.0_f64.sqrt(); 2];
/// let mut scores = [0.0; 2];
/// let mut out = [0.0; 2];
/// attend(shape, &q, &k, &v, &mut scores, &mut out)?;
/// // Weights 1/4 and 3/4.
/// assert!((out[0] - 1.0).abs() < 1e-12);
/// assert!((out[1] - 6.0).abs() < 1e-12);
/// # Ok::<(), lora_attention::Error>(())
/// ```
pub fn attend<T: Real>(
    shape: Shape,
    q: &[T],
    k: &[T],
    v: &[T],
    scores: &mut [T],
    out: &mut [T],
) -> Result<(), Error> {
    let (input_len, _) = shape_lengths(shape)?;
    let Shape { seq_len, dim, .. } = shape;
    let rows = q.len() / dim;
    check_len(Operand::Query, rows.max(1) * dim, q.len())?;
    check_len(Operand::Output, q.len(), out.len())?;
    check_len(Operand::Key, input_len, k.len())?;
    check_len(Operand::Value, input_len, v.len())?;
    if scores.len() < seq_len {
        return Err(Error::ScratchTooSmall {
            required: seq_len,
            actual: scores.len(),
        });
    }
    check_finite(Operand::Query, q)?;
    check_finite(Operand::Key, k)?;
    check_finite(Operand::Value, v)?;

    let block_rows = (scores.len() / seq_len).min(rows).max(1);
    let result = attend_in_blocks(q, k, v, shape, block_rows, scores, out);
    poison_on_error(result, out)
}
