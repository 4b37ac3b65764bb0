//! Self-attention with LoRA adapters, for targets without an allocator.
//!
//! The crate computes single-head attention with a low-rank adapter on the query
//! projection:
//!
//! ```text
//! O = softmax(Q K^T / sqrt(d)) V,   Q = x (Wq + s B A)^T,   K = x Wk^T,   V = x Wv^T
//! ```
//!
//! where the softmax runs over each row. `s` is the adapter scale ([`Scaling`]); the
//! classic judge task uses `s = 1`.
//!
//! # Layout
//!
//! Every matrix is a row-major slice. With `b = seq_len`, `d = dim` and `r = rank`
//! ([`Shape`]):
//!
//! | slice | contains | length |
//! |---|---|---|
//! | `x` | one input row (token) per row | `b * d` |
//! | `wq`, `wk`, `wv` | `W[i][j]` at `i * d + j`; output feature `i`, input feature `j` | `d * d` each |
//! | `adapter.a` | `A`, the down-projection | `r * d` |
//! | `adapter.b` | `B`, the up-projection | `d * r` |
//! | `out` | one output row per input row | `b * d` |
//!
//! A projection is `y = W x` for each row, which is `x W^T` for the whole matrix,
//! as in PyTorch's `Linear`.
//!
//! # Buffers and errors
//!
//! The crate never allocates. Every buffer, including scratch space, is a slice the
//! caller provides, and a `const fn` on the shape gives each path's scratch length
//! (for example [`Shape::attention_scratch_len`]), so firmware can size static
//! buffers at compile time. Inputs are only read.
//!
//! Every fallible function returns [`Error`], and no input reachable through the
//! public API makes it panic. Lengths, shapes and inputs are checked before anything
//! is written; an intermediate that overflows to infinity or NaN is reported as
//! [`Error::NonFiniteResult`] naming the intermediate.
//!
//! # Example
//!
//! ```
//! use lora_attention::{attention, write_judge_line, Adapter, Scaling, Shape, Weights};
//!
//! let shape = Shape::new(1, 3, 2);
//! let x = [0.58, -0.65, -0.63];
//! let wq = [-0.74, -0.71, 0.65, 0.70, -0.14, 0.01, -0.84, 0.20, 0.25];
//! let wk = [-0.60, 0.51, -0.12, -0.35, 0.57, -0.38, -0.44, -0.82, 0.53];
//! let wv = [0.14, 0.03, -0.27, 0.10, -0.12, 0.85, -0.55, 0.10, -0.43];
//! let a = [0.65, 0.32, -0.42, -0.62, -0.88, -0.70];
//! let b = [-0.66, 0.49, 0.09, -0.21, 0.48, 0.41];
//! let weights = Weights { wq: &wq, wk: &wk, wv: &wv, adapter: Adapter::new(&a, &b, Scaling::One) };
//!
//! let mut scratch = [0.0_f64; 64];
//! let mut out = [0.0; 3];
//! attention(shape, &x, &weights, &mut scratch, &mut out)?;
//!
//! let mut line = String::new();
//! write_judge_line(&mut line, &out).unwrap();
//! assert_eq!(line, "0.2318 -0.3995 -0.1131\n");
//! # Ok::<(), lora_attention::Error>(())
//! ```
//!
//! # Features
//!
//! - `std` (off by default): links the standard library only for its fused
//!   multiply-add, which the inner loops use when the target has an FMA instruction
//!   (x86 with `target_feature = "fma"`, AArch64). Nothing else changes.
//! - `nightly-fma` (off by default, needs a nightly compiler): uses core's fused
//!   multiply-add instead, for `no_std` targets with FMA hardware. On 32-bit Arm it
//!   fuses `f32` only, because a Cortex-M4F's FPU is single precision. See [`Real`].
#![no_std]
#![cfg_attr(feature = "nightly-fma", feature(core_float_math))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

mod adapter;
mod attention;
mod error;
mod factored;
mod format;
mod linalg;
mod multihead;
mod online;
mod real;
mod scaling;
mod shape;
mod softmax;
mod steps;
mod streaming;

pub use adapter::{merge_adapter, merge_in_place, unmerge_in_place, Adapter};
pub use attention::{attention, attention_blocked, Weights};
pub use error::{Dimension, Error, Operand, Projection, StreamingLimit};
pub use factored::attention_factored;
pub use format::{write_fixed4, write_judge_line, Fixed4};
pub use multihead::{
    decode_step, multi_head_attention, AdapterMode, AttentionConfig, AttentionWeights, Form,
    KvCache, PerProjection, Plan, RotaryEmbedding,
};
pub use real::Real;
pub use scaling::Scaling;
pub use shape::{AdapterShape, Shape};
pub use softmax::softmax_in_place;
pub use steps::{attend, project, score, weighted_sum};
pub use streaming::attention_streaming;

/// Compiles and runs the Rust examples of the README as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
