//! `lora-attention [FILE]`: reads a judge input and prints the attention output line.
//!
//! The work happens in the `lora_attention_cli` library. This binary parses the
//! command line, opens the input, prints the result and chooses the exit status.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use lora_attention_cli::{run, Error};

const PROGRAM: &str = "lora-attention";

const HELP: &str = "\
lora-attention: single-head self-attention with a LoRA adapter on the query projection

Usage: lora-attention [FILE]
       lora-attention --help | --version

Reads the input from FILE, or from standard input when FILE is absent or '-', and
prints softmax(Q K^T / sqrt(d)) V with Q = x (Wq + B A)^T, K = x Wk^T, V = x Wv^T,
computed at float64.

Input: UTF-8 text of numbers separated by any whitespace (a leading byte-order mark
is skipped), in this order:
  b d r        number of rows, model width, adapter rank: whole numbers with
               b >= 1, d >= 1, r >= 0
  x            b*d values, row by row
  Wq, Wk, Wv   d*d values each, row by row
  A, B         r*d and d*r values, only when r > 0
Values are decimal numbers such as 2, -0.5, .5, 3. or 1e-3. NaN, infinities and
numbers beyond the float64 range are rejected, and so is a number longer than
1048576 bytes. Tokens after the last matrix are ignored with a warning.

Output: the b*d output values, row by row, on one line, each with 4 decimals,
separated by single spaces.

Options:
  -h, --help     print this help and exit
  -V, --version  print the version and exit

Exit status:
  0  success
  1  invalid input, or a result that overflows float64
  2  usage error: an unknown option, more than one FILE, a FILE that cannot be
     opened or read, or a failure writing the output
";

/// Action the command line requests.
#[derive(Debug, PartialEq)]
enum Command {
    Help,
    Version,
    /// Read from the file, or from standard input when `None`.
    Run(Option<PathBuf>),
}

/// Parses the arguments after the program name. Arguments are handled in order, so
/// `--help` after an unknown option still fails. After `--`, every argument is a FILE,
/// and `-` still means standard input.
fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut files: Vec<OsString> = Vec::new();
    let mut options_ended = false;
    for arg in args {
        if !options_ended {
            match arg.to_str() {
                Some("-h" | "--help") => return Ok(Command::Help),
                Some("-V" | "--version") => return Ok(Command::Version),
                Some("--") => {
                    options_ended = true;
                    continue;
                }
                Some("-") => {}
                _ if arg.as_encoded_bytes().starts_with(b"-") => {
                    return Err(format!("unknown option '{}'", arg.to_string_lossy()));
                }
                _ => {}
            }
        }
        files.push(arg);
    }

    match files.as_slice() {
        [] => Ok(Command::Run(None)),
        [file] if file == "-" => Ok(Command::Run(None)),
        [file] => Ok(Command::Run(Some(PathBuf::from(file)))),
        more => {
            let names: Vec<String> = more
                .iter()
                .map(|name| format!("'{}'", name.to_string_lossy()))
                .collect();
            Err(format!(
                "expected at most one FILE, got {}: {}",
                more.len(),
                names.join(", ")
            ))
        }
    }
}

/// Writes `lora-attention: error: MESSAGE` to standard error. A failure to write it is
/// ignored, because there is nowhere left to report it.
fn print_error(message: &str) {
    let _ = writeln!(io::stderr().lock(), "{PROGRAM}: error: {message}");
}

/// Writes `text` to standard output in one write and flushes it.
fn print_stdout(text: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// Prints `text` on standard output and returns the exit status: 0, or 2 when the
/// write fails (for example on a closed pipe).
fn print_or_fail(text: &str) -> ExitCode {
    match print_stdout(text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            print_error(&format!("failed to write the output: {error}"));
            ExitCode::from(2)
        }
    }
}

/// Runs the program on one input and returns the exit status.
fn run_on(source: Option<PathBuf>) -> ExitCode {
    let (input, name): (Box<dyn Read>, String) = match source {
        None => (Box::new(io::stdin().lock()), "standard input".to_owned()),
        Some(path) => match File::open(&path) {
            Ok(file) => (Box::new(file), format!("'{}'", path.display())),
            Err(error) => {
                print_error(&format!("cannot open '{}': {error}", path.display()));
                return ExitCode::from(2);
            }
        },
    };

    match run(input) {
        Ok(output) => {
            let status = print_or_fail(&output.text);
            if let Some(warning) = output.warning() {
                let _ = writeln!(io::stderr().lock(), "{PROGRAM}: warning: {warning}");
            }
            status
        }
        Err(Error::Input(lora_attention_cli::InputError::Read(error))) => {
            print_error(&format!("failed to read {name}: {error}"));
            ExitCode::from(2)
        }
        Err(error) => {
            print_error(&error.to_string());
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    match parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Help) => print_or_fail(HELP),
        Ok(Command::Version) => {
            print_or_fail(&format!("{PROGRAM} {}\n", env!("CARGO_PKG_VERSION")))
        }
        Ok(Command::Run(source)) => run_on(source),
        Err(message) => {
            print_error(&format!("{message} (run '{PROGRAM} --help' for usage)"));
            ExitCode::from(2)
        }
    }
}
