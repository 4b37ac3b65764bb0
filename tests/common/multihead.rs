//! The generalised attention cases: a reader for the JSON files, a plain reference
//! written from their definition independently of the kernel, and a conversion of a
//! case into the slices the kernel takes.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use lora_attention::{
    decode_step, multi_head_attention, Adapter, AdapterMode, AttentionConfig, AttentionWeights,
    Error, Form, KvCache, PerProjection, Plan, Real, RotaryEmbedding, Scaling,
};
use serde_json::Value;

/// One adapter as a case file gives it.
#[derive(Clone, Debug)]
pub struct LoraCase {
    pub rank: usize,
    pub alpha: f64,
    /// `one`, `alpha_over_r` or `rslora`.
    pub scaling: String,
    pub scale: f64,
    pub a: Vec<f64>,
    pub b: Vec<f64>,
}

/// One generalised attention case.
#[derive(Clone, Debug)]
pub struct AttentionCase {
    pub name: String,
    pub n: usize,
    pub d: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub causal: bool,
    pub x: Vec<f64>,
    pub wq: Vec<f64>,
    pub wk: Vec<f64>,
    pub wv: Vec<f64>,
    pub wo: Option<Vec<f64>>,
    /// Keyed by `q`, `k`, `v`, `o`.
    pub bias: BTreeMap<String, Vec<f64>>,
    pub rope_base: Option<f64>,
    /// Keyed by `q`, `k`, `v`, `o`.
    pub lora: BTreeMap<String, LoraCase>,
    pub expected: Vec<f64>,
}

fn numbers(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .expect("an array of numbers")
        .iter()
        .map(|v| v.as_f64().expect("a number"))
        .collect()
}

/// Returns the folder of the generalised cases.
pub fn attention_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/attention")
}

/// Reads every `.json` case; panics when there is none.
pub fn attention_cases() -> Vec<AttentionCase> {
    let mut paths: Vec<_> = std::fs::read_dir(attention_dir())
        .expect("tests/data/attention is readable")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no .json cases in tests/data/attention");
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).expect("case is readable");
            let json: Value = serde_json::from_str(&text).expect("case is JSON");
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            parse_case(name, &json)
        })
        .collect()
}

fn parse_case(name: String, json: &Value) -> AttentionCase {
    let size = |key: &str| {
        json[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: {key}")) as usize
    };
    let bias = json["bias"]
        .as_object()
        .map(|map| map.iter().map(|(k, v)| (k.clone(), numbers(v))).collect())
        .unwrap_or_default();
    let lora = json["lora"]
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(k, v)| {
                    let lora = LoraCase {
                        rank: v["r"].as_u64().unwrap() as usize,
                        alpha: v["alpha"].as_f64().unwrap(),
                        scaling: v["scaling"].as_str().unwrap().to_string(),
                        scale: v["scale"].as_f64().unwrap(),
                        a: numbers(&v["a"]),
                        b: numbers(&v["b"]),
                    };
                    (k.clone(), lora)
                })
                .collect()
        })
        .unwrap_or_default();
    AttentionCase {
        n: size("n"),
        d: size("d"),
        heads: size("heads"),
        kv_heads: size("kv_heads"),
        causal: json["causal"].as_bool().unwrap(),
        x: numbers(&json["x"]),
        wq: numbers(&json["wq"]),
        wk: numbers(&json["wk"]),
        wv: numbers(&json["wv"]),
        wo: if json["wo"].is_null() {
            None
        } else {
            Some(numbers(&json["wo"]))
        },
        bias,
        rope_base: json["rope"].get("base").and_then(Value::as_f64),
        lora,
        expected: numbers(&json["expected"]),
        name,
    }
}

/// Computes the generalised attention with plain loops, straight from its
/// definition: adapted weights, projections with biases, rotary embedding,
/// grouped heads, the causal mask, softmax, concatenation and the output projection.
pub fn reference_multihead(case: &AttentionCase) -> Vec<f64> {
    let (n, d) = (case.n, case.d);
    let head_dim = d / case.heads;
    let kv_dim = case.kv_heads * head_dim;

    let adapted = |key: &str, weight: &[f64], out: usize| -> Vec<f64> {
        let mut w = weight.to_vec();
        if let Some(lora) = case.lora.get(key) {
            for i in 0..out {
                for j in 0..d {
                    let mut sum = 0.0;
                    for k in 0..lora.rank {
                        sum += lora.b[i * lora.rank + k] * lora.a[k * d + j];
                    }
                    w[i * d + j] += lora.scale * sum;
                }
            }
        }
        w
    };
    let project = |rows: &[f64], weight: &[f64], out: usize, key: &str| -> Vec<f64> {
        let count = rows.len() / d;
        let mut y = vec![0.0; count * out];
        for r in 0..count {
            for f in 0..out {
                let mut sum = 0.0;
                for t in 0..d {
                    sum += rows[r * d + t] * weight[f * d + t];
                }
                y[r * out + f] = sum + case.bias.get(key).map_or(0.0, |b| b[f]);
            }
        }
        y
    };
    let rotate = |rows: &mut [f64], width: usize| {
        let Some(base) = case.rope_base else { return };
        let half = head_dim / 2;
        for (p, row) in rows.chunks_mut(width).enumerate() {
            for head in row.chunks_mut(head_dim) {
                for i in 0..half {
                    let angle = p as f64 * base.powf(-2.0 * i as f64 / head_dim as f64);
                    let (sin, cos) = angle.sin_cos();
                    let (a, b) = (head[i], head[i + half]);
                    head[i] = a * cos - b * sin;
                    head[i + half] = b * cos + a * sin;
                }
            }
        }
    };

    let mut q = project(&case.x, &adapted("q", &case.wq, d), d, "q");
    let mut k = project(&case.x, &adapted("k", &case.wk, kv_dim), kv_dim, "k");
    let v = project(&case.x, &adapted("v", &case.wv, kv_dim), kv_dim, "v");
    rotate(&mut q, d);
    rotate(&mut k, kv_dim);

    let group = case.heads / case.kv_heads;
    let mut heads = vec![0.0; n * d];
    for h in 0..case.heads {
        let g = h / group;
        for i in 0..n {
            let visible = if case.causal { i + 1 } else { n };
            let scores: Vec<f64> = (0..visible)
                .map(|j| {
                    let mut sum = 0.0;
                    for t in 0..head_dim {
                        sum += q[i * d + h * head_dim + t] * k[j * kv_dim + g * head_dim + t];
                    }
                    sum / (head_dim as f64).sqrt()
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for t in 0..head_dim {
                let mut sum = 0.0;
                for (j, w) in weights.iter().enumerate() {
                    sum += w / total * v[j * kv_dim + g * head_dim + t];
                }
                heads[i * d + h * head_dim + t] = sum;
            }
        }
    }
    match &case.wo {
        Some(wo) => project(&heads, &adapted("o", wo, d), d, "o"),
        None => heads,
    }
}

/// The projections in the order of [`PerProjection`]'s fields, as the case files
/// name them.
pub const KEYS: [&str; 4] = ["q", "k", "v", "o"];

/// Converts case values to one float type.
pub fn convert<T: Real>(values: &[f64]) -> Vec<T> {
    values.iter().map(|&v| T::from(v).unwrap()).collect()
}

/// Returns the kernel's scaling for an adapter's `scaling` kind and `alpha`.
pub fn scaling<T: Real>(lora: &LoraCase) -> Scaling<T> {
    let alpha = T::from(lora.alpha).unwrap();
    match lora.scaling.as_str() {
        "one" => Scaling::One,
        "alpha_over_r" => Scaling::AlphaOverRank { alpha },
        "rslora" => Scaling::AlphaOverSqrtRank { alpha },
        other => panic!("unknown scaling kind {other}"),
    }
}

/// A case converted to one float type, owning the slices the kernel borrows.
pub struct OwnedCase<T> {
    pub config: AttentionConfig<T>,
    pub x: Vec<T>,
    pub wq: Vec<T>,
    pub wk: Vec<T>,
    pub wv: Vec<T>,
    pub wo: Vec<T>,
    /// Biases in [`KEYS`] order, empty where the case has none.
    pub biases: [Vec<T>; 4],
    /// Adapters `(A, B, scaling)` in [`KEYS`] order, empty where the case has none.
    pub adapters: [(Vec<T>, Vec<T>, Scaling<T>); 4],
}

impl<T: Real> OwnedCase<T> {
    /// Converts `case` and derives its configuration.
    pub fn new(case: &AttentionCase) -> Self {
        let rank = |key: &str| case.lora.get(key).map_or(0, |lora| lora.rank);
        let has_bias = |key: &str| case.bias.contains_key(key);
        let config = AttentionConfig {
            dim: case.d,
            heads: case.heads,
            kv_heads: case.kv_heads,
            causal: case.causal,
            rope: case.rope_base.map(|base| RotaryEmbedding {
                base: T::from(base).unwrap(),
            }),
            output_projection: case.wo.is_some(),
            biases: PerProjection {
                query: has_bias("q"),
                key: has_bias("k"),
                value: has_bias("v"),
                output: has_bias("o"),
            },
            ranks: PerProjection {
                query: rank("q"),
                key: rank("k"),
                value: rank("v"),
                output: rank("o"),
            },
        };
        OwnedCase {
            config,
            x: convert(&case.x),
            wq: convert(&case.wq),
            wk: convert(&case.wk),
            wv: convert(&case.wv),
            wo: case.wo.as_deref().map(convert).unwrap_or_default(),
            biases: KEYS.map(|key| case.bias.get(key).map(|b| convert(b)).unwrap_or_default()),
            adapters: KEYS.map(|key| match case.lora.get(key) {
                Some(lora) => (convert(&lora.a), convert(&lora.b), scaling(lora)),
                None => (Vec::new(), Vec::new(), Scaling::One),
            }),
        }
    }

    /// Borrows the weights as the kernel takes them.
    pub fn weights(&self) -> AttentionWeights<'_, T> {
        let adapter = |index: usize| {
            let (a, b, scaling) = &self.adapters[index];
            Adapter::new(a, b, *scaling)
        };
        AttentionWeights {
            wq: &self.wq,
            wk: &self.wk,
            wv: &self.wv,
            wo: &self.wo,
            biases: PerProjection {
                query: &self.biases[0],
                key: &self.biases[1],
                value: &self.biases[2],
                output: &self.biases[3],
            },
            adapters: PerProjection {
                query: adapter(0),
                key: adapter(1),
                value: adapter(2),
                output: adapter(3),
            },
        }
    }

    /// Returns the number of tokens in `x`.
    pub fn seq_len(&self) -> usize {
        self.x.len() / self.config.dim
    }

    /// Runs [`multi_head_attention`] on the case's own input rows.
    pub fn run(&self, form: Form, adapters: AdapterMode) -> Result<Vec<T>, Error> {
        self.run_on(&self.x, form, adapters)
    }

    /// Runs [`multi_head_attention`] on other input rows with the case's weights.
    pub fn run_on(&self, x: &[T], form: Form, adapters: AdapterMode) -> Result<Vec<T>, Error> {
        let plan = Plan {
            seq_len: x.len() / self.config.dim,
            form,
            adapters,
        };
        let mut scratch = vec![T::nan(); self.config.scratch_len(plan).unwrap()];
        let mut out = vec![T::nan(); x.len()];
        multi_head_attention(
            &self.config,
            plan,
            x,
            &self.weights(),
            &mut scratch,
            &mut out,
        )?;
        Ok(out)
    }

    /// Decodes every token with [`decode_step`] and returns the output rows.
    ///
    /// Panics when the cache does not end up containing every token.
    pub fn decode_all(&self, mode: AdapterMode) -> Result<Vec<T>, Error> {
        let n = self.seq_len();
        let cache_len = self.config.cache_len(n).unwrap();
        let mut keys = vec![T::nan(); cache_len];
        let mut values = vec![T::nan(); cache_len];
        let mut cache = KvCache::new(&self.config, &mut keys, &mut values)?;
        let mut scratch = vec![T::nan(); self.config.decode_scratch_len(mode).unwrap()];
        let mut rows = Vec::new();
        for x_row in self.x.chunks(self.config.dim) {
            let mut out = vec![T::nan(); self.config.dim];
            decode_step(
                &self.config,
                mode,
                &self.weights(),
                &mut cache,
                x_row,
                &mut scratch,
                &mut out,
            )?;
            rows.extend(out);
        }
        assert_eq!(cache.len(), n, "cached tokens after decoding every row");
        Ok(rows)
    }
}
