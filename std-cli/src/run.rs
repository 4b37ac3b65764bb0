//! The computation on a parsed input and the output line.

use std::io::Read;

use lora_attention::{
    attend, merge_adapter, project, write_fixed4, Error as KernelError, Operand, Projection, Shape,
};

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

/// Below this many multiply-adds in the projections (`b * d * d`), one thread is
/// faster than starting a second.
const PARALLEL_WORK: usize = 1 << 18;

/// Computes `softmax(Q K^T / sqrt(d)) V` for a parsed input, at float64.
///
/// The order of operations is the reference's: the adapter is merged into `Wq`
/// first, then `Q`, `K` and `V` are projected and the scores, softmax and weighted
/// sums computed. Large inputs are split by rows across the available cores. Every
/// element gets the same arithmetic wherever it is computed, so the result does not
/// depend on the number of threads.
///
/// # Errors
///
/// [`ComputeError::Overflow`] when an intermediate or the output overflows float64,
/// [`ComputeError::TooLarge`] and [`ComputeError::OutOfMemory`] when the kernel's
/// buffers cannot be allocated.
pub fn compute(problem: &Problem) -> Result<Vec<f64>, ComputeError> {
    compute_with_threads(problem, available_cores(problem))
}

/// Returns the threads worth using for `problem`: one for small inputs, where
/// starting a thread costs more than it saves, the available cores otherwise.
fn available_cores(problem: &Problem) -> usize {
    let header = problem.header;
    let work = header
        .rows
        .saturating_mul(header.width)
        .saturating_mul(header.width);
    if work < PARALLEL_WORK {
        1
    } else {
        cores()
    }
}

/// Returns the number of cores this process may use, asked of the system once.
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |count| count.get()))
}

/// Computes the output with up to `threads` threads, each taking a share of the
/// rows.
///
/// # Errors
///
/// As [`compute`].
pub fn compute_with_threads(problem: &Problem, threads: usize) -> Result<Vec<f64>, ComputeError> {
    compute_rows(problem, InputRows::Borrowed(&problem.x), threads)
}

/// Computes the output as [`compute`] does, writing it over the input rows `x`,
/// which are not needed once `Q`, `K` and `V` are projected. That saves allocating
/// and touching one `b x d` buffer.
///
/// # Errors
///
/// As [`compute`].
pub fn compute_in_place(mut problem: Problem) -> Result<Vec<f64>, ComputeError> {
    let x = std::mem::take(&mut problem.x);
    compute_rows(&problem, InputRows::Owned(x), available_cores(&problem))
}

/// The input rows `x`, borrowed, or owned and reused for the output.
enum InputRows<'a> {
    Borrowed(&'a [f64]),
    Owned(Vec<f64>),
}

/// Computes the output of `problem` with `x` given apart from it.
fn compute_rows(
    problem: &Problem,
    x: InputRows<'_>,
    threads: usize,
) -> Result<Vec<f64>, ComputeError> {
    let header = problem.header;
    let shape = header.shape();
    let (rows, dim) = (header.rows, header.width);
    let kernel_error = |error| ComputeError::from_kernel(error, header);
    let input_len = shape.input_len().ok_or(ComputeError::TooLarge)?;
    let weight_len = shape.weight_len().ok_or(ComputeError::TooLarge)?;
    let scores_len = block_rows(header)
        .checked_mul(rows)
        .ok_or(ComputeError::TooLarge)?;
    let rows_per_share = rows.div_ceil(threads.clamp(1, rows.max(1))).max(1);
    let share_len = rows_per_share * dim;

    // Step 1: Wq' = Wq + B A, merged before projecting as the reference does.
    let weights = problem.weights();
    let mut merged = zeroed(weight_len)?;
    merge_adapter(
        shape.query_adapter(),
        Projection::Query,
        weights.wq,
        &weights.adapter,
        &mut merged,
    )
    .map_err(kernel_error)?;

    // Step 2: Q, K and V, each thread projecting its share of the rows.
    let (mut q, mut k, mut v) = (zeroed(input_len)?, zeroed(input_len)?, zeroed(input_len)?);
    let x_rows = match &x {
        InputRows::Borrowed(rows) => rows,
        InputRows::Owned(rows) => rows.as_slice(),
    };
    let projected = std::thread::scope(|scope| {
        let shares = x_rows
            .chunks(share_len)
            .zip(q.chunks_mut(share_len))
            .zip(k.chunks_mut(share_len))
            .zip(v.chunks_mut(share_len))
            .enumerate();
        let handles: Vec<_> = shares
            .map(|(share, (((x, q), k), v))| {
                let targets = [
                    (Operand::Query, merged.as_slice(), q),
                    (Operand::Key, weights.wk, k),
                    (Operand::Value, weights.wv, v),
                ];
                scope.spawn(move || project_share(x, dim, targets, share * share_len))
            })
            .collect();
        join_all(handles)
    });
    projected.map_err(kernel_error)?;
    drop(merged);

    // Step 3: scores, softmax and weighted sums, each thread for its query rows.
    let mut output = match x {
        InputRows::Owned(rows) => rows,
        InputRows::Borrowed(_) => zeroed(input_len)?,
    };
    let mut score_buffers = (0..rows.div_ceil(rows_per_share))
        .map(|_| zeroed(scores_len))
        .collect::<Result<Vec<_>, _>>()?;
    let attended = std::thread::scope(|scope| {
        let shares = q
            .chunks(share_len)
            .zip(output.chunks_mut(share_len))
            .zip(score_buffers.iter_mut())
            .enumerate();
        let (k, v) = (&k, &v);
        let handles: Vec<_> = shares
            .map(|(share, ((q, out), scores))| {
                scope.spawn(move || -> Result<(), KernelError> {
                    attend(shape, q, k, v, scores, out).map_err(|error| {
                        let first_row = share * rows_per_share;
                        match error {
                            KernelError::NonFiniteResult { operand, index } => {
                                let offset = match operand {
                                    Operand::Scores => first_row * rows,
                                    _ => first_row * dim,
                                };
                                KernelError::NonFiniteResult {
                                    operand,
                                    index: offset + index,
                                }
                            }
                            other => other,
                        }
                    })
                })
            })
            .collect();
        join_all(handles)
    });
    attended.map_err(kernel_error)?;
    Ok(output)
}

/// Projects one share of the rows of `x` through each target's weight, naming an
/// overflow by the target's operand and its index in the whole matrix.
fn project_share(
    x: &[f64],
    dim: usize,
    targets: [(Operand, &[f64], &mut [f64]); 3],
    offset: usize,
) -> Result<(), KernelError> {
    let part = Shape::new(x.len() / dim.max(1), dim, 0);
    for (operand, weight, out) in targets {
        project(part, x, weight, out).map_err(|error| match error {
            KernelError::NonFiniteResult { index, .. } => KernelError::NonFiniteResult {
                operand,
                index: offset + index,
            },
            other => other,
        })?;
    }
    Ok(())
}

/// Waits for every thread and returns the error that one thread would have met
/// first: the earliest intermediate (`Q`, `K`, `V`, the scores, the output), then
/// the smallest index. So the message does not depend on the number of threads.
fn join_all(
    handles: Vec<std::thread::ScopedJoinHandle<'_, Result<(), KernelError>>>,
) -> Result<(), KernelError> {
    let mut first: Option<KernelError> = None;
    for handle in handles {
        // The kernel has no reachable panic (scripts/firmware-check proves it for
        // Cortex-M). If a thread dies anyway, re-raise its panic here, not print a
        // result with missing rows.
        let outcome = handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        if let Err(error) = outcome {
            if first.is_none_or(|earlier| order(error) < order(earlier)) {
                first = Some(error);
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// Orders errors as a single thread meets them.
fn order(error: KernelError) -> (usize, usize) {
    match error {
        KernelError::NonFiniteResult { operand, index } => {
            let stage = match operand {
                Operand::Query => 0,
                Operand::Key => 1,
                Operand::Value => 2,
                Operand::Scores => 3,
                _ => 4,
            };
            (stage, index)
        }
        _ => (0, 0),
    }
}

/// Allocates `len` zeros, reporting a failed allocation instead of aborting.
fn zeroed(len: usize) -> Result<Vec<f64>, ComputeError> {
    // Probe the allocation first, since `vec!` aborts when it fails. `vec!` then
    // takes zeroed pages from the system instead of writing zeros, so a buffer the
    // kernel overwrites is touched once, not twice.
    let mut probe: Vec<f64> = Vec::new();
    probe
        .try_reserve_exact(len)
        .map_err(|_| ComputeError::OutOfMemory { requested: len })?;
    drop(probe);
    Ok(vec![0.0; len])
}

/// Below this many values, one thread formats faster than starting a second.
const PARALLEL_VALUES: usize = 1 << 16;

/// Formats the output line: each value with four decimals as Python's `f"{v:.4f}"`
/// prints it, except that `-0.0000` prints as `0.0000`, separated by single spaces and
/// ending in a newline.
///
/// Long outputs are formatted in parts on the available cores and joined; the text
/// is the same.
pub fn format_output(values: &[f64]) -> String {
    let parts = values.len() / PARALLEL_VALUES;
    let threads = if parts > 1 { cores().min(parts) } else { 1 };
    let part_len = values.len().div_ceil(threads).max(1);
    let parts: Vec<String> = if threads == 1 {
        vec![format_values(values)]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = values
                .chunks(part_len)
                .map(|part| scope.spawn(move || format_values(part)))
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    };

    let mut text = String::with_capacity(parts.iter().map(|part| part.len() + 1).sum());
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            text.push(' ');
        }
        text.push_str(part);
    }
    text.push('\n');
    text
}

/// Formats values with four decimals, separated by single spaces, with no newline.
fn format_values(values: &[f64]) -> String {
    // Most values of the task print as `-0.1234` plus a space.
    let mut text = String::with_capacity(values.len().saturating_mul(8));
    for (index, &value) in values.iter().enumerate() {
        if index > 0 {
            text.push(' ');
        }
        // Writing to a `String` cannot fail, and `write_fixed4` returns an error
        // only when its writer does.
        let _ = write_fixed4(&mut text, value);
    }
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
    let ignored_tokens = problem.ignored_tokens;
    let values = compute_in_place(problem)?;
    Ok(Output {
        text: format_output(&values),
        ignored_tokens,
    })
}
