//! Replays a fuzz target's stored corpus through its body, for the workspace's
//! tests. The fuzz targets themselves do not use this file.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Runs `body` on every file in `dir` and fails with the names of the files whose
/// run panicked. An empty or missing folder fails too, so that a lost corpus cannot
/// pass. Hidden files (libFuzzer's lock and state files) are skipped.
pub fn replay_corpus(dir: &Path, body: impl Fn(&[u8])) {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            path.is_file() && !name.starts_with('.')
        })
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "{} contains no inputs", dir.display());

    let failures: Vec<String> = paths
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).expect("corpus file is readable");
            catch_unwind(AssertUnwindSafe(|| body(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(failures.is_empty(), "inputs that panic: {failures:#?}");
}
