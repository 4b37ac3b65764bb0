//! The factored-adapter path: the straightforward path without the merged weight.

use crate::adapter::check_result;
use crate::attention::{
    attend_in_blocks, check_call, poison_on_error, split_scratch, Checked, Weights,
};
use crate::error::{Error, Operand};
use crate::linalg::{dot, matmul_transposed, matmul_transposed_accumulate};
use crate::real::Real;
use crate::shape::Shape;

/// Computes [`attention`](crate::attention)'s result with the adapter applied as
/// `q = Wq x + s B (A x)`, never forming `Wq + s B A`.
///
/// The weights are only read, so they can stay in flash. The scratch has no
/// `dim x dim` term: it contains `Q`, `K`, `V` (`seq_len x dim` each), `block_rows`
/// rows of scores and the `rank` values of `A x` for one row, in that order
/// ([`Shape::factored_scratch_len`]). Scores, softmax and weighted sum are those of
/// [`attention_blocked`](crate::attention_blocked). The queries round differently
/// from the merged form's (by a few units in the last place), so results agree with
/// it to about 1e-15 relative, not bit for bit.
///
/// # Errors
///
/// As [`attention_blocked`](crate::attention_blocked), except that no error names
/// [`Operand::MergedWeight`]: an overflow in the adapter term is reported as
/// [`Operand::Query`]. After a numeric error `out` is filled with NaN.
///
/// # Example
///
/// ```
/// use lora_attention::{attention_factored, Adapter, Scaling, Shape, Weights};
///
/// const SHAPE: Shape = Shape::new(2, 2, 1);
/// const SCRATCH: usize = match SHAPE.factored_scratch_len(2) {
///     Some(len) => len,
///     None => panic!("shape too large"),
/// };
/// static WQ: [f32; 4] = [1.0, 0.0, 0.0, 1.0];
/// static A: [f32; 2] = [1.0, 1.0];
/// static B: [f32; 2] = [0.5, -0.5];
///
/// let weights = Weights { wq: &WQ, wk: &WQ, wv: &WQ, adapter: Adapter::new(&A, &B, Scaling::One) };
/// let mut scratch = [0.0_f32; SCRATCH];
/// let mut out = [0.0; 4];
/// attention_factored(SHAPE, &[1.0, 2.0, 3.0, 4.0], &weights, 2, &mut scratch, &mut out)?;
/// assert!(out.iter().all(|v| v.is_finite()));
/// # Ok::<(), lora_attention::Error>(())
/// ```
pub fn attention_factored<T: Real>(
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
        Shape::factored_scratch_len,
        scratch,
    )?;
    let result = compute_factored(shape, x, weights, checked, scratch, out);
    poison_on_error(result, out)
}

/// Writes the queries `Q = x Wq^T + s (x A^T) B^T`.
///
/// `adapter_rows` is scratch for `x A^T`: with room for every row (`rows * rank`
/// values) the adapter term is two matrix products, otherwise it is computed one
/// row at a time in its first `rank` values.
pub(crate) fn factored_queries<T: Real>(
    x: &[T],
    weights: &Weights<'_, T>,
    dim: usize,
    rank: usize,
    scale: T,
    adapter_rows: &mut [T],
    q: &mut [T],
) {
    matmul_transposed(x, weights.wq, dim, dim, q);
    // With dim = 0 there are no rows; saying so here lets the compiler drop the
    // zero-size checks of the chunks below.
    if rank == 0 || dim == 0 {
        return;
    }
    let a = weights.adapter.a;
    let b = weights.adapter.b;
    let rows = x.len() / dim;
    if let Some(projected) = adapter_rows.get_mut(..rows * rank) {
        // U = s (x A^T), then Q += U B^T.
        matmul_transposed(x, a, dim, rank, projected);
        for value in projected.iter_mut() {
            *value = scale * *value;
        }
        matmul_transposed_accumulate(projected, b, rank, dim, q);
        return;
    }
    for (x_row, q_row) in x.chunks_exact(dim).zip(q.chunks_exact_mut(dim)) {
        // Step 1: A x, the row projected into the rank-r space.
        for (value, a_row) in adapter_rows.iter_mut().zip(a.chunks_exact(dim)) {
            *value = dot(a_row, x_row);
        }
        // Step 2: q += s B (A x).
        for (q_element, b_row) in q_row.iter_mut().zip(b.chunks_exact(rank)) {
            *q_element = scale.multiply_add(dot(b_row, adapter_rows), *q_element);
        }
    }
}

/// Runs the factored path on checked inputs.
fn compute_factored<T: Real>(
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
    let input_len = seq_len * dim;
    let (scratch, _) = split_scratch(scratch, scratch_len)?;
    let (q, rest) = split_scratch(scratch, input_len)?;
    let (k, rest) = split_scratch(rest, input_len)?;
    let (v, rest) = split_scratch(rest, input_len)?;
    let (scores, adapter_row) = split_scratch(rest, block_rows * seq_len)?;

    // Step 1: the three projections, the query's with the adapter factored.
    factored_queries(x, weights, dim, rank, scale, adapter_row, q);
    check_result(Operand::Query, q)?;
    matmul_transposed(x, weights.wk, dim, dim, k);
    check_result(Operand::Key, k)?;
    matmul_transposed(x, weights.wv, dim, dim, v);
    check_result(Operand::Value, v)?;

    // Step 2: scores, softmax and weighted sum, as the merged path does them.
    attend_in_blocks(q, k, v, shape, block_rows, scores, out)
}
