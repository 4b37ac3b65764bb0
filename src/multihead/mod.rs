//! Attention as small transformers use it: several heads, grouped keys and values,
//! a causal mask, biases, rotary embedding, an output projection, adapters on any
//! projection, and decoding one token at a time.

mod config;
mod decode;
mod forward;
mod linear;
mod weights;

pub use config::{AdapterMode, AttentionConfig, Form, PerProjection, Plan, RotaryEmbedding};
pub use decode::{decode_step, KvCache};
pub use forward::multi_head_attention;
pub use weights::AttentionWeights;
