//! The float types the kernels compute with.

use num_traits::Float;

/// A floating-point type the kernels can compute with: `f32` and `f64`.
///
/// Every kernel is generic over this trait. It adds one operation to
/// [`num_traits::Float`], a multiply-add that the inner loops use. Another `Float`
/// type can use the kernels with an empty `impl Real for MyFloat {}`, which gets the
/// unfused default.
pub trait Real: Float {
    /// Returns `self * a + b`.
    ///
    /// The default rounds twice (a multiply, then an add). The `f32` and `f64`
    /// implementations do the same unless the `std` feature is on and the target has a
    /// fused multiply-add instruction, in which case they round once.
    #[inline(always)]
    fn multiply_add(self, a: Self, b: Self) -> Self {
        self * a + b
    }
}

impl Real for f32 {
    #[cfg(all(feature = "std", target_feature = "fma"))]
    #[inline(always)]
    fn multiply_add(self, a: Self, b: Self) -> Self {
        f32::mul_add(self, a, b)
    }
}

impl Real for f64 {
    #[cfg(all(feature = "std", target_feature = "fma"))]
    #[inline(always)]
    fn multiply_add(self, a: Self, b: Self) -> Self {
        f64::mul_add(self, a, b)
    }
}
