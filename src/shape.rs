//! Shapes of the single-head task and the buffer sizes they imply.

use crate::error::{Dimension, Error};

/// The dimensions of single-head attention with an adapter on the query projection.
///
/// All buffer sizes follow from these three numbers; see the crate documentation for
/// the layout of each slice. The size methods are `const fn` so that firmware can size
/// static buffers at compile time. They return `None` when a size does not fit in
/// `usize`, never a wrapped value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    /// The number of rows (tokens) that attend to one another, `b`.
    pub seq_len: usize,
    /// The model width, `d`: the length of every row of `x`, `Q`, `K`, `V` and the output.
    pub dim: usize,
    /// The adapter rank, `r`. Zero means no adapter.
    pub rank: usize,
}

/// The dimensions of a low-rank adapter on a linear layer `y = W x`.
///
/// `W` is `out_features x in_features`, `A` is `rank x in_features` and `B` is
/// `out_features x rank`, all row-major.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AdapterShape {
    /// The number of rows of `W` and `B`.
    pub out_features: usize,
    /// The number of columns of `W` and `A`.
    pub in_features: usize,
    /// The adapter rank: rows of `A`, columns of `B`.
    pub rank: usize,
}

/// Returns `a * b`, or `None` on overflow (or when either is already `None`).
pub(crate) const fn mul(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    match (a, b) {
        (Some(a), Some(b)) => a.checked_mul(b),
        _ => None,
    }
}

/// Returns `a + b`, or `None` on overflow (or when either is already `None`).
pub(crate) const fn add(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    match (a, b) {
        (Some(a), Some(b)) => a.checked_add(b),
        _ => None,
    }
}

/// Returns the smaller of two counts.
pub(crate) const fn min(a: usize, b: usize) -> usize {
    if a < b {
        a
    } else {
        b
    }
}

impl Shape {
    /// Creates a shape from `b`, `d` and `r`.
    pub const fn new(seq_len: usize, dim: usize, rank: usize) -> Self {
        Shape { seq_len, dim, rank }
    }

    /// Returns the length of `x` and of the output: `seq_len * dim`.
    pub const fn input_len(self) -> Option<usize> {
        self.seq_len.checked_mul(self.dim)
    }

    /// Returns the length of each weight matrix `Wq`, `Wk`, `Wv`: `dim * dim`.
    pub const fn weight_len(self) -> Option<usize> {
        self.dim.checked_mul(self.dim)
    }

    /// Returns the length of each adapter matrix, `A` (`rank x dim`) and `B` (`dim x rank`).
    pub const fn adapter_len(self) -> Option<usize> {
        self.rank.checked_mul(self.dim)
    }

    /// Returns the length of the full score matrix: `seq_len * seq_len`.
    pub const fn scores_len(self) -> Option<usize> {
        self.seq_len.checked_mul(self.seq_len)
    }

    /// Returns the shape of the query adapter: `dim x dim` with rank `rank`.
    pub const fn query_adapter(self) -> AdapterShape {
        AdapterShape {
            out_features: self.dim,
            in_features: self.dim,
            rank: self.rank,
        }
    }

    /// Returns the scratch length of [`attention`](crate::attention):
    /// `dim * dim + 3 * seq_len * dim + seq_len * seq_len`.
    ///
    /// The scratch contains the merged query weight, `Q`, `K`, `V` and the score matrix.
    pub const fn attention_scratch_len(self) -> Option<usize> {
        self.blocked_attention_scratch_len(self.seq_len)
    }

    /// Returns the scratch length of [`attention_blocked`](crate::attention_blocked):
    /// `dim * dim + 3 * seq_len * dim + min(block_rows, seq_len) * seq_len`.
    ///
    /// The scratch contains the merged query weight, `Q`, `K`, `V` and `block_rows` rows
    /// of the score matrix.
    pub const fn blocked_attention_scratch_len(self, block_rows: usize) -> Option<usize> {
        let rows = min(block_rows, self.seq_len);
        let projections = mul(Some(3), self.input_len());
        let scores = mul(Some(rows), Some(self.seq_len));
        add(add(self.weight_len(), projections), scores)
    }

    /// Returns the scratch length of [`attention_factored`](crate::attention_factored):
    /// `3 * seq_len * dim + min(block_rows, seq_len) * seq_len + rank`.
    ///
    /// The scratch contains `Q`, `K`, `V`, `block_rows` rows of scores and `A x` for one
    /// row; there is no `dim x dim` term.
    pub const fn factored_scratch_len(self, block_rows: usize) -> Option<usize> {
        let rows = min(block_rows, self.seq_len);
        let projections = mul(Some(3), self.input_len());
        let scores = mul(Some(rows), Some(self.seq_len));
        add(add(projections, scores), Some(self.rank))
    }

    /// Returns the scratch length of [`attention_streaming`](crate::attention_streaming):
    /// `min(block_rows, seq_len) * max(3 * dim + rank, 2 * dim + 3)`.
    ///
    /// Apart from the cap at `seq_len`, it does not depend on `seq_len`: each row of
    /// the block needs `3 * dim + rank` values (two more when `dim + rank < 3`).
    pub const fn streaming_scratch_len(self, block_rows: usize) -> Option<usize> {
        let rows = min(block_rows, self.seq_len);
        let front = crate::streaming::streaming_front_len(self.dim, self.rank);
        let row = add(front, mul(Some(2), Some(self.dim)));
        mul(Some(rows), row)
    }

    /// Checks that `seq_len` and `dim` are at least 1 and that the lengths of `x`, the
    /// weights and the adapter fit in `usize`.
    ///
    /// Each path checks its own scratch length on top of this.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroDimension`] or [`Error::SizeOverflow`].
    pub const fn validate(self) -> Result<(), Error> {
        if self.seq_len == 0 {
            return Err(Error::ZeroDimension {
                dimension: Dimension::SeqLen,
            });
        }
        if self.dim == 0 {
            return Err(Error::ZeroDimension {
                dimension: Dimension::Dim,
            });
        }
        match (self.input_len(), self.weight_len(), self.adapter_len()) {
            (Some(_), Some(_), Some(_)) => Ok(()),
            _ => Err(Error::SizeOverflow),
        }
    }
}

impl AdapterShape {
    /// Returns the length of the weight `W`: `out_features * in_features`.
    pub const fn weight_len(self) -> Option<usize> {
        self.out_features.checked_mul(self.in_features)
    }

    /// Returns the length of `A`: `rank * in_features`.
    pub const fn a_len(self) -> Option<usize> {
        self.rank.checked_mul(self.in_features)
    }

    /// Returns the length of `B`: `out_features * rank`.
    pub const fn b_len(self) -> Option<usize> {
        self.out_features.checked_mul(self.rank)
    }
}
