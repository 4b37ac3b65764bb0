//! The parsed judge input: the header and the matrices it announces.

use std::fmt;

use lora_attention::{Adapter, Scaling, Shape, Weights};

/// One of the three header values `b d r`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderField {
    /// `b`, the number of rows (tokens).
    Rows,
    /// `d`, the model width.
    Width,
    /// `r`, the adapter rank.
    Rank,
}

impl HeaderField {
    /// The three fields in input order.
    pub const ALL: [HeaderField; 3] = [HeaderField::Rows, HeaderField::Width, HeaderField::Rank];

    /// Returns the field's symbol as the input format names it: `b`, `d` or `r`.
    pub const fn symbol(self) -> &'static str {
        match self {
            HeaderField::Rows => "b",
            HeaderField::Width => "d",
            HeaderField::Rank => "r",
        }
    }

    /// Returns a short description, such as "the number of rows".
    pub const fn description(self) -> &'static str {
        match self {
            HeaderField::Rows => "the number of rows",
            HeaderField::Width => "the model width",
            HeaderField::Rank => "the adapter rank",
        }
    }

    /// Returns the smallest value the field accepts.
    pub const fn minimum(self) -> u64 {
        match self {
            HeaderField::Rows | HeaderField::Width => 1,
            HeaderField::Rank => 0,
        }
    }
}

impl fmt::Display for HeaderField {
    /// Writes the symbol and the description, such as `b (the number of rows)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.symbol(), self.description())
    }
}

/// One of the matrices that follow the header, in input order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Matrix {
    /// The input rows `x`, `b x d`.
    X,
    /// The query weight `Wq`, `d x d`.
    Wq,
    /// The key weight `Wk`, `d x d`.
    Wk,
    /// The value weight `Wv`, `d x d`.
    Wv,
    /// The adapter's down-projection `A`, `r x d`. Present only when `r > 0`.
    A,
    /// The adapter's up-projection `B`, `d x r`. Present only when `r > 0`.
    B,
}

impl Matrix {
    /// Returns the matrix's name as the input format spells it (case-sensitive: `B` is
    /// the adapter matrix, `b` the row count).
    pub const fn name(self) -> &'static str {
        match self {
            Matrix::X => "x",
            Matrix::Wq => "Wq",
            Matrix::Wk => "Wk",
            Matrix::Wv => "Wv",
            Matrix::A => "A",
            Matrix::B => "B",
        }
    }

    /// Returns the header fields that give the number of rows and of columns.
    pub const fn dimensions(self) -> (HeaderField, HeaderField) {
        match self {
            Matrix::X => (HeaderField::Rows, HeaderField::Width),
            Matrix::Wq | Matrix::Wk | Matrix::Wv => (HeaderField::Width, HeaderField::Width),
            Matrix::A => (HeaderField::Rank, HeaderField::Width),
            Matrix::B => (HeaderField::Width, HeaderField::Rank),
        }
    }
}

impl fmt::Display for Matrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The header values `b`, `d` and `r`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// `b`, the number of rows, at least 1.
    pub rows: usize,
    /// `d`, the model width, at least 1.
    pub width: usize,
    /// `r`, the adapter rank. Zero means no adapter.
    pub rank: usize,
}

impl Header {
    /// Returns the value of one field.
    pub const fn get(self, field: HeaderField) -> usize {
        match field {
            HeaderField::Rows => self.rows,
            HeaderField::Width => self.width,
            HeaderField::Rank => self.rank,
        }
    }

    /// Returns the size of a matrix under this header.
    pub const fn size(self, matrix: Matrix) -> MatrixSize {
        let (rows, columns) = matrix.dimensions();
        MatrixSize {
            matrix,
            rows: self.get(rows),
            columns: self.get(columns),
        }
    }

    /// Returns the matrices the input must contain, in order: `A` and `B` only when
    /// `r > 0`.
    pub fn matrices(self) -> &'static [Matrix] {
        const ALL: [Matrix; 6] = [
            Matrix::X,
            Matrix::Wq,
            Matrix::Wk,
            Matrix::Wv,
            Matrix::A,
            Matrix::B,
        ];
        if self.rank > 0 {
            &ALL
        } else {
            ALL.get(..4).unwrap_or_default()
        }
    }

    /// Returns the kernel's shape.
    pub const fn shape(self) -> Shape {
        Shape::new(self.rows, self.width, self.rank)
    }
}

/// The dimensions of one matrix, with its number of values as a `u128` so that a
/// header promising more than `u64::MAX` values is still described exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatrixSize {
    /// The matrix.
    pub matrix: Matrix,
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub columns: usize,
}

impl MatrixSize {
    /// Returns the number of values, `rows * columns`.
    pub const fn count(self) -> u128 {
        self.rows as u128 * self.columns as u128
    }
}

impl fmt::Display for MatrixSize {
    /// Writes the count and where it comes from, such as `6 values (d*r = 3*2)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (rows, columns) = self.matrix.dimensions();
        write!(
            f,
            "{} values ({}*{} = {}*{})",
            self.count(),
            rows.symbol(),
            columns.symbol(),
            self.rows,
            self.columns
        )
    }
}

/// A complete judge input: the header, the matrices and the number of ignored tokens.
///
/// Each matrix is row-major with exactly the length the header gives, and its
/// capacity equals its length.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// The header `b d r`.
    pub header: Header,
    /// The input rows `x`, `b x d`.
    pub x: Vec<f64>,
    /// The query weight `Wq`, `d x d`.
    pub wq: Vec<f64>,
    /// The key weight `Wk`, `d x d`.
    pub wk: Vec<f64>,
    /// The value weight `Wv`, `d x d`.
    pub wv: Vec<f64>,
    /// The adapter's down-projection `A`, `r x d`. Empty when `r = 0`.
    pub adapter_a: Vec<f64>,
    /// The adapter's up-projection `B`, `d x r`. Empty when `r = 0`.
    pub adapter_b: Vec<f64>,
    /// Number of tokens after the last matrix, which the reader skipped.
    pub ignored_tokens: u64,
}

impl Problem {
    /// Returns the weights for the kernel, with the adapter scale `s = 1` of the judge
    /// task.
    pub fn weights(&self) -> Weights<'_, f64> {
        let adapter = if self.header.rank == 0 {
            Adapter::none()
        } else {
            Adapter::new(&self.adapter_a, &self.adapter_b, Scaling::One)
        };
        Weights {
            wq: &self.wq,
            wk: &self.wk,
            wv: &self.wv,
            adapter,
        }
    }

    /// Returns a matrix by name.
    pub fn matrix(&self, matrix: Matrix) -> &[f64] {
        match matrix {
            Matrix::X => &self.x,
            Matrix::Wq => &self.wq,
            Matrix::Wk => &self.wk,
            Matrix::Wv => &self.wv,
            Matrix::A => &self.adapter_a,
            Matrix::B => &self.adapter_b,
        }
    }
}
