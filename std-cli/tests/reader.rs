//! Tests of the library API: tokenizer, number parsing, the judge-format reader and
//! the error mapping.

use std::io::{self, Read};
use std::path::Path;

use lora_attention::{Error as KernelError, Operand};
use lora_attention_cli::{
    compute, parse_value, read_problem, read_tokens, run, ComputeError, Header, InputError, Matrix,
    Tokenizer, ValueProblem, MAX_TOKEN_BYTES,
};

/// A reader that returns at most one byte per call, so that every token and every
/// multi-byte character crosses read boundaries.
struct OneByteReader<'a> {
    bytes: &'a [u8],
}

impl Read for OneByteReader<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match (self.bytes.split_first(), buffer.first_mut()) {
            (Some((&byte, rest)), Some(slot)) => {
                *slot = byte;
                self.bytes = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

/// A reader that fails with `Interrupted` before every byte, which the tokenizer
/// must retry.
struct InterruptingReader<'a> {
    bytes: &'a [u8],
    interrupt_next: bool,
}

impl Read for InterruptingReader<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        self.interrupt_next = !self.interrupt_next;
        if self.interrupt_next {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        OneByteReader { bytes: self.bytes }
            .read(buffer)
            .inspect(|&read| {
                self.bytes = self.bytes.get(read..).unwrap_or_default();
            })
    }
}

/// A token with its position, owned so that it outlives the tokenizer call.
#[derive(Debug, PartialEq)]
struct Located {
    text: String,
    index: u64,
    line: u64,
    column: u64,
    byte_offset: u64,
    char_len: u64,
}

/// Tokenizes `reader` completely; returns the tokens and the error that ended it.
fn tokenize<R: Read>(mut tokens: Tokenizer<R>) -> (Vec<Located>, Option<String>) {
    let mut found = Vec::new();
    loop {
        match tokens.next_token() {
            Ok(Some(token)) => found.push(Located {
                text: token.text.to_owned(),
                index: token.location.token_index,
                line: token.location.line,
                column: token.location.column,
                byte_offset: token.location.byte_offset,
                char_len: token.char_len,
            }),
            Ok(None) => return (found, None),
            Err(error) => return (found, Some(error.to_string())),
        }
    }
}

/// Returns the reader's result as text: the problem's debug form or the error message.
fn outcome<R: Read>(reader: R) -> String {
    match read_problem(reader) {
        Ok(problem) => format!("{problem:?}"),
        Err(error) => format!("error: {error}"),
    }
}

fn located(text: &str, index: u64, line: u64, column: u64, byte_offset: u64) -> Located {
    Located {
        text: text.to_owned(),
        index,
        line,
        column,
        byte_offset,
        char_len: text.chars().count() as u64,
    }
}

/// Input with a byte-order mark, CRLF, Unicode whitespace and multi-byte characters.
const MIXED_TEXT: &str = "\u{feff}a\u{a0}\u{20ac}\u{20ac} b\r\n\u{3000}c\u{1f600}d\u{2028}e\n\n f";

#[test]
fn tokenizer_tracks_positions() {
    let (tokens, error) = tokenize(Tokenizer::new(MIXED_TEXT.as_bytes()));

    assert_eq!(error, None);
    assert_eq!(
        tokens,
        [
            located("a", 1, 1, 1, 3),
            located("\u{20ac}\u{20ac}", 2, 1, 3, 6),
            located("b", 3, 1, 6, 13),
            located("c\u{1f600}d", 4, 2, 2, 19),
            located("e", 5, 2, 6, 28),
            located("f", 6, 4, 2, 32),
        ]
    );
}

#[test]
fn tokenizer_independent_of_chunk_size() {
    let expected = tokenize(Tokenizer::new(MIXED_TEXT.as_bytes()));
    for chunk_size in 1..=9 {
        let tokens = tokenize(Tokenizer::with_chunk_size(
            MIXED_TEXT.as_bytes(),
            chunk_size,
        ));
        assert_eq!(tokens, expected, "chunk size {chunk_size}");
    }
}

#[test]
fn tokenizer_handles_one_byte_reads() {
    let expected = tokenize(Tokenizer::new(MIXED_TEXT.as_bytes()));
    let tokens = tokenize(Tokenizer::new(OneByteReader {
        bytes: MIXED_TEXT.as_bytes(),
    }));

    assert_eq!(tokens, expected);
}

#[test]
fn tokenizer_retries_interrupted_reads() {
    let expected = tokenize(Tokenizer::new(MIXED_TEXT.as_bytes()));
    let tokens = tokenize(Tokenizer::new(InterruptingReader {
        bytes: MIXED_TEXT.as_bytes(),
        interrupt_next: false,
    }));

    assert_eq!(tokens, expected);
}

#[test]
fn token_longer_than_chunk_kept_whole() {
    let text = "1 0.12345678901234567890 2";
    let (tokens, error) = tokenize(Tokenizer::with_chunk_size(text.as_bytes(), 4));

    assert_eq!(error, None);
    assert_eq!(tokens.len(), 3);
    assert_eq!(tokens[1], located("0.12345678901234567890", 2, 1, 3, 2));
}

#[test]
fn invalid_utf8_after_valid_tokens() {
    let bytes = b"1 2\n x\xffy 3";
    for chunk_size in [1, 2, 3, 64] {
        let (tokens, error) = tokenize(Tokenizer::with_chunk_size(&bytes[..], chunk_size));

        assert_eq!(
            tokens,
            [located("1", 1, 1, 1, 0), located("2", 2, 1, 3, 2)],
            "chunk size {chunk_size}"
        );
        assert_eq!(
            error.as_deref(),
            Some("the input is not valid UTF-8: byte 0xFF at byte offset 6 (line 2, column 3) does not start a valid character"),
            "chunk size {chunk_size}"
        );
    }
}

#[test]
fn truncated_sequence_reports_its_start() {
    // U+20AC is E2 82 AC. E2 82 followed by a space is invalid at the E2.
    let bytes = b"ab \xe2\x82 c";
    for chunk_size in [1, 4, 64] {
        let (_, error) = tokenize(Tokenizer::with_chunk_size(&bytes[..], chunk_size));

        assert_eq!(
            error.as_deref(),
            Some("the input is not valid UTF-8: byte 0xE2 at byte offset 3 (line 1, column 4) does not start a valid character"),
            "chunk size {chunk_size}"
        );
    }
}

#[test]
fn judge_cases_same_with_one_byte_reads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/judge");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("judge case folder") {
        let path = entry.expect("directory entry").path();
        if path.extension().is_none_or(|extension| extension != "in") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("judge case input");
        let expected = outcome(bytes.as_slice());
        let actual = outcome(OneByteReader { bytes: &bytes });

        assert_eq!(actual, expected, "{}", path.display());
        checked += 1;
    }
    assert!(checked > 0, "no .in files in {}", dir.display());
}

#[test]
fn mixed_input_same_with_one_byte_reads() {
    let text = "\u{feff}1\u{3000}2\u{a0}1\r\n0.5 -.5\u{2028}+1 3.\n1e-1 .25 -0 2\u{85}1 1 1 1 0.5 0.5 1 -1 1 -1 tail \u{20ac}";
    let expected = read_problem(text.as_bytes()).expect("valid input");
    let actual = read_problem(OneByteReader {
        bytes: text.as_bytes(),
    })
    .expect("valid input");

    assert_eq!(actual, expected);
    assert_eq!(
        expected.header,
        Header {
            rows: 1,
            width: 2,
            rank: 1
        }
    );
    assert_eq!(expected.x, [0.5, -0.5]);
    assert_eq!(expected.adapter_b, [1.0, -1.0]);
    assert_eq!(expected.ignored_tokens, 2);
}

#[test]
fn value_spellings_accepted() {
    let cases = [
        ("2", 2.0),
        ("1e-3", 0.001),
        ("+0.5", 0.5),
        (".5", 0.5),
        ("-.5", -0.5),
        ("3.", 3.0),
        ("1E5", 100_000.0),
        ("-0", 0.0),
        ("1e-999", 0.0),
    ];
    for (text, expected) in cases {
        let (tokens, _) = tokenize(Tokenizer::new(text.as_bytes()));
        assert_eq!(tokens.len(), 1, "{text}");
        let input = format!("1 1 0\n{text} 1 1 1\n");
        let problem =
            read_problem(input.as_bytes()).unwrap_or_else(|error| panic!("{text}: {error}"));
        assert_eq!(problem.x, [expected], "{text}");
    }
}

/// Returns the problem `parse_value` finds in `text`.
fn value_problem(text: &str) -> Option<ValueProblem> {
    let mut tokens = Tokenizer::new(text.as_bytes());
    let token = tokens
        .next_token()
        .expect("valid UTF-8")
        .expect("one token");
    parse_value(&token).err()
}

#[test]
fn non_numbers_rejected() {
    for text in [
        "1_000",
        "\u{661}\u{662}",
        "1,5",
        "0x10",
        "--1",
        "1e",
        "e5",
        ".",
        "+",
        "1.2.3",
        "\u{ff11}",
    ] {
        assert_eq!(
            value_problem(text),
            Some(ValueProblem::NotANumber),
            "{text}"
        );
    }
}

#[test]
fn nan_spellings_rejected() {
    for text in ["nan", "NaN", "-NAN", "+nan"] {
        assert_eq!(value_problem(text), Some(ValueProblem::NaN), "{text}");
    }
}

#[test]
fn infinity_spellings_rejected() {
    for text in ["inf", "-Inf", "+INFINITY", "infinity"] {
        assert_eq!(value_problem(text), Some(ValueProblem::Infinity), "{text}");
    }
}

#[test]
fn overflowing_values_out_of_range() {
    for text in ["1e999", "-1e309", "2e308", "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497792"] {
        assert_eq!(value_problem(text), Some(ValueProblem::OutOfRange), "{}", &text[..text.len().min(20)]);
    }
}

#[test]
fn largest_finite_value_accepted() {
    assert_eq!(value_problem("1.7976931348623157e308"), None);
}

#[test]
fn complete_matrices_have_exact_capacity() {
    let width = 300;
    let count = width + 3 * width * width + 2 * 2 * width;
    let values: Vec<String> = (0..count).map(|index| (index % 7).to_string()).collect();
    let input = format!("1 {width} 2\n{}\n", values.join(" "));
    let problem = read_problem(input.as_bytes()).expect("valid input");

    for matrix in [
        Matrix::X,
        Matrix::Wq,
        Matrix::Wk,
        Matrix::Wv,
        Matrix::A,
        Matrix::B,
    ] {
        let values = problem.matrix(matrix);
        let expected = problem.header.size(matrix).count();
        assert_eq!(values.len() as u128, expected, "{matrix}");
    }
    assert_eq!(problem.x.capacity(), problem.x.len());
    assert_eq!(problem.wq.capacity(), problem.wq.len());
    assert_eq!(problem.wk.capacity(), problem.wk.len());
    assert_eq!(problem.wv.capacity(), problem.wv.len());
    assert_eq!(problem.adapter_a.capacity(), problem.adapter_a.len());
    assert_eq!(problem.adapter_b.capacity(), problem.adapter_b.len());
}

#[test]
fn rank_zero_has_empty_adapter() {
    let problem = read_problem("1 1 0 1 2 3 4".as_bytes()).expect("valid input");

    assert!(problem.adapter_a.is_empty());
    assert!(problem.adapter_b.is_empty());
    assert_eq!(problem.ignored_tokens, 0);
}

#[test]
fn huge_header_reports_incomplete_x() {
    let error = read_problem("1000000000 1000000000 0\n0.1 0.2 0.3\n".as_bytes())
        .expect_err("incomplete input");

    let InputError::IncompleteMatrix { size, found } = error else {
        panic!("unexpected error: {error}");
    };
    assert_eq!(size.matrix, Matrix::X);
    assert_eq!(size.count(), 1_000_000_000_000_000_000);
    assert_eq!(found, 3);
}

#[test]
fn token_over_limit_rejected_in_matrix() {
    let long_token = "1".repeat(MAX_TOKEN_BYTES + 10);
    let input = format!("1 1 0\n{long_token} 1 1 1\n");
    let error = read_problem(input.as_bytes()).expect_err("too long token");
    let message = error.to_string();

    assert!(
        message.starts_with(&format!(
            "x contains a token longer than {MAX_TOKEN_BYTES} bytes"
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!("({} characters)", MAX_TOKEN_BYTES + 10)),
        "{message}"
    );
    assert!(message.len() < 300, "{message}");
}

#[test]
fn token_over_limit_ignored_after_matrices() {
    let long_token = "z".repeat(MAX_TOKEN_BYTES + 10);
    let input = format!("1 1 0\n1 1 1 1 {long_token} end\n");
    let problem = read_problem(input.as_bytes()).expect("valid input");

    assert_eq!(problem.ignored_tokens, 2);
}

#[test]
fn control_characters_escaped_in_message() {
    let error = read_problem("1 1 0\n\u{1b}[31m 1 1 1".as_bytes()).expect_err("not a number");
    let message = error.to_string();

    assert!(message.contains("'\\u{1b}[31m'"), "{message}");
    assert!(!message.contains('\u{1b}'), "{message}");
}

#[test]
fn read_tokens_continues_given_tokenizer() {
    let mut tokens = Tokenizer::with_chunk_size("1 1 0 1 2 3 4 5".as_bytes(), 2);
    let problem = read_tokens(&mut tokens).expect("valid input");

    assert_eq!(problem.wv, [4.0]);
    assert_eq!(problem.ignored_tokens, 1);
    assert_eq!(tokens.token_count(), 8);
}

#[test]
fn run_returns_text_and_warning() {
    let output = run("1 1 0  2  1 1 3  extra".as_bytes()).expect("valid input");

    assert_eq!(output.text, "6.0000\n");
    assert_eq!(output.ignored_tokens, 1);
    assert_eq!(
        output.warning().as_deref(),
        Some("ignored 1 token after the last matrix")
    );
}

#[test]
fn compute_matches_documented_example() {
    let input = "1 3 2\n0.58 -0.65 -0.63\n-0.74 -0.71 0.65 0.70 -0.14 0.01 -0.84 0.20 0.25\n\
                 -0.60 0.51 -0.12 -0.35 0.57 -0.38 -0.44 -0.82 0.53\n\
                 0.14 0.03 -0.27 0.10 -0.12 0.85 -0.55 0.10 -0.43\n\
                 0.65 0.32 -0.42 -0.62 -0.88 -0.70\n-0.66 0.49 0.09 -0.21 0.48 0.41\n";
    let problem = read_problem(input.as_bytes()).expect("valid input");
    let output = compute(&problem).expect("finite result");

    assert_eq!(
        lora_attention_cli::format_output(&output),
        "0.2318 -0.3995 -0.1131\n"
    );
}

#[test]
fn kernel_errors_mapped_to_positions() {
    let header = Header {
        rows: 3,
        width: 4,
        rank: 2,
    };
    let overflow = ComputeError::from_kernel(
        KernelError::NonFiniteResult {
            operand: Operand::Scores,
            index: 5,
        },
        header,
    );
    let input = ComputeError::from_kernel(
        KernelError::NonFiniteInput {
            operand: Operand::AdapterB(lora_attention::Projection::Query),
            index: 5,
        },
        header,
    );
    let other = ComputeError::from_kernel(KernelError::InvalidScale, header);

    assert_eq!(
        overflow.to_string(),
        "the score matrix Q K^T / sqrt(d) overflows float64 at row 2, column 3: the value would be \
         inf or NaN because the input values are too large"
    );
    assert_eq!(
        input.to_string(),
        "B of the q-adapter contains NaN or an infinity at row 3, column 2"
    );
    assert_eq!(
        other.to_string(),
        "internal error in the kernel: the adapter scale is not a finite number"
    );
}

#[test]
fn query_named_with_merged_weight() {
    let header = Header {
        rows: 2,
        width: 2,
        rank: 1,
    };
    let with_adapter = ComputeError::from_kernel(
        KernelError::NonFiniteResult {
            operand: Operand::Query,
            index: 3,
        },
        header,
    );
    let without_adapter = ComputeError::from_kernel(
        KernelError::NonFiniteResult {
            operand: Operand::Query,
            index: 3,
        },
        Header { rank: 0, ..header },
    );

    assert!(with_adapter
        .to_string()
        .starts_with("Q = x Wq'^T overflows float64 at row 2, column 2"));
    assert!(without_adapter
        .to_string()
        .starts_with("Q = x Wq^T overflows float64 at row 2, column 2"));
}
