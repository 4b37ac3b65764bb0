//! Runs the judge program's fuzz body (fuzz/bodies/judge_input.rs) over its stored
//! corpus, so that `cargo test` replays every seed and every minimized crash without
//! the nightly fuzzing toolchain.

#[path = "../../fuzz/bodies/judge_input.rs"]
mod judge_input;
#[path = "../../fuzz/replay.rs"]
mod replay;

use std::path::Path;

#[test]
fn judge_input_corpus_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/judge_input");
    replay::replay_corpus(&dir, judge_input::run);
}
