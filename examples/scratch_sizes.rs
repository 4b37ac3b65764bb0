//! Prints the scratch bytes of every single-head path as a Markdown table.
//!
//! Run with `cargo run --example scratch_sizes`.

use lora_attention::Shape;

/// A path's name and its scratch length for a shape.
type ScratchPath = (&'static str, fn(Shape) -> Option<usize>);

fn main() {
    let shapes = [
        Shape::new(2, 5, 3),
        Shape::new(128, 128, 8),
        Shape::new(1024, 256, 8),
    ];
    let paths: [ScratchPath; 6] = [
        ("straightforward (`attention`)", |s| {
            s.attention_scratch_len()
        }),
        ("blocked, 16 score rows (`attention_blocked`)", |s| {
            s.blocked_attention_scratch_len(16)
        }),
        ("factored, all score rows (`attention_factored`)", |s| {
            s.factored_scratch_len(s.seq_len)
        }),
        ("factored, 16 score rows", |s| s.factored_scratch_len(16)),
        ("streaming, 1 row per block (`attention_streaming`)", |s| {
            s.streaming_scratch_len(1)
        }),
        ("streaming, 16 rows per block", |s| {
            s.streaming_scratch_len(16)
        }),
    ];

    print!("| path |");
    for shape in shapes {
        print!(
            " ({}, {}, {}) f32 | f64 |",
            shape.seq_len, shape.dim, shape.rank
        );
    }
    println!();
    println!("|---|{}", "---:|".repeat(2 * shapes.len()));
    for (name, scratch_len) in paths {
        print!("| {name} |");
        for shape in shapes {
            let values = scratch_len(shape).expect("scratch length fits in usize");
            print!(" {} | {} |", bytes(values * 4), bytes(values * 8));
        }
        println!();
    }
}

/// Formats a byte count with a binary unit.
fn bytes(count: usize) -> String {
    if count < 1024 {
        format!("{count} B")
    } else if count < 1024 * 1024 {
        format!("{:.1} KiB", count as f64 / 1024.0)
    } else {
        format!("{:.2} MiB", count as f64 / (1024.0 * 1024.0))
    }
}
