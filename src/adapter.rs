//! Low-rank adapters: merging `s B A` into a weight and taking it out again.

use crate::error::{Error, Operand, Projection};
use crate::linalg::{first_non_finite, matmul};
use crate::real::Real;
use crate::scaling::Scaling;
use crate::shape::AdapterShape;

/// The two factors of a low-rank adapter and how their product is scaled.
///
/// The adapted weight is `W + s B A`, with `A` (`rank x in_features`) and `B`
/// (`out_features x rank`) row-major. The rank comes from the shape the adapter is
/// used with, and both slices must match it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adapter<'a, T> {
    /// The down-projection `A`, `rank x in_features`.
    pub a: &'a [T],
    /// The up-projection `B`, `out_features x rank`.
    pub b: &'a [T],
    /// The rule that derives `s` from the rank.
    pub scaling: Scaling<T>,
}

impl<'a, T> Adapter<'a, T> {
    /// Creates an adapter from `A`, `B` and its scaling.
    pub const fn new(a: &'a [T], b: &'a [T], scaling: Scaling<T>) -> Self {
        Adapter { a, b, scaling }
    }

    /// Returns the empty adapter, for rank 0.
    pub const fn none() -> Self {
        Adapter {
            a: &[],
            b: &[],
            scaling: Scaling::One,
        }
    }
}

/// Checks an adapter against its shape and returns its scale.
///
/// The weight's length and finiteness are the caller's to check.
pub(crate) fn validate_adapter<T: Real>(
    shape: AdapterShape,
    target: Projection,
    adapter: &Adapter<'_, T>,
) -> Result<T, Error> {
    let a_len = shape.a_len().ok_or(Error::SizeOverflow)?;
    let b_len = shape.b_len().ok_or(Error::SizeOverflow)?;
    check_len(Operand::AdapterA(target), a_len, adapter.a.len())?;
    check_len(Operand::AdapterB(target), b_len, adapter.b.len())?;
    check_finite(Operand::AdapterA(target), adapter.a)?;
    check_finite(Operand::AdapterB(target), adapter.b)?;
    adapter.scaling.scale(shape.rank)
}

/// Returns [`Error::LengthMismatch`] unless `actual == expected`.
pub(crate) fn check_len(operand: Operand, expected: usize, actual: usize) -> Result<(), Error> {
    if actual == expected {
        Ok(())
    } else {
        Err(Error::LengthMismatch {
            operand,
            expected,
            actual,
        })
    }
}

/// Returns [`Error::NonFiniteInput`] if `values` contains NaN or an infinity.
pub(crate) fn check_finite<T: Real>(operand: Operand, values: &[T]) -> Result<(), Error> {
    match first_non_finite(values) {
        None => Ok(()),
        Some(index) => Err(Error::NonFiniteInput { operand, index }),
    }
}

/// Returns [`Error::NonFiniteResult`] if `values` contains NaN or an infinity.
pub(crate) fn check_result<T: Real>(operand: Operand, values: &[T]) -> Result<(), Error> {
    check_result_at(operand, values, 0)
}

/// Returns [`Error::NonFiniteResult`] if `values`, the part of an intermediate
/// that starts at `offset`, contains NaN or an infinity, indexed in the whole
/// intermediate.
pub(crate) fn check_result_at<T: Real>(
    operand: Operand,
    values: &[T],
    offset: usize,
) -> Result<(), Error> {
    match first_non_finite(values) {
        None => Ok(()),
        Some(index) => Err(Error::NonFiniteResult {
            operand,
            index: offset.saturating_add(index),
        }),
    }
}

/// Returns element `(row, column)` of the adapter term `s B A`: the chain of
/// multiply-adds over the rank, in order and from zero, times `s`. That is the
/// arithmetic of the matrix product in [`merge_adapter`], so merging into a copy
/// and merging in place give the same bits, and unmerging subtracts the same terms.
fn adapter_term<T: Real>(
    shape: AdapterShape,
    adapter: &Adapter<'_, T>,
    scale: T,
    row: usize,
    column: usize,
) -> T {
    if shape.rank == 0 || shape.in_features == 0 {
        return T::zero();
    }
    let b_row = adapter
        .b
        .chunks_exact(shape.rank)
        .nth(row)
        .unwrap_or_default();
    let a_column = adapter.a.iter().skip(column).step_by(shape.in_features);
    let sum = b_row
        .iter()
        .zip(a_column)
        .fold(T::zero(), |sum, (&b_element, &a_element)| {
            b_element.multiply_add(a_element, sum)
        });
    scale * sum
}

/// Validates a weight and its adapter and returns the adapter's scale.
fn validate_weight_and_adapter<T: Real>(
    shape: AdapterShape,
    target: Projection,
    weight: &[T],
    adapter: &Adapter<'_, T>,
) -> Result<T, Error> {
    let weight_len = shape.weight_len().ok_or(Error::SizeOverflow)?;
    check_len(Operand::Weight(target), weight_len, weight.len())?;
    let scale = validate_adapter(shape, target, adapter)?;
    check_finite(Operand::Weight(target), weight)?;
    Ok(scale)
}

/// Computes the adapted weight `merged = W + s B A`, leaving `W` as it is.
///
/// `target` only names the projection in errors. Each element is `W[i][j]` plus the
/// term that [`merge_in_place`] would add.
///
/// # Errors
///
/// - [`Error::LengthMismatch`] when a slice does not match `shape`, and
///   [`Error::NonFiniteInput`] or [`Error::InvalidScale`] for a NaN or infinite
///   input. Nothing is written then.
/// - [`Error::NonFiniteResult`] naming [`Operand::MergedWeight`] when an element
///   of the sum overflows; `merged` then contains the partial sums, including the element
///   that overflowed.
///
/// # Example
///
/// ```
/// use lora_attention::{merge_adapter, Adapter, AdapterShape, Projection, Scaling};
///
/// let shape = AdapterShape { out_features: 2, in_features: 2, rank: 1 };
/// let w = [1.0, 0.0, 0.0, 1.0];
/// let adapter = Adapter::new(&[1.0, 2.0], &[3.0, 4.0], Scaling::Factor(0.5));
/// let mut merged = [0.0; 4];
/// merge_adapter(shape, Projection::Query, &w, &adapter, &mut merged)?;
/// // B A = [[3, 6], [4, 8]], halved and added to the identity.
/// assert_eq!(merged, [2.5, 3.0, 2.0, 5.0]);
/// # Ok::<(), lora_attention::Error>(())
/// ```
pub fn merge_adapter<T: Real>(
    shape: AdapterShape,
    target: Projection,
    weight: &[T],
    adapter: &Adapter<'_, T>,
    merged: &mut [T],
) -> Result<(), Error> {
    let scale = validate_weight_and_adapter(shape, target, weight, adapter)?;
    let weight_len = shape.weight_len().ok_or(Error::SizeOverflow)?;
    check_len(Operand::MergedWeight(target), weight_len, merged.len())?;
    merge_validated(shape, target, weight, adapter, scale, merged)
}

/// [`merge_adapter`] on inputs the caller has validated, with the adapter's scale.
pub(crate) fn merge_validated<T: Real>(
    shape: AdapterShape,
    target: Projection,
    weight: &[T],
    adapter: &Adapter<'_, T>,
    scale: T,
    merged: &mut [T],
) -> Result<(), Error> {
    if shape.rank == 0 || shape.in_features == 0 {
        // Both lengths are `weight_len`, checked by the caller; a zip needs no second
        // check.
        for (merged_element, &weight_element) in merged.iter_mut().zip(weight) {
            *merged_element = weight_element;
        }
        return Ok(());
    }
    // B A as a matrix product: each element the same chain over the rank that
    // `adapter_term` computes, then scaled and added to the weight.
    matmul(adapter.b, adapter.a, shape.rank, shape.in_features, merged);
    for (merged_element, &weight_element) in merged.iter_mut().zip(weight) {
        *merged_element = weight_element + scale * *merged_element;
    }
    check_result(Operand::MergedWeight(target), merged)
}

/// Adds `s B A` to a weight the caller owns: `W <- W + s B A`.
///
/// The weight is checked before it is written: if any element would overflow, the
/// call fails and `W` is unchanged. [`unmerge_in_place`] subtracts the same terms, so
/// a merge followed by an unmerge moves each weight by at most
/// `2 * eps * (|w| + |term|)` (one rounding of each sum). `target` only names the
/// projection in errors. Needs no scratch: it computes every term twice, once to
/// check and once to write (`4 * out * in * rank` flops in all).
///
/// # Errors
///
/// [`Error::LengthMismatch`], [`Error::NonFiniteInput`] or [`Error::InvalidScale`] for
/// invalid inputs, and [`Error::NonFiniteResult`] naming [`Operand::Weight`] when a
/// sum would overflow. `W` is unchanged after any error.
///
/// # Example
///
/// ```
/// use lora_attention::{merge_in_place, unmerge_in_place, Adapter, AdapterShape, Projection, Scaling};
///
/// let shape = AdapterShape { out_features: 2, in_features: 2, rank: 1 };
/// let adapter = Adapter::new(&[1.0, 2.0], &[3.0, 4.0], Scaling::AlphaOverRank { alpha: 2.0 });
/// let mut w = [1.0, 0.0, 0.0, 1.0];
/// merge_in_place(shape, Projection::Value, &mut w, &adapter)?;
/// assert_eq!(w, [7.0, 12.0, 8.0, 17.0]);
/// unmerge_in_place(shape, Projection::Value, &mut w, &adapter)?;
/// assert_eq!(w, [1.0, 0.0, 0.0, 1.0]);
/// # Ok::<(), lora_attention::Error>(())
/// ```
pub fn merge_in_place<T: Real>(
    shape: AdapterShape,
    target: Projection,
    weight: &mut [T],
    adapter: &Adapter<'_, T>,
) -> Result<(), Error> {
    apply_in_place(shape, target, weight, adapter, false)
}

/// Subtracts `s B A` from a weight the caller owns: `W <- W - s B A`.
///
/// The inverse of [`merge_in_place`], with the same terms, checks and errors. `W` is
/// unchanged after any error.
///
/// # Errors
///
/// As [`merge_in_place`].
///
/// # Example
///
/// See [`merge_in_place`].
pub fn unmerge_in_place<T: Real>(
    shape: AdapterShape,
    target: Projection,
    weight: &mut [T],
    adapter: &Adapter<'_, T>,
) -> Result<(), Error> {
    apply_in_place(shape, target, weight, adapter, true)
}

/// Adds (or subtracts) the adapter term in place after checking every element.
fn apply_in_place<T: Real>(
    shape: AdapterShape,
    target: Projection,
    weight: &mut [T],
    adapter: &Adapter<'_, T>,
    subtract: bool,
) -> Result<(), Error> {
    let scale = validate_weight_and_adapter(shape, target, weight, adapter)?;
    if shape.rank == 0 || shape.in_features == 0 {
        return Ok(());
    }
    let apply = |weight_element: T, term: T| {
        if subtract {
            weight_element - term
        } else {
            weight_element + term
        }
    };

    // Step 1: check every sum, so that a failure leaves the weight untouched.
    for (row, weight_row) in weight.chunks_exact(shape.in_features).enumerate() {
        for (column, &weight_element) in weight_row.iter().enumerate() {
            let term = adapter_term(shape, adapter, scale, row, column);
            if !apply(weight_element, term).is_finite() {
                return Err(Error::NonFiniteResult {
                    operand: Operand::Weight(target),
                    index: row * shape.in_features + column,
                });
            }
        }
    }

    // Step 2: write the same sums.
    for (row, weight_row) in weight.chunks_exact_mut(shape.in_features).enumerate() {
        for (column, weight_element) in weight_row.iter_mut().enumerate() {
            let term = adapter_term(shape, adapter, scale, row, column);
            *weight_element = apply(*weight_element, term);
        }
    }
    Ok(())
}
