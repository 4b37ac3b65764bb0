//! Structured values decoded from raw fuzzer bytes, shared by the kernel bodies.
//!
//! Every decoder reads bytes from the front and treats a missing byte as 0, so any
//! byte string decodes, and an input that ends early selects the first option of
//! each remaining choice: exact lengths and zero values.
//!
//! Value slices start with a mode byte (see [`Input::values`]):
//!
//! | mode byte | values |
//! |---|---|
//! | `0x00..=0x7f` | tame: one byte each, `(byte as i8) / 128`, in `[-1, 1)` |
//! | `0x80..=0xbf` | raw: the little-endian bits of the float type (8 or 4 bytes each) |
//! | `0xc0..=0xff` | mixed: one byte picks tame, a special value or raw bits, each |
//!
//! Seeds can therefore carry exact values in raw mode, and the fuzzer reaches NaN,
//! infinities, subnormals and values near the overflow threshold through the other
//! modes.

#![allow(dead_code)]

use lora_attention::{Real, Scaling};

/// Maximum length of any slice a body allocates, in elements. Lengths come from the
/// input, never from a shape, so a huge shape cannot make a body allocate much.
pub const MAX_SLICE_LEN: usize = 1 << 12;

/// Dimension values far beyond what a slice of [`MAX_SLICE_LEN`] can hold, chosen to
/// sit on the edges of `usize` overflow in products and squares.
const HUGE_DIMENSIONS: [usize; 16] = [
    usize::MAX,
    usize::MAX - 1,
    usize::MAX / 2,
    usize::MAX / 2 + 1,
    usize::MAX / 3,
    1 << 32,
    (1 << 32) + 1,
    (1 << 32) - 1,
    1 << 31,
    3_037_000_500, // just above the square root of 2^63
    1 << 48,
    1 << 63,
    1 << 20,
    65_537,
    100_000,
    4_097,
];

/// A float type the bodies decode: `f32` or `f64`.
pub trait FuzzFloat: Real + std::fmt::Debug {
    /// Number of bytes of the raw encoding.
    const BYTES: usize;

    /// Converts a value that is exact in both types (or rounds it, for `f32`).
    fn from_f64(value: f64) -> Self;

    /// Builds a value from the low [`FuzzFloat::BYTES`] bytes of `bits`.
    fn from_raw(bits: u64) -> Self;

    /// Returns the bit pattern, to compare slices that may hold NaN.
    fn to_raw(self) -> u64;

    /// Returns the value as `f64`, exactly.
    fn widen(self) -> f64;
}

impl FuzzFloat for f64 {
    const BYTES: usize = 8;

    fn from_f64(value: f64) -> Self {
        value
    }

    fn from_raw(bits: u64) -> Self {
        f64::from_bits(bits)
    }

    fn to_raw(self) -> u64 {
        self.to_bits()
    }

    fn widen(self) -> f64 {
        self
    }
}

impl FuzzFloat for f32 {
    const BYTES: usize = 4;

    fn from_f64(value: f64) -> Self {
        value as f32
    }

    fn from_raw(bits: u64) -> Self {
        f32::from_bits(bits as u32)
    }

    fn to_raw(self) -> u64 {
        u64::from(self.to_bits())
    }

    fn widen(self) -> f64 {
        f64::from(self)
    }
}

/// Special values the mixed mode picks from, as `f64`. The `f32` decoder rounds
/// them, so the largest ones become infinities there and the subnormals zeros.
const SPECIAL_VALUES: [f64; 24] = [
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    0.0,
    -0.0,
    f64::MAX,
    -f64::MAX,
    f64::MIN_POSITIVE,
    -f64::MIN_POSITIVE,
    4.9e-324, // the smallest subnormal
    1e300,
    -1e300,
    1e154, // its square overflows f64
    -1e154,
    1e-300,
    3.4e38, // near f32::MAX
    -3.4e38,
    1.9e19, // its square overflows f32
    1e-45,
    1e10,
    -1e10,
    709.0, // exp(709) is near the f64 limit
    -745.0,
    1.0,
];

/// A cursor over fuzzer bytes.
pub struct Input<'a> {
    bytes: &'a [u8],
    /// Whether every value slice and scale so far was decoded in tame mode.
    tame: bool,
}

impl<'a> Input<'a> {
    /// Creates a cursor at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Input { bytes, tame: true }
    }

    /// Returns whether every value decoded so far is tame: finite, in `[-1, 1)`.
    pub fn is_tame(&self) -> bool {
        self.tame
    }

    /// Takes one byte, or 0 at the end of the input.
    pub fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&byte, rest)) => {
                self.bytes = rest;
                byte
            }
            None => 0,
        }
    }

    /// Takes one byte and returns its lowest bit.
    pub fn flag(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    /// Takes one byte and returns it modulo `count`.
    pub fn choice(&mut self, count: u8) -> u8 {
        self.byte() % count.max(1)
    }

    /// Takes `count` bytes (at most 8) as a little-endian integer.
    pub fn bits(&mut self, count: usize) -> u64 {
        let mut bits = 0_u64;
        for index in 0..count.min(8) {
            bits |= u64::from(self.byte()) << (8 * index);
        }
        bits
    }

    /// Decodes a dimension: usually `0..=max_small`, sometimes a huge value.
    pub fn dimension(&mut self, max_small: usize) -> usize {
        let byte = self.byte();
        if byte < 0xf0 {
            usize::from(byte) % (max_small + 1)
        } else {
            HUGE_DIMENSIONS[usize::from(byte - 0xf0)]
        }
    }

    /// Decodes a slice length near `expected`: usually exactly it, sometimes one
    /// less or one more, zero or a small arbitrary length. The result never exceeds
    /// [`MAX_SLICE_LEN`]. An expected length beyond it (or `None`, an overflow)
    /// becomes a small arbitrary length, which the kernel must reject.
    pub fn length(&mut self, expected: Option<usize>) -> usize {
        let byte = self.byte();
        let arbitrary = usize::from(byte & 0x3f);
        let Some(expected) = expected.filter(|&len| len <= MAX_SLICE_LEN) else {
            return arbitrary;
        };
        let len = match byte {
            0x00..=0xbf => expected,
            0xc0..=0xcf => expected.saturating_sub(1),
            0xd0..=0xdf => expected + 1,
            0xe0..=0xe7 => 0,
            _ => arbitrary,
        };
        len.min(MAX_SLICE_LEN)
    }

    /// Decodes `len` values after a mode byte (see the module documentation).
    pub fn values<T: FuzzFloat>(&mut self, len: usize) -> Vec<T> {
        let mode = self.byte();
        match mode {
            0x00..=0x7f => (0..len).map(|_| self.tame_value()).collect(),
            0x80..=0xbf => {
                self.tame = false;
                (0..len).map(|_| self.raw_value()).collect()
            }
            _ => {
                self.tame = false;
                (0..len).map(|_| self.mixed_value()).collect()
            }
        }
    }

    /// Decodes one tame value, `(byte as i8) / 128`.
    pub fn tame_value<T: FuzzFloat>(&mut self) -> T {
        T::from_f64(f64::from(self.byte() as i8) / 128.0)
    }

    /// Decodes one value from its raw bits.
    fn raw_value<T: FuzzFloat>(&mut self) -> T {
        T::from_raw(self.bits(T::BYTES))
    }

    /// Decodes one value in mixed mode.
    fn mixed_value<T: FuzzFloat>(&mut self) -> T {
        let byte = self.byte();
        match byte {
            0x00..=0x7f => self.tame_value(),
            0x80..=0xdf => {
                let special = SPECIAL_VALUES[usize::from(byte - 0x80) % SPECIAL_VALUES.len()];
                T::from_f64(special)
            }
            _ => self.raw_value(),
        }
    }

    /// Decodes one scalar such as a scale numerator: tame (in `[-0.5, 0.5)`) when the
    /// first byte is below 0x80, else a special value or raw bits, which marks the
    /// input as not tame.
    pub fn value<T: FuzzFloat>(&mut self) -> T {
        let byte = self.byte();
        if byte < 0x80 {
            return T::from_f64(f64::from(byte) / 128.0 - 0.5);
        }
        self.tame = false;
        if byte < 0xe0 {
            let special = SPECIAL_VALUES[usize::from(byte - 0x80) % SPECIAL_VALUES.len()];
            T::from_f64(special)
        } else {
            self.raw_value()
        }
    }

    /// Decodes how an adapter is scaled, with a tame or arbitrary numerator.
    pub fn scaling<T: FuzzFloat>(&mut self) -> Scaling<T> {
        match self.choice(4) {
            0 => Scaling::One,
            1 => Scaling::AlphaOverRank {
                alpha: self.value(),
            },
            2 => Scaling::AlphaOverSqrtRank {
                alpha: self.value(),
            },
            _ => Scaling::Factor(self.value()),
        }
    }
}

/// Fills `values` with a finite sentinel, so that a test can tell whether a call
/// wrote anything.
pub fn fill_sentinel<T: FuzzFloat>(values: &mut [T]) {
    values.fill(T::from_f64(SENTINEL));
}

/// The value [`fill_sentinel`] writes: finite, and unlike any result.
pub const SENTINEL: f64 = -7_777.25;

/// Returns whether every element is still the sentinel.
pub fn is_untouched<T: FuzzFloat>(values: &[T]) -> bool {
    values
        .iter()
        .all(|value| value.to_raw() == T::from_f64(SENTINEL).to_raw())
}

/// Returns whether every element is NaN.
pub fn is_all_nan<T: FuzzFloat>(values: &[T]) -> bool {
    values.iter().all(|value| value.is_nan())
}

/// Returns whether every element is finite.
pub fn is_all_finite<T: FuzzFloat>(values: &[T]) -> bool {
    values.iter().all(|value| value.is_finite())
}

/// Returns the largest absolute difference between two equally long slices,
/// divided by `1 + ` the largest magnitude in either.
pub fn relative_difference(first: &[f64], second: &[f64]) -> f64 {
    assert_eq!(
        first.len(),
        second.len(),
        "compared outputs differ in length"
    );
    let magnitude = first
        .iter()
        .chain(second)
        .fold(0.0_f64, |max, value| max.max(value.abs()));
    let worst = first
        .iter()
        .zip(second)
        .fold(0.0_f64, |max, (a, b)| max.max((a - b).abs()));
    worst / (1.0 + magnitude)
}
