//! Measures one core's peak rate of fused multiply-adds in f64, for comparison with
//! the kernels.
//!
//! Each loop runs 12 independent chains of vector multiply-adds, more than the
//! latency (4 cycles) times the units (2) of current x86 cores, so no unit waits on a
//! result. The vectors are explicit, because the compiler's choice of width for
//! plain arrays varies from loop to loop. It prints the rate in GFLOP/s, counting a
//! multiply-add as two flops and keeping the best of five runs. It measures 256-bit
//! vectors, the width the compiler gives this project's kernels on x86 (its tuning
//! for recent Intel cores prefers 256-bit vectors). Where the CPU has AVX-512, it
//! also measures 512-bit vectors, for example:
//!
//! ```text
//! peak_256 55.12
//! peak_512 110.40
//! ```
//!
//! Run with `cargo run --release --example fma_peak`. It checks the CPU's features
//! at run time. On other targets it prints nothing.

use std::time::Instant;

/// Multiply-adds per chain and run.
const ITERATIONS: u64 = 50_000_000;

/// Independent accumulators.
const CHAINS: usize = 12;

/// Runs `measure` five times and returns the best rate in GFLOP/s for `lanes` f64
/// lanes per vector.
fn best_rate(lanes: usize, measure: fn(u64) -> f64) -> f64 {
    let flops = (ITERATIONS * (CHAINS * lanes) as u64 * 2) as f64;
    let mut best = 0.0_f64;
    for _ in 0..5 {
        let start = Instant::now();
        std::hint::black_box(measure(std::hint::black_box(ITERATIONS)));
        best = best.max(flops / start.elapsed().as_secs_f64() / 1e9);
    }
    best
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,fma")]
#[inline(never)]
fn chains_256(iterations: u64) -> f64 {
    use std::arch::x86_64::{_mm256_add_pd, _mm256_cvtsd_f64, _mm256_fmadd_pd, _mm256_set1_pd};

    let factor = _mm256_set1_pd(std::hint::black_box(0.999_999));
    let addend = _mm256_set1_pd(std::hint::black_box(1e-9));
    let mut sums = [_mm256_set1_pd(1.0); CHAINS];
    for _ in 0..iterations {
        for sum in sums.iter_mut() {
            *sum = _mm256_fmadd_pd(*sum, factor, addend);
        }
    }
    let total = sums
        .iter()
        .fold(_mm256_set1_pd(0.0), |total, &sum| _mm256_add_pd(total, sum));
    _mm256_cvtsd_f64(total)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline(never)]
fn chains_512(iterations: u64) -> f64 {
    use std::arch::x86_64::{_mm512_add_pd, _mm512_cvtsd_f64, _mm512_fmadd_pd, _mm512_set1_pd};

    let factor = _mm512_set1_pd(std::hint::black_box(0.999_999));
    let addend = _mm512_set1_pd(std::hint::black_box(1e-9));
    let mut sums = [_mm512_set1_pd(1.0); CHAINS];
    for _ in 0..iterations {
        for sum in sums.iter_mut() {
            *sum = _mm512_fmadd_pd(*sum, factor, addend);
        }
    }
    let total = sums
        .iter()
        .fold(_mm512_set1_pd(0.0), |total, &sum| _mm512_add_pd(total, sum));
    _mm512_cvtsd_f64(total)
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX and FMA, all that `chains_256` needs.
            let rate = best_rate(4, |iterations| unsafe { chains_256(iterations) });
            println!("peak_256 {rate:.2}");
        }
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, all that `chains_512` needs.
            let rate = best_rate(8, |iterations| unsafe { chains_512(iterations) });
            println!("peak_512 {rate:.2}");
        }
    }
}
