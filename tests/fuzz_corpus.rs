//! Runs the kernel's fuzz bodies (fuzz/bodies) over their stored corpora and over
//! the repository's cases encoded as fuzz inputs, so that `cargo test` replays every
//! seed and every minimized crash without the nightly fuzzing toolchain.
//!
//! `cargo test --test fuzz_corpus -- --ignored write_seed_corpus` rewrites the seed
//! files (`seed-*`) in fuzz/corpus/kernel_paths and fuzz/corpus/multi_head from the
//! cases in tests/data.

// Each body includes its own copy of fuzz/bodies/input.rs, so that it also compiles
// alone in its fuzz target.
#![allow(clippy::duplicate_mod)]

#[path = "common/multihead.rs"]
mod cases;
#[path = "common/mod.rs"]
mod common;
#[path = "../fuzz/bodies/kernel_paths.rs"]
mod kernel_paths;
#[path = "../fuzz/bodies/multi_head.rs"]
mod multi_head;
#[path = "../fuzz/replay.rs"]
mod replay;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use cases::{attention_cases, AttentionCase};
use common::{judge_cases_with_output, JudgeCase};
use replay::replay_corpus;

/// Returns the stored corpus folder of a fuzz target.
fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

#[test]
fn kernel_paths_corpus_passes() {
    replay_corpus(&corpus_dir("kernel_paths"), kernel_paths::run);
}

#[test]
fn multi_head_corpus_passes() {
    replay_corpus(&corpus_dir("multi_head"), multi_head::run);
}

/// Builds fuzz inputs in the byte format of fuzz/bodies/input.rs.
struct Encoder {
    bytes: Vec<u8>,
    wide: bool,
}

impl Encoder {
    fn new(wide: bool) -> Self {
        Encoder {
            bytes: Vec::new(),
            wide,
        }
    }

    fn byte(&mut self, byte: u8) {
        self.bytes.push(byte);
    }

    fn raw(&mut self, value: f64) {
        if self.wide {
            self.bytes.extend(value.to_bits().to_le_bytes());
        } else {
            self.bytes.extend((value as f32).to_bits().to_le_bytes());
        }
    }

    /// Appends a value slice in raw mode, exact for `f64`.
    fn values(&mut self, values: &[f64]) {
        self.byte(0x80);
        for &value in values {
            self.raw(value);
        }
    }

    /// Appends a scale numerator as raw bits.
    fn scalar(&mut self, value: f64) {
        self.byte(0xe0);
        self.raw(value);
    }
}

/// Encodes a judge case for the single-head body, or `None` when its shape is
/// beyond the body's small dimensions (seq_len and dim up to 8, rank up to 4).
fn encode_judge_case(case: &JudgeCase, wide: bool) -> Option<Vec<u8>> {
    if case.seq_len > 8 || case.dim > 8 || case.rank > 4 {
        return None;
    }
    let mut encoder = Encoder::new(wide);
    encoder.byte(if wide { 0x00 } else { 0x80 }); // attention paths
    encoder.byte(case.seq_len as u8);
    encoder.byte(case.dim as u8);
    encoder.byte(case.rank as u8);
    encoder.byte(2); // block_rows
    encoder.byte(0); // Scaling::One
    for _ in 0..7 {
        encoder.byte(0); // every slice length exact
    }
    for values in [&case.x, &case.wq, &case.wk, &case.wv, &case.a, &case.b] {
        encoder.values(values);
    }
    for _ in 0..4 {
        encoder.byte(0); // every scratch length exact
    }
    Some(encoder.bytes)
}

/// Encodes a generalised case for the multi-head body, or `None` when it is beyond
/// the body's structured configurations (up to 3 kv_heads, 4 heads per kv_head,
/// head_dim up to 8, ranks up to 4, up to 8 tokens).
fn encode_attention_case(case: &AttentionCase, wide: bool, index: usize) -> Option<Vec<u8>> {
    let head_dim = case.d / case.heads;
    let group = case.heads / case.kv_heads;
    let rank = |key: &str| case.lora.get(key).map_or(0, |lora| lora.rank);
    let fits = case.kv_heads <= 3
        && group <= 4
        && head_dim <= 8
        && case.n <= 8
        && ["q", "k", "v", "o"].iter().all(|key| rank(key) <= 4)
        && matches!(case.rope_base, None | Some(10_000.0));
    if !fits {
        return None;
    }

    let mut encoder = Encoder::new(wide);
    encoder.byte(if wide { 0x00 } else { 0x80 });
    encoder.byte(0); // structured configuration
    encoder.byte((case.kv_heads - 1) as u8);
    encoder.byte((group - 1) as u8);
    encoder.byte((head_dim - 1) as u8);
    encoder.byte(u8::from(case.causal));
    encoder.byte(if case.rope_base.is_some() { 0xa0 } else { 0 });
    encoder.byte(u8::from(case.wo.is_some()));
    let bias_bits = ["q", "k", "v", "o"]
        .iter()
        .enumerate()
        .filter(|(_, key)| case.bias.contains_key(**key))
        .fold(0_u8, |bits, (bit, _)| bits | 1 << bit);
    encoder.byte(bias_bits);
    for key in ["q", "k", "v", "o"] {
        encoder.byte(rank(key) as u8);
    }

    encoder.byte(1); // a structured token count follows
    encoder.byte((case.n - 1) as u8);
    let form = (index % 3) as u8;
    encoder.byte(form);
    if form == 2 {
        encoder.byte(2); // block_rows
    }
    encoder.byte((index / 3 % 2) as u8); // adapter mode
    for _ in 0..3 {
        encoder.byte(0); // x, output and scratch lengths exact
    }

    for _ in 0..16 {
        encoder.byte(0); // every weight, bias and adapter length exact
    }
    for key in ["q", "k", "v", "o"] {
        match case.lora.get(key) {
            None => encoder.byte(0),
            Some(lora) => match lora.scaling.as_str() {
                "one" => encoder.byte(0),
                "alpha_over_r" => {
                    encoder.byte(1);
                    encoder.scalar(lora.alpha);
                }
                "rslora" => {
                    encoder.byte(2);
                    encoder.scalar(lora.alpha);
                }
                other => panic!("unknown scaling kind {other}"),
            },
        }
    }
    encoder.values(&case.wq);
    encoder.values(&case.wk);
    encoder.values(&case.wv);
    encoder.values(case.wo.as_deref().unwrap_or_default());
    for key in ["q", "k", "v", "o"] {
        encoder.values(case.bias.get(key).map_or(&[][..], Vec::as_slice));
    }
    for key in ["q", "k", "v", "o"] {
        let lora = case.lora.get(key);
        encoder.values(lora.map_or(&[][..], |lora| &lora.a));
        encoder.values(lora.map_or(&[][..], |lora| &lora.b));
    }
    encoder.values(&case.x);

    // Decode every token into a cache with room for up to 6 of them.
    encoder.byte(case.n.min(6) as u8);
    encoder.byte(0);
    encoder.byte(0);
    encoder.byte((case.n - 1) as u8);
    for row in case.x.chunks(case.d) {
        encoder.byte(2); // a decoding step
        encoder.byte(1); // under the same configuration
        encoder.byte(index as u8 % 2);
        for _ in 0..3 {
            encoder.byte(0);
        }
        encoder.values(row);
    }
    Some(encoder.bytes)
}

/// Returns every seed: file name and bytes, per target.
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for case in judge_cases_with_output() {
        for wide in [true, false] {
            if let Some(bytes) = encode_judge_case(&case, wide) {
                let kind = if wide { "f64" } else { "f32" };
                let name = format!("seed-judge-{}-{kind}", case.name);
                seeds.push(("kernel_paths", name, bytes));
            }
        }
    }
    for (index, case) in attention_cases().iter().enumerate() {
        for wide in [true, false] {
            if let Some(bytes) = encode_attention_case(case, wide, index) {
                let kind = if wide { "f64" } else { "f32" };
                let name = format!("seed-{}-{kind}", case.name);
                seeds.push(("multi_head", name, bytes));
            }
        }
    }
    seeds
}

#[test]
fn encoded_cases_pass_bodies() {
    let seeds = seeds();
    let count = |target: &str| seeds.iter().filter(|seed| seed.0 == target).count();
    assert!(count("kernel_paths") >= 10, "too few judge cases fit");
    assert!(count("multi_head") >= 10, "too few attention cases fit");
    for (target, name, bytes) in &seeds {
        let body = match *target {
            "kernel_paths" => kernel_paths::run,
            _ => multi_head::run,
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| body(bytes)));
        assert!(outcome.is_ok(), "{target} seed {name} panics");
    }
}

#[test]
#[ignore = "rewrites the seed files of fuzz/corpus; run by hand after changing the cases or the encoding"]
fn write_seed_corpus() {
    for target in ["kernel_paths", "multi_head"] {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).expect("create the corpus folder");
        for entry in std::fs::read_dir(&dir).expect("read the corpus folder") {
            let path = entry.expect("directory entry").path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.starts_with("seed-") {
                std::fs::remove_file(&path).expect("remove an old seed");
            }
        }
    }
    for (target, name, bytes) in seeds() {
        std::fs::write(corpus_dir(target).join(name), bytes).expect("write a seed");
    }
}
