//! Runs the judge program's fuzz body (fuzz/bodies/judge_input.rs) over its stored
//! corpus, so that `cargo test` replays every seed and every minimized crash without
//! the nightly fuzzing toolchain.

#[path = "../../fuzz/bodies/judge_input.rs"]
mod judge_input;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[test]
fn judge_input_corpus_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/judge_input");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            path.is_file() && !name.starts_with('.')
        })
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "{} holds no inputs", dir.display());

    let failures: Vec<String> = paths
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).expect("corpus file is readable");
            catch_unwind(AssertUnwindSafe(|| judge_input::run(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(failures.is_empty(), "inputs that panic: {failures:#?}");
}
