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
//! loop over the panels has no bounds checks. Missing columns at the edges are
//! zeros in the panels, missing rows repeat a real row, and neither result is
//! stored. Targets without vector registers (`Tiles::PACK` false) skip the panels:
//! their tiles read both operands in place.
//!
//! These helpers trust their callers: each public function checks lengths before it
//! calls them. A length that does not match makes a product skip rows or columns
//! (a wrong result, caught by the tests), never an out-of-bounds access.

use crate::real::Real;

/// Tile and panel sizes of the products for one target.
///
/// Building with `RUSTFLAGS="--cfg scalar_tiles"` selects the scalar tiles on x86
/// too, so that the host tests cover the code firmware runs.
struct Tiles;

#[cfg(all(target_arch = "x86_64", not(scalar_tiles)))]
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
    /// Vectors in the panel of `b`: 32 KiB, which stays in the L1 cache.
    const PANEL_VECTORS: usize = 1024;
    /// Whether products copy blocks of `b` into a panel: vector tiles need the
    /// columns of `b^T` side by side.
    const PACK: bool = true;
}

#[cfg(any(not(target_arch = "x86_64"), scalar_tiles))]
impl Tiles {
    /// One lane: targets such as a Cortex-M have scalar float registers only.
    const VECTOR_BYTES: usize = 0;
    /// Rows of `a` per tile (every target uses 4): 4 x 4 accumulators and 8
    /// operands fit the 32 single-precision registers of a Cortex-M4F.
    const ROWS: usize = 4;
    /// Columns per tile (vectors of one lane).
    const VECTORS: usize = 4;
    /// Vectors (single values) in the panel of `b`, if one were used.
    const PANEL_VECTORS: usize = 1;
    /// Whether products copy blocks of `b` into a panel: scalar tiles read both
    /// operands in place, which saves the copies and the stack.
    const PACK: bool = false;
}

/// Most rows of `a` for which a product reads `b` in place instead of copying blocks
/// of it: copying `b` costs about as much as 16 rows of multiply-adds over it.
const DIRECT_ROWS: usize = 16;

/// Summed indices per pass of the scalar tiles, at most: their interleaved rows of
/// `a` take 4 of these values on the stack (1 KiB of `f32`).
const SCALAR_DEPTH: usize = 64;

/// Summed indices per pass of the in-place product, at most.
const DIRECT_DEPTH: usize = 256;

/// Rows of `b` (summed indices) per panel, at most. A deeper panel stores each tile
/// of `c` fewer times; 256 covers the widths of small models in one panel.
const PANEL_DEPTH: usize = 256;

/// Returns the dot product of two equally long slices, summed left to right.
#[inline]
pub(crate) fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    a.iter()
        .zip(b)
        .fold(T::zero(), |sum, (&x, &y)| x.multiply_add(y, sum))
}

/// Returns the index of the first NaN or infinite element.
pub(crate) fn first_non_finite<T: Real>(values: &[T]) -> Option<usize> {
    // x * 0 is zero for every finite x and NaN for NaN and the infinities, so these
    // sums are all zero exactly when every element is finite. That costs one
    // multiply-add per element and no branch; the search runs only after a failure.
    let mut sums = [T::zero(); 4];
    let (quads, rest) = values.as_chunks::<4>();
    for quad in quads {
        for (sum, &value) in sums.iter_mut().zip(quad) {
            *sum = value.multiply_add(T::zero(), *sum);
        }
    }
    for &value in rest {
        sums[0] = value.multiply_add(T::zero(), sums[0]);
    }
    if sums.iter().all(|&sum| sum == T::zero()) {
        return None;
    }
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

/// Computes `c = c + a b^T`: each element's chain starts from its value in `c`.
pub(crate) fn matmul_transposed_accumulate<T: Real>(
    a: &[T],
    b: &[T],
    k: usize,
    n: usize,
    c: &mut [T],
) {
    product(a, b, k, n, c, Layout::Transposed, true);
}

/// The storage order of the second operand.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `b` is `k x n`: row `p` contains the `p`-th term of every column.
    Rows,
    /// `b` is `n x k`: row `j` contains every term of column `j`.
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

/// Computes the product with tiles of `Tiles::ROWS` rows by `Tiles::VECTORS`
/// vectors of `L` columns.
fn product_lanes<T: Real, const L: usize>(
    a: &[T],
    b: &[T],
    k: usize,
    n: usize,
    c: &mut [T],
    layout: Layout,
    accumulate: bool,
) {
    let rows = (a.len() / k).min(c.len() / n);
    if rows < Tiles::ROWS {
        // Too few rows to repay packing a panel: each element directly.
        product_rows(a, b, k, n, c, layout, accumulate);
        return;
    }
    if Tiles::PACK && layout == Layout::Transposed && rows < n {
        // The panel contains a block of one operand for every tile of the other, so
        // pack the smaller one: compute c^T = b a^T, whose elements are the same
        // chains (x * y equals y * x exactly), and store each tile transposed.
        let swapped = Operands {
            a: b,
            rows: n,
            b: a,
            columns: rows,
            k,
            layout: Layout::Transposed,
            c_row_len: n,
            transposed_output: true,
        };
        swapped.run::<L>(c, accumulate);
    } else {
        let direct = Operands {
            a,
            rows,
            b,
            columns: n,
            k,
            layout,
            c_row_len: n,
            transposed_output: false,
        };
        direct.run::<L>(c, accumulate);
    }
}

/// [`tile_kernel`] reading the tile's columns of `b` in place: row `p` of the tile
/// is `b_rows[p * n + first_column..][..NV * L]`. The steps stop at the shortest
/// row of `a` or the last row of `b`.
#[inline(always)]
fn tile_kernel_strided<T: Real, const L: usize, const NV: usize>(
    a_rows: [&[T]; 4],
    b_rows: &[T],
    n: usize,
    first_column: usize,
    mut sums: [[[T; L]; NV]; 4],
) -> [[[T; L]; NV]; 4] {
    let [row0, row1, row2, row3] = a_rows;
    let columns = row0.iter().zip(row1).zip(row2).zip(row3);
    for ((((&a0, &a1), &a2), &a3), b_row) in columns.zip(b_rows.chunks(n.max(1))) {
        let Some(b_tile) = b_row.get(first_column..first_column + NV * L) else {
            break;
        };
        let (b_vectors, _) = b_tile.as_chunks::<L>();
        let b_step: [[T; L]; NV] =
            core::array::from_fn(|v| b_vectors.get(v).copied().unwrap_or([T::zero(); L]));
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

/// Advances a 4 x 4 tile of dot products by one multiply-add per summed index:
/// element `(i, j)` of row `i` of the interleaved `a_steps` and `b_rows[j]`. The
/// steps stop at the shortest.
#[inline(always)]
fn dot_kernel<T: Real>(
    a_steps: &[[T; 4]],
    b_rows: [&[T]; 4],
    mut sums: [[[T; 1]; 4]; 4],
) -> [[[T; 1]; 4]; 4] {
    for (a_step, b_step) in a_steps.iter().zip(quads(b_rows)) {
        for (sum_row, &a_element) in sums.iter_mut().zip(a_step) {
            for (sum, &b_element) in sum_row.iter_mut().zip(&b_step) {
                sum[0] = a_element.multiply_add(b_element, sum[0]);
            }
        }
    }
    sums
}

/// Returns the elements of four rows side by side, one array per index.
#[inline(always)]
fn quads<'a, T: Copy>(rows: [&'a [T]; 4]) -> impl Iterator<Item = [T; 4]> + 'a {
    let [row0, row1, row2, row3] = rows;
    row0.iter()
        .zip(row1)
        .zip(row2)
        .zip(row3)
        .map(|(((&x0, &x1), &x2), &x3)| [x0, x1, x2, x3])
}

/// A product `a op(b)`: `a` has `rows` rows of `k`, `op(b)` is `k x columns` (see
/// [`Layout`]). Element `(i, j)` goes to `c[i][j]`, or to `c[j][i]` with
/// `transposed_output`, in rows of `c_row_len`.
struct Operands<'a, T> {
    a: &'a [T],
    rows: usize,
    b: &'a [T],
    columns: usize,
    k: usize,
    layout: Layout,
    c_row_len: usize,
    transposed_output: bool,
}

impl<T: Real> Operands<'_, T> {
    /// Runs the product: register tiles over panels of `b`, or over `b` itself when
    /// `b` is stored by rows and `a` has too few rows to repay copying `b`.
    fn run<const L: usize>(&self, c: &mut [T], accumulate: bool) {
        let direct_rows = if Tiles::PACK { DIRECT_ROWS } else { usize::MAX };
        match self.layout {
            Layout::Rows if self.rows <= direct_rows && !self.transposed_output => {
                self.run_direct::<L>(c, accumulate);
            }
            Layout::Transposed if !Tiles::PACK && !self.transposed_output => {
                self.run_dots(c, accumulate);
            }
            _ => self.run_packed::<L>(c, accumulate),
        }
    }

    /// Runs `a b^T` with scalar tiles of 4 x 4 dot products that read the rows of
    /// both operands in place.
    fn run_dots(&self, c: &mut [T], accumulate: bool) {
        const MR: usize = Tiles::ROWS;
        let (k, n) = (self.k, self.columns);
        // The tile's rows of a, interleaved so that each step loads one array: four
        // streams instead of eight keeps the pointers in registers on a Cortex-M.
        let mut a_steps = [[T::zero(); MR]; SCALAR_DEPTH];
        let mut first_step = 0;
        while first_step < k {
            let depth = SCALAR_DEPTH.min(k - first_step);
            let a_tiles = self.a.chunks((MR * k).max(1)).take(self.rows.div_ceil(MR));
            for (row_tile, a_tile) in a_tiles.enumerate() {
                let a_rows = tile_rows::<T, MR>(a_tile, k, first_step, depth);
                for (slot, step) in a_steps.iter_mut().zip(quads(a_rows)) {
                    *slot = step;
                }
                let a_block = a_steps.get(..depth).unwrap_or_default();
                let b_tiles = self.b.chunks((MR * k).max(1)).take(n.div_ceil(MR));
                for (column_tile, b_tile) in b_tiles.enumerate() {
                    let b_rows = tile_rows::<T, MR>(b_tile, k, first_step, depth);
                    let place = TilePlace {
                        first_row: row_tile * MR,
                        rows: MR.min(self.rows - row_tile * MR),
                        first_column: column_tile * MR,
                        end_column: n,
                    };
                    let mut sums = [[[T::zero(); 1]; MR]; MR];
                    if first_step > 0 || accumulate {
                        self.load_tile(c, place, &mut sums);
                    }
                    sums = dot_kernel(a_block, b_rows, sums);
                    self.store_tile(c, place, &sums);
                }
            }
            first_step += depth;
        }
    }

    /// Runs the product with tiles that read the rows of `b` in place.
    fn run_direct<const L: usize>(&self, c: &mut [T], accumulate: bool) {
        const MR: usize = Tiles::ROWS;
        const NV: usize = Tiles::VECTORS;
        let (k, n) = (self.k, self.columns);
        let width = NV * L;
        let tiled_columns = n / width * width;

        let mut first_step = 0;
        while first_step < k {
            let depth = DIRECT_DEPTH.min(k - first_step);
            let b_rows = self.b.get(first_step * n..).unwrap_or_default();
            for (row_tile, a_tile) in self
                .a
                .chunks((MR * k).max(1))
                .take(self.rows.div_ceil(MR))
                .enumerate()
            {
                let first_row = row_tile * MR;
                let rows = MR.min(self.rows - first_row);
                let a_rows = tile_rows::<T, MR>(a_tile, k, first_step, depth);

                // Whole tiles of columns, then the rest one element at a time.
                for first_column in (0..tiled_columns).step_by(width.max(1)) {
                    let place = TilePlace {
                        first_row,
                        rows,
                        first_column,
                        end_column: first_column + width,
                    };
                    let mut sums = [[[T::zero(); L]; NV]; MR];
                    if first_step > 0 || accumulate {
                        self.load_tile(c, place, &mut sums);
                    }
                    sums = tile_kernel_strided(a_rows, b_rows, n, first_column, sums);
                    self.store_tile(c, place, &sums);
                }
                for column in tiled_columns..n {
                    for (r, a_row) in a_rows.iter().take(rows).enumerate() {
                        let Some(output) = c.get_mut((first_row + r) * self.c_row_len + column)
                        else {
                            continue;
                        };
                        let start = if first_step > 0 || accumulate {
                            *output
                        } else {
                            T::zero()
                        };
                        let b_column = b_rows.iter().skip(column).step_by(n.max(1));
                        *output = a_row
                            .iter()
                            .zip(b_column)
                            .fold(start, |sum, (&x, &y)| x.multiply_add(y, sum));
                    }
                }
            }
            first_step += depth;
        }
    }

    /// Runs the product in panels of `b` and register tiles.
    fn run_packed<const L: usize>(&self, c: &mut [T], accumulate: bool) {
        const MR: usize = Tiles::ROWS;
        const NV: usize = Tiles::VECTORS;
        let (k, n) = (self.k, self.columns);
        let width = NV * L;
        let mut panel_vectors = [[T::zero(); L]; Tiles::PANEL_VECTORS];
        let b_panel = panel_vectors.as_flattened_mut();
        // As deep as the panel allows with at least one tile of columns, then as
        // many tiles as fit.
        let panel_depth = k.min(PANEL_DEPTH).min(b_panel.len() / width).max(1);
        let panel_columns = (b_panel.len() / panel_depth / width).max(1) * width;
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
                block.pack_b(self.b, k, n, self.layout, b_panel);
                let b_tiles = b_panel
                    .get(..block.tiles() * depth * width)
                    .unwrap_or_default();

                // Step 2: every tile of rows of a against every tile of columns.
                for (row_tile, a_tile) in self
                    .a
                    .chunks((MR * k).max(1))
                    .take(self.rows.div_ceil(MR))
                    .enumerate()
                {
                    let first_row = row_tile * MR;
                    let rows = MR.min(self.rows - first_row);
                    let a_rows = tile_rows::<T, MR>(a_tile, k, first_step, depth);
                    for (tile, b_tile) in b_tiles.chunks_exact(depth * width).enumerate() {
                        let (b_vectors, _) = b_tile.as_chunks::<L>();
                        let (b_steps, _) = b_vectors.as_chunks::<NV>();
                        let place = TilePlace {
                            first_row,
                            rows,
                            first_column: first_column + tile * width,
                            end_column: first_column + columns,
                        };
                        let mut sums = [[[T::zero(); L]; NV]; MR];
                        if first_step > 0 || accumulate {
                            self.load_tile(c, place, &mut sums);
                        }
                        sums = tile_kernel(a_rows, b_steps, sums);
                        self.store_tile(c, place, &sums);
                    }
                }
                first_step += depth;
            }
            first_column += columns;
        }
    }

    /// Returns the flat index in `c` of element `(r, j)` of a tile, or `None` for a
    /// missing row or column.
    #[inline(always)]
    fn tile_index(&self, place: TilePlace, r: usize, j: usize) -> Option<usize> {
        let column = place.first_column + j;
        if r >= place.rows || column >= place.end_column {
            return None;
        }
        let row = place.first_row + r;
        Some(if self.transposed_output {
            column * self.c_row_len + row
        } else {
            row * self.c_row_len + column
        })
    }

    /// Loads a tile's partial sums from `c`; missing rows and columns stay zero.
    ///
    /// The loops have fixed trip counts, so the compiler keeps the tile in registers
    /// instead of an array in memory.
    #[inline(always)]
    fn load_tile<const L: usize, const MR: usize, const NV: usize>(
        &self,
        c: &[T],
        place: TilePlace,
        sums: &mut [[[T; L]; NV]; MR],
    ) {
        for (r, sum_row) in sums.iter_mut().enumerate() {
            for (v, sum_vector) in sum_row.iter_mut().enumerate() {
                for (lane, sum) in sum_vector.iter_mut().enumerate() {
                    if let Some(value) = self
                        .tile_index(place, r, v * L + lane)
                        .and_then(|index| c.get(index))
                    {
                        *sum = *value;
                    }
                }
            }
        }
    }

    /// Stores a tile into `c`, skipping missing rows and columns.
    #[inline(always)]
    fn store_tile<const L: usize, const MR: usize, const NV: usize>(
        &self,
        c: &mut [T],
        place: TilePlace,
        sums: &[[[T; L]; NV]; MR],
    ) {
        let whole_rows = !self.transposed_output && place.end_column >= place.first_column + NV * L;
        for (r, sum_row) in sums.iter().enumerate().take(place.rows) {
            let start = (place.first_row + r) * self.c_row_len + place.first_column;
            match c.get_mut(start..start + NV * L) {
                // A whole tile row: vector stores.
                Some(outputs) if whole_rows => {
                    let (vectors, _) = outputs.as_chunks_mut::<L>();
                    for (vector, sum) in vectors.iter_mut().zip(sum_row) {
                        *vector = *sum;
                    }
                }
                _ => {
                    for (v, sum_vector) in sum_row.iter().enumerate() {
                        for (lane, &sum) in sum_vector.iter().enumerate() {
                            let index = self.tile_index(place, r, v * L + lane);
                            if let Some(output) = index.and_then(|index| c.get_mut(index)) {
                                *output = sum;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Returns the parts `first_step..first_step + depth` of up to `MR` rows of `a`
/// (rows of `k`). A tile with fewer rows repeats its first row in the missing
/// places: their sums are computed but never stored, and no zero row is needed.
#[inline(always)]
fn tile_rows<T: Real, const MR: usize>(
    a_tile: &[T],
    k: usize,
    first_step: usize,
    depth: usize,
) -> [&[T]; MR] {
    let mut parts = a_tile
        .chunks_exact(k.max(1))
        .map(|row| row.get(first_step..first_step + depth).unwrap_or_default());
    let first = parts.next().unwrap_or_default();
    let mut rows = [first; MR];
    for (slot, part) in rows.iter_mut().skip(1).zip(parts) {
        *slot = part;
    }
    rows
}

/// The place of a tile in `c`: its first row and number of valid rows, its first
/// column and the end of the valid columns.
#[derive(Clone, Copy)]
struct TilePlace {
    first_row: usize,
    rows: usize,
    first_column: usize,
    end_column: usize,
}

/// Computes the product for a few rows, one element at a time.
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
/// are the tile's four rows of `a` and `b_steps` the panel rows. The steps stop
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
