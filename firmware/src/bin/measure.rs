//! Runs one single-head path at f32 a given number of times, for instruction
//! counts, and prints the RAM it used.
//!
//! The command line (QEMU's `-semihosting-config arg=...`) is
//! `measure PATH SEQ_LEN DIM RANK CALLS [BLOCK_ROWS]`, with PATH one of
//! `attention`, `attention_blocked`, `attention_factored` or `attention_streaming`,
//! and BLOCK_ROWS (default 16) the block size of the last three. A shape can be at
//! most (32, 64, 8). Everything but the calls is the same whatever CALLS is, so
//! the instructions of a run with two calls minus those of a run with one are the
//! instructions of one computation. The inputs are fixed pseudo-random values in
//! flash; the firmware checks only that each call succeeds with finite outputs.
#![no_std]
#![no_main]

use core::fmt::Write;
use core::hint::black_box;

use cortex_m_rt::entry;
use lora_attention::{
    attention, attention_blocked, attention_factored, attention_streaming, Adapter, Error, Scaling,
    Shape, Weights,
};
use lora_attention_firmware::host::{self, Console};
use lora_attention_firmware::stack::{self, Measured};

/// The largest shape the static buffers hold.
const MAX: Shape = Shape::new(32, 64, 8);
const MAX_INPUT_LEN: usize = MAX.seq_len * MAX.dim;
const MAX_WEIGHT_LEN: usize = MAX.dim * MAX.dim;
const MAX_ADAPTER_LEN: usize = MAX.rank * MAX.dim;
const MAX_SCRATCH_LEN: usize = match MAX.attention_scratch_len() {
    Some(len) => len,
    None => panic!("the largest shape does not fit in usize"),
};

/// Query rows per block when the command line gives none.
const DEFAULT_BLOCK_ROWS: usize = 16;

/// Returns `N` values uniform in `[-scale, scale)` from a linear congruential
/// generator (multiplier 1664525, increment 1013904223), computed at compile time.
const fn uniform<const N: usize>(seed: u32, scale: f32) -> [f32; N] {
    let mut values = [0.0; N];
    let mut state = seed;
    let mut index = 0;
    while index < N {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        // The top 24 bits, as a fraction in [0, 1).
        let fraction = (state >> 8) as f32 / 16_777_216.0;
        values[index] = (2.0 * fraction - 1.0) * scale;
        index += 1;
    }
    values
}

// Inputs in [-1, 1), weights scaled by 1/8 = 1/sqrt(64) as a common initialisation
// does, so that scores stay moderate and the softmax is not one-hot.
static X: [f32; MAX_INPUT_LEN] = uniform(1, 1.0);
static WQ: [f32; MAX_WEIGHT_LEN] = uniform(2, 0.125);
static WK: [f32; MAX_WEIGHT_LEN] = uniform(3, 0.125);
static WV: [f32; MAX_WEIGHT_LEN] = uniform(4, 0.125);
static A: [f32; MAX_ADAPTER_LEN] = uniform(5, 0.125);
static B: [f32; MAX_ADAPTER_LEN] = uniform(6, 0.125);

/// A single-head path of the kernel.
#[derive(Clone, Copy)]
enum Path {
    Attention,
    Blocked,
    Factored,
    Streaming,
}

/// The measurement a run makes, from its command line.
struct Request {
    path: Path,
    shape: Shape,
    calls: usize,
    block_rows: usize,
}

/// Parses `PATH SEQ_LEN DIM RANK CALLS [BLOCK_ROWS]`, after the program name.
fn parse(line: &str) -> Option<Request> {
    let mut words = line.split_whitespace().skip(1);
    let path = match words.next()? {
        "attention" => Path::Attention,
        "attention_blocked" => Path::Blocked,
        "attention_factored" => Path::Factored,
        "attention_streaming" => Path::Streaming,
        _ => return None,
    };
    let mut number = || words.next()?.parse::<usize>().ok();
    let shape = Shape::new(number()?, number()?, number()?);
    let calls = number()?;
    let block_rows = number().unwrap_or(DEFAULT_BLOCK_ROWS);
    let fits = shape.seq_len <= MAX.seq_len && shape.dim <= MAX.dim && shape.rank <= MAX.rank;
    fits.then_some(Request {
        path,
        shape,
        calls,
        block_rows,
    })
}

impl Request {
    /// Returns the scratch values the path needs.
    fn scratch_len(&self) -> Option<usize> {
        match self.path {
            Path::Attention => self.shape.attention_scratch_len(),
            Path::Blocked => self.shape.blocked_attention_scratch_len(self.block_rows),
            Path::Factored => self.shape.factored_scratch_len(self.block_rows),
            Path::Streaming => self.shape.streaming_scratch_len(self.block_rows),
        }
    }

    /// Runs the path `calls` times and measures the stack of all calls together.
    ///
    /// Each path is its own closure type, so that the measured frame contains the
    /// locals of that path only. The stack is painted and scanned once, so this
    /// costs the same instructions whatever the number of calls.
    fn run(
        &self,
        weights: &Weights<'_, f32>,
        x: &[f32],
        scratch: &mut [f32],
        out: &mut [f32],
    ) -> Measured<Result<(), Error>> {
        let shape = || black_box(self.shape);
        let rows = || black_box(self.block_rows);
        match self.path {
            Path::Attention => {
                stack::measure(|| self.repeat(|| attention(shape(), x, weights, scratch, out)))
            }
            Path::Blocked => stack::measure(|| {
                self.repeat(|| attention_blocked(shape(), x, weights, rows(), scratch, out))
            }),
            Path::Factored => stack::measure(|| {
                self.repeat(|| attention_factored(shape(), x, weights, rows(), scratch, out))
            }),
            Path::Streaming => stack::measure(|| {
                self.repeat(|| attention_streaming(shape(), x, weights, rows(), scratch, out))
            }),
        }
    }

    /// Calls `path` `calls` times, stopping at the first error.
    fn repeat(&self, mut path: impl FnMut() -> Result<(), Error>) -> Result<(), Error> {
        for _ in 0..self.calls {
            path()?;
        }
        Ok(())
    }
}

#[entry]
fn main() -> ! {
    // cortex-m-rt turns these into `&'static mut` references to statics in .bss.
    static mut SCRATCH: [f32; MAX_SCRATCH_LEN] = [0.0; MAX_SCRATCH_LEN];
    static mut OUT: [f32; MAX_INPUT_LEN] = [0.0; MAX_INPUT_LEN];

    let mut console = Console::new();
    let mut line = [0_u8; 128];
    let Some(request) = host::command_line(&mut line).and_then(parse) else {
        console.write_bytes(
            b"usage: measure PATH SEQ_LEN DIM RANK CALLS [BLOCK_ROWS], shape at most (32, 64, 8)\n",
        );
        console.exit(false)
    };

    let Shape { seq_len, dim, rank } = request.shape;
    let input_len = seq_len * dim;
    let (Some(x), Some(out), Some(scratch_len)) = (
        X.get(..input_len),
        OUT.get_mut(..input_len),
        request.scratch_len(),
    ) else {
        console.exit(false)
    };
    let Some(scratch) = SCRATCH.get_mut(..scratch_len) else {
        console.write_bytes(b"the scratch does not fit in the static buffer\n");
        console.exit(false)
    };
    // Leading parts of the largest matrices are valid row-major data of a
    // smaller shape.
    let (Some(wq), Some(wk), Some(wv), Some(a), Some(b)) = (
        WQ.get(..dim * dim),
        WK.get(..dim * dim),
        WV.get(..dim * dim),
        A.get(..rank * dim),
        B.get(..dim * rank),
    ) else {
        console.exit(false)
    };
    let weights = Weights {
        wq,
        wk,
        wv,
        adapter: Adapter::new(a, b, Scaling::One),
    };

    let measured = request.run(&weights, x, &mut *scratch, &mut *out);
    let finite = out.iter().all(|value| value.is_finite());

    let out_bytes = core::mem::size_of_val(&*out);
    let scratch_bytes = core::mem::size_of_val(&*scratch);
    let _ = writeln!(
        console,
        "measure: static buffers {} B (out {out_bytes} B, scratch {scratch_bytes} B), peak stack {} B",
        out_bytes + scratch_bytes,
        measured.peak_stack,
    );
    if let Err(error) = measured.result {
        let _ = writeln!(console, "measure: the kernel returned an error: {error}");
    }
    console.exit(measured.result.is_ok() && finite && !measured.reached_statics)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let mut console = Console::new();
    let _ = writeln!(console, "panicked: {info}");
    console.exit(false)
}
