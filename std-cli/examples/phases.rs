//! Times the phases of the judge program on one input file: reading and parsing,
//! the computation, and formatting, as the program runs them.
//!
//! `cargo run --release -p lora-attention-cli --example phases -- FILE [RUNS]` prints
//! the best time of each phase over RUNS runs (default 5) in milliseconds.

use std::fs::File;
use std::io::BufReader;
use std::time::Instant;

use lora_attention_cli::{compute_in_place, format_output, read_problem};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: phases FILE [RUNS]");
    let runs: usize = args
        .next()
        .map_or(5, |runs| runs.parse().expect("RUNS is a whole number"));

    let mut best = [f64::INFINITY; 3];
    for _ in 0..runs {
        let start = Instant::now();
        let file = File::open(&path).expect("FILE is readable");
        let problem = read_problem(BufReader::new(file)).expect("FILE is a valid input");
        let parsed = Instant::now();
        let values = compute_in_place(problem).expect("the computation succeeds");
        let computed = Instant::now();
        let text = format_output(&values);
        let formatted = Instant::now();
        std::hint::black_box(text);

        let phases = [parsed - start, computed - parsed, formatted - computed];
        for (best, phase) in best.iter_mut().zip(phases) {
            *best = best.min(phase.as_secs_f64() * 1e3);
        }
    }
    println!("parse_ms {:.2}", best[0]);
    println!("compute_ms {:.2}", best[1]);
    println!("format_ms {:.2}", best[2]);
}
