//! Throughput of every single-head path next to a plain triple loop.
//!
//! Every path is credited with the same nominal flop count,
//! `2 d^2 r + 6 b d^2 + 4 b^2 d` (merge, projections, scores and weighted sums), so
//! criterion's element rate reads as flop/s: `Gelem/s` is GFLOP/s. Each group prints
//! the scratch bytes of each path before timing it, and each path's result is
//! checked against the triple loop before it is timed.
//!
//! Run with `cargo bench --bench paths`; add a filter such as `f64/512x256x8` to run
//! one group.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lora_attention::{
    attention, attention_factored, attention_streaming, Adapter, Real, Scaling, Shape, Weights,
};

/// The shapes (b, d, r) every path is measured at.
const SHAPES: [(usize, usize, usize); 3] = [(16, 64, 4), (128, 128, 8), (512, 256, 8)];

/// Query rows per block in the streaming path.
const STREAMING_BLOCK_ROWS: usize = 16;

/// Returns the nominal flop count, the same for every path.
fn flops(shape: Shape) -> u64 {
    let Shape { seq_len, dim, rank } = shape;
    let (b, d, r) = (seq_len as u64, dim as u64, rank as u64);
    2 * d * d * r + 6 * b * d * d + 4 * b * b * d
}

/// Inputs of one benchmark, filled with a fixed pseudo-random sequence in [-1, 1).
struct Inputs<T> {
    x: Vec<T>,
    wq: Vec<T>,
    wk: Vec<T>,
    wv: Vec<T>,
    a: Vec<T>,
    b: Vec<T>,
}

impl<T: Real> Inputs<T> {
    fn new(shape: Shape) -> Self {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut vector = |len: usize| -> Vec<T> {
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    T::from((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0).unwrap()
                })
                .collect()
        };
        let Shape { seq_len, dim, rank } = shape;
        Inputs {
            x: vector(seq_len * dim),
            wq: vector(dim * dim),
            wk: vector(dim * dim),
            wv: vector(dim * dim),
            a: vector(rank * dim),
            b: vector(dim * rank),
        }
    }

    fn weights(&self) -> Weights<'_, T> {
        Weights {
            wq: &self.wq,
            wk: &self.wk,
            wv: &self.wv,
            adapter: Adapter::new(&self.a, &self.b, Scaling::One),
        }
    }
}

/// Computes the formula in plain triple loops, allocating as it goes: the baseline.
fn triple_loop<T: Real>(shape: Shape, inputs: &Inputs<T>) -> Vec<T> {
    let Shape {
        seq_len: b,
        dim: d,
        rank: r,
    } = shape;
    let mut merged = inputs.wq.clone();
    for i in 0..d {
        for j in 0..d {
            for k in 0..r {
                merged[i * d + j] = merged[i * d + j] + inputs.b[i * r + k] * inputs.a[k * d + j];
            }
        }
    }
    let project = |w: &[T]| {
        let mut out = vec![T::zero(); b * d];
        for i in 0..b {
            for j in 0..d {
                for k in 0..d {
                    out[i * d + j] = out[i * d + j] + inputs.x[i * d + k] * w[j * d + k];
                }
            }
        }
        out
    };
    let (q, k, v) = (project(&merged), project(&inputs.wk), project(&inputs.wv));
    let scale = T::one() / T::from(d).unwrap().sqrt();
    let mut out = vec![T::zero(); b * d];
    let mut scores = vec![T::zero(); b];
    for i in 0..b {
        for j in 0..b {
            let mut sum = T::zero();
            for t in 0..d {
                sum = sum + q[i * d + t] * k[j * d + t];
            }
            scores[j] = sum * scale;
        }
        let max = scores.iter().fold(T::neg_infinity(), |m, &s| m.max(s));
        let mut total = T::zero();
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            total = total + *s;
        }
        for j in 0..b {
            for t in 0..d {
                out[i * d + t] = out[i * d + t] + scores[j] / total * v[j * d + t];
            }
        }
    }
    out
}

/// A single-head path as the bench calls it.
type PathFn<T> = fn(Shape, &[T], &Weights<'_, T>, &mut [T], &mut [T]);

fn straightforward<T: Real>(shape: Shape, x: &[T], w: &Weights<'_, T>, s: &mut [T], o: &mut [T]) {
    attention(shape, x, w, s, o).unwrap();
}

fn factored<T: Real>(shape: Shape, x: &[T], w: &Weights<'_, T>, s: &mut [T], o: &mut [T]) {
    attention_factored(shape, x, w, shape.seq_len, s, o).unwrap();
}

fn streaming<T: Real>(shape: Shape, x: &[T], w: &Weights<'_, T>, s: &mut [T], o: &mut [T]) {
    attention_streaming(shape, x, w, STREAMING_BLOCK_ROWS, s, o).unwrap();
}

fn bench_type<T: Real + std::fmt::Debug>(c: &mut Criterion, type_name: &str) {
    for (b, d, r) in SHAPES {
        let shape = Shape::new(b, d, r);
        let inputs = Inputs::<T>::new(shape);
        let weights = inputs.weights();
        let baseline = triple_loop(shape, &inputs);

        let paths: [(&str, PathFn<T>, usize); 3] = [
            (
                "straightforward",
                straightforward::<T>,
                shape.attention_scratch_len().unwrap(),
            ),
            (
                "factored",
                factored::<T>,
                shape.factored_scratch_len(b).unwrap(),
            ),
            (
                "streaming-16",
                streaming::<T>,
                shape.streaming_scratch_len(STREAMING_BLOCK_ROWS).unwrap(),
            ),
        ];

        let group_name = format!("{type_name}/{b}x{d}x{r}");
        let mut group = c.benchmark_group(&group_name);
        group.throughput(Throughput::Elements(flops(shape)));
        if b >= 128 {
            group.sample_size(10);
            group.measurement_time(Duration::from_secs(4));
        }

        for (name, path, scratch_len) in paths {
            let bytes = scratch_len * std::mem::size_of::<T>();
            println!("{group_name}/{name}: scratch {bytes} bytes");
            let mut scratch = vec![T::zero(); scratch_len];
            let mut out = vec![T::zero(); b * d];

            path(shape, &inputs.x, &weights, &mut scratch, &mut out);
            // sqrt(eps) of the output's magnitude: loose enough for f32 sums of a
            // few hundred terms, tight enough to catch a wrong result.
            let magnitude = baseline.iter().fold(T::one(), |m, v| m.max(v.abs()));
            let tolerance = T::epsilon().sqrt() * magnitude;
            for (value, expected) in out.iter().zip(&baseline) {
                assert!(
                    (*value - *expected).abs() <= tolerance,
                    "{name}: {value:?} != {expected:?}"
                );
            }

            group.bench_function(BenchmarkId::from_parameter(name), |bencher| {
                bencher.iter(|| {
                    path(
                        shape,
                        black_box(&inputs.x),
                        &weights,
                        &mut scratch,
                        &mut out,
                    );
                    black_box(&out);
                })
            });
        }
        println!(
            "{group_name}/triple-loop: allocates {} bytes",
            (d * d + 4 * b * d + b) * std::mem::size_of::<T>()
        );
        group.bench_function(BenchmarkId::from_parameter("triple-loop"), |bencher| {
            bencher.iter(|| black_box(triple_loop(shape, black_box(&inputs))))
        });
        group.finish();
    }
}

fn benches(c: &mut Criterion) {
    bench_type::<f32>(c, "f32");
    bench_type::<f64>(c, "f64");
}

criterion_group!(paths, benches);
criterion_main!(paths);
