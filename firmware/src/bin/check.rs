//! Runs the kernel on the shared cases and prints every judge line over
//! semihosting; exits 0 only when every result agrees with its expected values.
//!
//! - f64 judge runs must print exactly the case's `.out` text;
//! - f32 runs must agree with the float64 reference within 1e-5 of the largest
//!   output magnitude, the tolerance of the host tests;
//! - the streaming path runs `044-b100-d32-r16`, whose straightforward scratch
//!   alone would exceed the 64 KiB of RAM this firmware is linked for.
#![no_std]
#![no_main]

use core::fmt::{self, Write};

use cortex_m_rt::entry;
use lora_attention::{
    attention, attention_blocked, attention_factored, attention_streaming, write_judge_line, Error,
};
use lora_attention_firmware::cases::{self, B100_D32_R16};
use lora_attention_firmware::compare::magnitude;
use lora_attention_firmware::exercise::{self, agree, Failure, Outcome, Passed, Report};
use lora_attention_firmware::host::Console;
use lora_attention_firmware::inputs::{JudgeCase, JudgeInputs};
use lora_attention_firmware::stack::{self, Measured};
use lora_attention_firmware::Element;

/// The RAM the firmware is linked for (memory/mps2-an386.x).
const RAM_BYTES: usize = 64 * 1024;

/// The large case: b = 100, d = 32, r = 16.
const LARGE: lora_attention::Shape = lora_attention::Shape::new(100, 32, 16);

/// Output values of the large case.
const LARGE_OUT_LEN: usize = match LARGE.input_len() {
    Some(len) => len,
    None => panic!("the large case does not fit in usize"),
};

/// Query rows per block of the f32 streaming run.
const F32_BLOCK_ROWS: usize = 16;

/// Query rows per block of the f64 streaming run, whose output alone takes 25 KiB.
const F64_BLOCK_ROWS: usize = 1;

/// Scratch values of the f32 streaming run.
const F32_SCRATCH_LEN: usize = match LARGE.streaming_scratch_len(F32_BLOCK_ROWS) {
    Some(len) => len,
    None => panic!("the large case does not fit in usize"),
};

/// Scratch values of the f64 streaming run.
const F64_SCRATCH_LEN: usize = match LARGE.streaming_scratch_len(F64_BLOCK_ROWS) {
    Some(len) => len,
    None => panic!("the large case does not fit in usize"),
};

/// Scratch bytes `attention` would need for the large case at f32.
const STRAIGHTFORWARD_F32_BYTES: usize = match LARGE.attention_scratch_len() {
    Some(len) => len * 4,
    None => panic!("the large case does not fit in usize"),
};

// The point of the streaming run: the straightforward path cannot run here.
const _: () = assert!(STRAIGHTFORWARD_F32_BYTES > RAM_BYTES);

#[entry]
fn main() -> ! {
    // cortex-m-rt turns these into `&'static mut` references to statics in .bss.
    static mut OUT_F32: [f32; LARGE_OUT_LEN] = [0.0; LARGE_OUT_LEN];
    static mut SCRATCH_F32: [f32; F32_SCRATCH_LEN] = [0.0; F32_SCRATCH_LEN];
    static mut OUT_F64: [f64; LARGE_OUT_LEN] = [0.0; LARGE_OUT_LEN];
    static mut SCRATCH_F64: [f64; F64_SCRATCH_LEN] = [0.0; F64_SCRATCH_LEN];

    let mut checks = Checks {
        console: Console::new(),
        passed: 0,
        failed: 0,
        deepest_stack: 0,
    };

    // Step 1: the judge samples, every single-head path, f64 text and f32 values.
    let measured = stack::measure(|| checks.judge_samples());
    checks.note_stack(&measured);

    // Step 2: every entry point on the samples and the generalised cases,
    // decoding included.
    checks.every_entry_point::<f64>();
    checks.every_entry_point::<f32>();

    // Step 3: the streaming path on the large case, at f32 with the static buffers
    // measured, then at f64 against the judge text.
    checks.large_streaming_f32(OUT_F32, SCRATCH_F32);
    checks.large_streaming_f64(OUT_F64, SCRATCH_F64);

    // Step 4: the RAM the whole run needed.
    let statics = stack::static_bytes();
    let total = statics + checks.deepest_stack;
    let _ = writeln!(
        checks.console,
        "ram: whole run: statics {statics} B, deepest stack {} B, total {total} B of {RAM_BYTES} B",
        checks.deepest_stack,
    );
    let passed = checks.passed;
    let failed = checks.failed;
    let _ = writeln!(checks.console, "check: {passed} passed, {failed} failed");
    checks.console.exit(failed == 0)
}

/// Counts and prints the outcome of every check.
struct Checks {
    console: Console,
    passed: usize,
    failed: usize,
    /// The deepest stack of any phase, counted from the top of RAM, in bytes.
    deepest_stack: usize,
}

impl Report for Checks {
    fn record(
        &mut self,
        element: &'static str,
        case: &'static str,
        check: &'static str,
        outcome: Outcome,
    ) {
        let console = &mut self.console;
        let _ = match outcome {
            Ok(passed) => {
                self.passed += 1;
                write!(console, "ok     {element} {case} {check}: ").and_then(|()| match passed {
                    Passed::Within(error) => writeln!(console, "relative error {error:.1e}"),
                    Passed::Rejected => writeln!(console, "rejected with the expected error"),
                    Passed::Exact => writeln!(console, "as expected"),
                    Passed::SameText => writeln!(console, "prints the .out text exactly"),
                })
            }
            Err(failure) => {
                self.failed += 1;
                write!(console, "FAILED {element} {case} {check}: ")
                    .and_then(|()| describe(console, failure))
            }
        };
    }
}

/// Prints why a check failed.
fn describe(console: &mut Console, failure: Failure) -> fmt::Result {
    match failure {
        Failure::Kernel(error) => writeln!(console, "the kernel returned an error: {error}"),
        Failure::TooFar { error, tolerance } => {
            writeln!(
                console,
                "relative error {error:.2e} is above the tolerance {tolerance:.0e}"
            )
        }
        Failure::Unexpected => {
            writeln!(console, "the kernel returned another result than expected")
        }
        Failure::BufferTooSmall => {
            writeln!(console, "the firmware's buffers are too small for the case")
        }
        Failure::StackOverflow => {
            writeln!(
                console,
                "the stack grew into the statics, so the RAM is too small"
            )
        }
    }
}

/// Output and scratch on the stack, enough for the judge samples.
const SMALL_LEN: usize = 64;

impl Checks {
    /// Runs the judge samples: every single-head path at f64 against the `.out`
    /// text, and `attention` at f32 against the float64 reference.
    fn judge_samples(&mut self) {
        for (inputs, case) in [
            (<f64 as Element>::sample_1(), &cases::SAMPLE_1),
            (<f64 as Element>::sample_2(), &cases::SAMPLE_2),
        ] {
            self.judge_text(inputs, case);
        }
        for (inputs, case) in [
            (<f32 as Element>::sample_1(), &cases::SAMPLE_1),
            (<f32 as Element>::sample_2(), &cases::SAMPLE_2),
        ] {
            self.judge_values(inputs, case);
        }
    }

    /// Prints the f64 judge line of every single-head path and compares it with the
    /// case's `.out` text.
    fn judge_text(&mut self, inputs: &JudgeInputs<f64>, case: &JudgeCase) {
        let weights = inputs.weights();
        let shape = inputs.shape;
        let paths: [(
            &'static str,
            &dyn Fn(&mut [f64], &mut [f64]) -> Result<(), Error>,
        ); 4] = [
            ("judge line of attention", &|scratch, out| {
                attention(shape, inputs.x, &weights, scratch, out)
            }),
            (
                "judge line of attention_blocked, 1 score row",
                &|scratch, out| attention_blocked(shape, inputs.x, &weights, 1, scratch, out),
            ),
            (
                "judge line of attention_factored, 1 score row",
                &|scratch, out| attention_factored(shape, inputs.x, &weights, 1, scratch, out),
            ),
            (
                "judge line of attention_streaming, 1 row per block",
                &|scratch, out| attention_streaming(shape, inputs.x, &weights, 1, scratch, out),
            ),
        ];
        for (check, path) in paths {
            let mut scratch = [f64::NAN; SMALL_LEN];
            let mut out = [f64::NAN; SMALL_LEN];
            let outcome = (|| {
                let out = out
                    .get_mut(..inputs.x.len())
                    .ok_or(Failure::BufferTooSmall)?;
                path(&mut scratch, out)?;
                self.print_and_compare_text(out, case)
            })();
            self.record("f64", case.name, check, outcome);
        }
    }

    /// Prints the judge line of `values` and compares it with `case`'s `.out` text.
    fn print_and_compare_text(&mut self, values: &[f64], case: &JudgeCase) -> Outcome {
        let mut text = TextCheck {
            expected: case.expected_text,
            offset: 0,
            matches: true,
            console: &mut self.console,
        };
        let written = write_judge_line(&mut text, values);
        let matches = written.is_ok() && text.matches && text.offset == case.expected_text.len();
        if matches {
            Ok(Passed::SameText)
        } else {
            let _ = writeln!(
                self.console,
                "(expected {}.out: {})",
                case.name,
                case.expected_text.trim_end()
            );
            Err(Failure::Unexpected)
        }
    }

    /// Prints the f32 judge line of `attention` and compares its values with the
    /// float64 reference.
    fn judge_values(&mut self, inputs: &JudgeInputs<f32>, case: &JudgeCase) {
        let mut scratch = [f32::NAN; SMALL_LEN];
        let mut out = [f32::NAN; SMALL_LEN];
        let outcome = (|| {
            let out = out
                .get_mut(..inputs.x.len())
                .ok_or(Failure::BufferTooSmall)?;
            attention(inputs.shape, inputs.x, &inputs.weights(), &mut scratch, out)?;
            let _ = write_judge_line(&mut self.console, out);
            agree(out, case.reference, magnitude(case.reference))
        })();
        self.record("f32", case.name, "judge line of attention", outcome);
    }

    /// Runs every computation entry point through the `exercise` module, with the
    /// peak stack measured.
    fn every_entry_point<T: Element>(&mut self) {
        let measured = stack::measure(|| exercise::run_all::<T>(self));
        let _ = writeln!(
            self.console,
            "ram: every entry point {}: peak stack {} B, buffers on the stack included",
            T::NAME,
            measured.peak_stack,
        );
        self.note_stack(&measured);
    }

    /// Runs the streaming path on the large case at f32, with 16 rows per block, and
    /// compares it with the float64 reference.
    fn large_streaming_f32(&mut self, out: &mut [f32], scratch: &mut [f32]) {
        let inputs = <f32 as Element>::b100_d32_r16();
        let weights = inputs.weights();
        let measured = stack::measure(|| {
            attention_streaming(LARGE, inputs.x, &weights, F32_BLOCK_ROWS, scratch, out)
        });
        let outcome = measured.result.map_err(Failure::from).and_then(|()| {
            agree(
                out,
                B100_D32_R16.reference,
                magnitude(B100_D32_R16.reference),
            )
        });
        let _ = write_judge_line(&mut self.console, out);
        self.record(
            "f32",
            B100_D32_R16.name,
            "judge line of attention_streaming, 16 rows per block",
            outcome,
        );

        let out_bytes = core::mem::size_of_val(out);
        let scratch_bytes = core::mem::size_of_val(scratch);
        let _ = writeln!(
            self.console,
            "ram: {} f32 attention_streaming: static buffers {} B (out {out_bytes} B, scratch {scratch_bytes} B), \
             peak stack {} B; attention would need {STRAIGHTFORWARD_F32_BYTES} B of scratch",
            B100_D32_R16.name,
            out_bytes + scratch_bytes,
            measured.peak_stack,
        );
        self.note_stack(&measured);
    }

    /// Runs the streaming path on the large case at f64, one row per block, and
    /// compares its judge line with the `.out` text.
    fn large_streaming_f64(&mut self, out: &mut [f64], scratch: &mut [f64]) {
        let inputs = <f64 as Element>::b100_d32_r16();
        let weights = inputs.weights();
        let measured = stack::measure(|| {
            attention_streaming(LARGE, inputs.x, &weights, F64_BLOCK_ROWS, scratch, out)
        });
        let outcome = match measured.result {
            Ok(()) => self.print_and_compare_text(out, &B100_D32_R16),
            Err(error) => Err(Failure::Kernel(error)),
        };
        self.record(
            "f64",
            B100_D32_R16.name,
            "judge line of attention_streaming, 1 row per block",
            outcome,
        );
        self.note_stack(&measured);
    }

    /// Keeps the deepest stack, and fails the run if a phase ran into the statics.
    fn note_stack<R>(&mut self, measured: &Measured<R>) {
        self.deepest_stack = self.deepest_stack.max(measured.stack_in_use);
        if measured.reached_statics {
            self.record(
                "-",
                "stack",
                "stays above the statics",
                Err(Failure::StackOverflow),
            );
        }
    }
}

/// A `fmt::Write` that forwards text to the console and compares it with an
/// expected text as it goes.
struct TextCheck<'a> {
    expected: &'a str,
    offset: usize,
    matches: bool,
    console: &'a mut Console,
}

impl Write for TextCheck<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let end = self.offset + text.len();
        if self.expected.get(self.offset..end) != Some(text) {
            self.matches = false;
        }
        self.offset = end;
        self.console.write_str(text)
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let mut console = Console::new();
    let _ = writeln!(console, "panicked: {info}");
    console.exit(false)
}
