//! Fuzz body for the generalised kernel: `multi_head_attention` in every form and
//! adapter mode, then `KvCache` and a sequence of `decode_step`, `truncate` and
//! `clear` calls.
//!
//! The first byte picks the float type (top bit set: `f32`). The configuration is
//! either built to be mostly valid (heads dividing the width, kv_heads dividing the
//! heads) or decoded raw, with zero and huge dimensions. Slices are sized from the
//! configuration's size methods, then perturbed and capped as `input.rs` describes.
//! Every call must return `Ok` with finite outputs or an error and keep its error
//! contract, and decoding must keep the cache as it was after any error. On tame
//! `f64` inputs every form and mode must agree, and decoding token by token must
//! agree with the full causal computation.

#[path = "input.rs"]
mod input;

use input::{
    fill_sentinel, is_all_finite, is_all_nan, is_untouched, relative_difference, FuzzFloat, Input,
};
use lora_attention::{
    decode_step, multi_head_attention, Adapter, AdapterMode, AttentionConfig, AttentionWeights,
    Error, Form, KvCache, PerProjection, Plan, Projection, RotaryEmbedding, Scaling,
};

/// Agreement required between forms on tame `f64` inputs, relative to `1 +` the
/// largest output magnitude. It catches wrong results, never rounding.
const TAME_TOLERANCE: f64 = 1e-8;

const PROJECTIONS: [Projection; 4] = [
    Projection::Query,
    Projection::Key,
    Projection::Value,
    Projection::Output,
];

const MODES: [AdapterMode; 2] = [AdapterMode::Merged, AdapterMode::Factored];

/// Runs one input through the generalised entry points.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    if input.byte() & 0x80 == 0 {
        run_typed::<f64>(&mut input);
    } else {
        run_typed::<f32>(&mut input);
    }
}

/// The weights of one call, owned, with whether every length matched the
/// configuration.
struct OwnedWeights<T> {
    wq: Vec<T>,
    wk: Vec<T>,
    wv: Vec<T>,
    wo: Vec<T>,
    biases: [Vec<T>; 4],
    adapters: [(Vec<T>, Vec<T>, Scaling<T>); 4],
    exact: bool,
}

impl<T: FuzzFloat> OwnedWeights<T> {
    fn decode(input: &mut Input<'_>, config: &AttentionConfig<T>) -> Self {
        let mut exact = true;
        let weight_len = |projection: Projection| {
            if projection == Projection::Output && !config.output_projection {
                Some(0)
            } else {
                config.weight_len(projection)
            }
        };
        let lengths = PROJECTIONS.map(|projection| {
            let bias = if config.biases.get(projection) {
                config.out_features(projection)
            } else {
                Some(0)
            };
            let rank = config.ranks.get(projection);
            let a = rank.checked_mul(config.dim);
            let b = config
                .out_features(projection)
                .and_then(|out| out.checked_mul(rank));
            [weight_len(projection), bias, a, b]
        });

        let mut take = |input: &mut Input<'_>, expected: Option<usize>| {
            let len = input.length(expected);
            if Some(len) != expected {
                exact = false;
            }
            len
        };
        let lengths = lengths.map(|slices| slices.map(|expected| take(input, expected)));
        let scalings = PROJECTIONS.map(|_| input.scaling::<T>());

        let [query, key, value, output] = lengths;
        let wq = input.values(query[0]);
        let wk = input.values(key[0]);
        let wv = input.values(value[0]);
        let wo = input.values(output[0]);
        let biases = lengths.map(|slices| input.values(slices[1]));
        let mut index = 0;
        let adapters = lengths.map(|slices| {
            let adapter = (
                input.values(slices[2]),
                input.values(slices[3]),
                scalings[index],
            );
            index += 1;
            adapter
        });
        OwnedWeights {
            wq,
            wk,
            wv,
            wo,
            biases,
            adapters,
            exact,
        }
    }

    fn weights(&self) -> AttentionWeights<'_, T> {
        let adapter = |index: usize| {
            let (a, b, scaling) = &self.adapters[index];
            Adapter::new(a, b, *scaling)
        };
        AttentionWeights {
            wq: &self.wq,
            wk: &self.wk,
            wv: &self.wv,
            wo: &self.wo,
            biases: PerProjection {
                query: &self.biases[0],
                key: &self.biases[1],
                value: &self.biases[2],
                output: &self.biases[3],
            },
            adapters: PerProjection {
                query: adapter(0),
                key: adapter(1),
                value: adapter(2),
                output: adapter(3),
            },
        }
    }
}

/// Decodes a rotary embedding: usually none, sometimes a usual base, sometimes an
/// arbitrary one (NaN, zero, negative, huge).
fn decode_rope<T: FuzzFloat>(input: &mut Input<'_>) -> Option<RotaryEmbedding<T>> {
    const BASES: [f64; 4] = [10_000.0, 100.0, 2.0, 0.5];
    match input.byte() {
        0x00..=0x9f => None,
        byte @ 0xa0..=0xdf => Some(RotaryEmbedding {
            base: T::from_f64(BASES[usize::from(byte) % BASES.len()]),
        }),
        _ => Some(RotaryEmbedding {
            base: input.value(),
        }),
    }
}

/// Decodes a configuration, mostly valid or raw.
fn decode_config<T: FuzzFloat>(input: &mut Input<'_>) -> AttentionConfig<T> {
    let structured = input.byte() < 0xe0;
    let (dim, heads, kv_heads) = if structured {
        let kv_heads = 1 + usize::from(input.choice(3));
        let heads = kv_heads * (1 + usize::from(input.choice(4)));
        let head_dim = 1 + usize::from(input.choice(8));
        (heads * head_dim, heads, kv_heads)
    } else {
        (input.dimension(40), input.dimension(8), input.dimension(8))
    };
    let causal = input.flag();
    let rope = decode_rope(input);
    let output_projection = input.flag();
    let bias_bits = input.byte();
    let mut biases = PerProjection {
        query: bias_bits & 1 != 0,
        key: bias_bits & 2 != 0,
        value: bias_bits & 4 != 0,
        output: bias_bits & 8 != 0,
    };
    let mut rank = || {
        if structured {
            usize::from(input.choice(5))
        } else {
            input.dimension(4)
        }
    };
    let mut ranks = PerProjection {
        query: rank(),
        key: rank(),
        value: rank(),
        output: rank(),
    };
    if structured && !output_projection {
        biases.output = false;
        ranks.output = 0;
    }
    AttentionConfig {
        dim,
        heads,
        kv_heads,
        causal,
        rope,
        output_projection,
        biases,
        ranks,
    }
}

/// Calls every size method, which must not panic whatever the configuration.
fn exercise_sizes<T: FuzzFloat>(config: &AttentionConfig<T>, seq_len: usize) {
    let _ = (config.head_dim(), config.kv_dim(), config.group_size());
    let _ = (config.max_rank(), config.cache_bytes_per_token());
    let _ = (config.input_len(seq_len), config.cache_len(seq_len));
    for projection in PROJECTIONS {
        let _ = (
            config.out_features(projection),
            config.weight_len(projection),
        );
    }
    for mode in MODES {
        let _ = (
            config.merged_weights_len(mode),
            config.adapter_row_len(mode),
        );
        let _ = config.decode_scratch_len(mode);
        for form in [
            Form::Straightforward,
            Form::KeepKeyValue,
            Form::Streaming {
                block_rows: seq_len,
            },
        ] {
            let _ = config.scratch_len(Plan {
                seq_len,
                form,
                adapters: mode,
            });
        }
    }
}

fn run_typed<T: FuzzFloat>(input: &mut Input<'_>) {
    let config = decode_config::<T>(input);
    let seq_len = if input.flag() {
        1 + usize::from(input.choice(8))
    } else {
        input.dimension(8)
    };
    let form = match input.choice(3) {
        0 => Form::Straightforward,
        1 => Form::KeepKeyValue,
        _ => Form::Streaming {
            block_rows: input.dimension(7),
        },
    };
    let mode = MODES[usize::from(input.choice(2))];
    let plan = Plan {
        seq_len,
        form,
        adapters: mode,
    };
    exercise_sizes(&config, seq_len);

    let input_len = config.input_len(seq_len);
    let x_len = input.length(input_len);
    let out_len = input.length(input_len);
    let required = config.scratch_len(plan);
    let scratch_len = input.length(required);
    let weights = OwnedWeights::decode(input, &config);
    let x = input.values::<T>(x_len);

    let mut scratch = vec![T::zero(); scratch_len];
    let mut out = vec![T::zero(); out_len];
    fill_sentinel(&mut scratch);
    fill_sentinel(&mut out);
    let result = multi_head_attention(
        &config,
        plan,
        &x,
        &weights.weights(),
        &mut scratch,
        &mut out,
    );
    let label = format!("{config:?} {plan:?}");
    check_outcome(&label, result, required, &scratch, &out);

    let streaming_with_rope = matches!(form, Form::Streaming { .. }) && config.rope.is_some();
    let valid = config.validate().is_ok()
        && seq_len > 0
        && !matches!(form, Form::Streaming { block_rows: 0 })
        && !streaming_with_rope
        && weights.exact
        && Some(x_len) == input_len
        && Some(out_len) == input_len
        && required.is_some_and(|required| scratch_len >= required);
    if valid && input.is_tame() {
        assert_eq!(result, Ok(()), "{label}: valid tame input rejected");
        if T::BYTES == 8 {
            compare_forms(&config, seq_len, &x, &weights);
        }
    }

    decode_sequence(input, &config, &weights);
}

/// Checks the outcome of `multi_head_attention` or `decode_step`: `Ok` has a
/// finite output, a numeric error fills the output with NaN, and any other error
/// leaves the output and the scratch untouched.
fn check_outcome<T: FuzzFloat>(
    label: &str,
    result: Result<(), Error>,
    required_scratch: Option<usize>,
    scratch: &[T],
    out: &[T],
) {
    match result {
        Ok(()) => assert!(
            is_all_finite(out),
            "{label}: Ok with a non-finite output {out:?}"
        ),
        Err(Error::NonFiniteResult { .. }) => {
            assert!(is_all_nan(out), "{label}: numeric error, output not NaN");
        }
        Err(error) => {
            assert!(is_untouched(out), "{label}: {error:?}, output written");
            assert!(is_untouched(scratch), "{label}: {error:?}, scratch written");
            if let Error::ScratchTooSmall { required, actual } = error {
                assert_eq!(Some(required), required_scratch, "{label}: required");
                assert_eq!(actual, scratch.len(), "{label}: actual scratch length");
            }
        }
    }
}

/// Computes a valid tame problem in every form and mode and by decoding, and checks
/// that they agree.
fn compare_forms<T: FuzzFloat>(
    config: &AttentionConfig<T>,
    seq_len: usize,
    x: &[T],
    weights: &OwnedWeights<T>,
) {
    let weights = weights.weights();
    let run = |config: &AttentionConfig<T>, form: Form, mode: AdapterMode| {
        let plan = Plan {
            seq_len,
            form,
            adapters: mode,
        };
        let mut scratch = vec![T::zero(); config.scratch_len(plan).unwrap_or(0)];
        let mut out = vec![T::zero(); x.len()];
        let result = multi_head_attention(config, plan, x, &weights, &mut scratch, &mut out);
        assert_eq!(
            result,
            Ok(()),
            "{config:?} {plan:?}: valid tame input rejected"
        );
        out.iter().map(|value| value.widen()).collect::<Vec<f64>>()
    };

    let mut forms = vec![Form::Straightforward, Form::KeepKeyValue];
    if config.rope.is_none() {
        forms.push(Form::Streaming { block_rows: 1 });
        forms.push(Form::Streaming { block_rows: 3 });
    }
    let first = run(config, Form::Straightforward, AdapterMode::Merged);
    for &form in &forms {
        for mode in MODES {
            let out = run(config, form, mode);
            let difference = relative_difference(&first, &out);
            assert!(
                difference <= TAME_TOLERANCE,
                "{config:?} {form:?} {mode:?} differs by {difference:e}"
            );
        }
    }

    let causal = AttentionConfig {
        causal: true,
        ..*config
    };
    let full = run(&causal, Form::KeepKeyValue, AdapterMode::Factored);
    for mode in MODES {
        let mut keys = vec![T::zero(); config.cache_len(seq_len).unwrap_or(0)];
        let mut values = keys.clone();
        let mut cache = KvCache::new(config, &mut keys, &mut values).expect("valid cache");
        let mut scratch = vec![T::zero(); config.decode_scratch_len(mode).unwrap_or(0)];
        let mut decoded = Vec::new();
        for x_row in x.chunks(config.dim) {
            let mut out = vec![T::zero(); config.dim];
            let result = decode_step(
                config,
                mode,
                &weights,
                &mut cache,
                x_row,
                &mut scratch,
                &mut out,
            );
            assert_eq!(result, Ok(()), "{config:?} {mode:?}: decoding rejected");
            decoded.extend(out.iter().map(|value| value.widen()));
        }
        let difference = relative_difference(&full, &decoded);
        assert!(
            difference <= TAME_TOLERANCE,
            "{config:?} {mode:?}: decoding differs from the causal form by {difference:e}"
        );
    }
}

/// Returns the bits of a slice, to compare slices that may hold NaN.
fn bits<T: FuzzFloat>(values: &[T]) -> Vec<u64> {
    values.iter().map(|value| value.to_raw()).collect()
}

/// Builds a cache over decoded slices and runs a decoded sequence of decoding steps,
/// truncations and clears, checking the cache after each.
fn decode_sequence<T: FuzzFloat>(
    input: &mut Input<'_>,
    config: &AttentionConfig<T>,
    weights: &OwnedWeights<T>,
) {
    let capacity = input.dimension(6);
    let mut keys = vec![T::zero(); input.length(config.cache_len(capacity))];
    let mut values = vec![T::zero(); input.length(config.cache_len(capacity))];
    let (keys_len, values_len) = (keys.len(), values.len());
    let Ok(mut cache) = KvCache::new(config, &mut keys, &mut values) else {
        return;
    };
    let kv_dim = config.kv_dim().expect("a valid configuration has a kv_dim");
    assert!(cache.is_empty(), "a new cache is empty");
    assert_eq!(keys_len, values_len, "KvCache::new accepted unequal halves");
    assert_eq!(cache.capacity(), keys_len / kv_dim, "cache capacity");
    let weights = weights.weights();

    for _ in 0..1 + input.choice(8) {
        let before_len = cache.len();
        match input.choice(8) {
            0 => {
                let len = input.dimension(4);
                cache.truncate(len);
                assert_eq!(cache.len(), before_len.min(len), "truncate({len})");
            }
            1 => {
                cache.clear();
                assert!(cache.is_empty(), "clear");
            }
            _ => decode_one(input, config, &weights, &mut cache),
        }
    }
}

/// Decodes one token with decoded lengths, sometimes under another configuration,
/// and checks the result and the cache.
fn decode_one<T: FuzzFloat>(
    input: &mut Input<'_>,
    config: &AttentionConfig<T>,
    weights: &AttentionWeights<'_, T>,
    cache: &mut KvCache<'_, T>,
) {
    let step_config = if input.choice(8) == 0 {
        AttentionConfig {
            dim: input.dimension(12),
            heads: input.dimension(4),
            kv_heads: input.dimension(4),
            ..*config
        }
    } else {
        *config
    };
    let mode = MODES[usize::from(input.choice(2))];
    let x_len = input.length(Some(step_config.dim));
    let out_len = input.length(Some(step_config.dim));
    let required = step_config.decode_scratch_len(mode);
    let scratch_len = input.length(required);
    let x_row = input.values::<T>(x_len);
    let mut scratch = vec![T::zero(); scratch_len];
    let mut out = vec![T::zero(); out_len];
    fill_sentinel(&mut scratch);
    fill_sentinel(&mut out);

    let before_len = cache.len();
    let keys_before = bits(cache.keys());
    let values_before = bits(cache.values());
    let result = decode_step(
        &step_config,
        mode,
        weights,
        cache,
        &x_row,
        &mut scratch,
        &mut out,
    );
    let label = format!("decode_step {step_config:?} {mode:?} at {before_len}");
    check_outcome(&label, result, required, &scratch, &out);

    let earlier_len = before_len * config.kv_dim().unwrap_or(0);
    match result {
        Ok(()) => {
            assert_eq!(cache.len(), before_len + 1, "{label}: length");
            assert_eq!(
                bits(&cache.keys()[..earlier_len]),
                keys_before,
                "{label}: keys"
            );
            assert_eq!(
                bits(&cache.values()[..earlier_len]),
                values_before,
                "{label}: values"
            );
            assert!(is_all_finite(cache.keys()), "{label}: cached keys");
            assert!(is_all_finite(cache.values()), "{label}: cached values");
        }
        Err(error) => {
            assert_eq!(
                cache.len(),
                before_len,
                "{label}: {error:?} changed the length"
            );
            assert_eq!(bits(cache.keys()), keys_before, "{label}: {error:?}, keys");
            assert_eq!(
                bits(cache.values()),
                values_before,
                "{label}: {error:?}, values"
            );
            if let Error::CacheFull { capacity } = error {
                assert_eq!(capacity, cache.capacity(), "{label}: reported capacity");
                assert_eq!(before_len, capacity, "{label}: full before it is full");
            }
        }
    }
}
