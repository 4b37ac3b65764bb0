//! Each public step against values computed by hand.

use lora_attention::{
    merge_adapter, project, score, softmax_in_place, weighted_sum, Adapter, AdapterShape, Error,
    Operand, Projection, Scaling, Shape,
};

/// Tolerance for results that involve exp or sqrt, whose last bit may differ from
/// the hand computation.
const TOLERANCE: f64 = 1e-15;

fn assert_close(actual: &[f64], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "lengths differ");
    for (index, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!((a - e).abs() <= TOLERANCE, "element {index}: {a} != {e}");
    }
}

#[test]
fn merge_adds_scaled_product() {
    // W (2x3), A (1x3) = [1 2 3], B (2x1) = [1; -1], s = 2: s B A = [[2 4 6], [-2 -4 -6]].
    let shape = AdapterShape {
        out_features: 2,
        in_features: 3,
        rank: 1,
    };
    let w = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0];
    let adapter = Adapter::new(&[1.0, 2.0, 3.0], &[1.0, -1.0], Scaling::Factor(2.0));
    let mut merged = [0.0; 6];
    merge_adapter(shape, Projection::Query, &w, &adapter, &mut merged).unwrap();
    assert_eq!(merged, [3.0, 5.0, 7.0, -2.0, -4.0, -6.0]);
}

#[test]
fn merge_sums_over_rank() {
    // A (2x2) = [[1 2], [3 4]], B (2x2) = [[1 1], [0 2]]: B A = [[4 6], [6 8]].
    let shape = AdapterShape {
        out_features: 2,
        in_features: 2,
        rank: 2,
    };
    let adapter = Adapter::new(&[1.0, 2.0, 3.0, 4.0], &[1.0, 1.0, 0.0, 2.0], Scaling::One);
    let mut merged = [0.0; 4];
    merge_adapter(shape, Projection::Query, &[0.0; 4], &adapter, &mut merged).unwrap();
    assert_eq!(merged, [4.0, 6.0, 6.0, 8.0]);
}

#[test]
fn merge_rank_zero_copies_weight() {
    let shape = AdapterShape {
        out_features: 2,
        in_features: 2,
        rank: 0,
    };
    let mut merged = [0.0; 4];
    merge_adapter(
        shape,
        Projection::Query,
        &[1.0, 2.0, 3.0, 4.0],
        &Adapter::none(),
        &mut merged,
    )
    .unwrap();
    assert_eq!(merged, [1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn merge_rejects_wrong_lengths() {
    let shape = AdapterShape {
        out_features: 2,
        in_features: 2,
        rank: 1,
    };
    let adapter = Adapter::new(&[1.0, 2.0], &[1.0], Scaling::One);
    let mut merged = [7.0; 4];
    let error = merge_adapter(shape, Projection::Value, &[0.0; 4], &adapter, &mut merged);
    assert_eq!(
        error,
        Err(Error::LengthMismatch {
            operand: Operand::AdapterB(Projection::Value),
            expected: 2,
            actual: 1
        })
    );
    assert_eq!(merged, [7.0; 4], "nothing written");
}

#[test]
fn project_multiplies_by_transpose() {
    // x (2x2) = [[1 2], [3 4]], W = [[1 0], [1 -1]]: x W^T = [[1 -1], [3 -1]].
    let shape = Shape::new(2, 2, 0);
    let mut out = [0.0; 4];
    project(
        shape,
        &[1.0, 2.0, 3.0, 4.0],
        &[1.0, 0.0, 1.0, -1.0],
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [1.0, -1.0, 3.0, -1.0]);
}

#[test]
fn project_reports_overflow() {
    let shape = Shape::new(1, 1, 0);
    let mut out = [0.0];
    let error = project(shape, &[1e200], &[1e200], &mut out);
    assert_eq!(
        error,
        Err(Error::NonFiniteResult {
            operand: Operand::Output,
            index: 0
        })
    );
}

#[test]
fn project_rejects_nan_weight() {
    let shape = Shape::new(1, 1, 0);
    let mut out = [5.0];
    let error = project(shape, &[1.0], &[f64::NAN], &mut out);
    assert_eq!(
        error,
        Err(Error::NonFiniteInput {
            operand: Operand::ProjectionWeight,
            index: 0
        })
    );
    assert_eq!(out, [5.0]);
}

#[test]
fn score_scales_by_inverse_sqrt_dim() {
    // d = 2: q0 = [1 1], q1 = [2 0], k0 = [1 0], k1 = [1 1].
    let shape = Shape::new(2, 2, 0);
    let mut scores = [0.0; 4];
    score(
        shape,
        &[1.0, 1.0, 2.0, 0.0],
        &[1.0, 0.0, 1.0, 1.0],
        &mut scores,
    )
    .unwrap();
    let r = 1.0 / 2.0_f64.sqrt();
    assert_close(&scores, &[r, 2.0 * r, 2.0 * r, 2.0 * r]);
}

#[test]
fn score_rejects_short_output() {
    let shape = Shape::new(2, 1, 0);
    let mut scores = [0.0; 3];
    let error = score(shape, &[1.0, 2.0], &[1.0, 2.0], &mut scores);
    assert_eq!(
        error,
        Err(Error::LengthMismatch {
            operand: Operand::Scores,
            expected: 4,
            actual: 3
        })
    );
}

#[test]
fn softmax_of_known_row() {
    // exp(0) : exp(ln 3) = 1 : 3.
    let mut row = [0.0, 3.0_f64.ln()];
    softmax_in_place(&mut row).unwrap();
    assert_close(&row, &[0.25, 0.75]);
}

#[test]
fn softmax_shift_invariant_for_large_scores() {
    // Without subtracting the maximum, exp(1e4) overflows and exp(-1e4) underflows.
    // The offset 2 is exact at this magnitude, so the expected row is the softmax
    // of [0, 2].
    let e2 = 2.0_f64.exp();
    let expected = [1.0 / (1.0 + e2), e2 / (1.0 + e2)];
    for base in [1e4, -1e4] {
        let mut row = [base, base + 2.0];
        softmax_in_place(&mut row).unwrap();
        assert_close(&row, &expected);
    }
}

#[test]
fn softmax_extreme_spread() {
    let mut row = [f64::MAX, -f64::MAX, 0.0];
    softmax_in_place(&mut row).unwrap();
    assert_eq!(row, [1.0, 0.0, 0.0]);
}

#[test]
fn softmax_equal_scores_are_uniform() {
    let mut row = [2.5; 4];
    softmax_in_place(&mut row).unwrap();
    assert_eq!(row, [0.25; 4]);
}

#[test]
fn softmax_single_score_is_one() {
    let mut row = [-123.0];
    softmax_in_place(&mut row).unwrap();
    assert_eq!(row, [1.0]);
}

#[test]
fn softmax_masked_scores_get_zero() {
    let mut row = [f64::NEG_INFINITY, 1.0, f64::NEG_INFINITY, 1.0];
    softmax_in_place(&mut row).unwrap();
    assert_eq!(row, [0.0, 0.5, 0.0, 0.5]);
}

#[test]
fn softmax_rejects_fully_masked_row() {
    let mut row = [f64::NEG_INFINITY; 3];
    assert_eq!(softmax_in_place(&mut row), Err(Error::AllScoresMasked));
    assert!(row.iter().all(|&v| v == f64::NEG_INFINITY), "row unchanged");
}

#[test]
fn softmax_rejects_nan_and_positive_infinity() {
    for bad in [f64::NAN, f64::INFINITY] {
        let mut row = [1.0, bad, 2.0];
        let error = softmax_in_place(&mut row);
        assert_eq!(
            error,
            Err(Error::NonFiniteInput {
                operand: Operand::Scores,
                index: 1
            })
        );
        assert_eq!(row[0], 1.0, "row unchanged");
        assert_eq!(row[2], 2.0, "row unchanged");
    }
}

#[test]
fn softmax_empty_row_is_ok() {
    let mut row: [f64; 0] = [];
    assert_eq!(softmax_in_place(&mut row), Ok(()));
}

#[test]
fn softmax_works_at_f32() {
    let mut row = [0.0_f32, 3.0_f32.ln()];
    softmax_in_place(&mut row).unwrap();
    assert!((row[0] - 0.25).abs() < 1e-7);
    assert!((row[1] - 0.75).abs() < 1e-7);
}

#[test]
fn weighted_sum_averages_values() {
    // P = [[0.5 0.5], [0.25 0.75]], V = [[2 4], [6 8]].
    let shape = Shape::new(2, 2, 0);
    let mut out = [0.0; 4];
    weighted_sum(
        shape,
        &[0.5, 0.5, 0.25, 0.75],
        &[2.0, 4.0, 6.0, 8.0],
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [4.0, 6.0, 5.0, 7.0]);
}

#[test]
fn weighted_sum_rejects_nan_probability() {
    let shape = Shape::new(1, 1, 0);
    let mut out = [0.0];
    let error = weighted_sum(shape, &[f64::NAN], &[1.0], &mut out);
    assert_eq!(
        error,
        Err(Error::NonFiniteInput {
            operand: Operand::Probabilities,
            index: 0
        })
    );
}

#[test]
fn attend_known_weights() {
    // One query scoring two keys 0 and ln 3: weights 1/4 and 3/4.
    let shape = Shape::new(2, 1, 0);
    let q = [3.0_f64.ln()];
    let k = [0.0, 1.0];
    let v = [4.0, 8.0];
    let mut scores = [0.0; 2];
    let mut out = [0.0];
    lora_attention::attend(shape, &q, &k, &v, &mut scores, &mut out).unwrap();
    assert_close(&out, &[7.0]);
}

#[test]
fn attend_rejects_partial_rows() {
    let shape = Shape::new(2, 2, 0);
    let mut scores = [0.0; 2];
    let mut out = [7.0; 3];
    let error = lora_attention::attend(
        shape,
        &[1.0; 3],
        &[0.0; 4],
        &[0.0; 4],
        &mut scores,
        &mut out,
    );
    assert_eq!(
        error,
        Err(Error::LengthMismatch {
            operand: Operand::Query,
            expected: 2,
            actual: 3
        })
    );
    assert_eq!(out, [7.0; 3], "nothing written");
}

#[test]
fn attend_rejects_scores_shorter_than_a_row() {
    let shape = Shape::new(3, 1, 0);
    let mut scores = [0.0; 2];
    let mut out = [0.0];
    let error = lora_attention::attend(shape, &[1.0], &[0.0; 3], &[0.0; 3], &mut scores, &mut out);
    assert_eq!(
        error,
        Err(Error::ScratchTooSmall {
            required: 3,
            actual: 2
        })
    );
}
