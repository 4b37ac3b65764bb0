//! The shapes of the case data in `cases.rs` and how they become kernel arguments.

use lora_attention::{
    Adapter, AttentionConfig, AttentionWeights, PerProjection, Real, RotaryEmbedding, Scaling,
    Shape, Weights,
};

/// The inputs of a judge case: single-head attention with an adapter on the query
/// projection and scale 1.
pub struct JudgeInputs<T: 'static> {
    /// `b`, `d` and `r`.
    pub shape: Shape,
    /// The input rows, `b x d`.
    pub x: &'static [T],
    /// The query weight, `d x d`.
    pub wq: &'static [T],
    /// The key weight, `d x d`.
    pub wk: &'static [T],
    /// The value weight, `d x d`.
    pub wv: &'static [T],
    /// The adapter's `A`, `r x d`.
    pub a: &'static [T],
    /// The adapter's `B`, `d x r`.
    pub b: &'static [T],
}

impl<T: Real> JudgeInputs<T> {
    /// Returns the weights as the single-head paths take them.
    pub fn weights(&self) -> Weights<'static, T> {
        Weights {
            wq: self.wq,
            wk: self.wk,
            wv: self.wv,
            adapter: Adapter::new(self.a, self.b, Scaling::One),
        }
    }
}

/// The expected results of a judge case.
pub struct JudgeCase {
    /// The file stem in `tests/data/judge`.
    pub name: &'static str,
    /// The case's `.out` file: the judge line, newline included.
    pub expected_text: &'static str,
    /// The output from the float64 reference in `tools/make_cases.py`, which prints
    /// exactly `expected_text`.
    pub reference: &'static [f64],
}

/// The intermediates of the straightforward path from the float64 reference.
pub struct Steps {
    /// `Wq + B A`.
    pub merged: &'static [f64],
    /// `Q = x (Wq + B A)^T`.
    pub q: &'static [f64],
    /// `K = x Wk^T`.
    pub k: &'static [f64],
    /// `V = x Wv^T`.
    pub v: &'static [f64],
    /// `S = (Q K^T) / sqrt(d)`.
    pub scores: &'static [f64],
    /// The row-wise softmax of `S`.
    pub probabilities: &'static [f64],
}

/// One adapter of a generalised case; rank 0 means none.
pub struct AdapterInputs<T: 'static> {
    /// The adapter rank.
    pub rank: usize,
    /// `A`, `rank x dim`.
    pub a: &'static [T],
    /// `B`, `out_features x rank`.
    pub b: &'static [T],
    /// The rule that derives the scale from the rank.
    pub scaling: Scaling<T>,
}

impl<T: Real> AdapterInputs<T> {
    fn adapter(&self) -> Adapter<'static, T> {
        Adapter::new(self.a, self.b, self.scaling)
    }
}

/// The inputs of a generalised case without biases or output projection, with
/// adapters on the query and value projections only.
pub struct AttentionInputs<T: 'static> {
    /// The number of tokens.
    pub seq_len: usize,
    /// The model width.
    pub dim: usize,
    /// The number of query heads.
    pub heads: usize,
    /// The number of key/value heads.
    pub kv_heads: usize,
    /// Whether the causal mask applies.
    pub causal: bool,
    /// The rotary embedding's frequency base, if any.
    pub rope_base: Option<T>,
    /// The input rows, `seq_len x dim`.
    pub x: &'static [T],
    /// The query weight, `dim x dim`.
    pub wq: &'static [T],
    /// The key weight, `kv_dim x dim`.
    pub wk: &'static [T],
    /// The value weight, `kv_dim x dim`.
    pub wv: &'static [T],
    /// The adapter on the query projection.
    pub query: AdapterInputs<T>,
    /// The adapter on the value projection.
    pub value: AdapterInputs<T>,
}

impl<T: Real> AttentionInputs<T> {
    /// Returns the configuration the case describes.
    pub fn config(&self) -> AttentionConfig<T> {
        AttentionConfig {
            kv_heads: self.kv_heads,
            causal: self.causal,
            rope: self.rope_base.map(|base| RotaryEmbedding { base }),
            ranks: PerProjection {
                query: self.query.rank,
                key: 0,
                value: self.value.rank,
                output: 0,
            },
            ..AttentionConfig::new(self.dim, self.heads)
        }
    }

    /// Returns the weights as `multi_head_attention` and `decode_step` take them.
    pub fn weights(&self) -> AttentionWeights<'static, T> {
        let base = AttentionWeights::new(self.wq, self.wk, self.wv);
        AttentionWeights {
            adapters: PerProjection {
                query: self.query.adapter(),
                value: self.value.adapter(),
                ..base.adapters
            },
            ..base
        }
    }
}
