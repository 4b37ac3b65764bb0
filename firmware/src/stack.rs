//! Stack and static RAM measurement by painting.
//!
//! The stack grows down from the end of RAM towards `_stack_end`, the end of the
//! statics (both symbols come from cortex-m-rt's `link.x`). Before a measured
//! call, every word between `_stack_end` and the current stack pointer is set to a
//! known pattern. After the call, the lowest word that lost the pattern is the
//! deepest point the call reached.

use core::arch::asm;
use core::ptr;

/// The pattern painted on free stack, as cortex-m-rt's `paint-stack` feature
/// paints it at reset.
const PAINT: u32 = 0xcccc_cccc;

extern "C" {
    /// The address just above the stack, where the reset handler starts it.
    static _stack_start: u32;
    /// The lowest address of the stack, just above the statics.
    static _stack_end: u32;
    /// The first RAM address, where `.data` starts.
    static _ram_start: u32;
}

/// Returns the address of the lowest word the stack may use.
fn stack_end() -> usize {
    ptr::addr_of!(_stack_end) as usize
}

/// Returns the RAM taken by the statics (`.data`, `.bss` and `.uninit`), in bytes.
pub fn static_bytes() -> usize {
    stack_end() - ptr::addr_of!(_ram_start) as usize
}

/// Paints every word from `_stack_end` up to the stack pointer.
///
/// The loop is assembly because it must read the stack pointer and paint up to
/// it with no frame in between. Compiled code may read the stack pointer before
/// it pushes its own return address, and would then paint over it.
fn paint() {
    // SAFETY: the loop writes only the words between the statics and the stack
    // pointer, RAM that no Rust object occupies, and changes no register it does
    // not declare.
    unsafe {
        asm!(
            "mov {top}, sp",
            "2:",
            "cmp {address}, {top}",
            "bhs 3f",
            "str {paint}, [{address}], #4",
            "b 2b",
            "3:",
            address = inout(reg) stack_end() => _,
            top = out(reg) _,
            paint = in(reg) PAINT,
            options(nostack),
        );
    }
}

/// Returns the lowest stack address that lost its paint.
fn lowest_used() -> usize {
    let top = cortex_m::register::msp::read() as usize;
    let mut address = stack_end();
    while address < top {
        // SAFETY: as in `paint`, the word is free RAM between the statics and the
        // stack pointer, read without forming a reference.
        let word = unsafe { ptr::read_volatile(ptr::with_exposed_provenance::<u32>(address)) };
        if word != PAINT {
            break;
        }
        address += 4;
    }
    address
}

/// Calls `f` behind a call boundary, so that none of its locals share the
/// measuring function's frame.
#[inline(never)]
fn call<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// The result of a measured call and the stack it used.
pub struct Measured<R> {
    /// The call's return value.
    pub result: R,
    /// The bytes between the stack pointer before the call and the deepest word
    /// it wrote. It includes one small frame of this module's, so it is an upper
    /// bound, a few words above the call's own use.
    pub peak_stack: usize,
    /// The bytes between the top of the stack and the deepest word the call
    /// wrote: the whole program's stack at that point, the callers' frames included.
    pub stack_in_use: usize,
    /// Whether the call wrote the lowest stack word, and so may have run into
    /// the statics below it.
    pub reached_statics: bool,
}

/// Calls `f` and measures the peak stack it used.
pub fn measure<R>(f: impl FnOnce() -> R) -> Measured<R> {
    paint();
    let before = cortex_m::register::msp::read() as usize;
    let result = call(f);
    let lowest = lowest_used();
    Measured {
        result,
        peak_stack: before.saturating_sub(lowest),
        stack_in_use: (ptr::addr_of!(_stack_start) as usize).saturating_sub(lowest),
        reached_statics: lowest <= stack_end(),
    }
}
