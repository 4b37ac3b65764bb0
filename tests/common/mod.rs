//! Helpers shared by the kernel's integration tests: a plain reference
//! implementation written independently of the kernel, a reader for the judge case
//! files and a small deterministic random generator.

#![allow(dead_code)]

use std::path::PathBuf;

use lora_attention::{Adapter, Real, Scaling, Shape, Weights};

/// Returns weights without an adapter.
pub fn unadapted<'a, T: Real>(wq: &'a [T], wk: &'a [T], wv: &'a [T]) -> Weights<'a, T> {
    Weights {
        wq,
        wk,
        wv,
        adapter: Adapter::none(),
    }
}

/// One judge problem read from a `.in` file.
#[derive(Clone, Debug)]
pub struct JudgeCase {
    pub name: String,
    pub seq_len: usize,
    pub dim: usize,
    pub rank: usize,
    pub x: Vec<f64>,
    pub wq: Vec<f64>,
    pub wk: Vec<f64>,
    pub wv: Vec<f64>,
    pub a: Vec<f64>,
    pub b: Vec<f64>,
    /// The expected judge line, newline included.
    pub expected: String,
}

impl JudgeCase {
    /// Returns the case's shape.
    pub fn shape(&self) -> Shape {
        Shape::new(self.seq_len, self.dim, self.rank)
    }

    /// Returns the case's weights, with the adapter scale 1 of the judge task.
    pub fn weights(&self) -> Weights<'_, f64> {
        Weights {
            wq: &self.wq,
            wk: &self.wk,
            wv: &self.wv,
            adapter: Adapter::new(&self.a, &self.b, Scaling::One),
        }
    }

    /// Returns the plain reference result of the case at f64.
    pub fn reference(&self) -> Vec<f64> {
        reference_attention(
            self.seq_len,
            self.dim,
            self.rank,
            1.0,
            &self.x,
            &self.wq,
            &self.wk,
            &self.wv,
            &self.a,
            &self.b,
        )
    }

    /// Returns the case's input and weights rounded to f32.
    pub fn to_f32(&self) -> JudgeCaseF32 {
        let narrow = |values: &[f64]| values.iter().map(|&v| v as f32).collect();
        JudgeCaseF32 {
            x: narrow(&self.x),
            wq: narrow(&self.wq),
            wk: narrow(&self.wk),
            wv: narrow(&self.wv),
            a: narrow(&self.a),
            b: narrow(&self.b),
        }
    }
}

/// A judge case's input and weights rounded to f32.
pub struct JudgeCaseF32 {
    pub x: Vec<f32>,
    pub wq: Vec<f32>,
    pub wk: Vec<f32>,
    pub wv: Vec<f32>,
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

impl JudgeCaseF32 {
    /// Returns the weights, with the adapter scale 1 of the judge task.
    pub fn weights(&self) -> Weights<'_, f32> {
        Weights {
            wq: &self.wq,
            wk: &self.wk,
            wv: &self.wv,
            adapter: Adapter::new(&self.a, &self.b, Scaling::One),
        }
    }
}

/// Returns the folder of the judge case files.
pub fn judge_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/judge")
}

/// Reads every judge case that has an expected output (`NAME.in` with `NAME.out`).
///
/// Panics when the folder contains none, so that a missing copy cannot pass.
pub fn judge_cases_with_output() -> Vec<JudgeCase> {
    let mut cases = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(judge_dir())
        .expect("tests/data/judge is readable")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "in"))
        .collect();
    entries.sort();
    for input_path in entries {
        let output_path = input_path.with_extension("out");
        if !output_path.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&input_path).expect("case input is UTF-8");
        let expected = std::fs::read_to_string(&output_path).expect("case output is UTF-8");
        let name = input_path
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        cases.push(parse_judge_input(&name, &text, expected));
    }
    assert!(!cases.is_empty(), "no judge cases with .out files found");
    cases
}

/// Parses a valid judge input; tokens after the last matrix are ignored.
pub fn parse_judge_input(name: &str, text: &str, expected: String) -> JudgeCase {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut values = text
        .split_whitespace()
        .map(|token| token.parse::<f64>().expect("case token is a number"));
    let mut dimension = || values.next().expect("header value") as usize;
    let (seq_len, dim, rank) = (dimension(), dimension(), dimension());
    let mut take = |count: usize| -> Vec<f64> { values.by_ref().take(count).collect() };
    let x = take(seq_len * dim);
    let wq = take(dim * dim);
    let wk = take(dim * dim);
    let wv = take(dim * dim);
    let a = take(rank * dim);
    let b = take(dim * rank);
    assert_eq!(b.len(), dim * rank, "case {name} is complete");
    JudgeCase {
        name: name.to_string(),
        seq_len,
        dim,
        rank,
        x,
        wq,
        wk,
        wv,
        a,
        b,
        expected,
    }
}

/// Computes the judge formula with plain loops at f64, in the reference's order:
/// `Wq' = Wq + scale * B A`, projections, `(q . k) * (1 / sqrt(d))`, softmax with the
/// row maximum subtracted, weighted sum.
#[allow(clippy::too_many_arguments)]
pub fn reference_attention(
    seq_len: usize,
    dim: usize,
    rank: usize,
    scale: f64,
    x: &[f64],
    wq: &[f64],
    wk: &[f64],
    wv: &[f64],
    a: &[f64],
    b: &[f64],
) -> Vec<f64> {
    let mut merged = wq.to_vec();
    for i in 0..dim {
        for j in 0..dim {
            let mut sum = 0.0;
            for k in 0..rank {
                sum += b[i * rank + k] * a[k * dim + j];
            }
            merged[i * dim + j] += scale * sum;
        }
    }
    let project = |weight: &[f64]| -> Vec<f64> {
        let mut out = vec![0.0; seq_len * dim];
        for row in 0..seq_len {
            for feature in 0..dim {
                let mut sum = 0.0;
                for input in 0..dim {
                    sum += x[row * dim + input] * weight[feature * dim + input];
                }
                out[row * dim + feature] = sum;
            }
        }
        out
    };
    let q = project(&merged);
    let k = project(wk);
    let v = project(wv);

    let inverse_sqrt = 1.0 / (dim as f64).sqrt();
    let mut out = vec![0.0; seq_len * dim];
    for i in 0..seq_len {
        let mut scores = vec![0.0; seq_len];
        for (j, score) in scores.iter_mut().enumerate() {
            let mut sum = 0.0;
            for t in 0..dim {
                sum += q[i * dim + t] * k[j * dim + t];
            }
            *score = sum * inverse_sqrt;
        }
        let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = exps.iter().sum();
        for t in 0..dim {
            let mut sum = 0.0;
            for j in 0..seq_len {
                sum += exps[j] / total * v[j * dim + t];
            }
            out[i * dim + t] = sum;
        }
    }
    out
}

/// Returns the largest absolute value, at least 1e-300 so that it can divide.
pub fn magnitude(values: &[f64]) -> f64 {
    values
        .iter()
        .fold(1e-300_f64, |max, value| max.max(value.abs()))
}

/// Returns the largest absolute difference divided by the reference's magnitude.
pub fn relative_error(actual: &[f64], reference: &[f64]) -> f64 {
    assert_eq!(actual.len(), reference.len(), "lengths differ");
    let worst = actual
        .iter()
        .zip(reference)
        .fold(0.0_f64, |worst, (a, r)| worst.max((a - r).abs()));
    worst / magnitude(reference)
}

/// A small deterministic generator (SplitMix64), so the tests need no extra crate
/// and every failure can be replayed from its seed.
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Self {
        Random(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Returns a value in `[low, high]`.
    pub fn range(&mut self, low: usize, high: usize) -> usize {
        low + (self.next_u64() % (high - low + 1) as u64) as usize
    }

    /// Returns a value uniform in `[-1, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    pub fn vector(&mut self, len: usize) -> Vec<f64> {
        (0..len).map(|_| self.uniform()).collect()
    }
}

/// Formats values as the judge prints them, with the standard library only.
pub fn judge_line_std(values: &[f64]) -> String {
    let mut line = values
        .iter()
        .map(|value| {
            let text = format!("{value:.4}");
            if text == "-0.0000" {
                "0.0000".to_string()
            } else {
                text
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    line.push('\n');
    line
}
