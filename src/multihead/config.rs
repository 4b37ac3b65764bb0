//! The configuration of a multi-head attention block and the buffer sizes it implies.

use crate::error::{Dimension, Error, Projection};
use crate::real::Real;
use crate::shape::{add, mul};

/// The number of keys scored together before a running softmax is updated.
pub(crate) const KEY_BLOCK: usize = 8;

/// Per-head state of a running softmax: the maximum, the denominator and the scores
/// of one block of keys.
pub(crate) const SOFTMAX_STATE_LEN: usize = 2 + KEY_BLOCK;

/// One value for each of the four projections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PerProjection<U> {
    /// The value for the query projection.
    pub query: U,
    /// The value for the key projection.
    pub key: U,
    /// The value for the value projection.
    pub value: U,
    /// The value for the output projection.
    pub output: U,
}

impl<U: Copy> PerProjection<U> {
    /// Creates a set with the same value for every projection.
    pub const fn splat(value: U) -> Self {
        PerProjection {
            query: value,
            key: value,
            value,
            output: value,
        }
    }

    /// Returns the value for `projection`.
    pub const fn get(&self, projection: Projection) -> U {
        match projection {
            Projection::Query => self.query,
            Projection::Key => self.key,
            Projection::Value => self.value,
            Projection::Output => self.output,
        }
    }
}

/// Rotary position embedding of query and key heads.
///
/// After the projections and biases, each head vector `v` (length `dh`) of the token at
/// position `p` (0-based) is rotated pairwise: for `i < dh / 2`, with angle
/// `p * base^(-2 i / dh)`, `(v[i], v[i + dh/2])` becomes
/// `(v[i] cos - v[i + dh/2] sin, v[i + dh/2] cos + v[i] sin)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RotaryEmbedding<T> {
    /// The frequency base, usually 10000.
    pub base: T,
}

/// The form of a call's computation, which trades scratch for what it supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Form {
    /// Keeps `Q`, `K`, `V` and one head's `n x n` score matrix; the reference order of
    /// operations.
    Straightforward,
    /// Keeps `K` and `V` (`2 n kv_dim` values) but no score matrix: each query row runs
    /// an online softmax over the stored keys.
    KeepKeyValue,
    /// Stores neither keys, values nor scores, so the scratch does not depend on `n`.
    ///
    /// Each key is a linear function of its input row, so each query head is folded
    /// through its key weight (`Wk_g^T q_h`, `d` values) and scored against the input
    /// rows directly. Each score is then a dot product over `d` instead of `dh`. Rotary
    /// embedding rotates keys by position, which breaks the folding, so this form
    /// rejects it with [`Error::StreamingUnsupported`].
    Streaming {
        /// Query rows that share each pass over the input rows.
        block_rows: usize,
    },
}

/// The way adapters are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AdapterMode {
    /// Merge `W + s B A` into scratch before projecting, as the reference does. Needs
    /// scratch for each adapted weight.
    Merged,
    /// Apply `W x + s B (A x)` on the fly; the weights are only read and the scratch
    /// grows by the largest rank only.
    Factored,
}

/// The work of one call: the number of tokens, the form, and whether adapters are
/// merged or factored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Plan {
    /// The number of tokens `n` (rows of `x`).
    pub seq_len: usize,
    /// The form of the computation.
    pub form: Form,
    /// The way adapters are applied.
    pub adapters: AdapterMode,
}

/// The dimensions and options of a multi-head attention block.
///
/// `x` is `n x dim`. `Wq` and `Wo` are `dim x dim`; `Wk` and `Wv` are `kv_dim x dim`
/// with `kv_dim = kv_heads * head_dim` and `head_dim = dim / heads`. Query head `h`
/// reads key/value head `h / (heads / kv_heads)`. Every size method is a `const fn`
/// that returns `None` when the size does not fit in `usize`. The sizes of an invalid
/// configuration (see [`AttentionConfig::validate`]) are meaningless.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionConfig<T> {
    /// The model width `d`.
    pub dim: usize,
    /// The number of query heads.
    pub heads: usize,
    /// The number of key/value heads: `heads` for multi-head attention, fewer for
    /// grouped-query attention, 1 for multi-query attention.
    pub kv_heads: usize,
    /// Whether each token attends only to itself and earlier tokens.
    pub causal: bool,
    /// Rotary embedding of query and key heads, if any.
    pub rope: Option<RotaryEmbedding<T>>,
    /// Whether the concatenated heads are multiplied by `Wo^T` (plus its bias).
    pub output_projection: bool,
    /// The projections that add a bias.
    pub biases: PerProjection<bool>,
    /// The adapter rank of each projection; 0 means no adapter.
    pub ranks: PerProjection<usize>,
}

impl<T> AttentionConfig<T> {
    /// Creates a configuration with `heads` heads and nothing else: no grouping, no
    /// mask, no rotary embedding, no output projection, biases or adapters.
    pub const fn new(dim: usize, heads: usize) -> Self {
        AttentionConfig {
            dim,
            heads,
            kv_heads: heads,
            causal: false,
            rope: None,
            output_projection: false,
            biases: PerProjection::splat(false),
            ranks: PerProjection::splat(0),
        }
    }

    /// Returns the head width `dim / heads` (0 when `heads` is 0).
    pub const fn head_dim(&self) -> usize {
        match self.dim.checked_div(self.heads) {
            Some(head_dim) => head_dim,
            None => 0,
        }
    }

    /// Returns the width of the keys and values, `kv_heads * head_dim`.
    pub const fn kv_dim(&self) -> Option<usize> {
        self.kv_heads.checked_mul(self.head_dim())
    }

    /// Returns the number of query heads that share one key/value head.
    pub const fn group_size(&self) -> usize {
        match self.heads.checked_div(self.kv_heads) {
            Some(size) => size,
            None => 0,
        }
    }

    /// Returns the output width of a projection: `kv_dim` for keys and values, `dim`
    /// otherwise.
    pub const fn out_features(&self, projection: Projection) -> Option<usize> {
        match projection {
            Projection::Key | Projection::Value => self.kv_dim(),
            Projection::Query | Projection::Output => Some(self.dim),
        }
    }

    /// Returns the length of a projection's weight: `out_features x dim`.
    pub const fn weight_len(&self, projection: Projection) -> Option<usize> {
        mul(self.out_features(projection), Some(self.dim))
    }

    /// Returns the length of `x` and of the output for `seq_len` tokens.
    pub const fn input_len(&self, seq_len: usize) -> Option<usize> {
        seq_len.checked_mul(self.dim)
    }

    /// Returns the largest adapter rank.
    pub const fn max_rank(&self) -> usize {
        let ranks = [
            self.ranks.query,
            self.ranks.key,
            self.ranks.value,
            self.ranks.output,
        ];
        let mut max = 0;
        let mut index = 0;
        while index < ranks.len() {
            if ranks[index] > max {
                max = ranks[index];
            }
            index += 1;
        }
        max
    }

    /// Returns the scratch for merged weights: each adapted weight's length under
    /// [`AdapterMode::Merged`], nothing under [`AdapterMode::Factored`].
    pub const fn merged_weights_len(&self, mode: AdapterMode) -> Option<usize> {
        if let AdapterMode::Factored = mode {
            return Some(0);
        }
        let projections = [
            Projection::Query,
            Projection::Key,
            Projection::Value,
            Projection::Output,
        ];
        let mut total = Some(0);
        let mut index = 0;
        while index < projections.len() {
            let projection = projections[index];
            let has_weight = match projection {
                Projection::Output => self.output_projection,
                _ => true,
            };
            if has_weight && self.ranks.get(projection) > 0 {
                total = add(total, self.weight_len(projection));
            }
            index += 1;
        }
        total
    }

    /// Returns the scratch for `A x` of one row: the largest rank under
    /// [`AdapterMode::Factored`], nothing under [`AdapterMode::Merged`].
    pub const fn adapter_row_len(&self, mode: AdapterMode) -> usize {
        match mode {
            AdapterMode::Factored => self.max_rank(),
            AdapterMode::Merged => 0,
        }
    }

    /// Returns the scratch length of
    /// [`multi_head_attention`](crate::multi_head_attention) for a plan.
    ///
    /// On top of the merged weights ([`AttentionConfig::merged_weights_len`]) and one
    /// row of `A x` ([`AttentionConfig::adapter_row_len`]), with `n = seq_len`:
    /// - [`Form::Straightforward`]: `Q` (`n d`), `K` and `V` (`n kv_dim` each), one
    ///   head's scores (`n n`) and, with an output projection, the concatenated heads
    ///   (`n d`).
    /// - [`Form::KeepKeyValue`]: `K` and `V`, plus `2 d + 10 heads` for the query row
    ///   being computed.
    /// - [`Form::Streaming`]: `min(block_rows, n) * ((2 + 2 heads) d + 10 heads)`,
    ///   which does not grow with `n` beyond `block_rows`.
    pub const fn scratch_len(&self, plan: Plan) -> Option<usize> {
        let Plan {
            seq_len,
            form,
            adapters: mode,
        } = plan;
        let n = Some(seq_len);
        let d = Some(self.dim);
        let kv = self.kv_dim();
        let form_len = match form {
            Form::Straightforward => {
                let q = mul(n, d);
                let keys_values = mul(Some(2), mul(n, kv));
                let scores = mul(n, n);
                let heads = if self.output_projection {
                    mul(n, d)
                } else {
                    Some(0)
                };
                add(add(q, keys_values), add(scores, heads))
            }
            Form::KeepKeyValue => add(mul(Some(2), mul(n, kv)), self.query_row_len()),
            Form::Streaming { block_rows } => {
                let rows = crate::shape::min(block_rows, seq_len);
                mul(Some(rows), self.streaming_row_len())
            }
        };
        add(
            add(form_len, self.merged_weights_len(mode)),
            Some(self.adapter_row_len(mode)),
        )
    }

    /// Returns the per-row scratch of a query attending to stored keys and values:
    /// the query (`d`), the concatenated heads (`d`) and a softmax state per head.
    pub(crate) const fn query_row_len(&self) -> Option<usize> {
        let rows = mul(Some(2), Some(self.dim));
        add(rows, mul(Some(self.heads), Some(SOFTMAX_STATE_LEN)))
    }

    /// Returns the per-row scratch of the streaming form: the query and the
    /// concatenated heads (`d` each), a folded query and a weighted sum of input rows
    /// per head (`d` each), and a softmax state per head.
    pub(crate) const fn streaming_row_len(&self) -> Option<usize> {
        let per_head = add(mul(Some(2), Some(self.dim)), Some(SOFTMAX_STATE_LEN));
        add(
            mul(Some(2), Some(self.dim)),
            mul(Some(self.heads), per_head),
        )
    }

    /// Returns the length of each half (keys or values) of a decoding cache for
    /// `capacity` tokens: `capacity * kv_dim`.
    pub const fn cache_len(&self, capacity: usize) -> Option<usize> {
        capacity.checked_mul(match self.kv_dim() {
            Some(kv) => kv,
            None => return None,
        })
    }

    /// Returns the bytes one cached token takes: `2 * kv_dim * size_of::<T>()`.
    pub const fn cache_bytes_per_token(&self) -> Option<usize> {
        mul(mul(Some(2), self.kv_dim()), Some(core::mem::size_of::<T>()))
    }

    /// Returns the scratch length of [`decode_step`](crate::decode_step): the query,
    /// the concatenated heads and a softmax state per head, plus the merged weights
    /// and one row of `A x`.
    pub const fn decode_scratch_len(&self, mode: AdapterMode) -> Option<usize> {
        add(
            add(self.query_row_len(), self.merged_weights_len(mode)),
            Some(self.adapter_row_len(mode)),
        )
    }
}

impl<T: Real> AttentionConfig<T> {
    /// Checks that the configuration describes a valid attention block.
    ///
    /// # Errors
    ///
    /// - [`Error::ZeroDimension`] when `dim`, `heads` or `kv_heads` is 0;
    /// - [`Error::HeadsDoNotDivideDim`] and [`Error::KvHeadsDoNotDivideHeads`] for
    ///   widths that do not split evenly;
    /// - [`Error::OddHeadDim`] for rotary embedding with an odd head width, and
    ///   [`Error::InvalidRopeBase`] for a base that is not a finite positive number;
    /// - [`Error::OutputProjectionMissing`] for a bias or adapter on the output
    ///   projection without one;
    /// - [`Error::SizeOverflow`] when a weight length does not fit in `usize`.
    pub fn validate(&self) -> Result<(), Error> {
        let zero = |dimension| Err(Error::ZeroDimension { dimension });
        if self.dim == 0 {
            return zero(Dimension::Dim);
        }
        if self.heads == 0 {
            return zero(Dimension::Heads);
        }
        if self.kv_heads == 0 {
            return zero(Dimension::KvHeads);
        }

        if !self.dim.is_multiple_of(self.heads) {
            return Err(Error::HeadsDoNotDivideDim {
                dim: self.dim,
                heads: self.heads,
            });
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(Error::KvHeadsDoNotDivideHeads {
                heads: self.heads,
                kv_heads: self.kv_heads,
            });
        }

        if let Some(rope) = self.rope {
            if !self.head_dim().is_multiple_of(2) {
                return Err(Error::OddHeadDim {
                    head_dim: self.head_dim(),
                });
            }
            if !(rope.base.is_finite() && rope.base > T::zero()) {
                return Err(Error::InvalidRopeBase);
            }
        }
        if !self.output_projection && (self.biases.output || self.ranks.output > 0) {
            return Err(Error::OutputProjectionMissing);
        }

        let sizes = [
            self.weight_len(Projection::Query),
            self.weight_len(Projection::Key),
            self.merged_weights_len(AdapterMode::Merged),
            self.query_row_len(),
            self.streaming_row_len(),
        ];
        if sizes.iter().any(Option::is_none) {
            return Err(Error::SizeOverflow);
        }
        for projection in [
            Projection::Query,
            Projection::Key,
            Projection::Value,
            Projection::Output,
        ] {
            let rank = Some(self.ranks.get(projection));
            let out = self.out_features(projection);
            if mul(rank, Some(self.dim)).is_none() || mul(rank, out).is_none() {
                return Err(Error::SizeOverflow);
            }
        }
        Ok(())
    }
}
