//! The judge formatter against the standard library's exact `{:.4}`.

mod common;

use common::{judge_line_std, Random};
use lora_attention::{write_judge_line, Fixed4};

fn std_fixed4(value: f64) -> String {
    let text = format!("{value:.4}");
    if text == "-0.0000" {
        "0.0000".to_string()
    } else {
        text
    }
}

#[test]
fn ties_round_half_to_even() {
    // Each of these is exactly halfway between two ten-thousandths in binary.
    let cases = [
        (0.03125, "0.0312"),
        (0.09375, "0.0938"),
        (-0.03125, "-0.0312"),
        (1.00005, "1.0001"), // not exactly representable: above the tie
        (0.00015, "0.0001"), // not exactly representable: below the tie
        (2.5e-5, "0.0000"),  // below half of 1e-4
    ];
    for (value, expected) in cases {
        assert_eq!(Fixed4(value).to_string(), expected, "value {value:e}");
        assert_eq!(std_fixed4(value), expected, "std agrees on {value:e}");
    }
}

#[test]
fn negative_values_rounding_to_zero_lose_sign() {
    for value in [-0.0, -1e-300, -4e-5, -0.000049, -f64::MIN_POSITIVE] {
        assert_eq!(Fixed4(value).to_string(), "0.0000", "value {value:e}");
    }
    assert_eq!(Fixed4(-0.00006).to_string(), "-0.0001");
}

#[test]
fn matches_std_on_random_values() {
    let mut random = Random::new(42);
    for _ in 0..200_000 {
        let mantissa = random.uniform();
        let exponent = random.range(0, 40) as i32 - 25;
        let value = mantissa * 10f64.powi(exponent);
        assert_eq!(
            Fixed4(value).to_string(),
            std_fixed4(value),
            "value {value:e}"
        );
    }
}

#[test]
fn matches_std_on_dyadic_ties() {
    // k / 2^n hits exact ties at many scales.
    for n in 1..=20 {
        for k in 0..200_u32 {
            let value = f64::from(k) / f64::from(1u32 << n);
            assert_eq!(Fixed4(value).to_string(), std_fixed4(value), "{k} / 2^{n}");
            assert_eq!(
                Fixed4(-value).to_string(),
                std_fixed4(-value),
                "-{k} / 2^{n}"
            );
        }
    }
}

#[test]
fn large_values_and_fast_path_limit() {
    let limit = 1_125_899_906_842_624.0_f64;
    let values = [
        limit,
        limit - 0.5,
        limit - 1.0,
        1e15 + 0.12345,
        1e20,
        -1e20,
        f64::MAX,
        f64::MIN,
        123_456_789.987_654_32,
    ];
    for value in values {
        assert_eq!(
            Fixed4(value).to_string(),
            std_fixed4(value),
            "value {value:e}"
        );
    }
}

#[test]
fn subnormals_print_zero() {
    assert_eq!(Fixed4(5e-324).to_string(), "0.0000");
    assert_eq!(Fixed4(-5e-324).to_string(), "0.0000");
}

#[test]
fn non_finite_values_print_as_core_does() {
    assert_eq!(Fixed4(f64::NAN).to_string(), "NaN");
    assert_eq!(Fixed4(f64::INFINITY).to_string(), "inf");
    assert_eq!(Fixed4(f64::NEG_INFINITY).to_string(), "-inf");
}

#[test]
fn judge_line_matches_std_line() {
    let values = [0.5, -0.25, 1e-5, -1e-5, 1.23456, -9.87654];
    let mut line = String::new();
    write_judge_line(&mut line, &values).unwrap();
    assert_eq!(line, judge_line_std(&values));
    assert_eq!(line, "0.5000 -0.2500 0.0000 0.0000 1.2346 -9.8765\n");
}

#[test]
fn judge_line_of_f32_widens_exactly() {
    // 0.1_f32 is 0.100000001490116..., which still prints 0.1000.
    let mut line = String::new();
    write_judge_line(&mut line, &[0.1_f32, -0.03125]).unwrap();
    assert_eq!(line, "0.1000 -0.0312\n");
}

#[test]
fn empty_judge_line_is_newline() {
    let mut line = String::new();
    write_judge_line::<f64, _>(&mut line, &[]).unwrap();
    assert_eq!(line, "\n");
}
