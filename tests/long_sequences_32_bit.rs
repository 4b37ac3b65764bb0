//! Long sequences on targets with a 32-bit `usize`, where `seq_len * seq_len`
//! exceeds `usize::MAX` for 65536 tokens or more. The paths that keep no score
//! matrix accept such sequences, since their scratch does not grow with
//! `seq_len * seq_len`, and report score indices (`row * seq_len + key`) that
//! saturate at `usize::MAX` there. Unchecked arithmetic would panic with "attempt
//! to multiply with overflow" in a debug build and wrap in a release build.
//!
//! Each test makes the score of one row past the overflow point infinite, so that
//! a kernel without the panic returns `Error::NonFiniteResult` quickly instead of
//! computing all `seq_len^2` scores.
//!
//! The file compiles to nothing on 64-bit targets. `scripts/test-32-bit` runs it on
//! i686 Linux, with Debian's compiler and standard-library sources and the
//! `gcc-multilib` package.
#![cfg(target_pointer_width = "32")]

use lora_attention::{
    attention_streaming, multi_head_attention, AdapterMode, AttentionConfig, AttentionWeights,
    Error, Form, Operand, Plan, Shape, Weights,
};

/// A value whose square overflows `f32`, so a score of two of them is infinite.
const HUGE: f32 = 1e30;

/// The query weight swaps the two features and the key and value weights keep
/// them, so the score of row `i` against row `j` is `x_i1 x_j0 + x_i0 x_j1` over
/// `sqrt(2)`.
const SWAP: [f32; 4] = [0.0, 1.0, 1.0, 0.0];
const IDENTITY: [f32; 4] = [1.0, 0.0, 0.0, 1.0];

/// Returns `seq_len` rows `(0.5, 0.5)`, except row 0, `(HUGE, 0)`, and row
/// `huge_row`, `(0, HUGE)`. Only the scores of those two rows against each other
/// are infinite, and every other score is finite.
fn input(seq_len: usize, huge_row: usize) -> Vec<f32> {
    let mut x = vec![0.5_f32; seq_len * 2];
    x[..2].copy_from_slice(&[HUGE, 0.0]);
    x[huge_row * 2..huge_row * 2 + 2].copy_from_slice(&[0.0, HUGE]);
    x
}

fn assert_score_overflow(result: Result<(), Error>, out: &[f32]) {
    assert!(
        matches!(
            result,
            Err(Error::NonFiniteResult {
                operand: Operand::Scores,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(out.iter().all(|value| value.is_nan()), "output not NaN");
}

#[test]
fn single_head_streaming_past_u32_scores() {
    // All rows form one block and score key 0 first. Row 5000 of 2^20 scores
    // infinity against key 0, at score index 5000 * 2^20, beyond 2^32.
    let seq_len = 1 << 20;
    let shape = Shape::new(seq_len, 2, 0);
    let weights = Weights {
        wq: &SWAP,
        wk: &IDENTITY,
        wv: &IDENTITY,
        adapter: lora_attention::Adapter::none(),
    };
    let x = input(seq_len, 5000);
    let mut scratch = vec![0.0_f32; shape.streaming_scratch_len(seq_len).unwrap()];
    let mut out = vec![0.0_f32; seq_len * 2];

    let result = attention_streaming(shape, &x, &weights, seq_len, &mut scratch, &mut out);
    assert_score_overflow(result, &out);
}

/// Runs one head of width 2 over `seq_len` tokens in `form`.
fn run_multi_head(seq_len: usize, form: Form, huge_row: usize) {
    let config = AttentionConfig::<f32>::new(2, 1);
    let weights = AttentionWeights::new(&SWAP, &IDENTITY, &IDENTITY);
    let plan = Plan {
        seq_len,
        form,
        adapters: AdapterMode::Factored,
    };
    let x = input(seq_len, huge_row);
    let mut scratch = vec![0.0_f32; config.scratch_len(plan).unwrap()];
    let mut out = vec![0.0_f32; seq_len * 2];

    let result = multi_head_attention(&config, plan, &x, &weights, &mut scratch, &mut out);
    assert_score_overflow(result, &out);
}

#[test]
fn multi_head_keep_key_value_past_u32_scores() {
    // The first query row already computes seq_len * seq_len = 2^32, and it scores
    // infinity against key 10.
    run_multi_head(1 << 16, Form::KeepKeyValue, 10);
}

#[test]
fn multi_head_streaming_past_u32_scores() {
    // All rows form one block and score keys 0 to 7 first. Row 32768 of 2^17 has
    // score index 32768 * 2^17 = 2^32, and row 40000 scores infinity against key 0.
    let seq_len = 1 << 17;
    run_multi_head(
        seq_len,
        Form::Streaming {
            block_rows: seq_len,
        },
        40_000,
    );
}
