//! The weights of a multi-head attention block and their validation.

use crate::adapter::{check_finite, check_len, validate_adapter, Adapter};
use crate::error::{Error, Operand, Projection};
use crate::multihead::config::{AttentionConfig, PerProjection};
use crate::real::Real;
use crate::shape::AdapterShape;

/// The projections of [`PerProjection`] in order, for loops over all four.
pub(crate) const PROJECTIONS: [Projection; 4] = [
    Projection::Query,
    Projection::Key,
    Projection::Value,
    Projection::Output,
];

/// The weights of a multi-head attention block, all row-major.
///
/// `wq` is `dim x dim`, `wk` and `wv` are `kv_dim x dim`, `wo` is `dim x dim` with an
/// output projection and empty without one. A bias has the projection's output width
/// when the configuration enables it and is empty otherwise. Each adapter matches the
/// configuration's rank for its projection: `A` is `rank x dim` and `B` is
/// `out_features x rank` (empty for rank 0, as [`Adapter::none`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionWeights<'a, T> {
    /// The query weight `Wq`.
    pub wq: &'a [T],
    /// The key weight `Wk`.
    pub wk: &'a [T],
    /// The value weight `Wv`.
    pub wv: &'a [T],
    /// The output weight `Wo`, or empty.
    pub wo: &'a [T],
    /// The bias of each projection, or empty.
    pub biases: PerProjection<&'a [T]>,
    /// The adapter of each projection.
    pub adapters: PerProjection<Adapter<'a, T>>,
}

impl<'a, T> AttentionWeights<'a, T> {
    /// Creates weights with no output projection, biases or adapters.
    pub const fn new(wq: &'a [T], wk: &'a [T], wv: &'a [T]) -> Self {
        AttentionWeights {
            wq,
            wk,
            wv,
            wo: &[],
            biases: PerProjection {
                query: &[],
                key: &[],
                value: &[],
                output: &[],
            },
            adapters: PerProjection {
                query: Adapter::none(),
                key: Adapter::none(),
                value: Adapter::none(),
                output: Adapter::none(),
            },
        }
    }

    /// Returns the weight of `projection`.
    pub(crate) fn weight(&self, projection: Projection) -> &'a [T] {
        match projection {
            Projection::Query => self.wq,
            Projection::Key => self.wk,
            Projection::Value => self.wv,
            Projection::Output => self.wo,
        }
    }
}

/// Checks the weights against the configuration and returns each adapter's scale.
///
/// The configuration must already be valid.
pub(crate) fn validate_weights<T: Real>(
    config: &AttentionConfig<T>,
    weights: &AttentionWeights<'_, T>,
) -> Result<PerProjection<T>, Error> {
    let mut scales = PerProjection::splat(T::zero());
    for projection in PROJECTIONS {
        let present = projection != Projection::Output || config.output_projection;
        let out_features = config.out_features(projection).ok_or(Error::SizeOverflow)?;

        let weight = weights.weight(projection);
        let weight_len = if present {
            config.weight_len(projection).ok_or(Error::SizeOverflow)?
        } else {
            0
        };
        check_len(Operand::Weight(projection), weight_len, weight.len())?;

        let bias = weights.biases.get(projection);
        let bias_len = if config.biases.get(projection) {
            out_features
        } else {
            0
        };
        check_len(Operand::Bias(projection), bias_len, bias.len())?;

        let shape = AdapterShape {
            out_features,
            in_features: config.dim,
            rank: config.ranks.get(projection),
        };
        let adapter = weights.adapters.get(projection);
        let scale = validate_adapter(shape, projection, &adapter)?;
        match projection {
            Projection::Query => scales.query = scale,
            Projection::Key => scales.key = scale,
            Projection::Value => scales.value = scale,
            Projection::Output => scales.output = scale,
        }

        check_finite(Operand::Weight(projection), weight)?;
        check_finite(Operand::Bias(projection), bias)?;
    }
    Ok(scales)
}
