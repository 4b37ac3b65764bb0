//! The error type shared by every fallible function of the crate.

use core::fmt;

/// One of the four projections of an attention block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Projection {
    /// The query projection, `Wq`.
    Query,
    /// The key projection, `Wk`.
    Key,
    /// The value projection, `Wv`.
    Value,
    /// The output projection, `Wo`.
    Output,
}

impl Projection {
    /// Returns the lower-case letter used in weight and bias names (`q`, `k`, `v`, `o`).
    pub const fn letter(self) -> char {
        match self {
            Projection::Query => 'q',
            Projection::Key => 'k',
            Projection::Value => 'v',
            Projection::Output => 'o',
        }
    }
}

/// A slice that a call reads or writes, named in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operand {
    /// The input rows `x`.
    Input,
    /// The weight matrix of a projection (`Wq`, `Wk`, `Wv`, `Wo`).
    Weight(Projection),
    /// The bias vector of a projection (`bq`, `bk`, `bv`, `bo`).
    Bias(Projection),
    /// The down-projection `A` (rank x in) of the adapter on a projection.
    AdapterA(Projection),
    /// The up-projection `B` (out x rank) of the adapter on a projection.
    AdapterB(Projection),
    /// The weight matrix passed to [`project`](crate::project).
    ProjectionWeight,
    /// A weight with its adapter merged in, `W + s B A`.
    MergedWeight(Projection),
    /// The queries `Q`.
    Query,
    /// The keys `K`.
    Key,
    /// The values `V`.
    Value,
    /// The queries folded through the key weight, `Wk^T q`, in the streaming path.
    FoldedQuery,
    /// The scaled scores `Q K^T / sqrt(d)`.
    Scores,
    /// The softmax probabilities, one row per query.
    Probabilities,
    /// The per-head attention output before the output projection.
    HeadOutput,
    /// The key half of a decoding cache.
    KeyCache,
    /// The value half of a decoding cache.
    ValueCache,
    /// The caller-provided scratch slice.
    Scratch,
    /// The output slice.
    Output,
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Operand::Input => f.write_str("x"),
            Operand::Weight(p) => write!(f, "W{}", p.letter()),
            Operand::Bias(p) => write!(f, "b{}", p.letter()),
            Operand::AdapterA(p) => write!(f, "A of the {}-adapter", p.letter()),
            Operand::AdapterB(p) => write!(f, "B of the {}-adapter", p.letter()),
            Operand::ProjectionWeight => f.write_str("the projection weight W"),
            Operand::MergedWeight(p) => write!(f, "the merged weight W{} + s B A", p.letter()),
            Operand::Query => f.write_str("Q"),
            Operand::Key => f.write_str("K"),
            Operand::Value => f.write_str("V"),
            Operand::FoldedQuery => f.write_str("the folded queries Wk^T q"),
            Operand::Scores => f.write_str("the scores Q K^T / sqrt(d)"),
            Operand::Probabilities => f.write_str("the softmax probabilities"),
            Operand::HeadOutput => f.write_str("the attention output before Wo"),
            Operand::KeyCache => f.write_str("the key cache"),
            Operand::ValueCache => f.write_str("the value cache"),
            Operand::Scratch => f.write_str("the scratch slice"),
            Operand::Output => f.write_str("the output"),
        }
    }
}

/// A dimension of a shape or configuration, named in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dimension {
    /// The number of rows (tokens), `seq_len`.
    SeqLen,
    /// The model width, `dim`.
    Dim,
    /// The adapter rank.
    Rank,
    /// The number of query heads.
    Heads,
    /// The number of key/value heads.
    KvHeads,
    /// The number of query rows a blocked path handles at once.
    BlockRows,
    /// The number of tokens a decoding cache can hold.
    CacheCapacity,
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dimension::SeqLen => "seq_len",
            Dimension::Dim => "dim",
            Dimension::Rank => "rank",
            Dimension::Heads => "heads",
            Dimension::KvHeads => "kv_heads",
            Dimension::BlockRows => "block_rows",
            Dimension::CacheCapacity => "cache capacity",
        })
    }
}

/// Everything that can go wrong in a call.
///
/// Length and shape errors are found before anything is written, so the caller's
/// buffers are untouched. Numeric errors ([`Error::NonFiniteResult`]) are found while
/// computing; each function documents what its output contains then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A dimension is zero where at least one is needed.
    ZeroDimension {
        /// The dimension that is zero.
        dimension: Dimension,
    },
    /// A buffer length computed from the shape does not fit in `usize`.
    SizeOverflow,
    /// A slice does not have the length the shape requires.
    LengthMismatch {
        /// The slice.
        operand: Operand,
        /// The length the shape requires.
        expected: usize,
        /// The slice's length.
        actual: usize,
    },
    /// The scratch slice is shorter than the operation needs.
    ScratchTooSmall {
        /// The number of scratch elements the operation needs.
        required: usize,
        /// The scratch slice's length.
        actual: usize,
    },
    /// An input contains NaN or an infinity.
    NonFiniteInput {
        /// The input.
        operand: Operand,
        /// The position of the first non-finite element in that slice.
        index: usize,
    },
    /// An intermediate or the output overflowed to infinity or became NaN.
    NonFiniteResult {
        /// The intermediate that is not finite.
        operand: Operand,
        /// The position of the first non-finite element in that intermediate. For
        /// scores that a path never stores whole, the position in the full score
        /// matrix saturates at `usize::MAX` where that matrix would not be
        /// addressable (long sequences on 32-bit targets).
        index: usize,
    },
    /// The adapter scale is NaN or infinite.
    InvalidScale,
    /// Every score of a softmax row is negative infinity (masked), so no
    /// probability can be assigned.
    AllScoresMasked,
    /// The model width is not a multiple of the number of heads.
    HeadsDoNotDivideDim {
        /// The model width.
        dim: usize,
        /// The number of query heads.
        heads: usize,
    },
    /// The number of query heads is not a multiple of the number of key/value heads.
    KvHeadsDoNotDivideHeads {
        /// The number of query heads.
        heads: usize,
        /// The number of key/value heads.
        kv_heads: usize,
    },
    /// Rotary embedding needs an even head width.
    OddHeadDim {
        /// The head width `dim / heads`.
        head_dim: usize,
    },
    /// The rotary embedding base is not a finite positive number.
    InvalidRopeBase,
    /// The configuration has a bias or adapter on the output projection but no
    /// output projection.
    OutputProjectionMissing,
    /// The decoding cache contains as many tokens as it can.
    CacheFull {
        /// The number of tokens the cache can hold.
        capacity: usize,
    },
    /// The key/value-free streaming form cannot compute this configuration.
    StreamingUnsupported {
        /// The reason.
        reason: StreamingLimit,
    },
}

/// A reason the key/value-free streaming form rejects a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamingLimit {
    /// Rotary embedding rotates keys by position, so a key is no longer a fixed linear
    /// function of its input row and cannot be folded into the query.
    RotaryEmbedding,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::ZeroDimension { dimension } => write!(f, "{dimension} must be at least 1"),
            Error::SizeOverflow => f.write_str("the buffer sizes of this shape overflow usize"),
            Error::LengthMismatch {
                operand,
                expected,
                actual,
            } => write!(
                f,
                "{operand} has {actual} elements but the shape requires {expected}"
            ),
            Error::ScratchTooSmall { required, actual } => write!(
                f,
                "the scratch slice has {actual} elements but the operation needs {required}"
            ),
            Error::NonFiniteInput { operand, index } => write!(
                f,
                "{operand} contains a non-finite value (NaN or infinity) at index {index}"
            ),
            Error::NonFiniteResult { operand, index } => {
                write!(f, "{operand} overflows: element {index} is infinite or NaN")
            }
            Error::InvalidScale => f.write_str("the adapter scale is not a finite number"),
            Error::AllScoresMasked => {
                f.write_str("every score of the softmax row is masked (negative infinity)")
            }
            Error::HeadsDoNotDivideDim { dim, heads } => {
                write!(f, "dim {dim} is not a multiple of heads {heads}")
            }
            Error::KvHeadsDoNotDivideHeads { heads, kv_heads } => {
                write!(f, "heads {heads} is not a multiple of kv_heads {kv_heads}")
            }
            Error::OddHeadDim { head_dim } => write!(
                f,
                "rotary embedding needs an even head width, but dim / heads is {head_dim}"
            ),
            Error::InvalidRopeBase => {
                f.write_str("the rotary embedding base must be a finite number above 0")
            }
            Error::OutputProjectionMissing => f.write_str(
                "a bias or adapter on the output projection needs an output projection Wo",
            ),
            Error::CacheFull { capacity } => {
                write!(f, "the decoding cache is full: it holds {capacity} tokens")
            }
            Error::StreamingUnsupported { reason } => match reason {
                StreamingLimit::RotaryEmbedding => f.write_str(
                    "the key/value-free streaming form cannot apply rotary embedding; \
                     use the form that keeps K and V",
                ),
            },
        }
    }
}

impl core::error::Error for Error {}
