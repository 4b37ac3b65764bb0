#![no_main]

#[path = "../bodies/multi_head.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
