//! The computation on a parsed input and the output line.

use std::io::Read;

use lora_attention::{attention_blocked, write_judge_line};

use crate::error::{ComputeError, Error};
use crate::problem::{Header, Problem};
use crate::reader::read_problem;

/// Maximum number of query rows whose scores the kernel keeps at a time.
const MAX_BLOCK_ROWS: usize = 64;

/// The result of a successful run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// The output line: `b * d` values with four decimals, separated by single spaces,
    /// ending in a newline.
    pub text: String,
    /// Number of tokens after the last matrix, which were ignored.
    pub ignored_tokens: u64,
}

impl Output {
    /// Returns the warning about ignored tokens, without the program-name prefix, or
    /// `None` when there were none.
    pub fn warning(&self) -> Option<String> {
        match self.ignored_tokens {
            0 => None,
            1 => Some("ignored 1 token after the last matrix".to_owned()),
            count => Some(format!("ignored {count} tokens after the last matrix")),
        }
    }
}

/// Returns the number of query rows per block: `min(b, d, 64)`.
///
/// The score block is `block_rows * b` values, so it never exceeds `b * d` and memory
/// stays proportional to `b * d + d * d`, never `b * b`.
pub fn block_rows(header: Header) -> usize {
    header.rows.min(header.width).clamp(1, MAX_BLOCK_ROWS)
}

/// Computes `softmax(Q K^T / sqrt(d)) V` for a parsed input, at float64.
///
/// # Errors
///
/// [`ComputeError::Overflow`] when an intermediate or the output overflows float64,
/// [`ComputeError::TooLarge`] and [`ComputeError::OutOfMemory`] when the kernel's
/// buffers cannot be allocated.
pub fn compute(problem: &Problem) -> Result<Vec<f64>, ComputeError> {
    let header = problem.header;
    let shape = header.shape();
    let block_rows = block_rows(header);
    let scratch_len = shape
        .blocked_attention_scratch_len(block_rows)
        .ok_or(ComputeError::TooLarge)?;
    let output_len = shape.input_len().ok_or(ComputeError::TooLarge)?;

    let mut scratch = zeroed(scratch_len)?;
    let mut output = zeroed(output_len)?;
    attention_blocked(
        shape,
        &problem.x,
        &problem.weights(),
        block_rows,
        &mut scratch,
        &mut output,
    )
    .map_err(|error| ComputeError::from_kernel(error, header))?;
    Ok(output)
}

/// Allocates `len` zeros, reporting a failed allocation instead of aborting.
fn zeroed(len: usize) -> Result<Vec<f64>, ComputeError> {
    let mut values = Vec::new();
    values
        .try_reserve_exact(len)
        .map_err(|_| ComputeError::OutOfMemory { requested: len })?;
    values.resize(len, 0.0);
    Ok(values)
}

/// Formats the output line: each value with four decimals as Python's `f"{v:.4f}"`
/// prints it, except that `-0.0000` prints as `0.0000`, separated by single spaces and
/// ending in a newline.
pub fn format_output(values: &[f64]) -> String {
    // Most values of the task print as `-0.1234` plus a space.
    let mut text = String::with_capacity(values.len().saturating_mul(8).saturating_add(1));
    // `String`'s `fmt::Write` never fails, and the kernel returns only the writer's errors.
    let _ = write_judge_line(&mut text, values);
    text
}

/// Reads a judge input from `reader`, computes the result and formats the output line.
///
/// This is the whole program without the command line and the printing.
///
/// # Errors
///
/// [`Error::Input`] when the input cannot be read or is invalid, and
/// [`Error::Compute`] when the computation fails.
///
/// # Example
///
/// ```
/// let output = lora_attention_cli::run("1 1 0  2  1 1 3  extra".as_bytes())?;
/// assert_eq!(output.text, "6.0000\n");
/// assert_eq!(output.ignored_tokens, 1);
/// # Ok::<(), lora_attention_cli::Error>(())
/// ```
pub fn run<R: Read>(reader: R) -> Result<Output, Error> {
    let problem = read_problem(reader)?;
    let values = compute(&problem)?;
    let ignored_tokens = problem.ignored_tokens;
    drop(problem);
    Ok(Output {
        text: format_output(&values),
        ignored_tokens,
    })
}
