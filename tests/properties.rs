//! Property tests on random shapes and values: every path against the plain
//! references in tests/common, softmax rows, permuted input rows, rank 0 against an
//! adapter of zeros, merging then unmerging, and decoding against the full causal
//! computation.
//!
//! Each property runs a fixed number of cases from a fixed seed, so every run tests
//! the same inputs. `PROPTEST_RNG_SEED=N` or `PROPTEST_CASES=N` runs others.

#[path = "common/multihead.rs"]
mod cases;
#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;

use cases::{reference_multihead, AttentionCase, LoraCase, OwnedCase, KEYS};
use common::{reference_attention, relative_error};
use lora_attention::{
    attention, attention_blocked, attention_factored, attention_streaming, merge_in_place,
    softmax_in_place, unmerge_in_place, Adapter, AdapterMode, AdapterShape, Error, Form,
    Projection, Real, Scaling, Shape, Weights,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

/// f64 agreement with the reference, relative to the largest reference output.
const F64_TOLERANCE: f64 = 1e-12;

/// f32 agreement with the f64 reference, relative to the largest reference output.
/// The reasoning is with the same constant in tests/attention.rs.
const F32_TOLERANCE: f64 = 1e-5;

/// Agreement between computations of the same result in another order, such as
/// permuted rows, relative to the largest output.
const REORDER_TOLERANCE: f64 = 1e-12;

const MODES: [AdapterMode; 2] = [AdapterMode::Merged, AdapterMode::Factored];

/// Returns the proptest settings: `cases` cases from a fixed seed, unless the
/// environment sets `PROPTEST_CASES` or `PROPTEST_RNG_SEED`.
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x10ca_a77e);
    }
    config
}

/// Generates an input or weight value.
fn value() -> impl Strategy<Value = f64> {
    -1.0..1.0
}

fn scaling() -> impl Strategy<Value = Scaling<f64>> {
    prop_oneof![
        Just(Scaling::One),
        (-4.0..4.0).prop_map(|alpha| Scaling::AlphaOverRank { alpha }),
        (-2.0..2.0).prop_map(|alpha| Scaling::AlphaOverSqrtRank { alpha }),
        (-1.0..1.0).prop_map(Scaling::Factor),
    ]
}

fn narrow_scaling(scaling: Scaling<f64>) -> Scaling<f32> {
    match scaling {
        Scaling::One => Scaling::One,
        Scaling::AlphaOverRank { alpha } => Scaling::AlphaOverRank {
            alpha: alpha as f32,
        },
        Scaling::AlphaOverSqrtRank { alpha } => Scaling::AlphaOverSqrtRank {
            alpha: alpha as f32,
        },
        Scaling::Factor(factor) => Scaling::Factor(factor as f32),
    }
}

fn narrow(values: &[f64]) -> Vec<f32> {
    values.iter().map(|&value| value as f32).collect()
}

fn widen<T: Real>(values: &[T]) -> Vec<f64> {
    values.iter().map(|value| value.to_f64().unwrap()).collect()
}

/// A single-head problem. f32 runs use the values rounded to f32, and the f64
/// reference uses those rounded values too.
#[derive(Clone, Debug)]
struct SingleHead {
    shape: Shape,
    scaling: Scaling<f64>,
    x: Vec<f64>,
    wq: Vec<f64>,
    wk: Vec<f64>,
    wv: Vec<f64>,
    a: Vec<f64>,
    b: Vec<f64>,
}

fn single_head() -> impl Strategy<Value = SingleHead> {
    (1_usize..=6, 1_usize..=6, 0_usize..=4, scaling()).prop_flat_map(
        |(seq_len, dim, rank, scaling)| {
            (
                vec(value(), seq_len * dim),
                vec(value(), dim * dim),
                vec(value(), dim * dim),
                vec(value(), dim * dim),
                vec(value(), rank * dim),
                vec(value(), dim * rank),
            )
                .prop_map(move |(x, wq, wk, wv, a, b)| SingleHead {
                    shape: Shape::new(seq_len, dim, rank),
                    scaling,
                    x,
                    wq,
                    wk,
                    wv,
                    a,
                    b,
                })
        },
    )
}

impl SingleHead {
    fn weights(&self) -> Weights<'_, f64> {
        Weights {
            wq: &self.wq,
            wk: &self.wk,
            wv: &self.wv,
            adapter: Adapter::new(&self.a, &self.b, self.scaling),
        }
    }

    /// Returns the problem with every value rounded to f32, still as f64.
    fn rounded_to_f32(&self) -> SingleHead {
        let round = |values: &[f64]| values.iter().map(|&v| f64::from(v as f32)).collect();
        let scaling = match narrow_scaling(self.scaling) {
            Scaling::One => Scaling::One,
            Scaling::AlphaOverRank { alpha } => Scaling::AlphaOverRank {
                alpha: f64::from(alpha),
            },
            Scaling::AlphaOverSqrtRank { alpha } => Scaling::AlphaOverSqrtRank {
                alpha: f64::from(alpha),
            },
            Scaling::Factor(factor) => Scaling::Factor(f64::from(factor)),
        };
        SingleHead {
            shape: self.shape,
            scaling,
            x: round(&self.x),
            wq: round(&self.wq),
            wk: round(&self.wk),
            wv: round(&self.wv),
            a: round(&self.a),
            b: round(&self.b),
        }
    }

    fn reference(&self) -> Vec<f64> {
        let Shape { seq_len, dim, rank } = self.shape;
        let scale = self.scaling.scale(rank).unwrap();
        reference_attention(
            seq_len, dim, rank, scale, &self.x, &self.wq, &self.wk, &self.wv, &self.a, &self.b,
        )
    }
}

/// The single-head paths, with the block rows each uses.
#[derive(Clone, Copy, Debug)]
enum Path {
    Straightforward,
    Blocked(usize),
    Factored(usize),
    Streaming(usize),
}

impl Path {
    /// Returns every path, with block rows of 1, 2 and one more than `seq_len`.
    fn all(seq_len: usize) -> Vec<Path> {
        let mut paths = vec![Path::Straightforward];
        for rows in [1, 2, seq_len + 1] {
            paths.extend([
                Path::Blocked(rows),
                Path::Factored(rows),
                Path::Streaming(rows),
            ]);
        }
        paths
    }

    fn compute<T: Real>(
        self,
        shape: Shape,
        x: &[T],
        weights: &Weights<'_, T>,
    ) -> Result<Vec<T>, Error> {
        let scratch_len = match self {
            Path::Straightforward => shape.attention_scratch_len(),
            Path::Blocked(rows) => shape.blocked_attention_scratch_len(rows),
            Path::Factored(rows) => shape.factored_scratch_len(rows),
            Path::Streaming(rows) => shape.streaming_scratch_len(rows),
        }
        .expect("small shapes fit");
        let mut scratch = vec![T::nan(); scratch_len];
        let mut out = vec![T::nan(); x.len()];
        let (scratch, out_slice) = (&mut scratch, &mut out);
        match self {
            Path::Straightforward => attention(shape, x, weights, scratch, out_slice),
            Path::Blocked(rows) => attention_blocked(shape, x, weights, rows, scratch, out_slice),
            Path::Factored(rows) => attention_factored(shape, x, weights, rows, scratch, out_slice),
            Path::Streaming(rows) => {
                attention_streaming(shape, x, weights, rows, scratch, out_slice)
            }
        }?;
        Ok(out)
    }
}

/// Generates a multi-head problem as a case of tests/common/multihead.rs, which
/// the plain reference computes.
fn multi_head_case(allow_rope: bool, allow_causal: bool) -> impl Strategy<Value = AttentionCase> {
    let layout = (1_usize..=3, 1_usize..=3, 1_usize..=3, 1_usize..=6);
    let options = (
        any::<bool>(),
        any::<bool>(),
        any::<[bool; 4]>(),
        [0_usize..=3, 0_usize..=3, 0_usize..=3, 0_usize..=3],
    );
    (layout, options).prop_flat_map(
        move |((kv_heads, group, half_head_dim, n), (causal, has_wo, biases, ranks))| {
            let heads = kv_heads * group;
            let head_dim = 2 * half_head_dim;
            let d = heads * head_dim;
            let kv_dim = kv_heads * head_dim;
            let outs = [d, kv_dim, kv_dim, d];
            let present = [true, true, true, has_wo];
            let bias_lens: Vec<usize> = (0..4)
                .map(|i| if biases[i] && present[i] { outs[i] } else { 0 })
                .collect();
            let rank_of: Vec<usize> = (0..4)
                .map(|i| if present[i] { ranks[i] } else { 0 })
                .collect();
            let adapters: Vec<_> = (0..4)
                .map(|i| {
                    let rank = rank_of[i];
                    (
                        vec(value(), rank * d),
                        vec(value(), outs[i] * rank),
                        -4.0..4.0_f64,
                    )
                })
                .collect();
            let rope = if allow_rope {
                proptest::option::of(prop_oneof![Just(10_000.0), Just(100.0), Just(2.0)]).boxed()
            } else {
                Just(None).boxed()
            };
            (
                (
                    vec(value(), n * d),
                    vec(value(), d * d),
                    vec(value(), kv_dim * d),
                    vec(value(), kv_dim * d),
                    vec(value(), if has_wo { d * d } else { 0 }),
                ),
                bias_lens
                    .iter()
                    .map(|&len| vec(value(), len))
                    .collect::<Vec<_>>(),
                adapters,
                rope,
            )
                .prop_map(move |((x, wq, wk, wv, wo), bias, adapters, rope_base)| {
                    let mut bias_map = BTreeMap::new();
                    let mut lora = BTreeMap::new();
                    for (i, key) in KEYS.iter().enumerate() {
                        if bias_lens[i] > 0 {
                            bias_map.insert(key.to_string(), bias[i].clone());
                        }
                        let rank = rank_of[i];
                        if rank > 0 {
                            let (a, b, alpha) = adapters[i].clone();
                            lora.insert(
                                key.to_string(),
                                LoraCase {
                                    rank,
                                    alpha,
                                    scaling: "alpha_over_r".to_string(),
                                    scale: alpha / rank as f64,
                                    a,
                                    b,
                                },
                            );
                        }
                    }
                    AttentionCase {
                        name: "proptest".to_string(),
                        n,
                        d,
                        heads,
                        kv_heads,
                        causal: causal && allow_causal,
                        x,
                        wq,
                        wk,
                        wv,
                        wo: has_wo.then_some(wo),
                        bias: bias_map,
                        rope_base,
                        lora,
                        expected: Vec::new(),
                    }
                })
        },
    )
}

impl<T: Real> OwnedCase<T> {
    /// Returns every form the configuration supports: streaming only without
    /// rotary embedding, with blocks of 1 and 2 rows.
    fn forms(&self) -> Vec<Form> {
        let mut forms = vec![Form::Straightforward, Form::KeepKeyValue];
        if self.config.rope.is_none() {
            forms.push(Form::Streaming { block_rows: 1 });
            forms.push(Form::Streaming { block_rows: 2 });
        }
        forms
    }
}

/// Returns the largest difference between two equally long outputs, relative to
/// the largest magnitude in `reference`.
fn reorder_error(actual: &[f64], reference: &[f64]) -> f64 {
    relative_error(actual, reference)
}

/// Permutes the rows of a row-major matrix: row `i` of the result is row
/// `permutation[i]` of `rows`.
fn permute_rows(rows: &[f64], width: usize, permutation: &[usize]) -> Vec<f64> {
    permutation
        .iter()
        .flat_map(|&source| rows[source * width..(source + 1) * width].iter().copied())
        .collect()
}

/// Generates a single-head problem and a permutation of its rows.
fn problem_and_permutation() -> impl Strategy<Value = (SingleHead, Vec<usize>)> {
    single_head().prop_flat_map(|problem| {
        let rows: Vec<usize> = (0..problem.shape.seq_len).collect();
        (Just(problem), Just(rows).prop_shuffle())
    })
}

/// Generates a multi-head problem without mask or rotary embedding and a
/// permutation of its rows.
fn multi_head_and_permutation() -> impl Strategy<Value = (AttentionCase, Vec<usize>)> {
    multi_head_case(false, false).prop_flat_map(|case| {
        let rows: Vec<usize> = (0..case.n).collect();
        (Just(case), Just(rows).prop_shuffle())
    })
}

/// Generates a row of scores: finite values and masked ones (negative infinity),
/// at least one finite.
fn scores() -> impl Strategy<Value = Vec<f64>> {
    let score = prop_oneof![4 => -60.0..60.0_f64, 1 => Just(f64::NEG_INFINITY)];
    vec(score, 1..=16).prop_filter("at least one score is finite", |row| {
        row.iter().any(|score| score.is_finite())
    })
}

/// Checks the softmax of one row in type `T`: every probability in [0, 1], masked
/// scores at 0, larger scores at no smaller probability, and a sum of 1.
fn check_softmax<T: Real + std::fmt::Debug>(scores: &[f64]) -> Result<(), TestCaseError> {
    let mut row: Vec<T> = scores
        .iter()
        .map(|&score| T::from(score).unwrap())
        .collect();
    let input = row.clone();
    prop_assert_eq!(softmax_in_place(&mut row), Ok(()));

    let epsilon = T::epsilon().to_f64().unwrap();
    let probabilities = widen(&row);
    for (index, &probability) in probabilities.iter().enumerate() {
        prop_assert!((0.0..=1.0).contains(&probability), "{probabilities:?}");
        if input[index] == T::neg_infinity() {
            prop_assert_eq!(probability, 0.0);
        }
        for (other, &other_probability) in probabilities.iter().enumerate() {
            if input[index] < input[other] {
                prop_assert!(probability <= other_probability, "{probabilities:?}");
            }
        }
    }
    let sum: f64 = probabilities.iter().sum();
    let tolerance = 4.0 * (scores.len() as f64 + 1.0) * epsilon;
    prop_assert!(
        (sum - 1.0).abs() <= tolerance,
        "sum {sum} of {probabilities:?}"
    );
    Ok(())
}

/// Returns the adapter term `s B A` at `(row, column)`, at f64.
fn adapter_term(shape: AdapterShape, scale: f64, a: &[f64], b: &[f64], index: usize) -> f64 {
    let (row, column) = (index / shape.in_features, index % shape.in_features);
    let sum: f64 = (0..shape.rank)
        .map(|k| b[row * shape.rank + k] * a[k * shape.in_features + column])
        .sum();
    scale * sum
}

/// Generates a weight and an adapter to merge into it, with values up to 1000 in
/// magnitude.
fn merge_problem() -> impl Strategy<Value = (AdapterShape, Vec<f64>, Vec<f64>, Vec<f64>, f64)> {
    (1_usize..=6, 1_usize..=6, 0_usize..=4).prop_flat_map(|(out_features, in_features, rank)| {
        let shape = AdapterShape {
            out_features,
            in_features,
            rank,
        };
        let large = -1000.0..1000.0_f64;
        (
            Just(shape),
            vec(large.clone(), out_features * in_features),
            vec(large.clone(), rank * in_features),
            vec(large, out_features * rank),
            -4.0..4.0_f64,
        )
    })
}

/// Merges then unmerges in type `T` and checks each weight against the documented
/// bound `2 * eps * (|w| + |term|)`.
fn check_merge_round_trip<T: Real + std::fmt::Debug>(
    shape: AdapterShape,
    weight: &[f64],
    a: &[f64],
    b: &[f64],
    factor: f64,
) -> Result<(), TestCaseError> {
    let convert =
        |values: &[f64]| -> Vec<T> { values.iter().map(|&v| T::from(v).unwrap()).collect() };
    let (a, b) = (convert(a), convert(b));
    let original = convert(weight);
    let scaling = Scaling::Factor(T::from(factor).unwrap());
    let adapter = Adapter::new(&a, &b, scaling);
    let mut weight = original.clone();
    prop_assert_eq!(
        merge_in_place(shape, Projection::Value, &mut weight, &adapter),
        Ok(())
    );
    prop_assert_eq!(
        unmerge_in_place(shape, Projection::Value, &mut weight, &adapter),
        Ok(())
    );

    let (a, b) = (widen(&a), widen(&b));
    let scale = scaling.scale(shape.rank).unwrap().to_f64().unwrap();
    let epsilon = T::epsilon().to_f64().unwrap();
    for (index, (&after, &before)) in widen(&weight).iter().zip(&widen(&original)).enumerate() {
        let term = adapter_term(shape, scale, &a, &b, index);
        let bound = 2.0 * epsilon * (before.abs() + term.abs());
        let moved = (after - before).abs();
        prop_assert!(
            moved <= bound,
            "weight {} moved from {} to {} (term {}), bound {:e}",
            index,
            before,
            after,
            term,
            bound
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn single_head_paths_match_reference(problem in single_head()) {
        let expected = problem.reference();
        for path in Path::all(problem.shape.seq_len) {
            let out = path.compute(problem.shape, &problem.x, &problem.weights());
            let out = out.map_err(|error| TestCaseError::fail(format!("{path:?}: {error}")))?;
            let error = relative_error(&out, &expected);
            prop_assert!(error <= F64_TOLERANCE, "{:?}: relative error {:e}", path, error);
        }
    }

    #[test]
    fn single_head_f32_paths_match_reference(problem in single_head()) {
        let rounded = problem.rounded_to_f32();
        let expected = rounded.reference();
        let (x, wq, wk, wv, a, b) = (
            narrow(&problem.x),
            narrow(&problem.wq),
            narrow(&problem.wk),
            narrow(&problem.wv),
            narrow(&problem.a),
            narrow(&problem.b),
        );
        let weights = Weights {
            wq: &wq,
            wk: &wk,
            wv: &wv,
            adapter: Adapter::new(&a, &b, narrow_scaling(problem.scaling)),
        };
        for path in Path::all(problem.shape.seq_len) {
            let out = path.compute(problem.shape, &x, &weights);
            let out = out.map_err(|error| TestCaseError::fail(format!("{path:?}: {error}")))?;
            let error = relative_error(&widen(&out), &expected);
            prop_assert!(error <= F32_TOLERANCE, "{:?}: relative error {:e}", path, error);
        }
    }

    #[test]
    fn multi_head_forms_match_reference(case in multi_head_case(true, true)) {
        let expected = reference_multihead(&case);
        let wide = OwnedCase::<f64>::new(&case);
        let narrow = OwnedCase::<f32>::new(&case);
        for form in wide.forms() {
            for mode in MODES {
                let out = wide.run(form, mode);
                let out = out.map_err(|error| TestCaseError::fail(format!("{form:?} {mode:?}: {error}")))?;
                let error = relative_error(&out, &expected);
                prop_assert!(error <= F64_TOLERANCE, "{:?} {:?}: f64 relative error {:e}", form, mode, error);

                let out = narrow.run(form, mode);
                let out = out.map_err(|error| TestCaseError::fail(format!("{form:?} {mode:?} f32: {error}")))?;
                let error = relative_error(&widen(&out), &expected);
                prop_assert!(error <= F32_TOLERANCE, "{:?} {:?}: f32 relative error {:e}", form, mode, error);
            }
        }
    }

    #[test]
    fn softmax_rows_are_distributions(scores in scores()) {
        check_softmax::<f64>(&scores)?;
        check_softmax::<f32>(&scores)?;
    }

    #[test]
    fn permuted_rows_permute_single_head_output((problem, permutation) in problem_and_permutation()) {
        let dim = problem.shape.dim;
        let permuted = SingleHead {
            x: permute_rows(&problem.x, dim, &permutation),
            ..problem.clone()
        };
        for path in Path::all(problem.shape.seq_len) {
            let out = path.compute(problem.shape, &problem.x, &problem.weights()).unwrap();
            let permuted_out = path.compute(problem.shape, &permuted.x, &permuted.weights()).unwrap();
            let expected = permute_rows(&out, dim, &permutation);
            let error = reorder_error(&permuted_out, &expected);
            prop_assert!(error <= REORDER_TOLERANCE, "{:?}: {:e}", path, error);
        }
    }

    #[test]
    fn permuted_rows_permute_multi_head_output((case, permutation) in multi_head_and_permutation()) {
        let owned = OwnedCase::<f64>::new(&case);
        let permuted_x = permute_rows(&case.x, case.d, &permutation);
        for form in owned.forms() {
            for mode in MODES {
                let out = owned.run(form, mode).unwrap();
                let permuted_out = owned.run_on(&permuted_x, form, mode).unwrap();
                let expected = permute_rows(&out, case.d, &permutation);
                let error = reorder_error(&permuted_out, &expected);
                prop_assert!(error <= REORDER_TOLERANCE, "{:?} {:?}: {:e}", form, mode, error);
            }
        }
    }

    #[test]
    fn rank_zero_equals_zero_adapter(problem in single_head(), rank in 1_usize..=4, scaling in scaling()) {
        // Adding a zero term is exact, so the results are equal, not just close. The
        // streaming path is the exception: it scores as many keys at a time as its
        // per-row scratch holds, which grows with the rank, so its sums round in
        // another grouping.
        let Shape { seq_len, dim, .. } = problem.shape;
        let zeros = vec![0.0; rank * dim];
        let without = Weights { adapter: Adapter::none(), ..problem.weights() };
        let with_zeros = Weights { adapter: Adapter::new(&zeros, &zeros, scaling), ..problem.weights() };
        for path in Path::all(seq_len) {
            let expected = path.compute(Shape::new(seq_len, dim, 0), &problem.x, &without).unwrap();
            let out = path.compute(Shape::new(seq_len, dim, rank), &problem.x, &with_zeros).unwrap();
            if matches!(path, Path::Streaming(_)) {
                let error = reorder_error(&out, &expected);
                prop_assert!(error <= REORDER_TOLERANCE, "{:?}: {:e}", path, error);
            } else {
                prop_assert_eq!(&out, &expected, "{:?}", path);
            }
        }
    }

    #[test]
    fn multi_head_rank_zero_equals_zero_adapters(case in multi_head_case(true, true), rank in 1_usize..=3) {
        let mut without = case.clone();
        without.lora.clear();
        let mut with_zeros = without.clone();
        let kv_dim = case.kv_heads * (case.d / case.heads);
        let outs = [case.d, kv_dim, kv_dim, case.d];
        for (key, out) in KEYS.iter().zip(outs) {
            if *key == "o" && case.wo.is_none() {
                continue;
            }
            with_zeros.lora.insert(key.to_string(), LoraCase {
                rank,
                alpha: 3.0,
                scaling: "alpha_over_r".to_string(),
                scale: 3.0 / rank as f64,
                a: vec![0.0; rank * case.d],
                b: vec![0.0; out * rank],
            });
        }
        let without = OwnedCase::<f64>::new(&without);
        let with_zeros = OwnedCase::<f64>::new(&with_zeros);
        for form in without.forms() {
            for mode in MODES {
                let expected = without.run(form, mode).unwrap();
                let out = with_zeros.run(form, mode).unwrap();
                prop_assert_eq!(&out, &expected, "{:?} {:?}", form, mode);
            }
        }
        for mode in MODES {
            prop_assert_eq!(with_zeros.decode_all(mode), without.decode_all(mode), "{:?}", mode);
        }
    }

    #[test]
    fn merge_then_unmerge_stays_within_bound((shape, weight, a, b, factor) in merge_problem()) {
        check_merge_round_trip::<f64>(shape, &weight, &a, &b, factor)?;
        check_merge_round_trip::<f32>(shape, &weight, &a, &b, factor)?;
    }

    #[test]
    fn decoding_matches_full_causal_computation(case in multi_head_case(true, true)) {
        let mut causal = case.clone();
        causal.causal = true;
        let expected = reference_multihead(&causal);
        let owned = OwnedCase::<f64>::new(&case);
        let causal_owned = OwnedCase::<f64>::new(&causal);
        for mode in MODES {
            let rows = owned.decode_all(mode);
            let rows = rows.map_err(|error| TestCaseError::fail(format!("{mode:?}: {error}")))?;
            let error = relative_error(&rows, &expected);
            prop_assert!(error <= F64_TOLERANCE, "{:?} against the reference: {:e}", mode, error);

            let full = causal_owned.run(Form::KeepKeyValue, mode).unwrap();
            let error = relative_error(&rows, &full);
            prop_assert!(error <= F64_TOLERANCE, "{:?} against the causal form: {:e}", mode, error);
        }
    }
}
