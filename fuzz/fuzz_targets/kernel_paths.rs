#![no_main]

#[path = "../bodies/kernel_paths.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
