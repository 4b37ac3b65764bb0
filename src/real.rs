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
    /// The default rounds twice (a multiply, then an add). `f32` and `f64` round once,
    /// with a fused multiply-add instruction, when the build can reach one. The `std`
    /// feature reaches it on a target with FMA hardware (x86 with `fma` enabled,
    /// AArch64). The `nightly-fma` feature reaches it on those targets and, for `f32`,
    /// on 32-bit Arm with a VFPv4 FPU such as the Cortex-M4F's. Otherwise they round
    /// twice too, because a software fused multiply-add is far slower than the
    /// rounding it saves.
    #[inline(always)]
    fn multiply_add(self, a: Self, b: Self) -> Self {
        self * a + b
    }
}

impl Real for f32 {
    #[cfg(fma_f32 = "core")]
    #[inline(always)]
    fn multiply_add(self, a: Self, b: Self) -> Self {
        core::f32::math::mul_add(self, a, b)
    }

    #[cfg(fma_f32 = "std")]
    #[inline(always)]
    fn multiply_add(self, a: Self, b: Self) -> Self {
        f32::mul_add(self, a, b)
    }
}

impl Real for f64 {
    #[cfg(fma_f64 = "core")]
    #[inline(always)]
    fn multiply_add(self, a: Self, b: Self) -> Self {
        core::f64::math::mul_add(self, a, b)
    }

    #[cfg(fma_f64 = "std")]
    #[inline(always)]
    fn multiply_add(self, a: Self, b: Self) -> Self {
        f64::mul_add(self, a, b)
    }
}
