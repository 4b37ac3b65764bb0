//! The straightforward single-head path: merge, project, score, softmax, weighted sum.

use crate::adapter::{
    check_finite, check_len, check_result, check_result_at, merge_validated, Adapter,
};
use crate::error::{Dimension, Error, Operand, Projection};
use crate::linalg::{matmul, matmul_transposed};
use crate::real::Real;
use crate::shape::{min, Shape};
use crate::softmax::softmax_finite_max;
use crate::steps::{inverse_sqrt, score_rows};

/// The weights of single-head attention with an adapter on the query projection.
///
/// `wq`, `wk` and `wv` are `dim x dim`; the adapter's `A` is `rank x dim` and `B` is
/// `dim x rank`; all row-major. With rank 0 the adapter slices are empty
/// ([`Adapter::none`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Weights<'a, T> {
    /// The query weight `Wq`.
    pub wq: &'a [T],
    /// The key weight `Wk`.
    pub wk: &'a [T],
    /// The value weight `Wv`.
    pub wv: &'a [T],
    /// The adapter on the query projection.
    pub adapter: Adapter<'a, T>,
}

/// Checks the input, the weights and the output against `shape`, and returns the
/// adapter scale.
///
/// Every path calls this before it writes anything.
pub(crate) fn validate_inputs<T: Real>(
    shape: Shape,
    x: &[T],
    weights: &Weights<'_, T>,
    out: &[T],
) -> Result<T, Error> {
    shape.validate()?;
    let input_len = shape.input_len().ok_or(Error::SizeOverflow)?;
    let weight_len = shape.weight_len().ok_or(Error::SizeOverflow)?;

    check_len(Operand::Input, input_len, x.len())?;
    check_len(
        Operand::Weight(Projection::Query),
        weight_len,
        weights.wq.len(),
    )?;
    check_len(
        Operand::Weight(Projection::Key),
        weight_len,
        weights.wk.len(),
    )?;
    check_len(
        Operand::Weight(Projection::Value),
        weight_len,
        weights.wv.len(),
    )?;
    check_len(Operand::Output, input_len, out.len())?;

    let scale = crate::adapter::validate_adapter(
        shape.query_adapter(),
        Projection::Query,
        &weights.adapter,
    )?;

    check_finite(Operand::Input, x)?;
    check_finite(Operand::Weight(Projection::Query), weights.wq)?;
    check_finite(Operand::Weight(Projection::Key), weights.wk)?;
    check_finite(Operand::Weight(Projection::Value), weights.wv)?;
    Ok(scale)
}

/// Splits the first `len` elements off a scratch slice.
///
/// Callers check the scratch length first; the error is a fallback that keeps this
/// free of panics.
pub(crate) fn split_scratch<T>(
    scratch: &mut [T],
    len: usize,
) -> Result<(&mut [T], &mut [T]), Error> {
    let actual = scratch.len();
    scratch
        .split_at_mut_checked(len)
        .ok_or(Error::ScratchTooSmall {
            required: len,
            actual,
        })
}

/// The checked call of a single-head path: the adapter scale, the query rows per
/// block (capped at `seq_len`) and the scratch elements the path uses.
#[derive(Clone, Copy)]
pub(crate) struct Checked<T> {
    pub(crate) scale: T,
    pub(crate) block_rows: usize,
    pub(crate) scratch_len: usize,
}

/// Checks a call of a single-head path before anything is written: the inputs,
/// `block_rows` and the scratch, whose length for a block size is `scratch_len`.
pub(crate) fn check_call<T: Real>(
    shape: Shape,
    x: &[T],
    weights: &Weights<'_, T>,
    out: &[T],
    block_rows: usize,
    scratch_len: fn(Shape, usize) -> Option<usize>,
    scratch: &[T],
) -> Result<Checked<T>, Error> {
    let scale = validate_inputs(shape, x, weights, out)?;
    if block_rows == 0 {
        return Err(Error::ZeroDimension {
            dimension: Dimension::BlockRows,
        });
    }
    let block_rows = min(block_rows, shape.seq_len);
    let scratch_len = check_scratch(scratch_len(shape, block_rows), scratch.len())?;
    Ok(Checked {
        scale,
        block_rows,
        scratch_len,
    })
}

/// Returns `result`, filling `out` with NaN first when it is an error, so that a
/// caller who ignores a numeric error cannot mistake the output for a result.
pub(crate) fn poison_on_error<T: Real>(
    result: Result<(), Error>,
    out: &mut [T],
) -> Result<(), Error> {
    if result.is_err() {
        out.fill(T::nan());
    }
    result
}

/// Returns [`Error::ScratchTooSmall`] unless the scratch contains `required` elements.
pub(crate) fn check_scratch(required: Option<usize>, actual: usize) -> Result<usize, Error> {
    let required = required.ok_or(Error::SizeOverflow)?;
    if actual < required {
        Err(Error::ScratchTooSmall { required, actual })
    } else {
        Ok(required)
    }
}

/// Computes `softmax(Q K^T / sqrt(d)) V` with `Q = x (Wq + s B A)^T`, `K = x Wk^T`,
/// `V = x Wv^T`, keeping the whole score matrix.
///
/// This is [`attention_blocked`] with `block_rows = seq_len`. The scratch needs
/// [`Shape::attention_scratch_len`] elements.
///
/// # Errors
///
/// As [`attention_blocked`].
///
/// # Example
///
/// ```
/// use lora_attention::{attention, Adapter, Scaling, Shape, Weights};
///
/// // Two tokens of width 2, identity projections and a rank-1 adapter.
/// const SHAPE: Shape = Shape::new(2, 2, 1);
/// const SCRATCH: usize = match SHAPE.attention_scratch_len() {
///     Some(len) => len,
///     None => panic!("shape too large"),
/// };
/// let identity = [1.0, 0.0, 0.0, 1.0];
/// let weights = Weights {
///     wq: &identity,
///     wk: &identity,
///     wv: &identity,
///     adapter: Adapter::new(&[0.0, 0.0], &[0.0, 0.0], Scaling::One),
/// };
/// let x = [1.0, 0.0, 0.0, 1.0];
/// let mut scratch = [0.0_f64; SCRATCH];
/// let mut out = [0.0; 4];
/// attention(SHAPE, &x, &weights, &mut scratch, &mut out)?;
///
/// // Each token attends more to itself: weight e^(1/sqrt 2) against 1.
/// let own = 1.0 / (1.0 + (-1.0 / 2.0_f64.sqrt()).exp());
/// assert!((out[0] - own).abs() < 1e-15);
/// assert!((out[1] - (1.0 - own)).abs() < 1e-15);
/// # Ok::<(), lora_attention::Error>(())
/// ```
pub fn attention<T: Real>(
    shape: Shape,
    x: &[T],
    weights: &Weights<'_, T>,
    scratch: &mut [T],
    out: &mut [T],
) -> Result<(), Error> {
    attention_blocked(shape, x, weights, shape.seq_len, scratch, out)
}

/// Computes the same result as [`attention`], keeping only `block_rows` rows of the
/// score matrix at a time.
///
/// Each score, probability and output element is computed exactly as [`attention`]
/// computes it, so the result does not depend on `block_rows`. The order of
/// operations is the reference's: the adapter is merged into `Wq` first
/// (`Wq' = Wq + s B A`), then `Q`, `K` and `V` are projected, each score is
/// `(q_i . k_j) * (1 / sqrt(dim))`, and each probability is `exp(s - max) / sum`.
///
/// The scratch needs [`Shape::blocked_attention_scratch_len`] elements (a longer
/// slice is fine, and the excess is not touched). It contains, in order, `Wq'`
/// (`dim x dim`), `Q`, `K`, `V` (`seq_len x dim` each) and the score rows. `block_rows`
/// above `seq_len` means `seq_len`.
///
/// # Errors
///
/// Shape, length and input errors are found before anything is written, so the
/// scratch and `out` are untouched:
/// - [`Error::ZeroDimension`] when `seq_len`, `dim` or `block_rows` is 0;
/// - [`Error::SizeOverflow`] when a buffer length does not fit in `usize`;
/// - [`Error::LengthMismatch`] when `x`, a weight, an adapter factor or `out` does not
///   match `shape`, and [`Error::ScratchTooSmall`] for a short scratch;
/// - [`Error::NonFiniteInput`] when an input contains NaN or an infinity, and
///   [`Error::InvalidScale`] when the adapter scale is not finite.
///
/// [`Error::NonFiniteResult`] reports an intermediate that overflowed to infinity or
/// NaN: [`Operand::MergedWeight`] (of the query), [`Operand::Query`], [`Operand::Key`],
/// [`Operand::Value`], [`Operand::Scores`] or [`Operand::Output`], with the index of
/// the first bad element. `out` is then filled with NaN so that a caller who ignores
/// the error cannot mistake it for a result; the scratch contains the intermediates.
pub fn attention_blocked<T: Real>(
    shape: Shape,
    x: &[T],
    weights: &Weights<'_, T>,
    block_rows: usize,
    scratch: &mut [T],
    out: &mut [T],
) -> Result<(), Error> {
    let checked = check_call(
        shape,
        x,
        weights,
        out,
        block_rows,
        Shape::blocked_attention_scratch_len,
        scratch,
    )?;
    let result = compute_blocked(shape, x, weights, checked, scratch, out);
    poison_on_error(result, out)
}

/// Runs the straightforward path on checked inputs.
fn compute_blocked<T: Real>(
    shape: Shape,
    x: &[T],
    weights: &Weights<'_, T>,
    checked: Checked<T>,
    scratch: &mut [T],
    out: &mut [T],
) -> Result<(), Error> {
    let Checked {
        scale,
        block_rows,
        scratch_len,
    } = checked;
    let Shape { seq_len, dim, .. } = shape;
    let input_len = seq_len * dim;
    let (scratch, _) = split_scratch(scratch, scratch_len)?;
    let (merged, rest) = split_scratch(scratch, dim * dim)?;
    let (q, rest) = split_scratch(rest, input_len)?;
    let (k, rest) = split_scratch(rest, input_len)?;
    let (v, scores) = split_scratch(rest, input_len)?;

    // Step 1: Wq' = Wq + s B A, merged before projecting as the reference does.
    merge_validated(
        shape.query_adapter(),
        Projection::Query,
        weights.wq,
        &weights.adapter,
        scale,
        merged,
    )?;

    // Step 2: the three projections.
    matmul_transposed(x, merged, dim, dim, q);
    check_result(Operand::Query, q)?;
    matmul_transposed(x, weights.wk, dim, dim, k);
    check_result(Operand::Key, k)?;
    matmul_transposed(x, weights.wv, dim, dim, v);
    check_result(Operand::Value, v)?;

    // Step 3: scores, softmax and weighted sum, one block of query rows at a time.
    attend_in_blocks(q, k, v, shape, block_rows, scores, out)
}

/// Computes `out = softmax(Q K^T / sqrt(d)) V` from projected `Q`, `K` and `V`,
/// `block_rows` query rows at a time, with `scores` containing at least
/// `block_rows * seq_len` values.
pub(crate) fn attend_in_blocks<T: Real>(
    q: &[T],
    k: &[T],
    v: &[T],
    shape: Shape,
    block_rows: usize,
    scores: &mut [T],
    out: &mut [T],
) -> Result<(), Error> {
    let Shape { seq_len, dim, .. } = shape;
    let inverse_sqrt_dim = inverse_sqrt(dim)?;
    // Validated shapes have no zero dimension; max(1) only keeps the chunking and
    // the division below free of panics for the compiler.
    let block_len = (block_rows * dim).max(1);
    let blocks = q.chunks(block_len).zip(out.chunks_mut(block_len));
    for (block_index, (q_block, out_block)) in blocks.enumerate() {
        let rows = q_block.len() / dim.max(1);
        let (block_scores, _) = split_scratch(scores, rows * seq_len)?;
        score_rows(q_block, k, dim, seq_len, inverse_sqrt_dim, block_scores);
        // The offset saturates where the whole score matrix would not be addressable.
        let offset = block_index
            .saturating_mul(block_rows)
            .saturating_mul(seq_len);
        check_result_at(Operand::Scores, block_scores, offset)?;
        for row in block_scores.chunks_exact_mut(seq_len.max(1)) {
            let max = row
                .iter()
                .fold(T::neg_infinity(), |max, &score| max.max(score));
            softmax_finite_max(row, max);
        }
        matmul(block_scores, v, seq_len, dim, out_block);
    }
    check_result(Operand::Output, out)
}
