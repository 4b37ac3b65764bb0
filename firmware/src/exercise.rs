//! Every computation entry point of the kernel, called on the shared cases and
//! checked against their expected values.
//!
//! Shapes, configurations and slices pass through [`black_box`], so the compiler
//! must keep every length check and branch that a caller with run-time shapes
//! reaches: the `no-panic` binary links these calls only when none of them can
//! panic. Nothing here formats a float, and this module itself indexes nothing,
//! since its own panics would fail that link too.

use core::hint::black_box;

use lora_attention::{
    attention, attention_blocked, attention_factored, attention_streaming, decode_step,
    merge_adapter, merge_in_place, multi_head_attention, project, score, softmax_in_place,
    unmerge_in_place, weighted_sum, AdapterMode, Error, Form, KvCache, Operand, Plan, Projection,
    Scaling, StreamingLimit,
};

use crate::cases;
use crate::compare::{magnitude, relative_error};
use crate::inputs::{AttentionInputs, JudgeCase, JudgeInputs};
use crate::Element;

/// Scratch values each run may use: more than any case here needs.
pub const SCRATCH_LEN: usize = 512;

/// Output values each run may write: more than any case here has.
pub const OUT_LEN: usize = 64;

/// The reason a check failed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Failure {
    /// The kernel returned an error.
    Kernel(Error),
    /// The result is further from the expected values than the tolerance, relative
    /// to the largest expected magnitude.
    TooFar {
        /// The relative error found.
        error: f64,
        /// The relative error allowed.
        tolerance: f64,
    },
    /// The kernel returned something else than the check expects: another error, a
    /// success where an error was due, or a cache of the wrong length.
    Unexpected,
    /// The firmware's buffers are too small for the case.
    BufferTooSmall,
    /// The stack grew into the statics below it, so the RAM is too small for the
    /// run and any result may be corrupt.
    StackOverflow,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::Kernel(error)
    }
}

/// The way a check passed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Passed {
    /// The result agrees with the expected values; the relative error found.
    Within(f64),
    /// The kernel rejected an invalid input with the error the check expects.
    Rejected,
    /// The result is exactly check the check expects.
    Exact,
    /// The judge line printed is exactly the case's `.out` text.
    SameText,
}

/// The outcome of one check.
pub type Outcome = Result<Passed, Failure>;

/// Receives the outcome of every check.
pub trait Report {
    /// Records one check: the float type, the case, the check's name and the outcome.
    fn record(
        &mut self,
        element: &'static str,
        case: &'static str,
        check: &'static str,
        outcome: Outcome,
    );
}

/// Runs every check at precision `T`, with buffers on the stack.
pub fn run_all<T: Element>(report: &mut impl Report) {
    let mut scratch = [T::nan(); SCRATCH_LEN];
    let mut out = [T::nan(); OUT_LEN];

    single_head_paths(
        report,
        T::sample_1(),
        &cases::SAMPLE_1,
        &mut scratch,
        &mut out,
    );
    single_head_paths(
        report,
        T::sample_2(),
        &cases::SAMPLE_2,
        &mut scratch,
        &mut out,
    );
    single_head_steps::<T>(report, &mut scratch, &mut out);
    single_head_errors::<T>(report, &mut scratch, &mut out);
    scaling::<T>(report);
    multi_head(
        report,
        "008-rope-causal",
        T::rope_causal(),
        cases::ROPE_CAUSAL_EXPECTED,
        &mut scratch,
        &mut out,
    );
    multi_head(
        report,
        "001-heads2-causal",
        T::heads2_causal(),
        cases::HEADS2_CAUSAL_EXPECTED,
        &mut scratch,
        &mut out,
    );
    decoding(
        report,
        "008-rope-causal",
        T::rope_causal(),
        cases::ROPE_CAUSAL_EXPECTED,
        &mut scratch,
        &mut out,
    );
}

/// Passes when `actual` agrees with `expected` within `T::TOLERANCE`, relative
/// to `magnitude`.
pub fn agree<T: Element>(actual: &[T], expected: &[f64], magnitude: f64) -> Outcome {
    let error = relative_error(actual, expected, magnitude);
    if error <= T::TOLERANCE {
        Ok(Passed::Within(error))
    } else {
        Err(Failure::TooFar {
            error,
            tolerance: T::TOLERANCE,
        })
    }
}

/// Passes when `condition` holds.
fn expect(condition: bool) -> Outcome {
    if condition {
        Ok(Passed::Exact)
    } else {
        Err(Failure::Unexpected)
    }
}

/// Passes when the kernel returned `expected`, an error.
fn expect_error(result: Result<(), Error>, expected: Error) -> Outcome {
    if result == Err(expected) {
        Ok(Passed::Rejected)
    } else {
        Err(Failure::Unexpected)
    }
}

/// Fills `buffer` with NaN, so that an element the kernel does not write cannot
/// pass a check, and returns its first `len` elements.
fn take<T: Element>(buffer: &mut [T], len: Option<usize>) -> Result<&mut [T], Failure> {
    buffer.fill(T::nan());
    let len = len.ok_or(Failure::BufferTooSmall)?;
    buffer.get_mut(..len).ok_or(Failure::BufferTooSmall)
}

/// Runs the four single-head paths on a judge case.
fn single_head_paths<T: Element>(
    report: &mut impl Report,
    inputs: &JudgeInputs<T>,
    case: &JudgeCase,
    scratch: &mut [T],
    out: &mut [T],
) {
    let shape = black_box(inputs.shape);
    let x = black_box(inputs.x);
    let weights = black_box(inputs.weights());
    let scale = magnitude(case.reference);
    let mut run = |check, path: &dyn Fn(&mut [T], &mut [T]) -> Result<(), Error>| {
        let outcome = (|| {
            let out = take(out, shape.input_len())?;
            scratch.fill(T::nan());
            path(black_box(&mut *scratch), out)?;
            agree(out, case.reference, scale)
        })();
        report.record(T::NAME, case.name, check, outcome);
    };

    run("attention", &|scratch, out| {
        attention(shape, x, &weights, scratch, out)
    });
    run("attention_blocked, 1 score row", &|scratch, out| {
        attention_blocked(shape, x, &weights, black_box(1), scratch, out)
    });
    run("attention_factored, 1 score row", &|scratch, out| {
        attention_factored(shape, x, &weights, black_box(1), scratch, out)
    });
    run("attention_streaming, 1 row per block", &|scratch, out| {
        attention_streaming(shape, x, &weights, black_box(1), scratch, out)
    });
    run("attention_streaming, 2 rows per block", &|scratch, out| {
        attention_streaming(shape, x, &weights, black_box(2), scratch, out)
    });
}

/// Runs the steps of the straightforward path one by one on `sample-1`, checking
/// each intermediate, then merges and unmerges the adapter in place.
fn single_head_steps<T: Element>(report: &mut impl Report, scratch: &mut [T], out: &mut [T]) {
    let inputs = T::sample_1();
    let steps = &cases::SAMPLE_1_STEPS;
    let case = cases::SAMPLE_1.name;
    let shape = black_box(inputs.shape);
    let adapter_shape = shape.query_adapter();
    let x = black_box(inputs.x);
    let weights = black_box(inputs.weights());

    scratch.fill(T::nan());
    let Some((merged, rest)) = shape
        .weight_len()
        .and_then(|len| scratch.split_at_mut_checked(len))
    else {
        report.record(T::NAME, case, "steps", Err(Failure::BufferTooSmall));
        return;
    };
    let input_len = shape.input_len().unwrap_or(usize::MAX);
    let Some((q, rest)) = rest.split_at_mut_checked(input_len) else {
        report.record(T::NAME, case, "steps", Err(Failure::BufferTooSmall));
        return;
    };
    let Some((k, rest)) = rest.split_at_mut_checked(input_len) else {
        report.record(T::NAME, case, "steps", Err(Failure::BufferTooSmall));
        return;
    };
    let Some((v, rest)) = rest.split_at_mut_checked(input_len) else {
        report.record(T::NAME, case, "steps", Err(Failure::BufferTooSmall));
        return;
    };
    let Some((scores, rest)) = shape
        .scores_len()
        .and_then(|len| rest.split_at_mut_checked(len))
    else {
        report.record(T::NAME, case, "steps", Err(Failure::BufferTooSmall));
        return;
    };

    let outcome = merge_adapter(
        adapter_shape,
        Projection::Query,
        weights.wq,
        &weights.adapter,
        merged,
    )
    .map_err(Failure::from)
    .and_then(|()| agree(merged, steps.merged, magnitude(steps.merged)));
    report.record(T::NAME, case, "merge_adapter", outcome);

    let projections = [
        ("project x Wq'^T", &*merged, &mut *q, steps.q),
        ("project x Wk^T", weights.wk, &mut *k, steps.k),
        ("project x Wv^T", weights.wv, &mut *v, steps.v),
    ];
    for (check, weight, projected, expected) in projections {
        let outcome = project(shape, x, black_box(weight), projected)
            .map_err(Failure::from)
            .and_then(|()| agree(projected, expected, magnitude(expected)));
        report.record(T::NAME, case, check, outcome);
    }

    let outcome = score(shape, q, k, scores)
        .map_err(Failure::from)
        .and_then(|()| agree(scores, steps.scores, magnitude(steps.scores)));
    report.record(T::NAME, case, "score", outcome);

    let outcome = (|| {
        let seq_len = shape.seq_len;
        if seq_len == 0 {
            return Err(Failure::Unexpected);
        }
        for row in scores.chunks_exact_mut(seq_len) {
            softmax_in_place(row)?;
        }
        agree(scores, steps.probabilities, magnitude(steps.probabilities))
    })();
    report.record(T::NAME, case, "softmax_in_place", outcome);

    let outcome = (|| {
        let out = take(out, shape.input_len())?;
        weighted_sum(shape, scores, v, out)?;
        agree(
            out,
            cases::SAMPLE_1.reference,
            magnitude(cases::SAMPLE_1.reference),
        )
    })();
    report.record(T::NAME, case, "weighted_sum", outcome);

    // A copy of Wq in RAM, as firmware would keep a weight it adapts in place.
    let outcome = (|| {
        let weight = rest
            .get_mut(..weights.wq.len())
            .ok_or(Failure::BufferTooSmall)?;
        for (element, &original) in weight.iter_mut().zip(weights.wq) {
            *element = original;
        }
        merge_in_place(
            adapter_shape,
            Projection::Query,
            &mut *weight,
            &weights.adapter,
        )?;
        agree(weight, steps.merged, magnitude(steps.merged))?;
        unmerge_in_place(
            adapter_shape,
            Projection::Query,
            &mut *weight,
            &weights.adapter,
        )?;

        // Each element rounds twice, once per sum, so it moves by at most
        // 2 eps (|w| + |term|), and |term| <= |w + term| + |w|.
        let epsilon = T::epsilon().to_f64().unwrap_or(0.0);
        let bound = 2.0 * epsilon * (2.0 * magnitude(weights.wq) + magnitude(steps.merged));
        let moved = relative_error(weight, weights.wq, 1.0);
        if moved <= bound {
            Ok(Passed::Within(moved))
        } else {
            Err(Failure::TooFar {
                error: moved,
                tolerance: bound,
            })
        }
    })();
    report.record(
        T::NAME,
        case,
        "merge_in_place then unmerge_in_place",
        outcome,
    );
}

/// Checks that invalid lengths are reported as errors, not panics.
fn single_head_errors<T: Element>(report: &mut impl Report, scratch: &mut [T], out: &mut [T]) {
    let inputs = T::sample_1();
    let case = cases::SAMPLE_1.name;
    let shape = black_box(inputs.shape);
    let weights = black_box(inputs.weights());
    let x = black_box(inputs.x);

    let outcome = (|| {
        let required = shape.attention_scratch_len().ok_or(Failure::Unexpected)?;
        let short = scratch
            .get_mut(..required.wrapping_sub(1))
            .ok_or(Failure::BufferTooSmall)?;
        let out = take(out, shape.input_len())?;
        let result = attention(shape, x, &weights, short, out);
        let too_small = Error::ScratchTooSmall {
            required,
            actual: required.wrapping_sub(1),
        };
        expect_error(result, too_small)
    })();
    report.record(T::NAME, case, "attention rejects a short scratch", outcome);

    let outcome = (|| {
        let (_, short_x) = x.split_last().ok_or(Failure::Unexpected)?;
        let out = take(out, shape.input_len())?;
        let result = attention_streaming(shape, short_x, &weights, black_box(1), scratch, out);
        let mismatch = Error::LengthMismatch {
            operand: Operand::Input,
            expected: x.len(),
            actual: short_x.len(),
        };
        expect_error(result, mismatch)
    })();
    report.record(
        T::NAME,
        case,
        "attention_streaming rejects a short x",
        outcome,
    );

    let outcome = (|| {
        let row = take(out, Some(black_box(3)))?;
        row.fill(T::neg_infinity());
        expect_error(softmax_in_place(row), Error::AllScoresMasked)
    })();
    report.record(
        T::NAME,
        case,
        "softmax_in_place rejects a masked row",
        outcome,
    );
}

/// Checks each kind of [`Scaling`] on values it computes exactly.
fn scaling<T: Element>(report: &mut impl Report) {
    let value = |number: f64| T::from(number).unwrap_or_else(T::nan);
    let kinds = [
        ("Scaling::One", Scaling::One, 3, 1.0),
        (
            "Scaling::AlphaOverRank",
            Scaling::AlphaOverRank { alpha: value(16.0) },
            8,
            2.0,
        ),
        (
            "Scaling::AlphaOverSqrtRank",
            Scaling::AlphaOverSqrtRank { alpha: value(8.0) },
            4,
            4.0,
        ),
        ("Scaling::Factor", Scaling::Factor(value(0.5)), 3, 0.5),
        ("Scaling at rank 0", Scaling::Factor(value(0.5)), 0, 0.0),
    ];
    for (check, kind, rank, expected) in kinds {
        let outcome = black_box(kind)
            .scale(black_box(rank))
            .map_err(Failure::from)
            .and_then(|scale| expect(scale == value(expected)));
        report.record(T::NAME, "scale", check, outcome);
    }
    let outcome = black_box(Scaling::Factor(T::nan()))
        .scale(black_box(2))
        .map(|_| ());
    report.record(
        T::NAME,
        "scale",
        "Scaling::Factor rejects NaN",
        expect_error(outcome, Error::InvalidScale),
    );
}

/// The forms and adapter modes of `multi_head_attention`, with their names.
const PLANS: [(&str, Form, AdapterMode); 8] = [
    (
        "straightforward, merged",
        Form::Straightforward,
        AdapterMode::Merged,
    ),
    (
        "straightforward, factored",
        Form::Straightforward,
        AdapterMode::Factored,
    ),
    (
        "keep K and V, merged",
        Form::KeepKeyValue,
        AdapterMode::Merged,
    ),
    (
        "keep K and V, factored",
        Form::KeepKeyValue,
        AdapterMode::Factored,
    ),
    (
        "streaming 1 row, merged",
        Form::Streaming { block_rows: 1 },
        AdapterMode::Merged,
    ),
    (
        "streaming 1 row, factored",
        Form::Streaming { block_rows: 1 },
        AdapterMode::Factored,
    ),
    (
        "streaming 3 rows, merged",
        Form::Streaming { block_rows: 3 },
        AdapterMode::Merged,
    ),
    (
        "streaming 3 rows, factored",
        Form::Streaming { block_rows: 3 },
        AdapterMode::Factored,
    ),
];

/// Runs `multi_head_attention` on a generalised case in every form and adapter
/// mode. With rotary embedding, the streaming form must reject the case.
fn multi_head<T: Element>(
    report: &mut impl Report,
    case: &'static str,
    inputs: &AttentionInputs<T>,
    expected: &[f64],
    scratch: &mut [T],
    out: &mut [T],
) {
    let config = black_box(inputs.config());
    let weights = black_box(inputs.weights());
    let x = black_box(inputs.x);
    let scale = magnitude(expected);

    for (check, form, adapters) in PLANS {
        let plan = black_box(Plan {
            seq_len: inputs.seq_len,
            form,
            adapters,
        });
        let streaming = matches!(form, Form::Streaming { .. });
        let outcome = (|| {
            let out = take(out, config.input_len(plan.seq_len))?;
            scratch.fill(T::nan());
            let result = multi_head_attention(
                &config,
                plan,
                x,
                &weights,
                black_box(&mut *scratch),
                &mut *out,
            );
            if streaming && config.rope.is_some() {
                let rejected = Error::StreamingUnsupported {
                    reason: StreamingLimit::RotaryEmbedding,
                };
                return expect_error(result, rejected);
            }
            result?;
            agree(out, expected, scale)
        })();
        report.record(T::NAME, case, check, outcome);
    }
}

/// The names of the decoding checks in one adapter mode.
struct DecodeNames {
    /// One per token, for cases of up to 8 tokens.
    steps: [&'static str; 8],
    full: &'static str,
    again: &'static str,
    clear: &'static str,
}

/// The adapter modes of decoding, with the names of their checks.
const DECODE_MODES: [(AdapterMode, DecodeNames); 2] = [
    (
        AdapterMode::Factored,
        DecodeNames {
            steps: [
                "decode token 1, factored",
                "decode token 2, factored",
                "decode token 3, factored",
                "decode token 4, factored",
                "decode token 5, factored",
                "decode token 6, factored",
                "decode token 7, factored",
                "decode token 8, factored",
            ],
            full: "decode into a full cache, factored",
            again: "decode again after truncate, factored",
            clear: "KvCache::clear, factored",
        },
    ),
    (
        AdapterMode::Merged,
        DecodeNames {
            steps: [
                "decode token 1, merged",
                "decode token 2, merged",
                "decode token 3, merged",
                "decode token 4, merged",
                "decode token 5, merged",
                "decode token 6, merged",
                "decode token 7, merged",
                "decode token 8, merged",
            ],
            full: "decode into a full cache, merged",
            again: "decode again after truncate, merged",
            clear: "KvCache::clear, merged",
        },
    ),
];

/// Decodes a causal case token by token in both adapter modes, checking each
/// output row against the same row of the case's full output, then checks the
/// cache's capacity limit and decodes the last tokens again after a rollback.
fn decoding<T: Element>(
    report: &mut impl Report,
    case: &'static str,
    inputs: &AttentionInputs<T>,
    expected: &[f64],
    scratch: &mut [T],
    out: &mut [T],
) {
    let config = black_box(inputs.config());
    let weights = black_box(inputs.weights());
    let x = black_box(inputs.x);
    let dim = config.dim;
    let scale = magnitude(expected);
    if dim == 0 {
        report.record(T::NAME, case, "decoding", Err(Failure::Unexpected));
        return;
    }

    for (mode, names) in DECODE_MODES {
        scratch.fill(T::nan());
        let cache_len = config.cache_len(inputs.seq_len).unwrap_or(usize::MAX);
        let Some((keys, rest)) = scratch.split_at_mut_checked(cache_len) else {
            report.record(T::NAME, case, "decoding", Err(Failure::BufferTooSmall));
            return;
        };
        let Some((values, step_scratch)) = rest.split_at_mut_checked(cache_len) else {
            report.record(T::NAME, case, "decoding", Err(Failure::BufferTooSmall));
            return;
        };
        let mut cache = match KvCache::new(&config, keys, values) {
            Ok(cache) => cache,
            Err(error) => {
                report.record(T::NAME, case, "KvCache::new", Err(Failure::Kernel(error)));
                return;
            }
        };
        let Ok(out_row) = take(out, Some(dim)) else {
            report.record(T::NAME, case, "decoding", Err(Failure::BufferTooSmall));
            return;
        };

        // Step 1: every token in order; row p must match row p of the full output.
        let rows = x
            .chunks_exact(dim)
            .zip(expected.chunks_exact(dim))
            .zip(names.steps);
        for ((x_row, expected_row), check) in rows {
            out_row.fill(T::nan());
            let outcome = decode_step(
                &config,
                mode,
                &weights,
                &mut cache,
                x_row,
                step_scratch,
                out_row,
            )
            .map_err(Failure::from)
            .and_then(|()| agree(out_row, expected_row, scale));
            report.record(T::NAME, case, check, outcome);
        }

        // Step 2: the cache is full, so one more token is an error.
        let capacity = cache.capacity();
        let full = cache.len() == inputs.seq_len
            && capacity == inputs.seq_len
            && cache.keys().len() == cache_len;
        let first_row = x.get(..dim).unwrap_or_default();
        let result = decode_step(
            &config,
            mode,
            &weights,
            &mut cache,
            first_row,
            step_scratch,
            out_row,
        );
        let outcome = if full && cache.len() == capacity {
            expect_error(result, Error::CacheFull { capacity })
        } else {
            Err(Failure::Unexpected)
        };
        report.record(T::NAME, case, names.full, outcome);

        // Step 3: roll back to half the tokens and decode the rest again.
        let kept_tokens = black_box(inputs.seq_len / 2);
        cache.truncate(kept_tokens);
        let mut outcome = expect(
            cache.len() == kept_tokens
                && cache.values().len() == kept_tokens * config.kv_heads * config.head_dim(),
        );
        let rows = x
            .chunks_exact(dim)
            .zip(expected.chunks_exact(dim))
            .skip(kept_tokens);
        for (x_row, expected_row) in rows {
            if outcome.is_err() {
                break;
            }
            out_row.fill(T::nan());
            outcome = decode_step(
                &config,
                mode,
                &weights,
                &mut cache,
                x_row,
                step_scratch,
                out_row,
            )
            .map_err(Failure::from)
            .and_then(|()| agree(out_row, expected_row, scale));
        }
        report.record(T::NAME, case, names.again, outcome);

        cache.clear();
        report.record(T::NAME, case, names.clear, expect(cache.is_empty()));
    }
}
