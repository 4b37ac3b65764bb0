//! The generalised kernel against every case in tests/data/attention, a plain
//! reference on random configurations, and decoding against the full computation.

#[path = "common/multihead.rs"]
mod cases;
#[path = "common/mod.rs"]
mod common;

use cases::{attention_cases, reference_multihead, scaling, AttentionCase, LoraCase, OwnedCase};
use common::{relative_error, Random};
use lora_attention::{
    decode_step, multi_head_attention, Adapter, AdapterMode, AttentionConfig, AttentionWeights,
    Error, Form, KvCache, Operand, PerProjection, Plan, Projection, Real, RotaryEmbedding, Scaling,
    StreamingLimit,
};

/// f64 agreement with the extended-precision expected values, relative to the
/// largest expected magnitude.
const F64_TOLERANCE: f64 = 1e-12;

/// f32 agreement, relative to the largest expected magnitude: the same bound as the
/// single-head tests. The cases chain up to four projections with adapter scales up
/// to 16 and rotary angles up to 5 radians. The worst measured error is about 6e-7
/// (the test prints it), and a real error shows at 1e-3 and above.
const F32_TOLERANCE: f64 = 1e-5;

const MODES: [AdapterMode; 2] = [AdapterMode::Merged, AdapterMode::Factored];

/// Every form a case runs through; streaming twice, so that blocks of one row and
/// blocks shorter than the sequence are both covered.
const FORMS: [Form; 4] = [
    Form::Straightforward,
    Form::KeepKeyValue,
    Form::Streaming { block_rows: 1 },
    Form::Streaming { block_rows: 3 },
];

fn widen<T: Real>(values: &[T]) -> Vec<f64> {
    values.iter().map(|v| v.to_f64().unwrap()).collect()
}

#[test]
fn case_scales_match_scaling_kinds() {
    for case in attention_cases() {
        for (key, lora) in &case.lora {
            let scale = scaling::<f64>(lora).scale(lora.rank).unwrap();
            assert!(
                (scale - lora.scale).abs() <= 1e-15 * lora.scale.abs(),
                "{} {key}: {scale} != {}",
                case.name,
                lora.scale
            );
        }
    }
}

#[test]
fn every_case_in_every_form_matches_expected() {
    let mut worst_f32 = 0.0_f64;
    for case in attention_cases() {
        let wide = OwnedCase::<f64>::new(&case);
        let narrow = OwnedCase::<f32>::new(&case);
        for form in FORMS {
            for mode in MODES {
                let label = format!("{} {form:?} {mode:?}", case.name);
                let streaming = matches!(form, Form::Streaming { .. });
                if streaming && case.rope_base.is_some() {
                    let error = wide.run(form, mode).unwrap_err();
                    let expected = Error::StreamingUnsupported {
                        reason: StreamingLimit::RotaryEmbedding,
                    };
                    assert_eq!(error, expected, "{label}");
                    continue;
                }

                let out = wide
                    .run(form, mode)
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                let error = relative_error(&out, &case.expected);
                assert!(
                    error <= F64_TOLERANCE,
                    "{label}: f64 relative error {error:e}"
                );

                let out = narrow
                    .run(form, mode)
                    .unwrap_or_else(|e| panic!("{label} f32: {e}"));
                let error = relative_error(&widen(&out), &case.expected);
                worst_f32 = worst_f32.max(error);
                assert!(
                    error <= F32_TOLERANCE,
                    "{label}: f32 relative error {error:e}"
                );
            }
        }
    }
    println!("worst f32 relative error on the attention cases: {worst_f32:e}");
}

#[test]
fn plain_reference_matches_expected() {
    // The reference in tests/common checks itself against the independent values,
    // so the random-configuration test below can trust it.
    for case in attention_cases() {
        let error = relative_error(&reference_multihead(&case), &case.expected);
        assert!(error <= F64_TOLERANCE, "{}: {error:e}", case.name);
    }
}

/// Builds a random configuration and its weights as a case with no expected values.
fn random_case(random: &mut Random, index: usize) -> AttentionCase {
    let kv_heads = random.range(1, 3);
    let heads = kv_heads * random.range(1, 3);
    let head_dim = 2 * random.range(1, 3);
    let d = heads * head_dim;
    let kv_dim = kv_heads * head_dim;
    let n = random.range(1, 9);
    let has_wo = random.range(0, 1) == 1;
    let mut bias = std::collections::BTreeMap::new();
    let mut lora = std::collections::BTreeMap::new();
    for (key, out) in [("q", d), ("k", kv_dim), ("v", kv_dim), ("o", d)] {
        if key == "o" && !has_wo {
            continue;
        }
        if random.range(0, 1) == 1 {
            bias.insert(key.to_string(), random.vector(out));
        }
        if random.range(0, 1) == 1 {
            let rank = random.range(1, 5);
            let alpha = random.range(1, 16) as f64;
            lora.insert(
                key.to_string(),
                LoraCase {
                    rank,
                    alpha,
                    scaling: "alpha_over_r".to_string(),
                    scale: alpha / rank as f64,
                    a: random.vector(rank * d),
                    b: random.vector(out * rank),
                },
            );
        }
    }
    AttentionCase {
        name: format!("random-{index}"),
        n,
        d,
        heads,
        kv_heads,
        causal: random.range(0, 1) == 1,
        x: random.vector(n * d),
        wq: random.vector(d * d),
        wk: random.vector(kv_dim * d),
        wv: random.vector(kv_dim * d),
        wo: has_wo.then(|| random.vector(d * d)),
        bias,
        rope_base: (random.range(0, 2) == 0).then_some(100.0),
        lora,
        expected: Vec::new(),
    }
}

#[test]
fn random_configurations_match_reference() {
    let mut random = Random::new(0xa77e);
    for index in 0..60 {
        let case = random_case(&mut random, index);
        let expected = reference_multihead(&case);
        let owned = OwnedCase::<f64>::new(&case);
        for form in FORMS {
            if matches!(form, Form::Streaming { .. }) && case.rope_base.is_some() {
                continue;
            }
            for mode in MODES {
                let out = owned.run(form, mode).unwrap();
                let error = relative_error(&out, &expected);
                assert!(
                    error <= F64_TOLERANCE,
                    "{} {form:?} {mode:?}: {error:e}",
                    case.name
                );
            }
        }
    }
}

#[test]
fn decoding_matches_full_causal_computation() {
    for case in attention_cases() {
        let mut causal = case.clone();
        causal.causal = true;
        let expected = reference_multihead(&causal);
        let owned = OwnedCase::<f64>::new(&case);
        for mode in MODES {
            let rows = owned.decode_all(mode).unwrap();
            let error = relative_error(&rows, &expected);
            assert!(error <= F64_TOLERANCE, "{} {mode:?}: {error:e}", case.name);
        }
        if case.causal {
            let error = relative_error(
                &owned.decode_all(AdapterMode::Factored).unwrap(),
                &case.expected,
            );
            assert!(
                error <= F64_TOLERANCE,
                "{}: decoding against expected {error:e}",
                case.name
            );
        }
    }
}

#[test]
fn decoding_leaves_earlier_cache_rows_untouched() {
    let case = attention_cases()
        .into_iter()
        .find(|c| c.rope_base.is_some())
        .unwrap();
    let owned = OwnedCase::<f64>::new(&case);
    let config = owned.config;
    let n = owned.seq_len();
    let mut keys = vec![0.0; config.cache_len(n).unwrap()];
    let mut values = vec![0.0; config.cache_len(n).unwrap()];
    let mut scratch = vec![0.0; config.decode_scratch_len(AdapterMode::Factored).unwrap()];
    let mut out = vec![0.0; config.dim];
    let mut cache = KvCache::new(&config, &mut keys, &mut values).unwrap();
    let mut snapshots: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
    for x_row in owned.x.chunks(config.dim) {
        decode_step(
            &config,
            AdapterMode::Factored,
            &owned.weights(),
            &mut cache,
            x_row,
            &mut scratch,
            &mut out,
        )
        .unwrap();
        for (step, (keys_then, values_then)) in snapshots.iter().enumerate() {
            assert_eq!(
                &cache.keys()[..keys_then.len()],
                &keys_then[..],
                "keys after step {step}"
            );
            assert_eq!(
                &cache.values()[..values_then.len()],
                &values_then[..],
                "values after step {step}"
            );
        }
        snapshots.push((cache.keys().to_vec(), cache.values().to_vec()));
    }
}

#[test]
fn full_cache_is_an_error() {
    let case = &attention_cases()[0];
    let owned = OwnedCase::<f64>::new(case);
    let config = owned.config;
    let mut keys = vec![0.0; config.cache_len(1).unwrap()];
    let mut values = vec![0.0; config.cache_len(1).unwrap()];
    let mut cache = KvCache::new(&config, &mut keys, &mut values).unwrap();
    assert_eq!(cache.capacity(), 1);
    let mut scratch = vec![0.0; config.decode_scratch_len(AdapterMode::Factored).unwrap()];
    let mut out = vec![7.0; config.dim];
    let x_row = &owned.x[..config.dim];
    decode_step(
        &config,
        AdapterMode::Factored,
        &owned.weights(),
        &mut cache,
        x_row,
        &mut scratch,
        &mut out,
    )
    .unwrap();
    let kept = cache.keys().to_vec();

    out.fill(7.0);
    let error = decode_step(
        &config,
        AdapterMode::Factored,
        &owned.weights(),
        &mut cache,
        x_row,
        &mut scratch,
        &mut out,
    );
    assert_eq!(error, Err(Error::CacheFull { capacity: 1 }));
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.keys(), &kept[..]);
    assert!(out.iter().all(|&v| v == 7.0), "output untouched");

    cache.clear();
    assert!(cache.is_empty());
}

#[test]
fn cache_bytes_per_token_counts_keys_and_values() {
    let config = AttentionConfig::<f32> {
        kv_heads: 2,
        ..AttentionConfig::new(64, 8)
    };
    // kv_dim = 2 heads * 8 wide = 16 values each for the key and the value, 4 bytes each.
    assert_eq!(config.cache_bytes_per_token(), Some(2 * 16 * 4));
    assert_eq!(config.cache_len(100), Some(1600));
}

#[test]
fn invalid_configurations_are_errors() {
    let base = AttentionConfig::<f64>::new(8, 2);
    let cases = [
        (
            AttentionConfig { dim: 0, ..base },
            Error::ZeroDimension {
                dimension: lora_attention::Dimension::Dim,
            },
        ),
        (
            AttentionConfig { heads: 0, ..base },
            Error::ZeroDimension {
                dimension: lora_attention::Dimension::Heads,
            },
        ),
        (
            AttentionConfig {
                kv_heads: 0,
                ..base
            },
            Error::ZeroDimension {
                dimension: lora_attention::Dimension::KvHeads,
            },
        ),
        (
            AttentionConfig {
                heads: 3,
                kv_heads: 3,
                ..base
            },
            Error::HeadsDoNotDivideDim { dim: 8, heads: 3 },
        ),
        (
            AttentionConfig {
                heads: 4,
                kv_heads: 3,
                ..base
            },
            Error::KvHeadsDoNotDivideHeads {
                heads: 4,
                kv_heads: 3,
            },
        ),
        (
            AttentionConfig {
                dim: 6,
                heads: 2,
                kv_heads: 2,
                rope: Some(RotaryEmbedding { base: 10000.0 }),
                ..base
            },
            Error::OddHeadDim { head_dim: 3 },
        ),
        (
            AttentionConfig {
                rope: Some(RotaryEmbedding { base: f64::NAN }),
                ..base
            },
            Error::InvalidRopeBase,
        ),
        (
            AttentionConfig {
                rope: Some(RotaryEmbedding { base: -2.0 }),
                ..base
            },
            Error::InvalidRopeBase,
        ),
        (
            AttentionConfig {
                biases: PerProjection {
                    output: true,
                    ..PerProjection::splat(false)
                },
                ..base
            },
            Error::OutputProjectionMissing,
        ),
        (
            AttentionConfig {
                ranks: PerProjection {
                    output: 2,
                    ..PerProjection::splat(0)
                },
                ..base
            },
            Error::OutputProjectionMissing,
        ),
        (
            AttentionConfig {
                dim: usize::MAX,
                heads: 1,
                kv_heads: 1,
                ..base
            },
            Error::SizeOverflow,
        ),
    ];
    for (config, expected) in cases {
        assert_eq!(config.validate(), Err(expected), "{config:?}");
        let weights = AttentionWeights::new(&[], &[], &[]);
        let plan = Plan {
            seq_len: 1,
            form: Form::KeepKeyValue,
            adapters: AdapterMode::Factored,
        };
        let mut out = [0.0; 8];
        let result = multi_head_attention(&config, plan, &[0.0; 8], &weights, &mut [], &mut out);
        assert_eq!(result, Err(expected), "{config:?} through the entry point");
    }
}

#[test]
fn wrong_bias_and_adapter_lengths_are_errors() {
    let case = attention_cases()
        .into_iter()
        .find(|c| c.name.starts_with("007"))
        .unwrap();
    let owned = OwnedCase::<f64>::new(&case);
    let plan = Plan {
        seq_len: owned.seq_len(),
        form: Form::KeepKeyValue,
        adapters: AdapterMode::Factored,
    };
    let mut scratch = vec![0.0; owned.config.scratch_len(plan).unwrap()];
    let mut out = vec![7.0; owned.x.len()];

    // Case 007 has kv_dim = 3, so a key bias of 2 values is one short.
    let short = [0.5; 2];
    let weights = AttentionWeights {
        biases: PerProjection {
            key: &short[..],
            ..owned.weights().biases
        },
        ..owned.weights()
    };
    let error = multi_head_attention(
        &owned.config,
        plan,
        &owned.x,
        &weights,
        &mut scratch,
        &mut out,
    );
    assert_eq!(
        error,
        Err(Error::LengthMismatch {
            operand: Operand::Bias(Projection::Key),
            expected: 3,
            actual: 2
        })
    );

    let adapter = owned.weights().adapters.value;
    let weights = AttentionWeights {
        adapters: PerProjection {
            value: Adapter {
                a: &adapter.a[1..],
                ..adapter
            },
            ..owned.weights().adapters
        },
        ..owned.weights()
    };
    let error = multi_head_attention(
        &owned.config,
        plan,
        &owned.x,
        &weights,
        &mut scratch,
        &mut out,
    );
    assert!(matches!(
        error,
        Err(Error::LengthMismatch {
            operand: Operand::AdapterA(Projection::Value),
            ..
        })
    ));
    assert!(out.iter().all(|&v| v == 7.0), "output untouched");
}

#[test]
fn streaming_rejects_rotary_embedding() {
    let case = attention_cases()
        .into_iter()
        .find(|c| c.rope_base.is_some())
        .unwrap();
    let owned = OwnedCase::<f64>::new(&case);
    let error = owned.run(Form::Streaming { block_rows: 2 }, AdapterMode::Factored);
    assert_eq!(
        error,
        Err(Error::StreamingUnsupported {
            reason: StreamingLimit::RotaryEmbedding
        })
    );
}

#[test]
fn streaming_scratch_does_not_grow_with_seq_len() {
    let config = AttentionConfig::<f64> {
        kv_heads: 1,
        causal: true,
        ..AttentionConfig::new(16, 4)
    };
    let plan = |seq_len| Plan {
        seq_len,
        form: Form::Streaming { block_rows: 4 },
        adapters: AdapterMode::Factored,
    };
    assert_eq!(
        config.scratch_len(plan(4)),
        config.scratch_len(plan(100_000))
    );
}

#[test]
fn judge_case_is_single_head_special_case() {
    // 000-judge-equivalent is the judge task: the single-head path must agree.
    let case = attention_cases()
        .into_iter()
        .find(|c| c.name.starts_with("000"))
        .unwrap();
    let lora = &case.lora["q"];
    let shape = lora_attention::Shape::new(case.n, case.d, lora.rank);
    let weights = lora_attention::Weights {
        wq: &case.wq,
        wk: &case.wk,
        wv: &case.wv,
        adapter: Adapter::new(&lora.a, &lora.b, Scaling::One),
    };
    let mut scratch = vec![0.0; shape.attention_scratch_len().unwrap()];
    let mut out = vec![0.0; case.x.len()];
    lora_attention::attention(shape, &case.x, &weights, &mut scratch, &mut out).unwrap();
    assert!(relative_error(&out, &case.expected) <= F64_TOLERANCE);
}
