//! Links only when no panic is reachable from every computation entry point of the
//! kernel, at f32 and f64.
//!
//! The panic handler calls a function that exists nowhere. In a release build
//! (debug assertions and overflow checks off, LTO), the compiler removes every
//! panic it can prove unreachable, and the linker then drops the handler unless
//! some remaining code can still reach it. If it can, the reference to the missing
//! function fails the link with an "undefined symbol" error that names it. So a
//! binary that links contains no path to a panic. The shapes and slices pass
//! through `black_box` (in the `exercise` module), so a check that a caller with
//! run-time shapes reaches cannot be folded away.
//!
//! The binary also runs: it checks every result against the expected values,
//! prints only fixed text (no float formatting, which has panics of its own), and
//! exits 0 when everything agrees.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use lora_attention_firmware::exercise::{self, Outcome, Report};
use lora_attention_firmware::host::Console;

#[entry]
fn main() -> ! {
    let mut report = PlainReport {
        console: Console::new(),
        failed: false,
    };
    exercise::run_all::<f32>(&mut report);
    exercise::run_all::<f64>(&mut report);
    let failed = report.failed;
    report.console.write_bytes(if failed {
        b"no-panic: some checks failed\n"
    } else {
        b"no-panic: every check passed\n"
    });
    report.console.exit(!failed)
}

/// Prints the failed checks by name only.
struct PlainReport {
    console: Console,
    failed: bool,
}

impl Report for PlainReport {
    fn record(
        &mut self,
        element: &'static str,
        case: &'static str,
        check: &'static str,
        outcome: Outcome,
    ) {
        if outcome.is_err() {
            self.failed = true;
            for text in ["FAILED ", element, " ", case, " ", check, "\n"] {
                self.console.write_bytes(text.as_bytes());
            }
        }
    }
}

#[cfg(not(feature = "report-panics"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    unsafe extern "Rust" {
        // Defined nowhere, so any call left in the program fails the link. The name
        // is the message the linker prints.
        #[link_name = "\n\nerror: a panic is reachable in the no-panic firmware. \
                       scripts/firmware-check lists where, with firmware/tools/panic_report.py.\n"]
        safe fn panic_is_reachable() -> !;
    }
    panic_is_reachable()
}

#[cfg(feature = "report-panics")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    lora_attention_firmware::host::exit(false)
}
