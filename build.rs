//! Chooses how the kernel's multiply-add is computed for `f32` and `f64`.
//!
//! It sets `fma_f32` and `fma_f64` to `"core"` (core's fused multiply-add, which
//! needs the `nightly-fma` feature and a nightly compiler) or `"std"` (the standard
//! library's, with the `std` feature), or leaves them unset for an unfused
//! multiply and add. A fused operation is chosen only where the target has the
//! instruction, because a software one is far slower than two roundings.

use std::env;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(fma_f32, values(\"core\", \"std\"))");
    println!("cargo::rustc-check-cfg=cfg(fma_f64, values(\"core\", \"std\"))");
    // Set by hand (`--cfg scalar_tiles`) to test the scalar products on x86.
    println!("cargo::rustc-check-cfg=cfg(scalar_tiles)");

    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let features = env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let has_feature = |name: &str| features.split(',').any(|feature| feature == name);
    let nightly = env::var_os("CARGO_FEATURE_NIGHTLY_FMA").is_some();
    let std = env::var_os("CARGO_FEATURE_STD").is_some();

    // x86 reports `fma`; every AArch64 core has it. 32-bit Arm does not report its
    // FPU features to cfg, so `nightly-fma` there assumes single-precision FMA
    // (VFPv4, as on the Cortex-M4F and M7) and leaves f64 unfused, because most
    // Cortex-M FPUs have no double precision.
    let hardware_f32 = has_feature("fma") || arch == "aarch64" || (nightly && arch == "arm");
    let hardware_f64 = has_feature("fma") || arch == "aarch64";

    for (name, hardware) in [("fma_f32", hardware_f32), ("fma_f64", hardware_f64)] {
        if hardware && nightly {
            println!("cargo::rustc-cfg={name}=\"core\"");
        } else if hardware && std {
            println!("cargo::rustc-cfg={name}=\"std\"");
        }
    }
}
