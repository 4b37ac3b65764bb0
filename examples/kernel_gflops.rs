//! Times the single-head kernels at one shape and prints GFLOP/s, for scripts.
//!
//! `cargo run --release --example kernel_gflops -- B D R [PATH] [TYPE]` where PATH is
//! `straightforward` (default), `factored` or `streaming-16`, and TYPE is `f64`
//! (default) or `f32`. The count is the nominal `2 d^2 r + 6 b d^2 + 4 b^2 d`. It
//! runs on one thread and prints the best of several timed batches.

use std::hint::black_box;
use std::time::Instant;

use lora_attention::{
    attention, attention_factored, attention_streaming, Adapter, Real, Scaling, Shape, Weights,
};

fn vector<T: Real>(len: usize, seed: u64) -> Vec<T> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            T::from((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0).unwrap()
        })
        .collect()
}

fn measure<T: Real>(shape: Shape, path: &str) -> f64 {
    let Shape {
        seq_len: b,
        dim: d,
        rank: r,
    } = shape;
    let (x, wq, wk, wv) = (
        vector::<T>(b * d, 1),
        vector(d * d, 2),
        vector(d * d, 3),
        vector(d * d, 4),
    );
    let (a, bb) = (vector::<T>(r * d, 5), vector(d * r, 6));
    let weights = Weights {
        wq: &wq,
        wk: &wk,
        wv: &wv,
        adapter: Adapter::new(&a, &bb, Scaling::One),
    };
    let scratch_len = match path {
        "straightforward" => shape.attention_scratch_len(),
        "factored" => shape.factored_scratch_len(b),
        "streaming-16" => shape.streaming_scratch_len(16),
        other => panic!("unknown path {other}"),
    }
    .unwrap();
    let mut scratch = vec![T::zero(); scratch_len];
    let mut out = vec![T::zero(); b * d];
    let mut run = || {
        match path {
            "straightforward" => attention(shape, black_box(&x), &weights, &mut scratch, &mut out),
            "factored" => {
                attention_factored(shape, black_box(&x), &weights, b, &mut scratch, &mut out)
            }
            _ => attention_streaming(shape, black_box(&x), &weights, 16, &mut scratch, &mut out),
        }
        .unwrap()
    };

    let flops = (2 * d * d * r + 6 * b * d * d + 4 * b * b * d) as f64;
    run();
    let reps = ((2e9 / flops) as usize).clamp(1, 10_000);
    let mut best = f64::INFINITY;
    for _ in 0..7 {
        let start = Instant::now();
        for _ in 0..reps {
            run();
        }
        best = best.min(start.elapsed().as_secs_f64() / reps as f64);
    }
    flops / best / 1e9
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| {
        args.get(i)
            .map_or(default, |s| s.parse().expect("a whole number"))
    };
    let shape = Shape::new(number(0, 256), number(1, 256), number(2, 8));
    let path = args.get(3).map_or("straightforward", String::as_str);
    let gflops = match args.get(4).map_or("f64", String::as_str) {
        "f32" => measure::<f32>(shape, path),
        _ => measure::<f64>(shape, path),
    };
    println!("{gflops:.2}");
}
