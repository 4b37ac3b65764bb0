#!/usr/bin/env python3
"""Generate firmware/src/cases.rs from the shared test cases in tests/data.

The firmware cannot read files, so the inputs of the cases it runs become Rust
arrays here. Expected values come from the case files or from `reference_attention`
below, a plain float64 implementation written from the task's definition and
independent of the kernel:

- judge cases: the expected text is the case's .out file itself (the firmware
  includes it with include_str!). The float64 reference gives the full-precision
  values that f32 runs are compared with, and this script checks that the
  reference prints exactly the .out text before it writes anything;
- generalised cases (.json): the "expected" array of the case file.

Usage: make_cases.py [--check]. With --check, nothing is written, and the exit
status is 1 when cases.rs differs from what the script would write.
"""

import json
import math
import sys
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parent.parent
ROOT = FIRMWARE.parent
JUDGE = ROOT / "tests" / "data" / "judge"
ATTENTION = ROOT / "tests" / "data" / "attention"
OUTPUT = FIRMWARE / "src" / "cases.rs"

# (Rust name, judge case file stem, whether the step intermediates are emitted)
JUDGE_CASES = [
    ("SAMPLE_1", "sample-1", True),
    ("SAMPLE_2", "sample-2", False),
    ("B100_D32_R16", "044-b100-d32-r16", False),
]

# (Rust name, generalised case file stem)
ATTENTION_CASES = [
    ("HEADS2_CAUSAL", "001-heads2-causal"),
    ("ROPE_CAUSAL", "008-rope-causal"),
]

SCALING = {
    "one": "Scaling::One",
    "alpha_over_r": "Scaling::AlphaOverRank {{ alpha: {alpha} }}",
    "rslora": "Scaling::AlphaOverSqrtRank {{ alpha: {alpha} }}",
}


def literal(value):
    """Return a Rust float literal that parses back to exactly `value` (as f64)."""
    text = repr(float(value))
    if not math.isfinite(float(value)):
        raise ValueError(f"non-finite value {text} in a case")
    return text


def array(values, indent):
    """Return a Rust array expression of float literals, wrapped for reading.

    `indent` is the indentation of the line the array starts on.
    """
    literals = [literal(v) for v in values]
    if not literals:
        return "[]"
    per_line = 8 if max(len(text) for text in literals) <= 10 else 4
    lines = [
        " " * (indent + 4) + ", ".join(literals[i : i + per_line]) + ","
        for i in range(0, len(literals), per_line)
    ]
    return "[\n" + "\n".join(lines) + "\n" + " " * indent + "]"


def read_judge_input(path):
    """Parse a judge .in file into (b, d, r, x, wq, wk, wv, a, b_matrix)."""
    tokens = path.read_text(encoding="utf-8-sig").split()
    values = iter(float(token) for token in tokens)
    b, d, r = (int(next(values)) for _ in range(3))

    def take(count):
        return [next(values) for _ in range(count)]

    x, wq, wk, wv = take(b * d), take(d * d), take(d * d), take(d * d)
    a, b_matrix = take(r * d), take(d * r)
    return b, d, r, x, wq, wk, wv, a, b_matrix


def reference_attention(b, d, r, x, wq, wk, wv, a, b_matrix):
    """Compute softmax(Q K^T / sqrt(d)) V with Q = x (Wq + B A)^T in float64.

    Returns the intermediates too: the merged Wq, Q, K, V, the scaled scores S
    and the probabilities P, each a flat row-major list.
    """
    merged = [
        wq[i * d + j] + sum(b_matrix[i * r + k] * a[k * d + j] for k in range(r))
        for i in range(d)
        for j in range(d)
    ]

    def project(weight):
        return [
            sum(x[t * d + j] * weight[i * d + j] for j in range(d))
            for t in range(b)
            for i in range(d)
        ]

    q, k, v = project(merged), project(wk), project(wv)
    inverse_sqrt = 1.0 / math.sqrt(d)
    scores = [
        sum(q[i * d + t] * k[j * d + t] for t in range(d)) * inverse_sqrt
        for i in range(b)
        for j in range(b)
    ]
    probabilities = []
    for i in range(b):
        row = scores[i * b : (i + 1) * b]
        top = max(row)
        weights = [math.exp(s - top) for s in row]
        total = sum(weights)
        probabilities.extend(w / total for w in weights)
    out = [
        sum(probabilities[i * b + j] * v[j * d + t] for j in range(b))
        for i in range(b)
        for t in range(d)
    ]
    steps = {"merged": merged, "q": q, "k": k, "v": v, "scores": scores, "probabilities": probabilities}
    return out, steps


def judge_text(values):
    """Format values as the judge prints them: four decimals, no "-0.0000"."""
    fields = []
    for value in values:
        field = f"{value:.4f}"
        fields.append("0.0000" if field == "-0.0000" else field)
    return " ".join(fields) + "\n"


def judge_case(name, stem, with_steps):
    input_path = JUDGE / f"{stem}.in"
    b, d, r, x, wq, wk, wv, a, b_matrix = read_judge_input(input_path)
    out, steps = reference_attention(b, d, r, x, wq, wk, wv, a, b_matrix)
    expected_text = (JUDGE / f"{stem}.out").read_text(encoding="utf-8")
    if judge_text(out) != expected_text:
        sys.exit(f"make_cases.py: the float64 reference does not print {stem}.out")

    lines = [
        f"/// Judge case `{stem}` (b = {b}, d = {d}, r = {r}).",
        f"macro_rules! {name.lower()} {{",
        "    () => {",
        "        JudgeInputs {",
        f"            shape: Shape::new({b}, {d}, {r}),",
        f"            x: &{array(x, 12)},",
        f"            wq: &{array(wq, 12)},",
        f"            wk: &{array(wk, 12)},",
        f"            wv: &{array(wv, 12)},",
        f"            a: &{array(a, 12)},",
        f"            b: &{array(b_matrix, 12)},",
        "        }",
        "    };",
        "}",
        "",
        f"/// The judge text and reference values of `{stem}`.",
        f"pub static {name}: JudgeCase = JudgeCase {{",
        f'    name: "{stem}",',
        f'    expected_text: include_str!("../../tests/data/judge/{stem}.out"),',
        f"    reference: &{array(out, 4)},",
        "};",
        "",
        f"/// The inputs of `{stem}` as `f64`.",
        f"pub static {name}_F64: JudgeInputs<f64> = {name.lower()}!();",
        "",
        f"/// The inputs of `{stem}` as `f32`.",
        f"pub static {name}_F32: JudgeInputs<f32> = {name.lower()}!();",
        "",
    ]
    if with_steps:
        lines += [
            f"/// The intermediates of `{stem}` from the float64 reference.",
            f"pub static {name}_STEPS: Steps = Steps {{",
        ]
        for key in ["merged", "q", "k", "v", "scores", "probabilities"]:
            lines.append(f"    {key}: &{array(steps[key], 4)},")
        lines += ["};", ""]
    return lines


def attention_case(name, stem):
    case = json.loads((ATTENTION / f"{stem}.json").read_text(encoding="utf-8"))
    if case["wo"] is not None or case["bias"] or set(case["lora"]) - {"q", "v"}:
        sys.exit(f"make_cases.py: {stem} has projections the firmware does not read")
    rope = (case["rope"] or {}).get("base")
    n, d = case["n"], case["d"]
    lines = [
        f"/// Generalised case `{stem}` ({n} tokens, d = {d}, {case['heads']} heads).",
        f"macro_rules! {name.lower()} {{",
        "    () => {",
        "        AttentionInputs {",
        f"            seq_len: {n},",
        f"            dim: {d},",
        f"            heads: {case['heads']},",
        f"            kv_heads: {case['kv_heads']},",
        f"            causal: {'true' if case['causal'] else 'false'},",
        f"            rope_base: {'None' if rope is None else f'Some({literal(rope)})'},",
        f"            x: &{array(case['x'], 12)},",
        f"            wq: &{array(case['wq'], 12)},",
        f"            wk: &{array(case['wk'], 12)},",
        f"            wv: &{array(case['wv'], 12)},",
    ]
    for key, field in [("q", "query"), ("v", "value")]:
        lora = case["lora"].get(key)
        if lora is None:
            lines.append(f"            {field}: AdapterInputs {{ rank: 0, a: &[], b: &[], scaling: Scaling::One }},")
            continue
        scaling = SCALING[lora["scaling"]].format(alpha=literal(lora["alpha"]))
        lines += [
            f"            {field}: AdapterInputs {{",
            f"                rank: {lora['r']},",
            f"                a: &{array(lora['a'], 16)},",
            f"                b: &{array(lora['b'], 16)},",
            f"                scaling: {scaling},",
            "            },",
        ]
    lines += [
        "        }",
        "    };",
        "}",
        "",
        f"/// The expected output of `{stem}`, from its case file.",
        f"pub static {name}_EXPECTED: &[f64] = &{array(case['expected'], 0)};",
        "",
        f"/// The inputs of `{stem}` as `f64`.",
        f"pub static {name}_F64: AttentionInputs<f64> = {name.lower()}!();",
        "",
        f"/// The inputs of `{stem}` as `f32`.",
        f"pub static {name}_F32: AttentionInputs<f32> = {name.lower()}!();",
        "",
    ]
    return lines


def generate():
    lines = [
        "//! The shared test cases the firmware runs, generated by `tools/make_cases.py`",
        "//! from `tests/data`; do not edit. Run the script again after a case changes.",
        "",
        "use crate::inputs::{AdapterInputs, AttentionInputs, JudgeCase, JudgeInputs, Steps};",
        "use lora_attention::{Scaling, Shape};",
        "",
    ]
    for name, stem, with_steps in JUDGE_CASES:
        lines += judge_case(name, stem, with_steps)
    for name, stem in ATTENTION_CASES:
        lines += attention_case(name, stem)
    return "\n".join(lines).rstrip("\n") + "\n"


def main():
    text = generate()
    if sys.argv[1:] == ["--check"]:
        if OUTPUT.read_text(encoding="utf-8") != text:
            sys.exit("make_cases.py: src/cases.rs is out of date; run tools/make_cases.py")
        return
    if sys.argv[1:]:
        sys.exit("usage: make_cases.py [--check]")
    OUTPUT.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
