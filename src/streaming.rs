//! The streaming path: no score matrix, no stored keys or values, scratch independent
//! of the number of rows.

use crate::adapter::check_result_at;
use crate::attention::{check_call, poison_on_error, split_scratch, Checked, Weights};
use crate::error::{Dimension, Error, Operand};
use crate::factored::factored_queries;
use crate::linalg::{matmul, matmul_accumulate, matmul_transposed};
use crate::real::Real;
use crate::shape::{min, Shape};
use crate::softmax::{exp_or_zero, underflow_cutoff};
use crate::steps::inverse_sqrt;

/// The number of keys scored together before the running softmax is updated, when
/// the per-row scratch has room for them.
const KEYS_PER_BLOCK: usize = 64;

/// Computes [`attention`](crate::attention)'s result without the score matrix and
/// without storing `K` or `V`, in scratch that does not grow with `seq_len`.
///
/// Since `k_j = Wk x_j`, the score of query `i` against row `j` is
/// `(Wk^T q_i) . x_j`, and since `v_j = Wv x_j`, the output row is
/// `Wv (sum_j p_ij x_j)`. So each query is folded through `Wk` once, the rows of `x`
/// are read in one pass, and an online softmax keeps a running maximum and sum,
/// rescaling the weighted sum of rows whenever the maximum grows. The adapter is
/// applied factored (`q = Wq x + s B (A x)`) and the weights are only read. The
/// arithmetic is that of the straightforward path (`6 b d^2 + 4 b^2 d` flops, plus
/// `4 b d r` for the adapter), in another order, so results agree with it to about
/// 1e-14 relative rather than bit for bit.
///
/// `block_rows` query rows share each pass over `x`; more rows read `x` fewer times
/// and need proportionally more scratch. The scratch needs
/// [`Shape::streaming_scratch_len`] elements: `max(3 d + r, 2 d + 3)` per row of the
/// block, whatever `seq_len` is. It contains, for each row, the query and `A x`, then
/// `Wk^T q`, the weighted sum of rows, and the running maximum, sum and a few scores.
///
/// # Errors
///
/// As [`attention_blocked`](crate::attention_blocked), with these intermediates in
/// [`Error::NonFiniteResult`]: [`Operand::Query`], [`Operand::FoldedQuery`],
/// [`Operand::Scores`] (indexed as in the full `seq_len x seq_len` matrix) and
/// [`Operand::Output`]. After a numeric error `out` is filled with NaN.
///
/// # Example
///
/// ```
/// use lora_attention::{attention_streaming, Adapter, Shape, Weights};
///
/// // 1000 rows need no more scratch than 1 row does.
/// let shape = Shape::new(1000, 2, 0);
/// assert_eq!(shape.streaming_scratch_len(1), Shape::new(1, 2, 0).streaming_scratch_len(1));
///
/// let identity = [1.0, 0.0, 0.0, 1.0];
/// let weights = Weights { wq: &identity, wk: &identity, wv: &identity, adapter: Adapter::none() };
/// let x: Vec<f64> = (0..2000).map(|i| (i % 7) as f64 / 7.0).collect();
/// let mut scratch = [0.0; 7];
/// let mut out = vec![0.0; 2000];
/// attention_streaming(shape, &x, &weights, 1, &mut scratch, &mut out)?;
/// # Ok::<(), lora_attention::Error>(())
/// ```
pub fn attention_streaming<T: Real>(
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
        Shape::streaming_scratch_len,
        scratch,
    )?;
    let result = compute_streaming(shape, x, weights, checked, scratch, out);
    poison_on_error(result, out)
}

/// Returns the per-row length of the first scratch region: room for the query and
/// `A x` before the pass over the rows, and for the running maximum, the running sum
/// and at least one score during it.
pub(crate) const fn streaming_front_len(dim: usize, rank: usize) -> Option<usize> {
    match dim.checked_add(rank) {
        Some(len) if len >= 3 => Some(len),
        Some(_) => Some(3),
        None => None,
    }
}

/// Runs the streaming path on checked inputs.
fn compute_streaming<T: Real>(
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
    let Shape { seq_len, dim, rank } = shape;
    // A validated shape has dim >= 1. Checking here lets the compiler drop the
    // zero-size checks of the chunks and divisions in this path's steps.
    if dim == 0 {
        return Err(Error::ZeroDimension {
            dimension: Dimension::Dim,
        });
    }
    let front_len = streaming_front_len(dim, rank).ok_or(Error::SizeOverflow)?;
    let (scratch, _) = split_scratch(scratch, scratch_len)?;
    let (front, rest) = split_scratch(scratch, block_rows * front_len)?;
    let (folded, sums) = split_scratch(rest, block_rows * dim)?;
    let inverse_sqrt_dim = inverse_sqrt(dim)?;

    // max(1) keeps the chunk size nonzero even if the product wraps.
    let block_len = (block_rows * dim).max(1);
    let blocks = x.chunks(block_len).zip(out.chunks_mut(block_len));
    for (block_index, (x_block, out_block)) in blocks.enumerate() {
        let rows = x_block.len() / dim;
        let first_row = block_index * block_rows;

        // Step 1: the block's queries, with A x for every row after them.
        // The front contains d + r values per row, so A x fits for every row.
        let (queries, adapter_rows) = split_scratch(front, rows * dim)?;
        factored_queries(x_block, weights, dim, rank, scale, adapter_rows, queries);
        check_result_at(Operand::Query, queries, first_row * dim)?;

        // Step 2: fold each query through the key weight: Wk^T q_i = (q_i^T Wk)^T.
        let (folded, _) = split_scratch(folded, rows * dim)?;
        matmul(queries, weights.wk, dim, dim, folded);
        check_result_at(Operand::FoldedQuery, folded, first_row * dim)?;

        // Step 3: one pass over the rows of x with an online softmax.
        let (sums, _) = split_scratch(sums, rows * dim)?;
        let (states, _) = split_scratch(front, rows * front_len)?;
        let pass = OnlinePass {
            x,
            dim,
            seq_len,
            front_len,
            inverse_sqrt_dim,
            first_row,
        };
        pass.run(folded, states, sums)?;

        // Step 4: out = Wv (sum_j p_ij x_j), the weighted sums already divided by
        // their softmax denominators.
        matmul_transposed(sums, weights.wv, dim, dim, out_block);
        check_result_at(Operand::Output, out_block, first_row * dim)?;
    }
    Ok(())
}

/// The fixed inputs of one pass over the rows of `x` for a block of queries.
struct OnlinePass<'a, T> {
    x: &'a [T],
    dim: usize,
    seq_len: usize,
    front_len: usize,
    inverse_sqrt_dim: T,
    first_row: usize,
}

impl<T: Real> OnlinePass<'_, T> {
    /// Computes, for each folded query, the softmax-weighted average of the rows of
    /// `x` into `sums`.
    ///
    /// `states` (`front_len` values per query) contains the running maxima, then the
    /// running denominators, then the scores of one block of keys for every query.
    /// Each block's scores and weighted rows are matrix products over the whole
    /// block of queries, so every key row is read once per block.
    fn run(&self, folded: &[T], states: &mut [T], sums: &mut [T]) -> Result<(), Error> {
        let dim = self.dim;
        let rows = sums.len() / dim.max(1);
        let (maxima, rest) = split_scratch(states, rows)?;
        let (denominators, scores) = split_scratch(rest, rows)?;
        // front_len >= 3, so at least one key fits; more keys per block mean
        // fewer rescalings and larger products.
        let keys_per_block = min(KEYS_PER_BLOCK, self.front_len.saturating_sub(2)).max(1);
        let cutoff = underflow_cutoff::<T>();
        maxima.fill(T::neg_infinity());
        denominators.fill(T::zero());
        sums.fill(T::zero());

        // max(1) keeps the chunk size nonzero even if the product wraps.
        let key_block_len = (keys_per_block * dim).max(1);
        for (key_block, keys) in self.x.chunks(key_block_len).enumerate() {
            let first_key = key_block * keys_per_block;
            let count = keys.len() / dim;
            let (block_scores, _) = split_scratch(scores, rows * count)?;

            // Step 1: the scores of every query against this block of keys.
            matmul_transposed(folded, keys, dim, count, block_scores);
            let score_rows = block_scores.chunks_exact_mut(count.max(1));
            for (row, score_row) in score_rows.enumerate() {
                for (index, score) in score_row.iter_mut().enumerate() {
                    *score = *score * self.inverse_sqrt_dim;
                    if !score.is_finite() {
                        let query = self.first_row + row;
                        return Err(Error::NonFiniteResult {
                            operand: Operand::Scores,
                            // Saturates where the score matrix, never stored,
                            // would not be addressable.
                            index: query
                                .saturating_mul(self.seq_len)
                                .saturating_add(first_key + index),
                        });
                    }
                }
            }

            // Step 2: per query, rescale what was summed so far when the maximum
            // grows (so every exponent stays at or below zero), and turn the
            // scores into weights exp(s - max).
            let per_query = block_scores
                .chunks_exact_mut(count.max(1))
                .zip(maxima.iter_mut())
                .zip(denominators.iter_mut())
                .zip(sums.chunks_exact_mut(dim));
            for (((weights, max), denominator), sum) in per_query {
                let block_max = weights.iter().fold(T::neg_infinity(), |m, &s| m.max(s));
                if block_max > *max {
                    // The first block rescales zeros by exp(-inf) = 0.
                    let correction = exp_or_zero(*max - block_max, cutoff);
                    *denominator = *denominator * correction;
                    for element in sum.iter_mut() {
                        *element = *element * correction;
                    }
                    *max = block_max;
                }
                for weight in weights.iter_mut() {
                    *weight = exp_or_zero(*weight - *max, cutoff);
                    *denominator = *denominator + *weight;
                }
            }

            // Step 3: add the weighted key rows to every query's sum.
            matmul_accumulate(block_scores, keys, count, dim, sums);
        }

        // Divide each weighted sum by its softmax denominator.
        for (sum, &denominator) in sums.chunks_exact_mut(dim).zip(denominators.iter()) {
            for element in sum.iter_mut() {
                *element = *element / denominator;
            }
        }
        Ok(())
    }
}
