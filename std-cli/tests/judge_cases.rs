//! Runs the binary on every judge case in `tests/data/judge` at the workspace root.
//!
//! A case is `NAME.in` with exactly one of:
//! - `NAME.out`: the program exits 0 and prints exactly that file on stdout;
//! - `NAME.err`: the program exits 1, prints nothing on stdout and one or two lines
//!   on stderr. The file's first line describes the problem in words. An optional
//!   second line `mentions: T1, T2, ...` lists tokens that stderr must contain, each
//!   not directly preceded or followed by an ASCII letter, digit or underscore.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Returns the folder of the judge cases.
fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/judge")
}

/// Runs the binary with `input` on stdin.
fn run_binary(input: &Path) -> Output {
    let stdin = File::open(input)
        .unwrap_or_else(|error| panic!("cannot open {}: {error}", input.display()));
    Command::new(env!("CARGO_BIN_EXE_lora-attention"))
        .stdin(Stdio::from(stdin))
        .output()
        .unwrap_or_else(|error| panic!("cannot run the binary: {error}"))
}

/// Returns whether `haystack` contains `needle` with no ASCII letter, digit or
/// underscore directly before or after it.
fn mentions(haystack: &str, needle: &str) -> bool {
    let is_word_byte =
        |byte: Option<&u8>| byte.is_some_and(|&byte| byte.is_ascii_alphanumeric() || byte == b'_');
    haystack.match_indices(needle).any(|(start, found)| {
        let before = start
            .checked_sub(1)
            .and_then(|index| haystack.as_bytes().get(index));
        let after = haystack.as_bytes().get(start + found.len());
        !is_word_byte(before) && !is_word_byte(after)
    })
}

/// Returns the failures of a case with an expected output.
fn check_output(output: &Output, expected_path: &Path) -> Vec<String> {
    let mut failures = Vec::new();
    let expected = fs::read(expected_path).unwrap_or_default();
    if output.status.code() != Some(0) {
        failures.push(format!(
            "exit status {:?}, expected 0; stderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        ));
    }
    if output.stdout != expected {
        failures.push(format!(
            "stdout differs from {}:\n  got      {:?}\n  expected {:?}",
            expected_path.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&expected)
        ));
    }
    failures
}

/// Returns the failures of a case that the program must reject.
fn check_rejection(output: &Output, error_path: &Path) -> Vec<String> {
    let mut failures = Vec::new();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stderr_lines = stderr.lines().count();

    // `code()` is `None` for a signal, and a panic exits with 101.
    if output.status.code() != Some(1) {
        failures.push(format!("exit status {:?}, expected 1", output.status));
    }
    if !output.stdout.is_empty() {
        failures.push(format!(
            "stdout is not empty: {:?}",
            String::from_utf8_lossy(&output.stdout)
        ));
    }
    if stderr.trim().is_empty() {
        failures.push("stderr is empty".to_owned());
    }
    if stderr_lines > 2 {
        failures.push(format!(
            "stderr has {stderr_lines} lines, expected at most 2: {stderr:?}"
        ));
    }

    let description = fs::read_to_string(error_path).unwrap_or_default();
    let mention_line = description
        .lines()
        .nth(1)
        .and_then(|line| line.strip_prefix("mentions:"));
    for token in mention_line.into_iter().flat_map(|line| line.split(',')) {
        let token = token.trim();
        if !token.is_empty() && !mentions(&stderr, token) {
            failures.push(format!(
                "stderr does not mention {token:?}: {}",
                stderr.trim_end()
            ));
        }
    }
    failures
}

#[test]
fn judge_cases_match_expected() {
    let dir = cases_dir();
    let mut inputs: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "in"))
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no .in files in {}", dir.display());

    let mut failures = Vec::new();
    for input in &inputs {
        let name = input
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let expected_output = input.with_extension("out");
        let expected_error = input.with_extension("err");
        let case_failures = match (expected_output.is_file(), expected_error.is_file()) {
            (true, false) => check_output(&run_binary(input), &expected_output),
            (false, true) => check_rejection(&run_binary(input), &expected_error),
            (true, true) => vec!["has both a .out and a .err file".to_owned()],
            (false, false) => vec!["has neither a .out nor a .err file".to_owned()],
        };
        failures.extend(
            case_failures
                .into_iter()
                .map(|failure| format!("{name}: {failure}")),
        );
    }

    assert!(
        failures.is_empty(),
        "{} of {} judge cases failed:\n{}",
        failures.len(),
        inputs.len(),
        failures.join("\n")
    );
}

#[test]
fn mentions_requires_word_boundaries() {
    assert!(mentions("B is missing", "B"));
    assert!(mentions("token 'abc' in x", "abc"));
    assert!(mentions("needs 6 values", "6"));
    assert!(!mentions("b is missing", "B"));
    assert!(!mentions("Bx is missing", "B"));
    assert!(!mentions("needs 16 values", "6"));
    assert!(!mentions("x_1", "x"));
}
