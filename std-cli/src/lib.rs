//! The command-line judge program for single-head self-attention with a LoRA adapter,
//! as a library, so that tests and fuzz targets can run it without a process.
//!
//! The input is UTF-8 text of whitespace-separated tokens: the header `b d r`, then
//! `x` (`b*d` values), `Wq`, `Wk`, `Wv` (`d*d` each, row-major) and, when `r > 0`, `A`
//! (`r*d`) and `B` (`d*r`). The output is `softmax(Q K^T / sqrt(d)) V` with
//! `Q = x (Wq + B A)^T`, `K = x Wk^T` and `V = x Wv^T` at float64, all `b*d` values on
//! one line with four decimals.
//!
//! - [`run`] does everything from a [`Read`](std::io::Read) to the output line.
//! - [`read_problem`] parses an input into a [`Problem`], and [`compute`] and
//!   [`format_output`] do the rest.
//! - [`Tokenizer`] splits any reader into located tokens.
//!
//! Errors display as one line without the program-name prefix.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod number;
mod problem;
mod reader;
mod run;
mod tokens;

pub use error::{ComputeError, Error, InputError, TokenExcerpt, Utf8Fault, EXCERPT_CHARS};
pub use number::{parse_header_value, parse_value, HeaderProblem, ValueProblem};
pub use problem::{Header, HeaderField, Matrix, MatrixSize, Problem};
pub use reader::{read_problem, read_tokens};
pub use run::{
    block_rows, compute, compute_in_place, compute_with_threads, format_output, run, Output,
};
pub use tokens::{Location, Token, Tokenizer, CHUNK_SIZE, MAX_TOKEN_BYTES};
