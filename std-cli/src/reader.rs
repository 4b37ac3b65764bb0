//! The judge-format reader: the header `b d r`, then the matrices it announces.

use std::io::Read;

use crate::error::{InputError, TokenExcerpt};
use crate::number::{parse_header_value, parse_value};
use crate::problem::{Header, HeaderField, MatrixSize, Problem};
use crate::tokens::Tokenizer;

/// Capacity of a matrix's storage before its first growth, in values (8 MiB),
/// unless the matrix is smaller. The operating system maps pages only as values
/// are written, so a header that promises more than the input contains costs address
/// space, not memory. Real inputs of up to a million values per matrix never copy
/// their storage to grow it.
const INITIAL_CAPACITY: usize = 1 << 20;

/// Reads a judge input from `reader`, `CHUNK_SIZE` bytes at a time.
///
/// Memory follows the values present, not the header. Storage grows as values arrive,
/// so a header that promises more values than the input has fails at the end of the
/// input without allocating for the promise. Tokens after the last matrix are counted
/// in [`Problem::ignored_tokens`] and need not be numbers, but must be valid UTF-8.
///
/// # Errors
///
/// [`InputError::Read`] when `reader` fails, and the other [`InputError`] variants for
/// an invalid input. The first problem in input order is reported.
///
/// # Example
///
/// ```
/// use lora_attention_cli::read_problem;
///
/// let problem = read_problem("1 1 0\n2\n1\n1\n3\n".as_bytes())?;
/// assert_eq!(problem.x, [2.0]);
/// assert_eq!(problem.wv, [3.0]);
/// # Ok::<(), lora_attention_cli::InputError>(())
/// ```
pub fn read_problem<R: Read>(reader: R) -> Result<Problem, InputError> {
    read_tokens(&mut Tokenizer::new(reader))
}

/// Reads a judge input from a tokenizer, as [`read_problem`] does.
///
/// # Errors
///
/// As [`read_problem`].
pub fn read_tokens<R: Read>(tokens: &mut Tokenizer<R>) -> Result<Problem, InputError> {
    let header = read_header(tokens)?;

    let mut matrices: [Vec<f64>; 6] = Default::default();
    for (&matrix, values) in header.matrices().iter().zip(matrices.iter_mut()) {
        *values = read_matrix(tokens, header.size(matrix))?;
    }

    // Tokens after the last matrix are only counted, but the tokenizer still checks
    // that they are valid UTF-8.
    let last_matrix_token = tokens.token_count();
    while tokens.next_token()?.is_some() {}
    let ignored_tokens = tokens.token_count() - last_matrix_token;

    let [x, wq, wk, wv, adapter_a, adapter_b] = matrices;
    Ok(Problem {
        header,
        x,
        wq,
        wk,
        wv,
        adapter_a,
        adapter_b,
        ignored_tokens,
    })
}

/// Reads the three header values.
fn read_header<R: Read>(tokens: &mut Tokenizer<R>) -> Result<Header, InputError> {
    let mut values = [0_usize; 3];
    for (found, (field, value)) in HeaderField::ALL.into_iter().zip(&mut values).enumerate() {
        let Some(token) = tokens.next_token()? else {
            if found > 0 {
                return Err(InputError::ShortHeader { found });
            }
            let only_whitespace = tokens.text_bytes_read() > 0;
            return Err(InputError::Empty { only_whitespace });
        };
        *value =
            parse_header_value(&token, field).map_err(|problem| InputError::InvalidHeader {
                field,
                problem,
                token: TokenExcerpt::new(&token),
            })?;
    }
    let [rows, width, rank] = values;
    Ok(Header { rows, width, rank })
}

/// Reads the values of one matrix.
fn read_matrix<R: Read>(
    tokens: &mut Tokenizer<R>,
    size: MatrixSize,
) -> Result<Vec<f64>, InputError> {
    let expected = size.count();
    let mut values = Vec::new();
    let mut found: u128 = 0;
    while found < expected {
        // Fast path: short decimals. Room for every token the chunk can still
        // hold (one digit and one space each) lets it take the chunk at once.
        let remaining = usize::try_from(expected - found).unwrap_or(usize::MAX);
        let chunk_tokens = tokens.unread_chunk_bytes() / 2 + 1;
        grow_for(&mut values, size, chunk_tokens.min(remaining))?;
        let taken = tokens.take_short_decimals(&mut values, remaining);
        found += taken as u128;
        if taken > 0 {
            continue;
        }

        // Anything else: one token with every check.
        let Some(token) = tokens.next_token()? else {
            if found == 0 {
                return Err(InputError::MissingMatrix { size });
            }
            return Err(InputError::IncompleteMatrix { size, found });
        };
        let value = parse_value(&token).map_err(|problem| InputError::InvalidValue {
            size,
            value_number: found + 1,
            problem,
            token: TokenExcerpt::new(&token),
        })?;
        grow_for(&mut values, size, 1)?;
        values.push(value);
        found += 1;
    }
    Ok(values)
}

/// Makes room for `wanted` more values (at least one): the capacity starts at
/// [`INITIAL_CAPACITY`], at least doubles when it grows, and never exceeds the
/// matrix's count, so a complete matrix ends with capacity equal to its length.
fn grow_for(values: &mut Vec<f64>, size: MatrixSize, wanted: usize) -> Result<(), InputError> {
    let len = values.len();
    let wanted = wanted.max(1);
    if values.capacity() - len >= wanted {
        return Ok(());
    }
    let target = len
        .saturating_add(wanted)
        .max(len.saturating_mul(2))
        .max(INITIAL_CAPACITY);
    let capped = u128::try_from(target).map_or(size.count(), |target| target.min(size.count()));
    // The matrix has more than `len` values, so `capped > len` and the difference fits.
    let target = usize::try_from(capped).unwrap_or(usize::MAX);
    let additional = target.saturating_sub(len).max(1);
    values
        .try_reserve_exact(additional)
        .map_err(|_| InputError::OutOfMemory {
            size,
            requested: len.saturating_add(additional),
        })
}
