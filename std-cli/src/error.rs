//! Errors of the reader and of the computation, and their messages.
//!
//! Each `Display` writes one line without the program-name prefix, which the binary
//! adds.

use std::fmt;
use std::io;

use lora_attention::{Operand, Projection};

use crate::number::{HeaderProblem, ValueProblem};
use crate::problem::{HeaderField, MatrixSize};
use crate::tokens::{Location, Token, MAX_TOKEN_BYTES};

/// Maximum number of characters of a token that a message quotes.
pub const EXCERPT_CHARS: usize = 40;

/// The start of a token that a message quotes, with its full length and position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenExcerpt {
    /// The first [`EXCERPT_CHARS`] characters of the token.
    pub text: String,
    /// Length of the whole token in characters.
    pub char_len: u64,
    /// Position of the token's first character.
    pub location: Location,
}

impl TokenExcerpt {
    /// Copies the start of a token for an error message.
    pub fn new(token: &Token<'_>) -> Self {
        TokenExcerpt {
            text: token.text.chars().take(EXCERPT_CHARS).collect(),
            char_len: token.char_len,
            location: token.location,
        }
    }

    /// Returns whether the excerpt is shorter than the token.
    pub fn is_cut(&self) -> bool {
        self.char_len > self.text.chars().count() as u64
    }
}

impl fmt::Display for TokenExcerpt {
    /// Writes `token 5 'abc' at line 2, column 6`. A cut token ends in `...` and its
    /// full length follows the quote. Characters that `char::escape_debug` escapes,
    /// such as control characters and U+FEFF, appear escaped (`\u{feff}`) so that
    /// the message shows them and cannot drive the terminal. Quotes and backslashes
    /// appear as they are.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "token {} '", self.location.token_index)?;
        for character in self.text.chars() {
            if matches!(character, '\\' | '\'' | '"') {
                write!(f, "{character}")?;
            } else {
                write!(f, "{}", character.escape_debug())?;
            }
        }
        if self.is_cut() {
            write!(f, "...' ({} characters)", self.char_len)?;
        } else {
            f.write_str("'")?;
        }
        write!(
            f,
            " at line {}, column {}",
            self.location.line, self.location.column
        )
    }
}

/// Invalid UTF-8 in the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Utf8Fault {
    /// 0-based offset of the first byte that is not part of a valid character.
    pub byte_offset: u64,
    /// The byte at `byte_offset`.
    pub byte: u8,
    /// 1-based line of that byte.
    pub line: u64,
    /// 1-based column, in characters, that a character at that byte would have.
    pub column: u64,
    /// Whether the input ends inside a multi-byte character that starts at `byte_offset`.
    pub input_ends_inside_character: bool,
}

impl fmt::Display for Utf8Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let position = format!(
            "byte offset {} (line {}, column {})",
            self.byte_offset, self.line, self.column
        );
        if self.input_ends_inside_character {
            write!(
                f,
                "the input is not valid UTF-8: it ends inside a character that starts \
                 with byte 0x{:02X} at {position}",
                self.byte
            )
        } else {
            write!(
                f,
                "the input is not valid UTF-8: byte 0x{:02X} at {position} does not start \
                 a valid character",
                self.byte
            )
        }
    }
}

/// An input the reader rejects, or a failure to read it.
#[derive(Debug)]
#[non_exhaustive]
pub enum InputError {
    /// The reader failed.
    Read(io::Error),
    /// The input is not valid UTF-8.
    InvalidUtf8(Utf8Fault),
    /// The input has no tokens.
    Empty {
        /// Whether the input has whitespace, as opposed to no bytes at all (a skipped
        /// byte-order mark does not count).
        only_whitespace: bool,
    },
    /// The input ends inside the header.
    ShortHeader {
        /// Number of header values present, 1 or 2.
        found: usize,
    },
    /// A header token is not a valid value for its field.
    InvalidHeader {
        /// The field.
        field: HeaderField,
        /// The reason the token is invalid.
        problem: HeaderProblem,
        /// The token.
        token: TokenExcerpt,
    },
    /// A matrix token is not a valid value.
    InvalidValue {
        /// The matrix's size under the header.
        size: MatrixSize,
        /// 1-based position of the value in the matrix, row-major.
        value_number: u128,
        /// The reason the token is invalid.
        problem: ValueProblem,
        /// The token.
        token: TokenExcerpt,
    },
    /// The input ends before the first value of a matrix.
    MissingMatrix {
        /// The matrix's size under the header.
        size: MatrixSize,
    },
    /// The input ends inside a matrix.
    IncompleteMatrix {
        /// The matrix's size under the header.
        size: MatrixSize,
        /// Number of values present.
        found: u128,
    },
    /// Memory for a matrix's values could not be allocated.
    OutOfMemory {
        /// The matrix's size under the header.
        size: MatrixSize,
        /// Number of values the failed allocation was for.
        requested: usize,
    },
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Read(error) => write!(f, "failed to read the input: {error}"),
            InputError::InvalidUtf8(fault) => write!(f, "{fault}"),
            InputError::Empty { only_whitespace } => {
                let what = if *only_whitespace {
                    "the input contains only whitespace"
                } else {
                    "the input is empty"
                };
                write!(
                    f,
                    "{what}: expected the header 'b d r' followed by the matrices x, Wq, Wk, \
                     Wv, and A and B when r > 0"
                )
            }
            InputError::ShortHeader { found } => write_short_header(f, *found),
            InputError::InvalidHeader {
                field,
                problem,
                token,
            } => write_invalid_header(f, *field, *problem, token),
            InputError::InvalidValue {
                size,
                value_number,
                problem,
                token,
            } => {
                let matrix = size.matrix;
                let what = match problem {
                    ValueProblem::NotANumber => "a token that is not a number".to_owned(),
                    ValueProblem::NaN => "a NaN".to_owned(),
                    ValueProblem::Infinity => "an infinity".to_owned(),
                    ValueProblem::OutOfRange => "a number out of range for float64".to_owned(),
                    ValueProblem::TooLong => format!("a token longer than {MAX_TOKEN_BYTES} bytes"),
                };
                write!(
                    f,
                    "{matrix} contains {what}: {token}, which would be value {value_number} \
                     of the {size} of {matrix}"
                )
            }
            InputError::MissingMatrix { size } => write!(
                f,
                "{} is missing: it needs {size} and the input ends before the first",
                size.matrix
            ),
            InputError::IncompleteMatrix { size, found } => write!(
                f,
                "{} ends after {found} of {size}: the input ends before the matrix is complete",
                size.matrix
            ),
            InputError::OutOfMemory { size, requested } => write!(
                f,
                "out of memory: failed to allocate space for {requested} values while \
                 reading {}, which needs {size}",
                size.matrix
            ),
        }
    }
}

/// Writes the message for a header that ends after `found` values.
fn write_short_header(f: &mut fmt::Formatter<'_>, found: usize) -> fmt::Result {
    let missing = HeaderField::ALL.get(found..).unwrap_or_default();
    write!(f, "the header ends after {found} of its 3 values: ")?;
    for (index, field) in missing.iter().enumerate() {
        if index > 0 {
            f.write_str(" and ")?;
        }
        write!(f, "{field}")?;
    }
    let verb = if missing.len() == 1 { "is" } else { "are" };
    write!(f, " {verb} missing")
}

/// Writes the message for an invalid header token.
fn write_invalid_header(
    f: &mut fmt::Formatter<'_>,
    field: HeaderField,
    problem: HeaderProblem,
    token: &TokenExcerpt,
) -> fmt::Result {
    let too_long = format!("is longer than {MAX_TOKEN_BYTES} bytes");
    let (requirement, finding) = match problem {
        HeaderProblem::Value(ValueProblem::NotANumber) => ("be a whole number", "is not a number"),
        HeaderProblem::Value(ValueProblem::NaN) => ("be a whole number", "is NaN"),
        HeaderProblem::Value(ValueProblem::Infinity) => ("be a whole number", "is an infinity"),
        HeaderProblem::Value(ValueProblem::OutOfRange) => {
            ("be a whole number", "is out of range for float64")
        }
        HeaderProblem::Value(ValueProblem::TooLong) => ("be a whole number", too_long.as_str()),
        HeaderProblem::NotWhole => ("be a whole number", "is not"),
        HeaderProblem::BelowMinimum if field.minimum() == 0 => ("not be negative", "is negative"),
        HeaderProblem::BelowMinimum => ("be at least 1", "is below 1"),
        HeaderProblem::TooLargeForU64 => ("fit in a 64-bit unsigned integer", "is too large"),
        HeaderProblem::TooLargeForUsize => (USIZE_REQUIREMENT, "is too large for this platform"),
    };
    write!(
        f,
        "invalid header: {field} must {requirement}, but {token} {finding}"
    )
}

/// The requirement a header value breaks when it does not fit in `usize`.
#[cfg(target_pointer_width = "64")]
const USIZE_REQUIREMENT: &str = "fit in usize (64 bits)";
/// The requirement a header value breaks when it does not fit in `usize`.
#[cfg(not(target_pointer_width = "64"))]
const USIZE_REQUIREMENT: &str = "fit in usize (32 bits)";

impl std::error::Error for InputError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InputError::Read(error) => Some(error),
            _ => None,
        }
    }
}

/// A failure of the computation on a valid input.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ComputeError {
    /// An intermediate or the output overflowed float64.
    Overflow {
        /// The intermediate, as the kernel names it.
        operand: Operand,
        /// 1-based row of the first element that is infinite or NaN.
        row: usize,
        /// 1-based column of that element.
        column: usize,
        /// The adapter rank `r`, which decides whether `Q` is named with `Wq'`.
        rank: usize,
    },
    /// An input matrix contains NaN or an infinity. The reader rejects such tokens, so this
    /// means a [`Problem`](crate::Problem) was built without the reader.
    NonFiniteInput {
        /// The matrix, as the kernel names it.
        operand: Operand,
        /// 1-based row of the first element that is infinite or NaN.
        row: usize,
        /// 1-based column of that element.
        column: usize,
    },
    /// The kernel's buffers for this shape do not fit in `usize`.
    TooLarge,
    /// Memory for the kernel's buffers could not be allocated.
    OutOfMemory {
        /// Number of `f64` values the failed allocation was for.
        requested: usize,
    },
    /// Any other kernel error. The reader's checks should prevent these.
    Kernel(lora_attention::Error),
}

impl ComputeError {
    /// Converts a kernel error, turning flat indices into 1-based rows and columns of
    /// the intermediate: `Wq'` is `d x d`, the scores are `b x b`, and `Q`, `K`, `V`
    /// and the output are `b x d`.
    pub fn from_kernel(error: lora_attention::Error, header: crate::Header) -> Self {
        let row_len = |operand: Operand| match operand {
            Operand::Scores | Operand::Probabilities => header.rows,
            _ => header.width,
        };
        let position = |operand: Operand, index: usize| {
            let row_len = row_len(operand).max(1);
            (index / row_len + 1, index % row_len + 1)
        };
        match error {
            lora_attention::Error::NonFiniteResult { operand, index } => {
                let (row, column) = position(operand, index);
                ComputeError::Overflow {
                    operand,
                    row,
                    column,
                    rank: header.rank,
                }
            }
            lora_attention::Error::NonFiniteInput { operand, index } => {
                let row_len = match operand {
                    Operand::AdapterB(_) => header.rank.max(1),
                    _ => header.width,
                };
                ComputeError::NonFiniteInput {
                    operand,
                    row: index / row_len + 1,
                    column: index % row_len + 1,
                }
            }
            lora_attention::Error::SizeOverflow => ComputeError::TooLarge,
            other => ComputeError::Kernel(other),
        }
    }
}

/// Returns how the task names an intermediate, such as `K = x Wk^T`.
fn intermediate_name(operand: Operand, rank: usize) -> String {
    match operand {
        Operand::MergedWeight(Projection::Query) => "Wq' = Wq + B A".to_owned(),
        Operand::Query if rank > 0 => "Q = x Wq'^T".to_owned(),
        Operand::Query => "Q = x Wq^T".to_owned(),
        Operand::Key => "K = x Wk^T".to_owned(),
        Operand::Value => "V = x Wv^T".to_owned(),
        Operand::Scores => "the score matrix Q K^T / sqrt(d)".to_owned(),
        Operand::Output => "the output softmax(Q K^T / sqrt(d)) V".to_owned(),
        other => other.to_string(),
    }
}

impl fmt::Display for ComputeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComputeError::Overflow {
                operand,
                row,
                column,
                rank,
            } => write!(
                f,
                "{} overflows float64 at row {row}, column {column}: the value would be \
                 inf or NaN because the input values are too large",
                intermediate_name(*operand, *rank)
            ),
            ComputeError::NonFiniteInput {
                operand,
                row,
                column,
            } => write!(
                f,
                "{operand} contains NaN or an infinity at row {row}, column {column}"
            ),
            ComputeError::TooLarge => f.write_str(
                "the header's dimensions are too large: the computation's buffers would \
                 exceed the address space (their length overflows usize)",
            ),
            ComputeError::OutOfMemory { requested } => write!(
                f,
                "out of memory: failed to allocate {requested} values for the computation"
            ),
            ComputeError::Kernel(error) => write!(f, "internal error in the kernel: {error}"),
        }
    }
}

impl std::error::Error for ComputeError {}

/// Any failure of [`run`](crate::run).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The input could not be read or is invalid.
    Input(InputError),
    /// The computation failed on a valid input.
    Compute(ComputeError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Input(error) => write!(f, "{error}"),
            Error::Compute(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Input(error) => Some(error),
            Error::Compute(error) => Some(error),
        }
    }
}

impl From<InputError> for Error {
    fn from(error: InputError) -> Self {
        Error::Input(error)
    }
}

impl From<ComputeError> for Error {
    fn from(error: ComputeError) -> Self {
        Error::Compute(error)
    }
}
