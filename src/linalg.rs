//! Dense matrix products on row-major slices, shared by every path.
//!
//! Every element of every product is one chain of multiply-adds in order of the
//! summed index, starting from zero: exactly what [`dot`] computes. The products
//! only choose how many elements advance together, so a result does not depend on
//! how rows are grouped into calls, and the tile shapes ([`Tiles`]) change the speed
//! of a target, never a value.
//!
//! The products copy blocks of both operands into small panels on the stack, laid
//! out in the order the register tile reads them, and then run one tile of
//! fixed-size arrays over the panels. The compiler keeps the tile in registers and
//! vectorises it, each operand is loaded once for several multiply-adds, and the
//! loop over the panels has no bounds checks. Missing rows and columns at the edges
//! are zeros in the panels, and their results are not stored.
//!
//! These helpers trust their callers: each public function checks lengths before it
//! calls them. A length that does not match makes a product skip rows or columns
//! (a wrong result, caught by the tests), never an out-of-bounds access.

use crate::real::Real;

/// Tile and panel sizes of the products for one target.
struct Tiles;

#[cfg(target_arch = "x86_64")]
impl Tiles {
    /// Bytes of one vector register the compiler uses. With AVX-512 the compiler
    /// still prefers 256-bit vectors on Intel cores, but has 32 of them.
    const VECTOR_BYTES: usize = if cfg!(target_feature = "avx") { 32 } else { 16 };
    /// Rows of `a` per tile (every target uses 4).
    const ROWS: usize = 4;
    /// Vectors of columns per tile: 4 x 4 accumulators fit 32 registers, 4 x 3 fit
    /// the 16 of AVX2 with room for the operands.
    const VECTORS: usize = if cfg!(target_feature = "avx512f") {
        4
    } else {
        3
    };
    /// Elements of the panel of `b`: 32 KiB of `f64`, which stays in the L1 cache.
    const PANEL_LEN: usize = 4096;
}

#[cfg(not(target_arch = "x86_64"))]
impl Tiles {
    /// One lane: targets such as a Cortex-M have scalar float registers only.
    const VECTOR_BYTES: usize = 0;
    /// Rows of `a` per tile (every target uses 4): 4 x 4 accumulators and 8
    /// operands fit the 32 single-precision registers of a Cortex-M4F.
    const ROWS: usize = 4;
    /// Columns per tile (vectors of one lane).
    const VECTORS: usize = 4;
    /// Elements of the panel of `b`: 1 KiB of `f32`, small for a firmware stack.
    const PANEL_LEN: usize = 256;
}

/// Rows of `b` (summed indices) per panel, at most.
const PANEL_DEPTH: usize = 64;

/// Returns the dot product of two equally long slices, summed left to right.
#[inline]
pub(crate) fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    a.iter()
        .zip(b)
        .fold(T::zero(), |sum, (&x, &y)| x.multiply_add(y, sum))
}

/// Returns the index of the first NaN or infinite element.
pub(crate) fn first_non_finite<T: Real>(values: &[T]) -> Option<usize> {
    values.iter().position(|value| !value.is_finite())
}

/// Computes `c = a b` for `a` (m x k), `b` (k x n) and `c` (m x n).
pub(crate) fn matmul<T: Real>(a: &[T], b: &[T], k: usize, n: usize, c: &mut [T]) {
    product(a, b, k, n, c, Layout::Rows, false);
}

/// Computes `c = c + a b` for `a` (m x k), `b` (k x n) and `c` (m x n): each
/// element's chain of multiply-adds starts from its value in `c`.
pub(crate) fn matmul_accumulate<T: Real>(a: &[T], b: &[T], k: usize, n: usize, c: &mut [T]) {
    product(a, b, k, n, c, Layout::Rows, true);
}

/// Computes `c = a b^T` for `a` (m x k), `b` (n x k) and `c` (m x n).
pub(crate) fn matmul_transposed<T: Real>(a: &[T], b: &[T], k: usize, n: usize, c: &mut [T]) {
    product(a, b, k, n, c, Layout::Transposed, false);
}

/// How the second operand is stored.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `b` is `k x n`: row `p` holds the `p`-th term of every column.
    Rows,
    /// `b` is `n x k`: row `j` holds every term of column `j`.
    Transposed,
}

/// Returns the vector lanes of `T` on this target: 1, 2, 4, 8 or 16.
const fn lanes<T>() -> usize {
    let size = core::mem::size_of::<T>();
    if size == 0 || Tiles::VECTOR_BYTES < size {
        1
    } else {
        Tiles::VECTOR_BYTES / size
    }
}

/// Dispatches to the product with the lane count of `T`. With `accumulate`, each
/// element's chain starts from its value in `c` instead of zero.
fn product<T: Real>(
    a: &[T],
    b: &[T],
    k: usize,
    n: usize,
    c: &mut [T],
    layout: Layout,
    accumulate: bool,
) {
    if n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(T::zero());
        }
        return;
    }
    match lanes::<T>() {
        16 => product_lanes::<T, 16>(a, b, k, n, c, layout, accumulate),
        8 => product_lanes::<T, 8>(a, b, k, n, c, layout, accumulate),
        4 => product_lanes::<T, 4>(a, b, k, n, c, layout, accumulate),
        2 => product_lanes::<T, 2>(a, b, k, n, c, layout, accumulate),
        _ => product_lanes::<T, 1>(a, b, k, n, c, layout, accumulate),
    }
}

/// The product with tiles of `Tiles::ROWS` rows by `Tiles::VECTORS` vectors of `L`
/// columns.
fn product_lanes<T: Real, const L: usize>(
    a: &[T],
    b: &[T],
    k: usize,
    n: usize,
    c: &mut [T],
    layout: Layout,
    accumulate: bool,
) {
    const MR: usize = Tiles::ROWS;
    const NV: usize = Tiles::VECTORS;
    let rows = (a.len() / k).min(c.len() / n);
    if rows < MR {
        // Too few rows to repay packing a panel: each element directly.
        product_rows(a, b, k, n, c, layout, accumulate);
        return;
    }
    let width = NV * L;
    let panel_columns = (Tiles::PANEL_LEN / PANEL_DEPTH / width).max(1) * width;
    let panel_depth = (Tiles::PANEL_LEN / panel_columns).clamp(1, PANEL_DEPTH);
    let mut b_panel = [T::zero(); Tiles::PANEL_LEN];
    let zeros = [T::zero(); PANEL_DEPTH];

    let mut first_column = 0;
    while first_column < n {
        let columns = panel_columns.min(n - first_column);
        let mut first_step = 0;
        while first_step < k {
            let depth = panel_depth.min(k - first_step);
            let block = Block {
                first_step,
                depth,
                first_column,
                columns,
                width,
            };

            // Step 1: the block of b, one tile of columns after another.
            block.pack_b(b, k, n, layout, &mut b_panel);
            let b_tiles = b_panel
                .get(..block.tiles() * depth * width)
                .unwrap_or_default();

            // Step 2: every tile of rows of a against every tile of columns. Missing
            // rows of the last tile read zeros.
            for (a_tile, c_rows) in a.chunks(MR * k).zip(c.chunks_mut(MR * n)) {
                let rows = (a_tile.len() / k).min(c_rows.len() / n);
                let padding = zeros.get(..depth).unwrap_or_default();
                let mut a_rows: [&[T]; MR] = [padding; MR];
                for (slot, a_row) in a_rows.iter_mut().zip(a_tile.chunks_exact(k)) {
                    *slot = a_row
                        .get(first_step..first_step + depth)
                        .unwrap_or_default();
                }
                for (tile, b_tile) in b_tiles.chunks_exact(depth * width).enumerate() {
                    let (b_vectors, _) = b_tile.as_chunks::<L>();
                    let (b_steps, _) = b_vectors.as_chunks::<NV>();
                    let column = first_column + tile * width;
                    let mut sums = [[[T::zero(); L]; NV]; MR];
                    if first_step > 0 || accumulate {
                        load_tile(c_rows, n, rows, column, &mut sums);
                    }
                    sums = tile_kernel(a_rows, b_steps, sums);
                    store_tile(
                        c_rows,
                        n,
                        rows,
                        column,
                        (first_column + columns).min(n),
                        &sums,
                    );
                }
            }
            first_step += depth;
        }
        first_column += columns;
    }
}

/// The product for a few rows, one element at a time.
fn product_rows<T: Real>(
    a: &[T],
    b: &[T],
    k: usize,
    n: usize,
    c: &mut [T],
    layout: Layout,
    accumulate: bool,
) {
    for (a_row, c_row) in a.chunks_exact(k).zip(c.chunks_exact_mut(n)) {
        match layout {
            Layout::Transposed => {
                for (output, b_row) in c_row.iter_mut().zip(b.chunks_exact(k)) {
                    let start = if accumulate { *output } else { T::zero() };
                    *output = a_row
                        .iter()
                        .zip(b_row)
                        .fold(start, |sum, (&x, &y)| x.multiply_add(y, sum));
                }
            }
            Layout::Rows => {
                if !accumulate {
                    c_row.fill(T::zero());
                }
                for (&a_element, b_row) in a_row.iter().zip(b.chunks_exact(n)) {
                    for (output, &b_element) in c_row.iter_mut().zip(b_row) {
                        *output = a_element.multiply_add(b_element, *output);
                    }
                }
            }
        }
    }
}

/// One block of the product: summed indices `first_step..first_step + depth` and
/// columns `first_column..first_column + columns`, in tiles of `width` columns.
struct Block {
    first_step: usize,
    depth: usize,
    first_column: usize,
    columns: usize,
    width: usize,
}

impl Block {
    /// Returns the number of column tiles, the last one possibly partial.
    fn tiles(&self) -> usize {
        self.columns.div_ceil(self.width.max(1))
    }

    /// Copies the block of `b` into `panel`: for each tile of columns, `depth` rows
    /// of `width` values, zero past the last column.
    fn pack_b<T: Real>(&self, b: &[T], k: usize, n: usize, layout: Layout, panel: &mut [T]) {
        let tile_len = self.depth * self.width;
        for (tile, tile_panel) in panel
            .chunks_exact_mut(tile_len.max(1))
            .take(self.tiles())
            .enumerate()
        {
            let tile_column = self.first_column + tile * self.width;
            let valid = self
                .width
                .min(self.first_column + self.columns - tile_column);
            tile_panel.fill(T::zero());
            match layout {
                Layout::Rows => {
                    let b_rows = b.chunks_exact(n).skip(self.first_step);
                    for (panel_row, b_row) in tile_panel.chunks_exact_mut(self.width).zip(b_rows) {
                        let values = b_row.iter().skip(tile_column).take(valid);
                        for (slot, &value) in panel_row.iter_mut().zip(values) {
                            *slot = value;
                        }
                    }
                }
                Layout::Transposed => {
                    let b_rows = b.chunks_exact(k).skip(tile_column).take(valid);
                    for (j, b_row) in b_rows.enumerate() {
                        let values = b_row.iter().skip(self.first_step).take(self.depth);
                        let slots = tile_panel.iter_mut().skip(j).step_by(self.width.max(1));
                        for (slot, &value) in slots.zip(values) {
                            *slot = value;
                        }
                    }
                }
            }
        }
    }
}

/// Advances every element of a tile by one multiply-add per summed index: `a_rows`
/// holds the tile's four rows of `a` and `b_steps` the panel rows. The steps stop
/// at the shortest of them.
#[inline(always)]
fn tile_kernel<T: Real, const L: usize, const NV: usize>(
    a_rows: [&[T]; 4],
    b_steps: &[[[T; L]; NV]],
    mut sums: [[[T; L]; NV]; 4],
) -> [[[T; L]; NV]; 4] {
    let [row0, row1, row2, row3] = a_rows;
    let columns = row0.iter().zip(row1).zip(row2).zip(row3);
    for ((((&a0, &a1), &a2), &a3), b_step) in columns.zip(b_steps) {
        for (i, a_element) in [a0, a1, a2, a3].into_iter().enumerate() {
            for v in 0..NV {
                for lane in 0..L {
                    sums[i][v][lane] = a_element.multiply_add(b_step[v][lane], sums[i][v][lane]);
                }
            }
        }
    }
    sums
}

/// Loads a tile's partial sums from `c`, from column `column` of the first `rows`
/// rows; the rest stay zero.
#[inline(always)]
fn load_tile<T: Real, const L: usize, const MR: usize, const NV: usize>(
    c_rows: &[T],
    n: usize,
    rows: usize,
    column: usize,
    sums: &mut [[[T; L]; NV]; MR],
) {
    for (sum_row, c_row) in sums.iter_mut().zip(c_rows.chunks_exact(n)).take(rows) {
        let values = c_row.iter().skip(column);
        for (sum, &value) in sum_row.iter_mut().flatten().zip(values) {
            *sum = value;
        }
    }
}

/// Stores a tile into `c` at column `column` of the first `rows` rows, up to
/// column `end`.
#[inline(always)]
fn store_tile<T: Real, const L: usize, const MR: usize, const NV: usize>(
    c_rows: &mut [T],
    n: usize,
    rows: usize,
    column: usize,
    end: usize,
    sums: &[[[T; L]; NV]; MR],
) {
    let valid = end.saturating_sub(column);
    for (sum_row, c_row) in sums.iter().zip(c_rows.chunks_exact_mut(n)).take(rows) {
        let outputs = c_row.iter_mut().skip(column).take(valid);
        for (output, &sum) in outputs.zip(sum_row.iter().flatten()) {
            *output = sum;
        }
    }
}
