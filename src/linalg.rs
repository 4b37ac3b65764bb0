//! Dense matrix products on row-major slices, shared by every path.
//!
//! These helpers trust their callers: each public function checks lengths before it
//! calls them. A length that does not match makes the zipped iterators stop early
//! (a wrong result, caught by the tests), never an out-of-bounds access.

use crate::real::Real;

/// Returns the dot product of two equally long slices, summed left to right.
#[inline]
pub(crate) fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    a.iter()
        .zip(b)
        .fold(T::zero(), |sum, (&x, &y)| x.multiply_add(y, sum))
}

/// Computes `c = a b^T` for `a` (m x k), `b` (n x k) and `c` (m x n).
///
/// Every element of `c` is one [`dot`] of a row of `a` with a row of `b`, so the
/// result does not depend on how the rows are grouped into calls.
pub(crate) fn matmul_transposed<T: Real>(a: &[T], b: &[T], k: usize, n: usize, c: &mut [T]) {
    if k == 0 || n == 0 {
        c.fill(T::zero());
        return;
    }
    for (a_row, c_row) in a.chunks_exact(k).zip(c.chunks_exact_mut(n)) {
        for (b_row, c_element) in b.chunks_exact(k).zip(c_row.iter_mut()) {
            *c_element = dot(a_row, b_row);
        }
    }
}

/// Computes `c = a b` for `a` (m x k), `b` (k x n) and `c` (m x n).
///
/// Each element sums its k products in order of k, as [`dot`] does.
pub(crate) fn matmul<T: Real>(a: &[T], b: &[T], k: usize, n: usize, c: &mut [T]) {
    if n == 0 {
        return;
    }
    c.fill(T::zero());
    if k == 0 {
        return;
    }
    for (a_row, c_row) in a.chunks_exact(k).zip(c.chunks_exact_mut(n)) {
        for (&a_element, b_row) in a_row.iter().zip(b.chunks_exact(n)) {
            for (c_element, &b_element) in c_row.iter_mut().zip(b_row) {
                *c_element = a_element.multiply_add(b_element, *c_element);
            }
        }
    }
}

/// Returns the index of the first NaN or infinite element.
pub(crate) fn first_non_finite<T: Real>(values: &[T]) -> Option<usize> {
    values.iter().position(|value| !value.is_finite())
}
