//! Hostile input for the judge program, run as a child process: a 100 MB valid
//! input, headers that promise about 10^18 values, a 10 MB token, binary garbage
//! and inputs cut in the middle of a number. Each must end with the right output
//! or a clear error: exit status 1, nothing on standard output and one line on
//! standard error that names the problem.
//!
//! The tests marked `#[ignore]` generate large inputs or measure memory; a plain
//! `cargo test` skips them, and `scripts/hostile-tests` runs every test in release
//! mode. Memory is the child's peak resident set size as `/usr/bin/time -f %M`
//! reports it: GNU time reads it from the rusage that `wait4` returns when the
//! child exits, so unlike polling `/proc/PID/status` it cannot miss a short peak.
//! Timeouts only guard against hangs and assert nothing about speed.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{reference_attention, Random};

const BINARY: &str = env!("CARGO_BIN_EXE_lora-attention");
const ERROR_PREFIX: &str = "lora-attention: error: ";
const TIME: &str = "/usr/bin/time";

/// Time limit for a child that reads a small input. It only catches a hang.
const SMALL_INPUT_TIMEOUT: Duration = Duration::from_secs(120);

/// Peak memory allowed for inputs whose values are few, in bytes: the program
/// itself needs about 2 MiB, the read buffer 64 KiB and one stored token at most
/// 1 MiB. Storing a 10 MB token, or allocating for a promise of 10^18 values,
/// exceeds it.
const SMALL_INPUT_PEAK_BYTES: u64 = 8 << 20;

/// The input the program reads.
enum Input<'a> {
    Bytes(&'a [u8]),
    /// A file streamed through a pipe, so that the program cannot learn its size.
    File(&'a Path),
}

/// What a finished child left.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    /// Peak resident set size in bytes, when measured.
    peak_bytes: Option<u64>,
}

/// Returns a path in the folder cargo gives integration tests for scratch files.
fn scratch_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// Reads everything from a child's pipe in a thread, so that a full pipe cannot
/// block the child.
fn collect<R: Read + Send + 'static>(mut pipe: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// Waits for `child`, killing it and failing the test after `timeout`.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            return status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the program did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the program on `input`, under `/usr/bin/time` when `measure_memory` is set.
fn run(input: Input<'_>, measure_memory: bool, timeout: Duration) -> Finished {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let run_number = RUNS.fetch_add(1, Ordering::Relaxed);
    let time_report = scratch_path(&format!("time-{}-{run_number}.txt", std::process::id()));
    let mut command = if measure_memory {
        assert!(
            Path::new(TIME).exists(),
            "{TIME} is missing: install GNU time (Debian package 'time') to measure memory"
        );
        let mut command = Command::new(TIME);
        command
            .args(["-f", "%M", "-o"])
            .arg(&time_report)
            .arg(BINARY);
        command
    } else {
        Command::new(BINARY)
    };
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the program");

    let mut stdin = child.stdin.take().expect("piped stdin");
    // The program may exit before it reads everything, so a failed write is expected.
    let writer = match input {
        Input::Bytes(bytes) => {
            let bytes = bytes.to_vec();
            thread::spawn(move || {
                let _ = stdin.write_all(&bytes);
            })
        }
        Input::File(path) => {
            let mut file = File::open(path).expect("open the generated input");
            thread::spawn(move || {
                let _ = io::copy(&mut file, &mut stdin);
            })
        }
    };
    let stdout = collect(child.stdout.take().expect("piped stdout"));
    let stderr = collect(child.stderr.take().expect("piped stderr"));

    let status = wait_with_timeout(&mut child, timeout);
    writer.join().expect("stdin writer thread");
    let stdout = String::from_utf8_lossy(&stdout.join().expect("stdout reader")).into_owned();
    let stderr = String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned();

    let peak_bytes = measure_memory.then(|| {
        // GNU time writes "Command exited with non-zero status N" before the format
        // when the status is not 0, so the peak is on the last line.
        let report = std::fs::read_to_string(&time_report).expect("read the time report");
        let _ = std::fs::remove_file(&time_report);
        let kibibytes: u64 = report
            .lines()
            .last()
            .and_then(|line| line.trim().parse().ok())
            .unwrap_or_else(|| panic!("no peak memory in the time report {report:?}"));
        kibibytes * 1024
    });
    Finished {
        status,
        stdout,
        stderr,
        peak_bytes,
    }
}

/// Asserts a clear rejection: status 1, nothing on stdout, one error line that
/// contains every fragment.
fn assert_rejected(finished: &Finished, fragments: &[&str]) {
    let message = &finished.stderr;
    assert_eq!(finished.status.code(), Some(1), "stderr: {message}");
    assert_eq!(finished.stdout, "", "stdout of a rejected input");
    assert!(message.starts_with(ERROR_PREFIX), "stderr: {message}");
    assert_eq!(message.lines().count(), 1, "stderr: {message}");
    for fragment in fragments {
        assert!(
            message.contains(fragment),
            "stderr lacks {fragment:?}: {message}"
        );
    }
}

/// Returns the quoted token of an error message: the text between the first pair
/// of single quotes.
fn quoted_token(message: &str) -> &str {
    let start = message.find('\'').expect("the message quotes the token") + 1;
    let length = message[start..].find('\'').expect("the quote is closed");
    &message[start..start + length]
}

#[test]
fn header_promising_quintillion_values_rejected() {
    let cases = [
        (
            "1000000000 1000000000 0\n0.1 0.2 0.3\n",
            "x ends after 3 of 1000000000000000000 values (b*d = 1000000000*1000000000)",
        ),
        (
            "1000000000000000000 1 0\n0.5\n",
            "x ends after 1 of 1000000000000000000 values",
        ),
        (
            "1 1 1000000000000000000\n1 1 1 1 0.5\n",
            "A ends after 1 of 1000000000000000000 values (r*d = 1000000000000000000*1)",
        ),
        (
            "1e18 1 0\n",
            "x is missing: it needs 1000000000000000000 values",
        ),
    ];
    for (input, fragment) in cases {
        let finished = run(Input::Bytes(input.as_bytes()), false, SMALL_INPUT_TIMEOUT);
        assert_rejected(&finished, &[fragment]);
    }
}

#[test]
#[ignore = "measures memory with /usr/bin/time; scripts/hostile-tests runs it"]
fn header_promising_quintillion_values_stays_small() {
    // 100000 values arrive, far fewer than the 10^18 promised, so storage grows
    // geometrically to hold them and no further.
    let mut input = String::from("1000000000 1000000000 0\n");
    for _ in 0..100_000 {
        input.push_str("0.5 ");
    }
    let finished = run(Input::Bytes(input.as_bytes()), true, SMALL_INPUT_TIMEOUT);

    assert_rejected(
        &finished,
        &["x ends after 100000 of 1000000000000000000 values"],
    );
    let peak = finished.peak_bytes.expect("measured");
    assert!(
        peak <= SMALL_INPUT_PEAK_BYTES,
        "peak memory {peak} bytes, limit {SMALL_INPUT_PEAK_BYTES}"
    );
}

/// Builds a 10 MB token, `"7"` repeated, at the place of the first value of `x`.
fn ten_megabyte_token_input() -> Vec<u8> {
    let mut input = b"1 1 0\n".to_vec();
    input.resize(input.len() + (10 << 20), b'7');
    input.extend_from_slice(b" 1 1 1\n");
    input
}

#[test]
fn ten_megabyte_token_quoted_briefly() {
    let finished = run(
        Input::Bytes(&ten_megabyte_token_input()),
        false,
        SMALL_INPUT_TIMEOUT,
    );

    assert_rejected(
        &finished,
        &[
            "x contains a token longer than 1048576 bytes",
            "(10485760 characters) at line 2, column 1",
            "token 4",
        ],
    );
    let quoted = quoted_token(&finished.stderr);
    assert_eq!(quoted, format!("{}...", "7".repeat(40)), "quoted token");
    assert!(
        finished.stderr.len() < 400,
        "message of {} bytes",
        finished.stderr.len()
    );
}

#[test]
fn ten_megabyte_header_token_quoted_briefly() {
    let mut input = vec![b'z'; 10 << 20];
    input.extend_from_slice(b" 1 0\n");
    let finished = run(Input::Bytes(&input), false, SMALL_INPUT_TIMEOUT);

    assert_rejected(
        &finished,
        &[
            "invalid header: b (the number of rows) must be a whole number",
            "token 1",
            "(10485760 characters)",
        ],
    );
    assert_eq!(
        quoted_token(&finished.stderr),
        format!("{}...", "z".repeat(40))
    );
}

#[test]
#[ignore = "measures memory with /usr/bin/time; scripts/hostile-tests runs it"]
fn ten_megabyte_token_stays_small() {
    let finished = run(
        Input::Bytes(&ten_megabyte_token_input()),
        true,
        SMALL_INPUT_TIMEOUT,
    );

    assert_rejected(&finished, &["x contains a token longer than 1048576 bytes"]);
    let peak = finished.peak_bytes.expect("measured");
    assert!(
        peak <= SMALL_INPUT_PEAK_BYTES,
        "peak memory {peak} bytes, limit {SMALL_INPUT_PEAK_BYTES}"
    );
}

/// Returns 1 MiB of random bytes from a fixed seed, starting with 0xFF, which is
/// never valid in UTF-8.
fn garbage() -> Vec<u8> {
    let mut random = Random::new(0xbad);
    let mut bytes = vec![0xff];
    bytes.extend((1..1 << 20).map(|_| random.next_u64() as u8));
    bytes
}

#[test]
fn binary_garbage_rejected() {
    let finished = run(Input::Bytes(&garbage()), false, SMALL_INPUT_TIMEOUT);
    assert_rejected(
        &finished,
        &["the input is not valid UTF-8: byte 0xFF at byte offset 0 (line 1, column 1)"],
    );

    let mut after_header = b"2 2 0\n0.5 ".to_vec();
    after_header.extend(garbage());
    let finished = run(Input::Bytes(&after_header), false, SMALL_INPUT_TIMEOUT);
    assert_rejected(
        &finished,
        &["byte 0xFF at byte offset 10 (line 2, column 5)"],
    );
}

#[test]
fn control_characters_escaped_in_message() {
    let finished = run(
        Input::Bytes(b"\0\x01\x1b[31m 2 0\n"),
        false,
        SMALL_INPUT_TIMEOUT,
    );

    assert_rejected(&finished, &["invalid header", "token 1", "is not a number"]);
    assert_eq!(quoted_token(&finished.stderr), "\\0\\u{1}\\u{1b}[31m");
    assert!(
        !finished.stderr.trim_end().chars().any(char::is_control),
        "control character in {:?}",
        finished.stderr
    );
}

/// Returns the text of a bundled judge case.
fn judge_case(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/judge")
        .join(name);
    std::fs::read_to_string(path).expect("judge case input")
}

#[test]
fn input_cut_inside_number_rejected() {
    // sample-1.in has b = 2, d = 5, r = 3: x, Wq, Wk and Wv, then A (15 values, ending
    // in 0.25) and B (15 values, ending in -0.241976).
    let sample = judge_case("sample-1.in");
    let cases = [
        ("2 5 3\n-0.58 -0.5", "x ends after 2 of 10 values"),
        (
            "2 5 3\n-0.58 -",
            "x contains a token that is not a number: token 5 '-'",
        ),
        (
            "2 5 3\n-0.58 1e",
            "x contains a token that is not a number: token 5 '1e'",
        ),
        ("2 5 3\n-0.58 1e-", "token 5 '1e-'"),
        ("2 5 3\n-0.58 .", "token 5 '.'"),
        ("2 1", "the header ends after 2 of its 3 values"),
        ("2 5 3\n", "x is missing: it needs 10 values"),
    ];
    for (input, fragment) in cases {
        let finished = run(Input::Bytes(input.as_bytes()), false, SMALL_INPUT_TIMEOUT);
        assert_rejected(&finished, &[fragment]);
    }

    // Cut inside A's last value, "0.25": B is then missing.
    let end_of_a = sample.find("0.25\n").expect("A ends in 0.25") + 3;
    let finished = run(
        Input::Bytes(&sample.as_bytes()[..end_of_a]),
        false,
        SMALL_INPUT_TIMEOUT,
    );
    assert_rejected(&finished, &["B is missing: it needs 15 values (d*r = 5*3)"]);
}

#[test]
fn every_cut_of_sample_rejected_or_complete() {
    // A cut before the last value of B leaves an incomplete input, which must be
    // rejected with one error line. A cut inside the last value leaves either a
    // shorter number, which completes the input, or a token such as "-", which
    // must be rejected as B's.
    let sample = judge_case("sample-1.in");
    let last_value_start = sample
        .trim_end()
        .rfind(char::is_whitespace)
        .expect("tokens")
        + 1;
    for cut in 0..=sample.len() {
        let prefix = &sample.as_bytes()[..cut];
        match lora_attention_cli::run(prefix) {
            Ok(output) => {
                assert!(cut > last_value_start, "cut at {cut} accepted");
                assert_eq!(output.text.split(' ').count(), 10, "cut at {cut}");
            }
            Err(error) => {
                let message = error.to_string();
                assert!(!message.contains('\n'), "cut at {cut}: {message}");
                if cut > last_value_start {
                    assert!(
                        message.starts_with("B contains a token that is not a number"),
                        "cut at {cut}: {message}"
                    );
                }
            }
        }
    }
}

/// One generated problem: its header and values, parsed back from their text.
struct Generated {
    rows: usize,
    width: usize,
    rank: usize,
    matrices: Vec<Vec<f64>>,
}

/// Writes a valid judge input of at least 100 MB with `b = 8`, `d = 2048`, `r = 8`
/// and returns its values as the program parses them.
fn write_large_input(path: &Path) -> Generated {
    let (rows, width, rank) = (8, 2048, 8);
    let sizes = [
        (rows, width),
        (width, width),
        (width, width),
        (width, width),
        (rank, width),
        (width, rank),
    ];
    let mut random = Random::new(0x100_0000);
    let mut file = BufWriter::new(File::create(path).expect("create the large input"));
    writeln!(file, "{rows} {width} {rank}").expect("write the header");
    let mut matrices = Vec::new();
    let mut text = String::new();
    for (matrix_rows, columns) in sizes {
        let mut values = Vec::with_capacity(matrix_rows * columns);
        for _ in 0..matrix_rows {
            text.clear();
            for column in 0..columns {
                if column > 0 {
                    text.push(' ');
                }
                let token = format!("{:.5}", random.uniform());
                values.push(token.parse::<f64>().expect("a formatted number parses"));
                text.push_str(&token);
            }
            text.push('\n');
            file.write_all(text.as_bytes()).expect("write a row");
        }
        matrices.push(values);
    }
    file.flush().expect("flush the large input");
    Generated {
        rows,
        width,
        rank,
        matrices,
    }
}

#[test]
#[ignore = "writes a 100 MB input and measures memory; scripts/hostile-tests runs it"]
fn valid_100_megabyte_input_within_memory_bound() {
    let path = scratch_path("hostile-valid-100mb.in");
    let problem = write_large_input(&path);
    let size = std::fs::metadata(&path).expect("input metadata").len();
    assert!(
        size >= 100_000_000,
        "the generated input has only {size} bytes"
    );

    let finished = run(Input::File(&path), true, Duration::from_secs(900));
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        finished.status.code(),
        Some(0),
        "stderr: {}",
        finished.stderr
    );
    assert_eq!(finished.stderr, "", "stderr of a valid input");

    // The values the computation needs at f64: x, Wq, Wk, Wv, the merged Wq' and A, B.
    let (b, d, r) = (problem.rows, problem.width, problem.rank);
    let needed_bytes = 8 * (b * d + 4 * d * d + 2 * r * d) as u64;
    let peak = finished.peak_bytes.expect("measured");
    println!("input {size} bytes, peak memory {peak} bytes, values {needed_bytes} bytes");
    assert!(
        peak as f64 <= 1.5 * needed_bytes as f64,
        "peak memory {peak} bytes for {needed_bytes} bytes of values"
    );

    let [x, wq, wk, wv, a, adapter_b] = problem.matrices.as_slice() else {
        panic!("six matrices");
    };
    let expected = reference_attention(b, d, r, 1.0, x, wq, wk, wv, a, adapter_b);
    let printed: Vec<f64> = finished
        .stdout
        .strip_suffix('\n')
        .expect("the output ends in a newline")
        .split(' ')
        .map(|value| value.parse().expect("each output value parses"))
        .collect();
    assert_eq!(printed.len(), b * d, "output values");
    let magnitude = common::magnitude(&expected);
    for (index, (&printed, &expected)) in printed.iter().zip(&expected).enumerate() {
        // Four decimals round by at most 0.00005; the kernel agrees with the
        // reference to about 1e-14 relative.
        let limit = 0.5e-4 + 1e-9 * magnitude;
        assert!(
            (printed - expected).abs() <= limit,
            "value {index}: printed {printed}, reference {expected}"
        );
    }
}
