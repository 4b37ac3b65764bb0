//! The result and the errors do not depend on how many threads compute them.

use lora_attention_cli::{compute_with_threads, read_problem, ComputeError};

/// Builds a judge input with values from a fixed pseudo-random sequence.
fn input(rows: usize, width: usize, rank: usize, seed: u64) -> String {
    let mut state = seed | 1;
    let count = rows * width + 3 * width * width + 2 * rank * width;
    let mut text = format!("{rows} {width} {rank}\n");
    for _ in 0..count {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let value = (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
        text.push_str(&format!("{value:.6} "));
    }
    text
}

#[test]
fn thread_count_does_not_change_result() {
    for (rows, width, rank) in [(1, 3, 1), (5, 4, 2), (33, 17, 3), (130, 24, 8)] {
        let problem = read_problem(input(rows, width, rank, 11).as_bytes()).unwrap();
        let single = compute_with_threads(&problem, 1).unwrap();
        for threads in [2, 3, 7, 200] {
            let split = compute_with_threads(&problem, threads).unwrap();
            assert_eq!(
                split, single,
                "{rows}x{width}x{rank} with {threads} threads"
            );
        }
    }
}

#[test]
fn thread_count_does_not_change_error() {
    // Row 4 of x overflows its query and key; row 9 overflows only further on.
    let mut text = input(12, 4, 0, 5);
    let mut tokens: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    for column in 0..4 {
        tokens[3 + 4 * 4 + column] = "1e200".to_owned();
        tokens[3 + 9 * 4 + column] = "1e300".to_owned();
    }
    for weight in tokens.iter_mut().skip(3 + 12 * 4) {
        *weight = "1e150".to_owned();
    }
    text = tokens.join(" ");
    let problem = read_problem(text.as_bytes()).unwrap();
    let single = compute_with_threads(&problem, 1).unwrap_err();
    assert!(
        matches!(
            single,
            ComputeError::Overflow {
                row: 5,
                column: 1,
                ..
            }
        ),
        "{single:?}"
    );
    for threads in [2, 3, 12] {
        let split = compute_with_threads(&problem, threads).unwrap_err();
        assert_eq!(split, single, "{threads} threads");
    }
}

#[test]
fn parallel_formatting_matches_judge_line() {
    // Enough values that the line is formatted in parts on several threads.
    let mut state = 99_u64;
    let values: Vec<f64> = (0..300_001)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 20.0
        })
        .collect();
    let mut expected = String::new();
    lora_attention::write_judge_line(&mut expected, &values).unwrap();
    assert_eq!(lora_attention_cli::format_output(&values), expected);
}
