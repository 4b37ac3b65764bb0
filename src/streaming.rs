//! The streaming path: no score matrix, no stored keys or values, scratch independent
//! of the number of rows.

use crate::attention::{check_scratch, split_scratch, validate_inputs, Weights};
use crate::error::{Dimension, Error, Operand};
use crate::factored::factored_queries;
use crate::linalg::{first_non_finite, matmul, matmul_transposed};
use crate::online::{self, Rows};
use crate::real::Real;
use crate::shape::{min, Shape};
use crate::steps::inverse_sqrt;

/// The number of keys scored together before the running softmax is updated, when
/// the per-row scratch has room for them.
const KEY_BLOCK: usize = 8;

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
/// block, whatever `seq_len` is. It holds, for each row, the query and `A x`, then
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
    let scale = validate_inputs(shape, x, weights, out)?;
    if block_rows == 0 {
        return Err(Error::ZeroDimension {
            dimension: Dimension::BlockRows,
        });
    }
    let block_rows = min(block_rows, shape.seq_len);
    let required = check_scratch(shape.streaming_scratch_len(block_rows), scratch.len())?;

    let result = compute_streaming(shape, x, weights, scale, block_rows, required, scratch, out);
    if result.is_err() {
        out.fill(T::nan());
    }
    result
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

/// Runs the streaming path on validated inputs.
#[allow(clippy::too_many_arguments)]
fn compute_streaming<T: Real>(
    shape: Shape,
    x: &[T],
    weights: &Weights<'_, T>,
    scale: T,
    block_rows: usize,
    scratch_len: usize,
    scratch: &mut [T],
    out: &mut [T],
) -> Result<(), Error> {
    let Shape { seq_len, dim, rank } = shape;
    let front_len = streaming_front_len(dim, rank).ok_or(Error::SizeOverflow)?;
    let (scratch, _) = split_scratch(scratch, scratch_len)?;
    let (front, rest) = split_scratch(scratch, block_rows * front_len)?;
    let (folded, sums) = split_scratch(rest, block_rows * dim)?;
    let inverse_sqrt_dim = inverse_sqrt(dim)?;

    let blocks = x
        .chunks(block_rows * dim)
        .zip(out.chunks_mut(block_rows * dim));
    for (block_index, (x_block, out_block)) in blocks.enumerate() {
        let rows = x_block.len() / dim;
        let first_row = block_index * block_rows;

        // Step 1: the block's queries, with A x for one row at a time after them.
        let (queries, adapter_row) = split_scratch(front, rows * dim)?;
        let (adapter_row, _) = split_scratch(adapter_row, rank)?;
        factored_queries(x_block, weights, dim, rank, scale, adapter_row, queries);
        check_block(Operand::Query, queries, first_row * dim)?;

        // Step 2: fold each query through the key weight: Wk^T q_i = (q_i^T Wk)^T.
        let (folded, _) = split_scratch(folded, rows * dim)?;
        matmul(queries, weights.wk, dim, dim, folded);
        check_block(Operand::FoldedQuery, folded, first_row * dim)?;

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
        check_block(Operand::Output, out_block, first_row * dim)?;
    }
    Ok(())
}

/// Reports the first non-finite element of a block, indexed in the whole intermediate.
fn check_block<T: Real>(operand: Operand, block: &[T], offset: usize) -> Result<(), Error> {
    match first_non_finite(block) {
        None => Ok(()),
        Some(index) => Err(Error::NonFiniteResult {
            operand,
            index: offset + index,
        }),
    }
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
    /// Each row's state (`front_len` values) holds the running maximum, the running
    /// sum of `exp(s - max)` and room for the scores of one block of keys.
    fn run(&self, folded: &[T], states: &mut [T], sums: &mut [T]) -> Result<(), Error> {
        let dim = self.dim;
        // The front length is at least 3, so at least one key fits.
        let keys_per_block = min(KEY_BLOCK, self.front_len.saturating_sub(2)).max(1);
        let rows = Rows {
            data: self.x,
            stride: dim,
            offset: 0,
            width: dim,
        };
        for (state, sum) in states
            .chunks_exact_mut(self.front_len)
            .zip(sums.chunks_exact_mut(dim))
        {
            online::start(state, sum);
        }

        // Every query of the block reads a block of keys while it is in cache.
        let mut first_key = 0;
        while first_key < self.seq_len {
            let count = min(keys_per_block, self.seq_len - first_key);
            let queries = folded
                .chunks_exact(dim)
                .zip(states.chunks_exact_mut(self.front_len))
                .zip(sums.chunks_exact_mut(dim));
            for (row, ((query, state), sum)) in queries.enumerate() {
                let score_offset = (self.first_row + row) * self.seq_len + first_key;
                online::update(
                    query,
                    rows,
                    rows,
                    first_key,
                    count,
                    self.inverse_sqrt_dim,
                    state,
                    sum,
                    score_offset,
                )?;
            }
            first_key += count;
        }

        for (state, sum) in states
            .chunks_exact(self.front_len)
            .zip(sums.chunks_exact_mut(dim))
        {
            online::finish(state, sum);
        }
        Ok(())
    }
}
