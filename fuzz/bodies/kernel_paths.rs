//! Fuzz body for the kernel's single-head entry points: the four attention paths,
//! the steps, the softmax, the adapter merges, the scale, the judge-line formatting
//! and the shape sizes.
//!
//! The first byte picks the float type (top bit set: `f32`) and the entry point (low
//! four bits). The rest decodes shapes, slice lengths and values as `input.rs`
//! describes, so huge shapes come with small slices and no allocation follows a
//! shape. Each call must return `Ok` with finite outputs or an error, and must keep
//! its documented error contract. When every value is tame and every length right,
//! the call must succeed, and with `f64` the four paths must agree.

#[path = "input.rs"]
mod input;

use input::{
    fill_sentinel, is_all_finite, is_all_nan, is_untouched, relative_difference, FuzzFloat, Input,
};
use lora_attention::{
    attend, attention, attention_blocked, attention_factored, attention_streaming, merge_adapter,
    merge_in_place, project, score, softmax_in_place, unmerge_in_place, weighted_sum, write_fixed4,
    write_judge_line, Adapter, AdapterShape, Error, Fixed4, Operand, Projection, Shape, Weights,
};

/// Agreement required between paths on tame `f64` inputs, relative to `1 +` the
/// largest output magnitude. The paths round differently (about 1e-15 apart on
/// such inputs), so this only catches wrong results, never rounding.
const TAME_TOLERANCE: f64 = 1e-8;

/// Runs one input through the entry point its first byte selects.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let selector = input.byte();
    let operation = selector & 0x0f;
    if selector & 0x80 == 0 {
        run_typed::<f64>(operation, &mut input);
    } else {
        run_typed::<f32>(operation, &mut input);
    }
}

fn run_typed<T: FuzzFloat>(operation: u8, input: &mut Input<'_>) {
    match operation {
        0..=7 => attention_paths::<T>(input),
        8 => steps::<T>(input),
        9 => softmax::<T>(input),
        10 => merge::<T>(input),
        11 => merge_round_trip::<T>(input),
        12 => scale::<T>(input),
        13 => formatting::<T>(input),
        _ => shape_sizes(input),
    }
}

/// The four single-head paths.
#[derive(Clone, Copy, Debug)]
enum Path {
    Straightforward,
    Blocked,
    Factored,
    Streaming,
}

const PATHS: [Path; 4] = [
    Path::Straightforward,
    Path::Blocked,
    Path::Factored,
    Path::Streaming,
];

impl Path {
    fn scratch_len(self, shape: Shape, block_rows: usize) -> Option<usize> {
        match self {
            Path::Straightforward => shape.attention_scratch_len(),
            Path::Blocked => shape.blocked_attention_scratch_len(block_rows),
            Path::Factored => shape.factored_scratch_len(block_rows),
            Path::Streaming => shape.streaming_scratch_len(block_rows),
        }
    }

    fn run<T: FuzzFloat>(
        self,
        shape: Shape,
        x: &[T],
        weights: &Weights<'_, T>,
        block_rows: usize,
        scratch: &mut [T],
        out: &mut [T],
    ) -> Result<(), Error> {
        match self {
            Path::Straightforward => attention(shape, x, weights, scratch, out),
            Path::Blocked => attention_blocked(shape, x, weights, block_rows, scratch, out),
            Path::Factored => attention_factored(shape, x, weights, block_rows, scratch, out),
            Path::Streaming => attention_streaming(shape, x, weights, block_rows, scratch, out),
        }
    }

    /// Returns whether the path documents that it leaves scratch beyond its
    /// required length untouched.
    fn keeps_excess_scratch(self) -> bool {
        matches!(self, Path::Straightforward | Path::Blocked)
    }
}

/// Decodes a slice length and records whether it differs from `expected`.
fn decode_length(input: &mut Input<'_>, expected: Option<usize>, exact: &mut bool) -> usize {
    let len = input.length(expected);
    if Some(len) != expected {
        *exact = false;
    }
    len
}

/// Checks the outcome of an attention path. `Ok` must come with a finite output,
/// and a numeric error with an output of NaN. Any other error must leave the
/// output and the scratch untouched, and a short scratch must be reported with the
/// length that the path's size method gives.
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

/// Runs every single-head path on one decoded problem.
fn attention_paths<T: FuzzFloat>(input: &mut Input<'_>) {
    let shape = Shape::new(input.dimension(8), input.dimension(8), input.dimension(4));
    let block_rows = input.dimension(9);
    let scaling = input.scaling::<T>();

    let mut exact = true;
    let x_len = decode_length(input, shape.input_len(), &mut exact);
    let wq_len = decode_length(input, shape.weight_len(), &mut exact);
    let wk_len = decode_length(input, shape.weight_len(), &mut exact);
    let wv_len = decode_length(input, shape.weight_len(), &mut exact);
    let a_len = decode_length(input, shape.adapter_len(), &mut exact);
    let b_len = decode_length(input, shape.adapter_len(), &mut exact);
    let out_len = decode_length(input, shape.input_len(), &mut exact);
    let x = input.values::<T>(x_len);
    let wq = input.values::<T>(wq_len);
    let wk = input.values::<T>(wk_len);
    let wv = input.values::<T>(wv_len);
    let a = input.values::<T>(a_len);
    let b = input.values::<T>(b_len);
    let weights = Weights {
        wq: &wq,
        wk: &wk,
        wv: &wv,
        adapter: Adapter::new(&a, &b, scaling),
    };
    let valid_shape = shape.validate().is_ok() && block_rows > 0;

    let mut outputs: Vec<(Path, Vec<f64>)> = Vec::new();
    for path in PATHS {
        let required = path.scratch_len(shape, block_rows);
        let scratch_len = input.length(required);
        let mut scratch = vec![T::zero(); scratch_len];
        let mut out = vec![T::zero(); out_len];
        fill_sentinel(&mut scratch);
        fill_sentinel(&mut out);

        let result = path.run(shape, &x, &weights, block_rows, &mut scratch, &mut out);
        let label = format!("{path:?} {shape:?} block_rows {block_rows}");
        check_outcome(&label, result, required, &scratch, &out);

        let enough_scratch = required.is_some_and(|required| scratch_len >= required);
        if input.is_tame() && exact && valid_shape && enough_scratch {
            assert_eq!(result, Ok(()), "{label}: valid tame input rejected");
        }
        if let (Ok(()), Some(required)) = (result, required) {
            if path.keeps_excess_scratch() {
                let excess = scratch.get(required..).unwrap_or_default();
                assert!(is_untouched(excess), "{label}: excess scratch written");
            }
        }
        if result.is_ok() {
            outputs.push((path, out.iter().map(|value| value.widen()).collect()));
        }
    }

    if T::BYTES == 8 && input.is_tame() {
        if let Some((first_path, first)) = outputs.first() {
            for (path, out) in &outputs[1..] {
                let difference = relative_difference(first, out);
                assert!(
                    difference <= TAME_TOLERANCE,
                    "{path:?} differs from {first_path:?} by {difference:e} on {shape:?}"
                );
            }
        }
    }
}

/// Runs `project`, `score`, `weighted_sum` or `attend`.
fn steps<T: FuzzFloat>(input: &mut Input<'_>) {
    let shape = Shape::new(input.dimension(8), input.dimension(8), input.dimension(4));
    let operation = input.choice(4);
    if operation == 3 {
        return attend_rows::<T>(input, shape);
    }
    let mut exact = true;
    let (first_len, second_len, out_len) = match operation {
        0 => (shape.input_len(), shape.weight_len(), shape.input_len()),
        1 => (shape.input_len(), shape.input_len(), shape.scores_len()),
        _ => (shape.scores_len(), shape.input_len(), shape.input_len()),
    };
    let first_len = decode_length(input, first_len, &mut exact);
    let second_len = decode_length(input, second_len, &mut exact);
    let out_len = decode_length(input, out_len, &mut exact);
    let first = input.values::<T>(first_len);
    let second = input.values::<T>(second_len);
    let mut out = vec![T::zero(); out_len];
    fill_sentinel(&mut out);

    let (name, result) = match operation {
        0 => ("project", project(shape, &first, &second, &mut out)),
        1 => ("score", score(shape, &first, &second, &mut out)),
        _ => (
            "weighted_sum",
            weighted_sum(shape, &first, &second, &mut out),
        ),
    };
    let label = format!("{name} {shape:?}");
    match result {
        Ok(()) => assert!(is_all_finite(&out), "{label}: Ok with {out:?}"),
        // The output then contains the products, the non-finite ones included.
        Err(Error::NonFiniteResult { .. }) => {}
        Err(error) => assert!(is_untouched(&out), "{label}: {error:?}, output written"),
    }
    if input.is_tame() && exact && shape.validate().is_ok() {
        assert_eq!(result, Ok(()), "{label}: valid tame input rejected");
    }
}

/// Runs `attend` for some query rows against all keys and values, with a score
/// buffer of any length.
fn attend_rows<T: FuzzFloat>(input: &mut Input<'_>, shape: Shape) {
    let rows = input.dimension(8);
    let score_rows = input.dimension(9);
    let mut exact = true;
    let q_len = decode_length(input, rows.checked_mul(shape.dim), &mut exact);
    let k_len = decode_length(input, shape.input_len(), &mut exact);
    let v_len = decode_length(input, shape.input_len(), &mut exact);
    let out_len = decode_length(input, Some(q_len), &mut exact);
    let scores_len = input.length(score_rows.checked_mul(shape.seq_len));
    let q = input.values::<T>(q_len);
    let k = input.values::<T>(k_len);
    let v = input.values::<T>(v_len);
    let mut scores = vec![T::zero(); scores_len];
    let mut out = vec![T::zero(); out_len];
    fill_sentinel(&mut scores);
    fill_sentinel(&mut out);

    let result = attend(shape, &q, &k, &v, &mut scores, &mut out);
    let label = format!("attend {shape:?} rows {rows}, scores {scores_len}");
    check_outcome(&label, result, Some(shape.seq_len), &scores, &out);
    let valid = exact && rows > 0 && shape.validate().is_ok() && scores_len >= shape.seq_len;
    if input.is_tame() && valid {
        assert_eq!(result, Ok(()), "{label}: valid tame input rejected");
    }
}

/// Runs `softmax_in_place` on a row that may hold NaN, infinities and masked scores.
fn softmax<T: FuzzFloat>(input: &mut Input<'_>) {
    let len = input.dimension(24).min(input::MAX_SLICE_LEN);
    let mut row = input.values::<T>(len);
    let before = row.clone();

    let expected_error = if let Some(index) = before
        .iter()
        .position(|&score| score.is_nan() || score == T::infinity())
    {
        Some(Error::NonFiniteInput {
            operand: Operand::Scores,
            index,
        })
    } else if !before.is_empty() && before.iter().all(|&score| score == T::neg_infinity()) {
        Some(Error::AllScoresMasked)
    } else {
        None
    };

    let result = softmax_in_place(&mut row);
    match expected_error {
        Some(error) => {
            assert_eq!(result, Err(error), "softmax of {before:?}");
            let unchanged = row
                .iter()
                .zip(&before)
                .all(|(after, before)| after.to_raw() == before.to_raw());
            assert!(unchanged, "softmax error changed the row {before:?}");
        }
        None => {
            assert_eq!(result, Ok(()), "softmax of {before:?}");
            let mut sum = 0.0_f64;
            for (&probability, &score) in row.iter().zip(&before) {
                let probability = probability.widen();
                assert!(
                    (0.0..=1.0).contains(&probability),
                    "softmax of {before:?} gives {row:?}"
                );
                if score == T::neg_infinity() {
                    assert_eq!(probability, 0.0, "masked score of {before:?}");
                }
                sum += probability;
            }
            if !row.is_empty() {
                let epsilon = T::epsilon().widen();
                let tolerance = 2.0 * (row.len() as f64 + 4.0) * epsilon;
                assert!(
                    (sum - 1.0).abs() <= tolerance,
                    "softmax of {before:?} sums to {sum}"
                );
            }
        }
    }
}

/// Decodes an adapter shape, a projection and the slices of a merge.
struct MergeProblem<T> {
    shape: AdapterShape,
    target: Projection,
    weight: Vec<T>,
    a: Vec<T>,
    b: Vec<T>,
    scaling: lora_attention::Scaling<T>,
    exact: bool,
}

impl<T: FuzzFloat> MergeProblem<T> {
    fn decode(input: &mut Input<'_>) -> Self {
        let shape = AdapterShape {
            out_features: input.dimension(8),
            in_features: input.dimension(8),
            rank: input.dimension(4),
        };
        let target = [
            Projection::Query,
            Projection::Key,
            Projection::Value,
            Projection::Output,
        ][usize::from(input.choice(4))];
        let scaling = input.scaling::<T>();
        let mut exact = true;
        let weight_len = decode_length(input, shape.weight_len(), &mut exact);
        let a_len = decode_length(input, shape.a_len(), &mut exact);
        let b_len = decode_length(input, shape.b_len(), &mut exact);
        MergeProblem {
            shape,
            target,
            weight: input.values(weight_len),
            a: input.values(a_len),
            b: input.values(b_len),
            scaling,
            exact,
        }
    }

    fn adapter(&self) -> Adapter<'_, T> {
        Adapter::new(&self.a, &self.b, self.scaling)
    }

    /// Returns the term `s B A` at `(row, column)` in `f64`, for tame inputs.
    fn term(&self, row: usize, column: usize) -> f64 {
        let rank = self.shape.rank;
        let Ok(scale) = self.scaling.scale(rank) else {
            return 0.0;
        };
        let sum: f64 = (0..rank)
            .map(|k| {
                self.b[row * rank + k].widen() * self.a[k * self.shape.in_features + column].widen()
            })
            .sum();
        scale.widen() * sum
    }
}

/// Runs `merge_adapter`.
fn merge<T: FuzzFloat>(input: &mut Input<'_>) {
    let problem = MergeProblem::<T>::decode(input);
    let mut exact = problem.exact;
    let merged_len = decode_length(input, problem.shape.weight_len(), &mut exact);
    let mut merged = vec![T::zero(); merged_len];
    fill_sentinel(&mut merged);

    let result = merge_adapter(
        problem.shape,
        problem.target,
        &problem.weight,
        &problem.adapter(),
        &mut merged,
    );
    let label = format!("merge_adapter {:?}", problem.shape);
    match result {
        Ok(()) => assert!(is_all_finite(&merged), "{label}: Ok with {merged:?}"),
        // `merged` then contains the partial sums.
        Err(Error::NonFiniteResult { .. }) => {}
        Err(error) => assert!(is_untouched(&merged), "{label}: {error:?}, merged written"),
    }
    if !(input.is_tame() && exact) {
        return;
    }

    assert_eq!(result, Ok(()), "{label}: valid tame input rejected");
    let columns = problem.shape.in_features;
    let tolerance = 4.0 * T::epsilon().widen();
    for (index, (&merged, &weight)) in merged.iter().zip(&problem.weight).enumerate() {
        let expected = weight.widen() + problem.term(index / columns, index % columns);
        let difference = (merged.widen() - expected).abs();
        assert!(
            difference <= tolerance * (1.0 + expected.abs()),
            "{label}: element {index} is {merged:?}, expected {expected}"
        );
    }
}

/// Runs `merge_in_place` then `unmerge_in_place` on a weight the body owns.
fn merge_round_trip<T: FuzzFloat>(input: &mut Input<'_>) {
    let problem = MergeProblem::<T>::decode(input);
    let adapter = problem.adapter();
    let label = format!("merge_in_place {:?}", problem.shape);
    let mut weight = problem.weight.clone();

    let result = merge_in_place(problem.shape, problem.target, &mut weight, &adapter);
    let same_bits = |weight: &[T]| {
        weight
            .iter()
            .zip(&problem.weight)
            .all(|(after, before)| after.to_raw() == before.to_raw())
    };
    match result {
        Ok(()) => assert!(is_all_finite(&weight), "{label}: Ok with {weight:?}"),
        Err(error) => {
            assert!(same_bits(&weight), "{label}: {error:?}, weight changed");
            return;
        }
    }
    let merged = weight.clone();

    let result = unmerge_in_place(problem.shape, problem.target, &mut weight, &adapter);
    if let Err(error) = result {
        let unchanged = weight
            .iter()
            .zip(&merged)
            .all(|(after, before)| after.to_raw() == before.to_raw());
        assert!(unchanged, "un{label}: {error:?}, weight changed");
        return;
    }
    assert!(is_all_finite(&weight), "un{label}: Ok with {weight:?}");

    // The documented bound, checked where the f64 term is the kernel's term up to
    // rounding: tame values have short exact products.
    if input.is_tame() {
        let columns = problem.shape.in_features.max(1);
        let epsilon = T::epsilon().widen();
        for (index, (&after, &before)) in weight.iter().zip(&problem.weight).enumerate() {
            let term = problem.term(index / columns, index % columns);
            let bound = 2.0 * epsilon * (before.widen().abs() + term.abs());
            let moved = (after.widen() - before.widen()).abs();
            assert!(
                moved <= bound,
                "{label}: weight {index} moved by {moved:e}, bound {bound:e}"
            );
        }
    }
}

/// Runs `Scaling::scale`.
fn scale<T: FuzzFloat>(input: &mut Input<'_>) {
    let rank = input.dimension(16);
    let scaling = input.scaling::<T>();
    match scaling.scale(rank) {
        Ok(scale) => {
            assert!(scale.is_finite(), "{scaling:?} at rank {rank}: {scale:?}");
            if rank == 0 {
                assert_eq!(scale, T::zero(), "{scaling:?} at rank 0");
            }
        }
        Err(error) => {
            assert_eq!(error, Error::InvalidScale, "{scaling:?} at rank {rank}");
            assert_ne!(rank, 0, "{scaling:?} at rank 0 is an error");
        }
    }
}

/// Returns the text the standard library gives for four decimals, without the sign
/// of a value that rounds to zero.
fn std_fixed4(value: f64) -> String {
    let text = format!("{value:.4}");
    if text == "-0.0000" {
        "0.0000".to_owned()
    } else {
        text
    }
}

/// Formats raw `f64` values and a judge line, against the standard library.
fn formatting<T: FuzzFloat>(input: &mut Input<'_>) {
    let value = f64::from_bits(input.bits(8));
    let mut text = String::new();
    write_fixed4(&mut text, value).expect("a String accepts every write");
    assert_eq!(text, std_fixed4(value), "write_fixed4 of {value:e}");
    assert_eq!(Fixed4(value).to_string(), text, "Fixed4 of {value:e}");

    let len = input.dimension(12).min(64);
    let values = input.values::<T>(len);
    let mut line = String::new();
    write_judge_line(&mut line, &values).expect("a String accepts every write");
    let mut expected = values
        .iter()
        .map(|value| std_fixed4(value.widen()))
        .collect::<Vec<_>>()
        .join(" ");
    expected.push('\n');
    assert_eq!(line, expected, "write_judge_line of {values:?}");
}

/// Returns `value` as `usize` when it fits.
fn fits(value: Option<u128>) -> Option<usize> {
    value.and_then(|value| usize::try_from(value).ok())
}

/// Decodes a dimension: one of the usual ones or arbitrary 64-bit values.
fn any_dimension(input: &mut Input<'_>) -> usize {
    if input.flag() {
        input.dimension(16)
    } else {
        input.bits(8) as usize
    }
}

/// Checks every size method of `Shape` and `AdapterShape` against exact `u128`
/// arithmetic, including on dimensions whose products overflow.
fn shape_sizes(input: &mut Input<'_>) {
    let (seq_len, dim, rank) = (
        any_dimension(input),
        any_dimension(input),
        any_dimension(input),
    );
    let block_rows = any_dimension(input);
    let shape = Shape::new(seq_len, dim, rank);
    let (b, d, r) = (seq_len as u128, dim as u128, rank as u128);
    let rows = block_rows.min(seq_len) as u128;
    let label = format!("{shape:?} block_rows {block_rows}");

    let input_len = b.checked_mul(d);
    let weight_len = d.checked_mul(d);
    let adapter_len = r.checked_mul(d);
    assert_eq!(shape.input_len(), fits(input_len), "{label}: input_len");
    assert_eq!(shape.weight_len(), fits(weight_len), "{label}: weight_len");
    assert_eq!(
        shape.adapter_len(),
        fits(adapter_len),
        "{label}: adapter_len"
    );
    assert_eq!(
        shape.scores_len(),
        fits(b.checked_mul(b)),
        "{label}: scores_len"
    );

    let projections = input_len.and_then(|len| len.checked_mul(3));
    let score_rows = rows.checked_mul(b);
    let blocked = weight_len
        .zip(projections)
        .and_then(|(weights, projections)| weights.checked_add(projections))
        .zip(score_rows)
        .and_then(|(sum, scores)| sum.checked_add(scores));
    assert_eq!(
        shape.blocked_attention_scratch_len(block_rows),
        fits(blocked),
        "{label}: blocked"
    );
    let all_rows = b.checked_mul(b);
    let full = weight_len
        .zip(projections)
        .and_then(|(weights, projections)| weights.checked_add(projections))
        .zip(all_rows)
        .and_then(|(sum, scores)| sum.checked_add(scores));
    assert_eq!(
        shape.attention_scratch_len(),
        fits(full),
        "{label}: attention"
    );
    let factored = projections
        .zip(score_rows)
        .and_then(|(projections, scores)| projections.checked_add(scores))
        .and_then(|sum| sum.checked_add(r));
    assert_eq!(
        shape.factored_scratch_len(block_rows),
        fits(factored),
        "{label}: factored"
    );
    // The per-row length max(3 d + r, 2 d + 3) must fit in usize on its own, even
    // when no row is needed.
    let per_row = (3 * d + r).max(2 * d + 3);
    let streaming = fits(Some(per_row)).and_then(|per_row| fits(Some(rows * per_row as u128)));
    assert_eq!(
        shape.streaming_scratch_len(block_rows),
        streaming,
        "{label}: streaming"
    );

    let expected_validation = if seq_len == 0 || dim == 0 {
        false
    } else {
        fits(input_len).is_some() && fits(weight_len).is_some() && fits(adapter_len).is_some()
    };
    assert_eq!(
        shape.validate().is_ok(),
        expected_validation,
        "{label}: validate gives {:?}",
        shape.validate()
    );

    let adapter = AdapterShape {
        out_features: seq_len,
        in_features: dim,
        rank,
    };
    assert_eq!(adapter.weight_len(), fits(b.checked_mul(d)), "{adapter:?}");
    assert_eq!(adapter.a_len(), fits(r.checked_mul(d)), "{adapter:?}");
    assert_eq!(adapter.b_len(), fits(b.checked_mul(r)), "{adapter:?}");
}
