#![no_main]

#[path = "../bodies/judge_input.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
