//! Tests of the binary: arguments, exit statuses, messages and input handling that the
//! judge cases do not cover.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;

use lora_attention_cli::MAX_TOKEN_BYTES;

const BINARY: &str = env!("CARGO_BIN_EXE_lora-attention");
const ERROR_PREFIX: &str = "lora-attention: error: ";

/// Returns the path of a judge case file.
fn case(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/judge")
        .join(name)
}

/// Returns the expected output of a judge case.
fn expected_output(name: &str) -> String {
    std::fs::read_to_string(case(name)).expect("judge case output")
}

/// Runs the binary with `args`, writing `input` to its stdin from another thread.
fn run(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(BINARY)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the binary");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    // The program may exit before it reads everything, so a failed write is expected.
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output().expect("wait for the binary");
    writer.join().expect("stdin writer thread");
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Returns the judge input with the given header and values `0.01, 0.02, ...`.
fn judge_input(rows: usize, width: usize, rank: usize) -> String {
    let count = rows * width + 3 * width * width + 2 * rank * width;
    let values: Vec<String> = (1..=count)
        .map(|index| format!("{:.2}", index as f64 / 100.0))
        .collect();
    format!("{rows} {width} {rank}\n{}\n", values.join(" "))
}

/// Asserts that the run was rejected with status 1, nothing on stdout and one error
/// line containing every fragment.
fn assert_rejected(output: &Output, fragments: &[&str]) {
    let message = stderr(output);
    assert_eq!(output.status.code(), Some(1), "stderr: {message}");
    assert_eq!(stdout(output), "");
    assert!(message.starts_with(ERROR_PREFIX), "stderr: {message}");
    assert_eq!(message.lines().count(), 1, "stderr: {message}");
    for fragment in fragments {
        assert!(
            message.contains(fragment),
            "stderr lacks {fragment:?}: {message}"
        );
    }
}

/// Asserts a usage failure: status 2, nothing on stdout, an error containing `fragment`.
fn assert_usage_error(output: &Output, fragment: &str) {
    let message = stderr(output);
    assert_eq!(output.status.code(), Some(2), "stderr: {message}");
    assert_eq!(stdout(output), "");
    assert!(message.starts_with(ERROR_PREFIX), "stderr: {message}");
    assert!(message.lines().count() <= 2, "stderr: {message}");
    assert!(
        message.contains(fragment),
        "stderr lacks {fragment:?}: {message}"
    );
}

#[test]
fn file_argument_is_read() {
    let path = case("sample-1.in");
    let output = run(&[path.to_str().expect("UTF-8 path")], b"");

    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    assert_eq!(stdout(&output), expected_output("sample-1.out"));
    assert_eq!(stderr(&output), "");
}

#[test]
fn dash_argument_reads_stdin() {
    let input = std::fs::read(case("sample-2.in")).expect("judge case input");
    let output = run(&["-"], &input);

    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    assert_eq!(stdout(&output), expected_output("sample-2.out"));
}

#[test]
fn file_after_double_dash_is_read() {
    let path = case("sample-1.in");
    let output = run(&["--", path.to_str().expect("UTF-8 path")], b"");

    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    assert_eq!(stdout(&output), expected_output("sample-1.out"));
}

#[test]
fn help_prints_usage() {
    for flag in ["--help", "-h"] {
        let output = run(&[flag], b"");
        let text = stdout(&output);

        assert_eq!(output.status.code(), Some(0), "{flag}");
        assert!(
            text.contains("Usage: lora-attention [FILE]"),
            "{flag}: {text}"
        );
        assert!(text.contains("Exit status:"), "{flag}: {text}");
        assert!(text.contains("b*d values"), "{flag}: {text}");
        assert!(
            text.contains(&format!("longer than\n{MAX_TOKEN_BYTES} bytes")),
            "{flag}: {text}"
        );
        assert_eq!(stderr(&output), "", "{flag}");
    }
}

#[test]
fn version_prints_package_version() {
    let expected = format!("lora-attention {}\n", env!("CARGO_PKG_VERSION"));
    for flag in ["--version", "-V"] {
        let output = run(&[flag], b"");

        assert_eq!(output.status.code(), Some(0), "{flag}");
        assert_eq!(stdout(&output), expected, "{flag}");
        assert_eq!(stderr(&output), "", "{flag}");
    }
}

#[test]
fn missing_file_exits_2() {
    let path =
        std::env::temp_dir().join(format!("lora-attention-missing-{}.in", std::process::id()));
    let output = run(&[path.to_str().expect("UTF-8 path")], b"");

    assert_usage_error(&output, "cannot open");
    assert!(stderr(&output).contains(path.to_str().expect("UTF-8 path")));
}

#[test]
fn directory_argument_exits_2() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = run(&[dir.to_str().expect("UTF-8 path")], b"");

    assert_usage_error(&output, "failed to read");
}

#[test]
fn unknown_option_exits_2() {
    let output = run(&["--fast"], b"1 1 0 1 1 1 1");

    assert_usage_error(&output, "unknown option '--fast'");
    assert!(stderr(&output).contains("--help"));
}

#[test]
fn two_files_exit_2() {
    let first = case("sample-1.in");
    let second = case("sample-2.in");
    let output = run(
        &[
            first.to_str().expect("UTF-8 path"),
            second.to_str().expect("UTF-8 path"),
        ],
        b"",
    );

    assert_usage_error(&output, "expected at most one FILE, got 2");
}

#[test]
fn closed_stdout_exits_2() {
    let mut child = Command::new(BINARY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the binary");
    // Close the read end of stdout before the program writes its output.
    drop(child.stdout.take());
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(judge_input(4, 4, 0).as_bytes())
        .expect("write stdin");
    drop(stdin);
    let output = child.wait_with_output().expect("wait for the binary");

    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "stderr: {message}");
    assert!(message.starts_with(ERROR_PREFIX), "stderr: {message}");
    assert!(
        message.contains("failed to write the output"),
        "stderr: {message}"
    );
}

#[test]
fn byte_order_mark_is_skipped() {
    let plain = judge_input(2, 3, 1);
    let with_mark = format!("\u{feff}{plain}");
    let expected = run(&[], plain.as_bytes());
    let output = run(&[], with_mark.as_bytes());

    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    assert_eq!(stdout(&output), stdout(&expected));
}

#[test]
fn byte_order_mark_inside_is_token_text() {
    let input = "1 1 0\n\u{feff}1 1 1 1\n";
    let output = run(&[], input.as_bytes());

    assert_rejected(
        &output,
        &[
            "x contains a token that is not a number",
            "token 4 '\\u{feff}1'",
        ],
    );
}

#[test]
fn unicode_whitespace_separates_tokens() {
    let plain = judge_input(2, 2, 1);
    let separators = [
        "\u{a0}", "\u{3000}", "\u{2028}", "\u{85}", "\u{2003}", "\x0b", "\x0c",
    ];
    let mut index = 0;
    let unicode: String = plain
        .split(' ')
        .enumerate()
        .map(|(position, token)| {
            if position == 0 {
                return token.to_owned();
            }
            index += 1;
            format!("{}{token}", separators[index % separators.len()])
        })
        .collect();
    let expected = run(&[], plain.as_bytes());
    let output = run(&[], unicode.as_bytes());

    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    assert_eq!(stdout(&output), stdout(&expected));
}

#[test]
fn invalid_utf8_in_trailing_tokens_rejected() {
    let mut input = judge_input(1, 1, 0).into_bytes();
    let offset = input.len() + 6;
    input.extend_from_slice(b"extra \xff more\n");
    let output = run(&[], &input);

    assert_rejected(
        &output,
        &[
            "not valid UTF-8",
            "byte 0xFF",
            &format!("byte offset {offset}"),
            "line 3, column 7",
        ],
    );
}

#[test]
fn input_ending_inside_character_rejected() {
    let mut input = b"1 1 0\n1 1 1 1 ".to_vec();
    input.extend_from_slice(&"\u{20ac}".as_bytes()[..2]);
    let output = run(&[], &input);

    assert_rejected(
        &output,
        &[
            "ends inside a character",
            "byte offset 14",
            "line 2, column 9",
        ],
    );
}

#[test]
fn long_token_cut_in_message() {
    let long_token = format!("{}{}", "a".repeat(30), "b".repeat(70));
    let input = format!("1 1 0\n{long_token} 1 1 1\n");
    let output = run(&[], input.as_bytes());
    let message = stderr(&output);
    let expected_excerpt = format!("'{}{}...' (100 characters)", "a".repeat(30), "b".repeat(10));

    assert_rejected(&output, &[&expected_excerpt, "token 4", "line 2, column 1"]);
    assert!(!message.contains(&long_token), "stderr: {message}");
}

#[test]
fn column_counts_characters_not_bytes() {
    // Line 2 contains '1', U+00A0, '2', U+3000, then the bad token: column 5, byte 8.
    let input = "1 3 0\n1\u{a0}2\u{3000}abc\n";
    let output = run(&[], input.as_bytes());

    assert_rejected(
        &output,
        &[
            "token 6 'abc' at line 2, column 5",
            "value 3 of the 3 values",
        ],
    );
}

#[test]
fn column_after_multibyte_token_character() {
    let input = "1 2 0\n\u{b1}1 x\n";
    let output = run(&[], input.as_bytes());

    assert_rejected(
        &output,
        &[
            "token 4 '\u{b1}1' at line 2, column 1",
            "value 1 of the 2 values",
        ],
    );
}

#[test]
fn line_counts_across_crlf() {
    let input = "1 1 0\r\n1\r\n\r\n  abc 1 1\r\n";
    let output = run(&[], input.as_bytes());

    assert_rejected(
        &output,
        &[
            "Wq contains a token that is not a number",
            "token 5 'abc' at line 4, column 3",
        ],
    );
}

#[test]
fn overflowing_number_rejected() {
    let input = "1 1 0\n1 1 1e999 1\n";
    let output = run(&[], input.as_bytes());

    assert_rejected(
        &output,
        &["Wk contains a number out of range for float64", "'1e999'"],
    );
}

#[test]
fn nan_and_infinity_name_matrix() {
    let cases = [
        ("1 1 0\nNaN 1 1 1\n", "x contains a NaN"),
        ("1 1 0\n1 1 Infinity 1\n", "Wk contains an infinity"),
        ("1 1 1\n1 1 1 1 -inf 1\n", "A contains an infinity"),
        ("1 1 1\n1 1 1 1 1 +nan\n", "B contains a NaN"),
    ];
    for (input, fragment) in cases {
        let output = run(&[], input.as_bytes());
        assert_rejected(&output, &[fragment]);
    }
}

#[test]
fn token_longer_than_chunk_parsed() {
    // 0.5 followed by 70000 zeros spans two 64 KiB chunks.
    let long_half = format!("0.5{}", "0".repeat(70_000));
    let input = format!("1 1 0\n1 1 1 {long_half}\n");
    let output = run(&[], input.as_bytes());

    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    assert_eq!(stdout(&output), "0.5000\n");
}

#[test]
fn huge_header_reports_found_values() {
    let output = run(&[], b"1000000000 1000000000 0\n0.1 0.2 0.3\n");

    assert_rejected(&output, &["x ends after 3 of 1000000000000000000 values"]);
}

#[test]
fn header_beyond_u64_counts_exactly() {
    let output = run(&[], b"1e19 1e19 0\n0.1\n");

    assert_rejected(
        &output,
        &["x ends after 1 of 100000000000000000000000000000000000000 values"],
    );
}

#[test]
fn trailing_tokens_warn_once() {
    let mut input = judge_input(1, 1, 0);
    input.push_str("extra tokens\n");
    let output = run(&[], input.as_bytes());

    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stdout(&output), "0.0004\n");
    assert_eq!(
        stderr(&output),
        "lora-attention: warning: ignored 2 tokens after the last matrix\n"
    );
}

#[test]
fn single_trailing_token_warns_singular() {
    let mut input = judge_input(1, 1, 0);
    input.push_str("extra\n");
    let output = run(&[], input.as_bytes());

    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        stderr(&output),
        "lora-attention: warning: ignored 1 token after the last matrix\n"
    );
}

#[test]
fn whitespace_only_input_rejected() {
    let output = run(&[], b" \n\t\r\n");

    assert_rejected(&output, &["the input contains only whitespace"]);
}

#[test]
fn byte_order_mark_alone_is_empty() {
    let output = run(&[], "\u{feff}".as_bytes());

    assert_rejected(&output, &["the input is empty"]);
}

#[test]
fn short_header_names_missing_fields() {
    let output = run(&[], b"4\n");

    assert_rejected(
        &output,
        &[
            "ends after 1 of its 3 values",
            "d (the model width) and r (the adapter rank) are missing",
        ],
    );
}

#[test]
fn header_problems_name_field() {
    let cases = [
        ("nan 1 0", "b (the number of rows) must be a whole number, but token 1 'nan' at line 1, column 1 is NaN"),
        ("1 inf 0", "d (the model width) must be a whole number, but token 2 'inf' at line 1, column 3 is an infinity"),
        ("1 1 -2", "r (the adapter rank) must not be negative, but token 3 '-2' at line 1, column 5 is negative"),
        ("1 1 2.5", "r (the adapter rank) must be a whole number, but token 3 '2.5' at line 1, column 5 is not"),
        ("1e20 1 0", "b (the number of rows) must fit in a 64-bit unsigned integer, but token 1 '1e20'"),
        ("1 x2 0", "d (the model width) must be a whole number, but token 2 'x2' at line 1, column 3 is not a number"),
    ];
    for (input, fragment) in cases {
        let output = run(&[], input.as_bytes());
        assert_rejected(&output, &[fragment]);
    }
}

#[test]
fn header_accepts_float_spellings() {
    let values = "1 1 1 1 1 1";
    let expected = run(&[], format!("1 1 1\n{values}\n").as_bytes());
    for header in ["1.0 1e0 +1", "+1. 0.1e1 1.000", "1 1 1"] {
        let output = run(&[], format!("{header}\n{values}\n").as_bytes());

        assert_eq!(
            output.status.code(),
            Some(0),
            "{header}: {}",
            stderr(&output)
        );
        assert_eq!(stdout(&output), stdout(&expected), "{header}");
    }
}

#[test]
fn negative_zero_rank_is_zero() {
    let output = run(&[], b"1 1 -0\n1 1 1 2\n");

    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    assert_eq!(stdout(&output), "2.0000\n");
}

#[test]
fn score_overflow_names_row_and_column() {
    // Q = K = x = [1, 1e200], so score (2, 2) is 1e400.
    let output = run(&[], b"2 1 0\n1 1e200\n1 1 1\n");

    assert_rejected(
        &output,
        &[
            "the score matrix Q K^T / sqrt(d) overflows float64 at row 2, column 2",
            "inf or NaN",
        ],
    );
}

#[test]
fn merged_weight_overflow_named() {
    // B A has 1e300 * 1e300 at row 2, column 2.
    let input = "1 2 1\n1 1\n0 0 0 0\n0 0 0 0\n0 0 0 0\n0 1e300\n0 1e300\n";
    let output = run(&[], input.as_bytes());

    assert_rejected(
        &output,
        &["Wq' = Wq + B A overflows float64 at row 2, column 2"],
    );
}
