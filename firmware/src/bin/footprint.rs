//! The kernel's flash footprint: this binary calls the kernel, or not, depending on
//! Cargo features, and the difference of `arm-none-eabi-size` between two builds is
//! the code and read-only data the calls add.
//!
//! - no feature: no kernel call, the baseline;
//! - `footprint-f32`, `footprint-f64`: every computation entry point at that
//!   precision (both features: both precisions);
//! - with `footprint-attention-only` as well: the `attention` path alone.
//!
//! Inputs are zeros in RAM passed through `black_box`, so no case data lands in
//! flash and the compiler cannot specialise the kernel for a shape. The calls are
//! not checked: the binary is built for its size, never run for its results.
#![no_std]
#![no_main]

use core::hint::black_box;

use cortex_m_rt::entry;

/// Scratch values of each precision; the size does not change the code.
const SCRATCH_LEN: usize = 256;

#[entry]
fn main() -> ! {
    // cortex-m-rt turns these into `&'static mut` references to statics in .bss.
    static mut SCRATCH_F32: [f32; SCRATCH_LEN] = [0.0; SCRATCH_LEN];
    static mut SCRATCH_F64: [f64; SCRATCH_LEN] = [0.0; SCRATCH_LEN];

    black_box(&mut *SCRATCH_F32);
    black_box(&mut *SCRATCH_F64);
    #[cfg(feature = "footprint-f32")]
    calls::run::<f32>(SCRATCH_F32);
    #[cfg(feature = "footprint-f64")]
    calls::run::<f64>(SCRATCH_F64);
    lora_attention_firmware::host::exit(true)
}

#[cfg(any(feature = "footprint-f32", feature = "footprint-f64"))]
mod calls {
    use core::hint::black_box;

    use lora_attention::{attention, Adapter, Real, Scaling, Shape, Weights};

    /// Splits the buffer into the slices of a call, each of a length the compiler
    /// cannot know.
    fn slices<T: Real>(buffer: &mut [T]) -> (&mut [T], &mut [T], &mut [T]) {
        let (inputs, rest) = buffer.split_at_mut(black_box(64).min(buffer.len()));
        let (scratch, out) = rest.split_at_mut(black_box(128).min(rest.len()));
        (black_box(inputs), black_box(scratch), black_box(out))
    }

    /// Calls every computation entry point, or only `attention`.
    pub fn run<T: Real>(buffer: &mut [T]) {
        let (inputs, scratch, out) = slices(buffer);
        let inputs: &[T] = inputs;
        let shape = black_box(Shape::new(2, 3, 1));
        let weights = black_box(Weights {
            wq: inputs,
            wk: inputs,
            wv: inputs,
            adapter: Adapter::new(inputs, inputs, black_box(Scaling::One)),
        });
        let _ = black_box(attention(shape, inputs, &weights, &mut *scratch, &mut *out));

        #[cfg(not(feature = "footprint-attention-only"))]
        every_other_entry_point(shape, inputs, &weights, scratch, out);
    }

    /// Calls every computation entry point but `attention`.
    #[cfg(not(feature = "footprint-attention-only"))]
    fn every_other_entry_point<T: Real>(
        shape: Shape,
        inputs: &[T],
        weights: &Weights<'_, T>,
        scratch: &mut [T],
        out: &mut [T],
    ) {
        use lora_attention::{
            attention_blocked, attention_factored, attention_streaming, decode_step, merge_adapter,
            merge_in_place, multi_head_attention, project, score, softmax_in_place,
            unmerge_in_place, weighted_sum, AdapterMode, AttentionConfig, AttentionWeights, Form,
            KvCache, Plan, Projection,
        };

        let rows = black_box(1);
        let _ = black_box(attention_blocked(
            shape, inputs, weights, rows, scratch, out,
        ));
        let _ = black_box(attention_factored(
            shape, inputs, weights, rows, scratch, out,
        ));
        let _ = black_box(attention_streaming(
            shape, inputs, weights, rows, scratch, out,
        ));

        let adapter_shape = shape.query_adapter();
        let _ = black_box(merge_adapter(
            adapter_shape,
            Projection::Query,
            inputs,
            &weights.adapter,
            out,
        ));
        let _ = black_box(project(shape, inputs, inputs, out));
        let _ = black_box(score(shape, inputs, inputs, out));
        let _ = black_box(softmax_in_place(out));
        let _ = black_box(weighted_sum(shape, inputs, inputs, out));
        let _ = black_box(merge_in_place(
            adapter_shape,
            Projection::Query,
            out,
            &weights.adapter,
        ));
        let _ = black_box(unmerge_in_place(
            adapter_shape,
            Projection::Query,
            out,
            &weights.adapter,
        ));
        let _ = black_box(black_box(weights.adapter.scaling).scale(black_box(2)));

        let config: AttentionConfig<T> = black_box(AttentionConfig::new(4, 2));
        let multi_head_weights = black_box(AttentionWeights::new(inputs, inputs, inputs));
        let plan = black_box(Plan {
            seq_len: 2,
            form: Form::Straightforward,
            adapters: AdapterMode::Merged,
        });
        let _ = black_box(multi_head_attention(
            &config,
            plan,
            inputs,
            &multi_head_weights,
            scratch,
            out,
        ));

        let (keys, values) = scratch.split_at_mut(scratch.len() / 2);
        let (step_scratch, out_row) = out.split_at_mut(out.len() / 2);
        if let Ok(mut cache) = KvCache::new(&config, keys, values) {
            let mode = black_box(AdapterMode::Factored);
            let step = decode_step(
                &config,
                mode,
                &multi_head_weights,
                &mut cache,
                inputs,
                step_scratch,
                out_row,
            );
            let _ = black_box(step);
        }
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    lora_attention_firmware::host::exit(false)
}
