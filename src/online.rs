//! The online (running) softmax shared by the paths that keep no score matrix.
//!
//! A query's state is `[max, denominator, scores...]`: the largest score so far, the
//! sum of `exp(score - max)` so far, and room for the scores of one block of keys.
//! Its weighted sum of value rows lives in a separate slice. After the last block,
//! [`finish`] divides the weighted sum by the denominator.

use crate::error::{Error, Operand};
use crate::linalg::dot;
use crate::real::Real;
use crate::softmax::{exp_or_zero, underflow_cutoff};

/// Rows of a row-major matrix, each read at a fixed column offset and width: the
/// keys or values of one head, or whole input rows.
#[derive(Clone, Copy)]
pub(crate) struct Rows<'a, T> {
    /// The matrix; row `j` starts at `j * stride`.
    pub(crate) data: &'a [T],
    /// The row length of the matrix.
    pub(crate) stride: usize,
    /// The first column read.
    pub(crate) offset: usize,
    /// The number of columns read.
    pub(crate) width: usize,
}

impl<'a, T> Rows<'a, T> {
    /// Returns the columns read of each row, from row `first` on.
    pub(crate) fn iter_from(&self, first: usize) -> impl Iterator<Item = &'a [T]> + 'a {
        let (offset, width) = (self.offset, self.width);
        let skip = first.saturating_mul(self.stride);
        self.data
            .get(skip..)
            .unwrap_or_default()
            .chunks(self.stride.max(1))
            .filter_map(move |row| row.get(offset..offset.saturating_add(width)))
    }
}

/// Resets a running softmax: maximum negative infinity, denominator and sum zero.
pub(crate) fn start<T: Real>(state: &mut [T], sum: &mut [T]) {
    state.fill(T::zero());
    if let Some(max) = state.first_mut() {
        *max = T::neg_infinity();
    }
    sum.fill(T::zero());
}

/// Scores `query` against `count` keys starting at row `first_key` and folds them,
/// with their value rows, into the running softmax.
///
/// At most `state.len() - 2` keys fit; the caller chunks the keys accordingly. Each
/// score is `(query . key) * inverse_sqrt`; a non-finite one is reported as
/// [`Operand::Scores`] at `score_offset` plus its position in the block.
#[allow(clippy::too_many_arguments)]
pub(crate) fn update<T: Real>(
    query: &[T],
    keys: Rows<'_, T>,
    values: Rows<'_, T>,
    first_key: usize,
    count: usize,
    inverse_sqrt: T,
    state: &mut [T],
    sum: &mut [T],
    score_offset: usize,
) -> Result<(), Error> {
    let Some(([running_max, denominator], scores)) = state.split_first_chunk_mut::<2>() else {
        return Err(Error::ScratchTooSmall {
            required: 3,
            actual: state.len(),
        });
    };

    let cutoff = underflow_cutoff::<T>();

    // Step 1: the scores of this block and their maximum.
    let mut block_max = T::neg_infinity();
    let block = scores.iter_mut().zip(keys.iter_from(first_key)).take(count);
    for (index, (score, key)) in block.enumerate() {
        *score = dot(query, key) * inverse_sqrt;
        if !score.is_finite() {
            return Err(Error::NonFiniteResult {
                operand: Operand::Scores,
                index: score_offset.saturating_add(index),
            });
        }
        block_max = block_max.max(*score);
    }

    // Step 2: rescale what was summed so far when the maximum grows, so that every
    // exponent stays at or below zero. The first block rescales zeros by exp(-inf) = 0.
    if block_max > *running_max {
        let correction = exp_or_zero(*running_max - block_max, cutoff);
        *denominator = *denominator * correction;
        for element in sum.iter_mut() {
            *element = *element * correction;
        }
        *running_max = block_max;
    }

    // Step 3: add this block's weights and weighted value rows.
    let block = scores.iter().zip(values.iter_from(first_key)).take(count);
    for (&score, value) in block {
        let weight = exp_or_zero(score - *running_max, cutoff);
        *denominator = *denominator + weight;
        for (element, &value_element) in sum.iter_mut().zip(value) {
            *element = weight.multiply_add(value_element, *element);
        }
    }
    Ok(())
}

/// Divides the weighted sum by the softmax denominator.
pub(crate) fn finish<T: Real>(state: &[T], sum: &mut [T]) {
    let denominator = state.get(1).copied().unwrap_or_else(T::one);
    for element in sum.iter_mut() {
        *element = *element / denominator;
    }
}

/// Runs a whole online softmax of `query` over the first `count` key/value rows,
/// `state.len() - 2` keys at a time, leaving the normalised weighted sum in `sum`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend<T: Real>(
    query: &[T],
    keys: Rows<'_, T>,
    values: Rows<'_, T>,
    count: usize,
    inverse_sqrt: T,
    state: &mut [T],
    sum: &mut [T],
    score_offset: usize,
) -> Result<(), Error> {
    let keys_per_block = state.len().saturating_sub(2).max(1);
    start(state, sum);
    let mut first_key = 0;
    while first_key < count {
        let block = keys_per_block.min(count - first_key);
        update(
            query,
            keys,
            values,
            first_key,
            block,
            inverse_sqrt,
            state,
            sum,
            score_offset.saturating_add(first_key),
        )?;
        first_key += block;
    }
    finish(state, sum);
    Ok(())
}
