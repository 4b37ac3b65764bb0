//! The cost of one decoding step as the cache grows.
//!
//! A step's projections cost the same at every position, while its scores and
//! weighted sums cost `O(cached tokens * dim)`, so the time per step should grow
//! linearly with the number of cached tokens. Each benchmark fills the cache to the
//! given length, then times one more step and rolls it back.
//!
//! Run with `cargo bench --bench decode`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use lora_attention::{
    decode_step, Adapter, AdapterMode, AttentionConfig, AttentionWeights, KvCache, PerProjection,
    RotaryEmbedding, Scaling,
};

/// The cache lengths each step is timed at.
const CACHED_TOKENS: [usize; 5] = [128, 256, 512, 1024, 2048];

fn vector(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn bench_decode(c: &mut Criterion) {
    // A small model's block: width 128, 4 query heads over 2 key/value heads,
    // rotary embedding, an output projection and rank-8 adapters on q and v.
    let config = AttentionConfig {
        kv_heads: 2,
        causal: true,
        rope: Some(RotaryEmbedding { base: 10000.0 }),
        output_projection: true,
        ranks: PerProjection {
            query: 8,
            value: 8,
            ..PerProjection::splat(0)
        },
        ..AttentionConfig::new(128, 4)
    };
    let d = config.dim;
    let kv = config.kv_dim().unwrap();
    let (wq, wk, wv, wo) = (
        vector(d * d, 1),
        vector(kv * d, 2),
        vector(kv * d, 3),
        vector(d * d, 4),
    );
    let (aq, bq, av, bv) = (
        vector(8 * d, 5),
        vector(d * 8, 6),
        vector(8 * d, 7),
        vector(kv * 8, 8),
    );
    let weights = AttentionWeights {
        wo: &wo,
        adapters: PerProjection {
            query: Adapter::new(&aq, &bq, Scaling::AlphaOverRank { alpha: 16.0 }),
            value: Adapter::new(&av, &bv, Scaling::AlphaOverRank { alpha: 16.0 }),
            ..AttentionWeights::new(&wq, &wk, &wv).adapters
        },
        ..AttentionWeights::new(&wq, &wk, &wv)
    };
    let tokens = vector(d * (CACHED_TOKENS[4] + 1), 9);

    let capacity = CACHED_TOKENS[4] + 1;
    let mut keys = vec![0.0; config.cache_len(capacity).unwrap()];
    let mut values = vec![0.0; config.cache_len(capacity).unwrap()];
    let mut scratch = vec![0.0; config.decode_scratch_len(AdapterMode::Factored).unwrap()];
    let mut out = vec![0.0; d];
    println!(
        "cache: {} bytes per token; decode scratch: {} bytes",
        config.cache_bytes_per_token().unwrap(),
        scratch.len() * 4
    );

    let mut group = c.benchmark_group("decode-step/f32/d128-h4-kv2");
    let mut cache = KvCache::new(&config, &mut keys, &mut values).unwrap();
    let mut rows = tokens.chunks(d);
    for cached in CACHED_TOKENS {
        while cache.len() < cached {
            let row = rows.next().unwrap();
            decode_step(
                &config,
                AdapterMode::Factored,
                &weights,
                &mut cache,
                row,
                &mut scratch,
                &mut out,
            )
            .unwrap();
        }
        let next = &tokens[cached * d..(cached + 1) * d];
        group.bench_with_input(
            BenchmarkId::new("cached-tokens", cached),
            &cached,
            |bencher, &cached| {
                bencher.iter(|| {
                    decode_step(
                        &config,
                        AdapterMode::Factored,
                        &weights,
                        &mut cache,
                        black_box(next),
                        &mut scratch,
                        &mut out,
                    )
                    .unwrap();
                    cache.truncate(cached);
                    black_box(&out);
                })
            },
        );
    }
    group.finish();
}

criterion_group!(decode, bench_decode);
criterion_main!(decode);
