//! Fuzz body for the judge program's reader and the whole program path: arbitrary
//! bytes in, either a judge line or an error out.
//!
//! The body runs `lora_attention_cli::run`, which is the program without the command
//! line, and checks that a success prints `b*d` values in the judge format and that
//! an error is one line of bounded length without control characters. It also reads
//! the input with small chunks, whose tokens and errors must not differ from those
//! of the default chunk size. Memory bounds are the fuzzer's to enforce, with
//! `-rss_limit_mb` and `-malloc_limit_mb` (see `scripts/fuzz-smoke`).

use lora_attention_cli::{read_problem, read_tokens, Error, Tokenizer, EXCERPT_CHARS};

/// Maximum length of an error message in bytes: the fixed text and numbers, plus at
/// most [`EXCERPT_CHARS`] quoted characters, each escaped to at most 10 bytes
/// (`\u{10ffff}`).
const MAX_MESSAGE_BYTES: usize = 600 + 10 * EXCERPT_CHARS;

/// Runs one input through the judge program's library.
pub fn run(data: &[u8]) {
    let outcome = lora_attention_cli::run(data);
    let problem = read_problem(data);

    let chunk_size = 1 + usize::from(data.first().copied().unwrap_or(0) % 16);
    let small_chunks = read_tokens(&mut Tokenizer::with_chunk_size(data, chunk_size));
    match (&problem, &small_chunks) {
        (Ok(problem), Ok(again)) => {
            assert_eq!(
                problem, again,
                "chunk size {chunk_size} changes the problem"
            );
        }
        (Err(error), Err(again)) => assert_eq!(
            error.to_string(),
            again.to_string(),
            "chunk size {chunk_size} changes the error"
        ),
        _ => panic!(
            "chunk size {chunk_size} changes the outcome: {problem:?} against {small_chunks:?}"
        ),
    }

    match outcome {
        Ok(output) => {
            let problem = problem.expect("the program succeeded, so the input parses");
            let header = problem.header;
            check_judge_line(&output.text, header.rows * header.width);
            assert_eq!(output.ignored_tokens, problem.ignored_tokens);
        }
        Err(error) => {
            let message = error.to_string();
            check_message(&message);
            match error {
                Error::Input(_) => {
                    let read_error = problem.err().map(|error| error.to_string());
                    assert_eq!(read_error.as_deref(), Some(message.as_str()));
                }
                Error::Compute(_) => assert!(problem.is_ok(), "compute error on {message}"),
                _ => panic!("unknown error kind: {message}"),
            }
        }
    }
}

/// Checks that `text` is one judge line of `count` values, each with four decimals.
fn check_judge_line(text: &str, count: usize) {
    let line = text
        .strip_suffix('\n')
        .expect("the output ends in a newline");
    assert!(!line.contains('\n'), "the output is one line: {text:?}");
    let values: Vec<&str> = line.split(' ').collect();
    assert_eq!(values.len(), count, "value count of {text:?}");
    for value in values {
        let digits = value.strip_prefix('-').unwrap_or(value);
        let (whole, decimals) = digits
            .split_once('.')
            .unwrap_or_else(|| panic!("no decimal point in {value:?}"));
        assert!(
            !whole.is_empty() && whole.bytes().all(|byte| byte.is_ascii_digit()),
            "integer part of {value:?}"
        );
        assert!(
            decimals.len() == 4 && decimals.bytes().all(|byte| byte.is_ascii_digit()),
            "decimals of {value:?}"
        );
        assert_ne!(value, "-0.0000", "negative zero printed");
        let parsed: f64 = value.parse().expect("each value parses");
        assert!(parsed.is_finite(), "value {value:?}");
    }
}

/// Checks that an error message is one nonempty line of bounded length that cannot
/// drive a terminal.
fn check_message(message: &str) {
    assert!(!message.is_empty(), "empty error message");
    assert!(
        message.len() <= MAX_MESSAGE_BYTES,
        "message of {} bytes: {message}",
        message.len()
    );
    assert!(
        !message.chars().any(char::is_control),
        "control character in {message:?}"
    );
}
