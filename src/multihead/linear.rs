//! One projection `y = W x + bias + s B (A x)` and the rotary embedding.

use crate::adapter::merge_validated;
use crate::error::{Error, Projection};
use crate::linalg::{dot, matmul_transposed};
use crate::multihead::config::{AdapterMode, AttentionConfig, PerProjection};
use crate::multihead::weights::{AttentionWeights, PROJECTIONS};
use crate::real::Real;
use crate::shape::AdapterShape;

/// A projection ready to apply: its weight (merged or not), bias and, when applied
/// factored, its adapter.
#[derive(Clone, Copy)]
pub(crate) struct Linear<'a, T> {
    weight: &'a [T],
    bias: &'a [T],
    a: &'a [T],
    b: &'a [T],
    rank: usize,
    scale: T,
    in_features: usize,
    out_features: usize,
}

/// The four projections of a block, as a call applies them.
pub(crate) type Projections<'a, T> = PerProjection<Linear<'a, T>>;

impl<'a, T: Real> Linear<'a, T> {
    /// Computes `y = x W^T + bias + s (x A^T) B^T` for whole rows: `x` is
    /// `rows x in_features` and `y` is `rows x out_features`. `adapter_row` contains at
    /// least `rank` values.
    pub(crate) fn apply_rows(&self, x: &[T], y: &mut [T], adapter_row: &mut [T]) {
        matmul_transposed(x, self.weight, self.in_features, self.out_features, y);
        if self.in_features == 0 || self.out_features == 0 {
            return;
        }
        for (x_row, y_row) in x
            .chunks_exact(self.in_features)
            .zip(y.chunks_exact_mut(self.out_features))
        {
            self.add_bias_and_adapter(x_row, 0, y_row, adapter_row);
        }
    }

    /// Computes output features `first..first + y.len()` of one row.
    pub(crate) fn apply_row_range(
        &self,
        x: &[T],
        first: usize,
        y: &mut [T],
        adapter_row: &mut [T],
    ) {
        let rows = self
            .weight
            .chunks_exact(self.in_features.max(1))
            .skip(first);
        for (element, weight_row) in y.iter_mut().zip(rows) {
            *element = dot(weight_row, x);
        }
        self.add_bias_and_adapter(x, first, y, adapter_row);
    }

    /// Adds the bias and the factored adapter term to features `first..` of a row.
    fn add_bias_and_adapter(&self, x: &[T], first: usize, y: &mut [T], adapter_row: &mut [T]) {
        if !self.bias.is_empty() {
            for (element, &bias) in y.iter_mut().zip(self.bias.iter().skip(first)) {
                *element = *element + bias;
            }
        }
        if self.rank == 0 {
            return;
        }
        let adapter_row = adapter_row.get_mut(..self.rank).unwrap_or_default();
        for (value, a_row) in adapter_row
            .iter_mut()
            .zip(self.a.chunks_exact(self.in_features.max(1)))
        {
            *value = dot(a_row, x);
        }
        let b_rows = self.b.chunks_exact(self.rank).skip(first);
        for (element, b_row) in y.iter_mut().zip(b_rows) {
            *element = self.scale.multiply_add(dot(b_row, adapter_row), *element);
        }
    }

    /// Adds `Wk'^T q` for the rows `first..first + q.len()` of this projection's
    /// weight to `folded` (length `in_features`): the query folded through those rows.
    ///
    /// With a factored adapter it also adds `s A^T (B_rows^T q)`, using `adapter_row`.
    pub(crate) fn add_transposed(
        &self,
        q: &[T],
        first: usize,
        folded: &mut [T],
        adapter_row: &mut [T],
    ) {
        let width = self.in_features.max(1);
        for (&q_element, weight_row) in q.iter().zip(self.weight.chunks_exact(width).skip(first)) {
            for (element, &weight) in folded.iter_mut().zip(weight_row) {
                *element = q_element.multiply_add(weight, *element);
            }
        }
        if self.rank == 0 {
            return;
        }
        let adapter_row = adapter_row.get_mut(..self.rank).unwrap_or_default();
        adapter_row.fill(T::zero());
        for (&q_element, b_row) in q.iter().zip(self.b.chunks_exact(self.rank).skip(first)) {
            for (value, &b) in adapter_row.iter_mut().zip(b_row) {
                *value = q_element.multiply_add(b, *value);
            }
        }
        for (&value, a_row) in adapter_row.iter().zip(self.a.chunks_exact(width)) {
            let coefficient = self.scale * value;
            for (element, &a) in folded.iter_mut().zip(a_row) {
                *element = coefficient.multiply_add(a, *element);
            }
        }
    }
}

/// Builds the four projections of a call, merging adapters into `merged` first
/// under [`AdapterMode::Merged`].
///
/// `merged` contains [`AttentionConfig::merged_weights_len`] elements. The weights,
/// adapters and scales must already be validated.
pub(crate) fn build_projections<'a, T: Real>(
    config: &AttentionConfig<T>,
    mode: AdapterMode,
    weights: &AttentionWeights<'a, T>,
    scales: &PerProjection<T>,
    merged: &'a mut [T],
) -> Result<Projections<'a, T>, Error> {
    let mut rest = merged;
    let mut build = |projection: Projection| -> Result<Linear<'a, T>, Error> {
        let out_features = config.out_features(projection).ok_or(Error::SizeOverflow)?;
        let present = projection != Projection::Output || config.output_projection;
        let adapter = weights.adapters.get(projection);
        let rank = if present {
            config.ranks.get(projection)
        } else {
            0
        };
        let mut linear = Linear {
            weight: weights.weight(projection),
            bias: weights.biases.get(projection),
            a: adapter.a,
            b: adapter.b,
            rank,
            scale: scales.get(projection),
            in_features: config.dim,
            out_features,
        };
        if mode == AdapterMode::Merged && rank > 0 {
            let len = config.weight_len(projection).ok_or(Error::SizeOverflow)?;
            let taken = core::mem::take(&mut rest);
            let actual = taken.len();
            let (slot, remainder) =
                taken
                    .split_at_mut_checked(len)
                    .ok_or(Error::ScratchTooSmall {
                        required: len,
                        actual,
                    })?;
            rest = remainder;
            let shape = AdapterShape {
                out_features,
                in_features: config.dim,
                rank,
            };
            merge_validated(
                shape,
                projection,
                linear.weight,
                &adapter,
                linear.scale,
                slot,
            )?;
            linear.weight = slot;
            linear.rank = 0;
        }
        Ok(linear)
    };
    let [query, key, value, output] = PROJECTIONS;
    Ok(PerProjection {
        query: build(query)?,
        key: build(key)?,
        value: build(value)?,
        output: build(output)?,
    })
}

/// Rotates every head of a query or key row by its position (see
/// [`RotaryEmbedding`](crate::RotaryEmbedding)).
pub(crate) fn rotate_row<T: Real>(row: &mut [T], head_dim: usize, position: usize, base: T) {
    let half = head_dim / 2;
    // The same test as half == 0, written so that the compiler can see that the
    // chunk size below is not zero.
    if head_dim < 2 {
        return;
    }
    let head_width = T::from(head_dim).unwrap_or_else(T::one);
    let position = T::from(position).unwrap_or_else(T::zero);
    let two = T::one() + T::one();
    let mut exponent_step = T::zero();
    for pair in 0..half {
        // angle = p * base^(-2i / dh)
        let frequency = base.powf(-(exponent_step / head_width));
        let angle = position * frequency;
        let (sin, cos) = (angle.sin(), angle.cos());
        for head in row.chunks_exact_mut(head_dim) {
            let Some((first, second)) = head.split_at_mut_checked(half) else {
                continue;
            };
            if let (Some(a), Some(b)) = (first.get_mut(pair), second.get_mut(pair)) {
                let (x, y) = (*a, *b);
                *a = x * cos - y * sin;
                *b = y * cos + x * sin;
            }
        }
        exponent_step = exponent_step + two;
    }
}

/// Rotates each row of a row-major matrix, row `i` at position `first_position + i`.
pub(crate) fn rotate_rows<T: Real>(
    rows: &mut [T],
    width: usize,
    head_dim: usize,
    first_position: usize,
    base: T,
) {
    if width == 0 {
        return;
    }
    for (index, row) in rows.chunks_exact_mut(width).enumerate() {
        rotate_row(row, head_dim, first_position + index, base);
    }
}
