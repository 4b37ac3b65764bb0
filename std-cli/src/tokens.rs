//! Splitting a byte stream into whitespace-separated tokens, chunk by chunk.
//!
//! The tokenizer reads one chunk at a time. Besides the chunk, it keeps only a
//! character cut by the chunk boundary (at most 3 bytes) and the start of a token
//! that crosses the boundary (at most `MAX_TOKEN_BYTES`). Its memory therefore does
//! not grow with the input.

use std::io::{self, Read};

use crate::error::{InputError, Utf8Fault};

/// Default number of bytes read from the input at a time.
pub const CHUNK_SIZE: usize = 1 << 20;

/// Maximum number of bytes of a token that the tokenizer stores.
///
/// A longer token is still counted and located, but [`Token::text`] contains only its
/// first bytes and [`Token::is_cut`] is set, so one huge token cannot make memory
/// follow the size of the input. The reader therefore rejects a longer number even
/// where `str::parse::<f64>` would accept it, such as one padded with 2 MiB of zeros.
pub const MAX_TOKEN_BYTES: usize = 1 << 20;

/// Byte-order mark, skipped when it is the first character of the input.
const BYTE_ORDER_MARK: char = '\u{feff}';

/// Position of a token in the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    /// 1-based index of the token among all tokens of the input.
    pub token_index: u64,
    /// 1-based line number. Only `\n` ends a line.
    pub line: u64,
    /// 1-based column, counted in characters (Unicode scalar values).
    pub column: u64,
    /// 0-based offset of the token's first byte, counting a skipped byte-order mark.
    pub byte_offset: u64,
}

/// One whitespace-separated token, borrowed from the tokenizer until the next call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token<'a> {
    /// The token's text, or its first [`MAX_TOKEN_BYTES`] bytes (cut at a character
    /// boundary) when [`Token::is_cut`] is set.
    pub text: &'a str,
    /// Whether `text` is only the start of a token longer than [`MAX_TOKEN_BYTES`].
    pub is_cut: bool,
    /// Length of the whole token in characters.
    pub char_len: u64,
    /// Position of the token's first character.
    pub location: Location,
}

/// Returns whether an ASCII byte is whitespace by `char::is_whitespace`: space, tab,
/// line feed, vertical tab, form feed and carriage return.
const fn is_ascii_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Decodes the character that starts at `bytes[index]` and returns it with its length
/// in bytes. The bytes must be valid UTF-8 and `bytes[index]` must start a character.
fn decode_char(bytes: &[u8], index: usize) -> (char, usize) {
    let lead = bytes.get(index).copied().unwrap_or(0);
    let width = match lead {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    };
    let decoded = bytes
        .get(index..index + width)
        .and_then(|sequence| std::str::from_utf8(sequence).ok())
        .and_then(|sequence| sequence.chars().next());
    // The caller validated the bytes, so the replacement character never appears. If
    // it did, it would count as one ordinary character of a token.
    (decoded.unwrap_or(char::REPLACEMENT_CHARACTER), width)
}

/// Returns the longest prefix of `text` that has at most `max_bytes` bytes and ends at
/// a character boundary.
fn prefix_at_char_boundary(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// Bytes of text below which the fast path does not split its work across two
/// threads: starting a thread costs about as much as parsing a few kilobytes.
const PARALLEL_BYTES: usize = 256 * 1024;

/// The outcome of one run of the fast path over `bytes[start..limit]`.
struct RunResult {
    /// Tokens parsed and pushed.
    tokens: usize,
    /// Line breaks passed.
    lines: u64,
    /// Index just after the last line break passed, if any.
    last_line_start: Option<usize>,
    /// Index where the run stopped: at the start of a token it left, or at `limit`.
    end: usize,
    /// Whether the run reached `limit` without leaving a token.
    reached_limit: bool,
}

impl RunResult {
    /// Returns a run that took nothing, at `index`.
    fn empty(index: usize) -> Self {
        RunResult {
            tokens: 0,
            lines: 0,
            last_line_start: None,
            end: index,
            reached_limit: false,
        }
    }
}

/// One run of the fast path over `bytes[start..limit]`, in progress.
///
/// A token must end before the end of `bytes`, so that a token cut by the chunk
/// boundary is left for the next chunk. `limit` itself must be a whitespace byte or
/// the end of `bytes`.
struct Cursor {
    index: usize,
    limit: usize,
    max: usize,
    run: RunResult,
    active: bool,
}

impl Cursor {
    fn new(start: usize, limit: usize, max: usize) -> Self {
        Cursor {
            index: start,
            limit,
            max,
            run: RunResult::empty(start),
            active: true,
        }
    }

    /// Takes the next token into `values`, or stops at the limit, at `max` tokens or
    /// at a token it cannot take. Returns whether the run goes on.
    #[inline(always)]
    fn step(&mut self, bytes: &[u8], values: &mut Vec<f64>) -> bool {
        // Step 1: ASCII whitespace, counting lines.
        while self.index < self.limit {
            let Some(&byte) = bytes.get(self.index) else {
                break;
            };
            if !is_ascii_whitespace(byte) {
                break;
            }
            self.index += 1;
            if byte == b'\n' {
                self.run.lines += 1;
                self.run.last_line_start = Some(self.index);
            }
        }
        if self.index >= self.limit {
            self.run.reached_limit = true;
            return self.stop();
        }
        if self.run.tokens == self.max {
            return self.stop();
        }

        // Step 2: a short decimal that ends inside the chunk.
        let rest = bytes.get(self.index..).unwrap_or_default();
        let Some((value, length)) = crate::number::scan_short_decimal(rest) else {
            return self.stop();
        };
        if length == 0 || length >= rest.len() {
            // The token may continue in the next chunk.
            return self.stop();
        }
        values.push(value);
        self.run.tokens += 1;
        self.index += length;
        true
    }

    fn stop(&mut self) -> bool {
        self.run.end = self.index;
        self.active = false;
        false
    }
}

/// Parses short decimals that start in `bytes[start..limit]`, at most `max`, into
/// `values`, stopping at the first token it cannot take.
fn scan_run(
    bytes: &[u8],
    start: usize,
    limit: usize,
    values: &mut Vec<f64>,
    max: usize,
) -> RunResult {
    let mut cursor = Cursor::new(start, limit, max);
    while cursor.step(bytes, values) {}
    cursor.run
}

/// Parses `bytes[start..split]` into `first` (at most `max` values) and
/// `bytes[split..limit]` into `second` at the same time, one token of each in
/// turn.
///
/// Where each token starts depends on where the previous one ended, so one run
/// waits on a chain of dependent loads and digit arithmetic. Two runs interleave
/// two independent chains, which the core executes side by side.
fn scan_pair(
    bytes: &[u8],
    (start, split, limit): (usize, usize, usize),
    first: &mut Vec<f64>,
    second: &mut Vec<f64>,
    max: usize,
) -> (RunResult, RunResult) {
    let mut left = Cursor::new(start, split, max);
    let mut right = Cursor::new(split, limit, usize::MAX);
    loop {
        let left_goes_on = left.active && left.step(bytes, first);
        let right_goes_on = right.active && right.step(bytes, second);
        if !left_goes_on && !right_goes_on {
            break;
        }
    }
    (left.run, right.run)
}

/// Returns the start and the three inner bounds of four nearly equal parts of
/// `bytes[start..]`, each inner bound a whitespace byte, or `None`.
fn split_in_four(bytes: &[u8], start: usize) -> Option<[usize; 4]> {
    let end = bytes.len();
    let middle = find_split(bytes, start + (end - start) / 2)?;
    let first = find_split(bytes, start + (middle - start) / 2)?;
    let third = find_split(bytes, middle + (end - middle) / 2)?;
    (start < first && first < middle && middle < third).then_some([start, first, middle, third])
}

/// Returns the index of the first ASCII whitespace byte at or after `from`, within
/// a few kilobytes, or `None`.
fn find_split(bytes: &[u8], from: usize) -> Option<usize> {
    let mut window = bytes.get(from..)?.iter().take(4096);
    window
        .position(|&byte| is_ascii_whitespace(byte))
        .map(|offset| from + offset)
}

/// A token that started in an earlier chunk.
#[derive(Debug, Default)]
struct CarriedToken {
    /// The stored text, at most [`MAX_TOKEN_BYTES`] bytes.
    text: String,
    /// Whether bytes were dropped because the token exceeds [`MAX_TOKEN_BYTES`].
    is_cut: bool,
}

/// Storage of the token that [`Tokenizer::next_token`] found.
enum TokenText {
    /// `text[start..end]`, when the whole token is in the current chunk.
    Chunk { start: usize, end: usize },
    /// The carried token, when it crossed a chunk boundary.
    Carried,
}

/// Tokenizer over a [`Read`], validating UTF-8 and tracking token positions.
///
/// Whitespace is every character for which `char::is_whitespace` is true, with a fast
/// path for ASCII. A byte-order mark at the very start is skipped, and anywhere else it
/// is an ordinary character. Invalid UTF-8 is reported where the tokenizer reaches it,
/// so the tokens before it come out first.
///
/// # Example
///
/// ```
/// use lora_attention_cli::Tokenizer;
///
/// let mut tokens = Tokenizer::new("2 3\n  x".as_bytes());
/// let third = loop {
///     let token = tokens.next_token()?.expect("three tokens");
///     if token.location.token_index == 3 {
///         break (token.text.to_owned(), token.location.line, token.location.column);
///     }
/// };
/// assert_eq!(third, ("x".to_owned(), 2, 3));
/// assert!(tokens.next_token()?.is_none());
/// # Ok::<(), lora_attention_cli::InputError>(())
/// ```
#[derive(Debug)]
pub struct Tokenizer<R> {
    reader: R,
    /// Destination of each read, one chunk long.
    chunk: Box<[u8]>,
    /// The validated text of the current chunk. Everything before `scan` is consumed.
    text: String,
    /// Bytes read after `text`: a character cut by the chunk boundary (at most 3 bytes)
    /// or, when `has_fault` is set, bytes starting with invalid UTF-8.
    tail: Vec<u8>,
    /// Next byte of `text` to scan.
    scan: usize,
    /// Whether `tail` starts with invalid UTF-8, which is reported once `text` is
    /// consumed.
    has_fault: bool,
    /// Stream offset of `text`'s first byte.
    text_offset: u64,
    at_stream_start: bool,
    at_end_of_input: bool,
    /// Number of bytes of a skipped byte-order mark (0 or 3).
    byte_order_mark_len: u64,
    /// Current line and the stream offset where it starts.
    line: u64,
    line_start_offset: u64,
    /// Continuation bytes before the scan position, and before the line start. Their
    /// difference turns a byte distance into a column counted in characters.
    continuation_bytes: u64,
    line_start_continuation_bytes: u64,
    token_count: u64,
    carried: CarriedToken,
    /// Storage for the later parts of a split fast-path run, kept between runs.
    spare_values: [Vec<f64>; 3],
}

impl<R: Read> Tokenizer<R> {
    /// Creates a tokenizer that reads [`CHUNK_SIZE`] bytes at a time.
    pub fn new(reader: R) -> Self {
        Self::with_chunk_size(reader, CHUNK_SIZE)
    }

    /// Creates a tokenizer that reads at most `chunk_size` bytes at a time (at least 1).
    ///
    /// The tokens and errors do not depend on the chunk size. Small chunks let tests
    /// put chunk boundaries inside tokens and characters.
    pub fn with_chunk_size(reader: R, chunk_size: usize) -> Self {
        Tokenizer {
            reader,
            chunk: vec![0; chunk_size.max(1)].into_boxed_slice(),
            text: String::new(),
            tail: Vec::new(),
            scan: 0,
            has_fault: false,
            text_offset: 0,
            at_stream_start: true,
            at_end_of_input: false,
            byte_order_mark_len: 0,
            line: 1,
            line_start_offset: 0,
            continuation_bytes: 0,
            line_start_continuation_bytes: 0,
            token_count: 0,
            carried: CarriedToken::default(),
            spare_values: Default::default(),
        }
    }

    /// Returns the number of tokens returned so far.
    pub fn token_count(&self) -> u64 {
        self.token_count
    }

    /// Returns the number of bytes read so far, without a skipped byte-order mark.
    pub fn text_bytes_read(&self) -> u64 {
        let read = self.text_offset + self.text.len() as u64 + self.tail.len() as u64;
        read - self.byte_order_mark_len
    }

    /// Reads the next token, or returns `None` at the end of the input.
    ///
    /// # Errors
    ///
    /// [`InputError::InvalidUtf8`] when the input is not valid UTF-8 before the end of
    /// the next token, and [`InputError::Read`] when the reader fails.
    pub fn next_token(&mut self) -> Result<Option<Token<'_>>, InputError> {
        // Step 1: skip whitespace, reading chunks until a token starts.
        loop {
            self.skip_whitespace();
            if self.scan < self.text.len() {
                break;
            }
            self.raise_fault()?;
            if !self.refill()? {
                return Ok(None);
            }
        }

        // Step 2: record where the token starts.
        self.token_count += 1;
        let start_offset = self.stream_offset(self.scan);
        let location = Location {
            token_index: self.token_count,
            line: self.line,
            column: self.column_at(start_offset),
            byte_offset: start_offset,
        };
        let start_continuation_bytes = self.continuation_bytes;

        // Step 3: scan to the end of the token, carrying it across chunk boundaries.
        let mut start = self.scan;
        let mut is_carried = false;
        let text = loop {
            self.scan_token();
            if self.scan < self.text.len() {
                if !is_carried {
                    break TokenText::Chunk {
                        start,
                        end: self.scan,
                    };
                }
                self.carry(start);
                break TokenText::Carried;
            }
            // The token runs to the end of the chunk. Invalid UTF-8 right after it
            // belongs to the token, so it is reported instead of the token.
            self.raise_fault()?;
            if !is_carried {
                self.carried.text.clear();
                self.carried.is_cut = false;
                is_carried = true;
            }
            self.carry(start);
            if !self.refill()? {
                break TokenText::Carried;
            }
            start = self.scan;
        };

        let end_offset = self.stream_offset(self.scan);
        let token_continuation_bytes = self.continuation_bytes - start_continuation_bytes;
        let char_len = end_offset - start_offset - token_continuation_bytes;
        let (text, is_cut) = match text {
            TokenText::Chunk { start, end } => {
                // `start` and `end` are character boundaries, so `get` succeeds.
                let whole = self.text.get(start..end).unwrap_or_default();
                let text = prefix_at_char_boundary(whole, MAX_TOKEN_BYTES);
                (text, text.len() < whole.len())
            }
            TokenText::Carried => (self.carried.text.as_str(), self.carried.is_cut),
        };
        Ok(Some(Token {
            text,
            is_cut,
            char_len,
            location,
        }))
    }

    /// Returns the number of bytes of the current chunk not scanned yet.
    pub(crate) fn unread_chunk_bytes(&self) -> usize {
        self.text.len() - self.scan
    }

    /// Parses whitespace-separated short decimals from the current chunk into
    /// `values`, at most `max` of them and no more than its spare capacity, and
    /// returns how many it took.
    ///
    /// This is the fast path of a matrix read. It stops without consuming the token
    /// at anything it does not handle: a non-ASCII byte, a token that may continue
    /// in the next chunk, or a token the short-decimal parser leaves to
    /// `str::parse`. [`Tokenizer::next_token`] then reads that token with full
    /// checks and positions. The values, token count and line numbers it produces are
    /// the ones `next_token` would. A long stretch of text is split into four parts
    /// at whitespace bytes, parsed two on each of two threads. A part counts only
    /// when every part before it was taken whole and it fits.
    pub(crate) fn take_short_decimals(&mut self, values: &mut Vec<f64>, max: usize) -> usize {
        let max = max.min(values.capacity() - values.len());
        let bytes = self.text.as_bytes();
        let start = self.scan;
        let end = bytes.len();
        let parts = if end - start >= PARALLEL_BYTES && max >= PARALLEL_BYTES / 16 {
            split_in_four(bytes, start)
        } else {
            None
        };
        let Some(bounds) = parts else {
            let run = scan_run(bytes, start, end, values, max);
            self.commit(&run);
            return run.tokens;
        };

        // Four parts: two interleaved on this thread, two on a worker.
        let [mut second, mut third, mut fourth] = std::mem::take(&mut self.spare_values);
        for spare in [&mut second, &mut third, &mut fourth] {
            spare.clear();
        }
        let [_, split_one, split_two, split_three] = bounds;
        let (near, far) = std::thread::scope(|scope| {
            let worker = scope.spawn(|| {
                let runs = scan_pair(
                    bytes,
                    (split_two, split_three, end),
                    &mut third,
                    &mut fourth,
                    usize::MAX,
                );
                (runs, third, fourth)
            });
            let near = scan_pair(
                bytes,
                (start, split_one, split_two),
                values,
                &mut second,
                max,
            );
            (near, worker.join())
        });
        let ((third_run, fourth_run), third, fourth) = match far {
            Ok(result) => result,
            // A scan has no panicking operation. If the worker panics anyway, keep
            // only this thread's parts.
            Err(_) => (
                (RunResult::empty(split_two), RunResult::empty(split_three)),
                Vec::new(),
                Vec::new(),
            ),
        };

        // Each part counts only when every part before it was taken whole and it
        // fits in the room left.
        let (first_run, second_run) = near;
        let mut taken = first_run.tokens;
        self.commit(&first_run);
        let mut whole = first_run.reached_limit;
        for (run, part) in [
            (&second_run, &second),
            (&third_run, &third),
            (&fourth_run, &fourth),
        ] {
            if !whole || run.tokens > max - taken {
                break;
            }
            values.extend_from_slice(part);
            self.commit(run);
            taken += run.tokens;
            whole = run.reached_limit;
        }
        self.spare_values = [second, third, fourth];
        taken
    }

    /// Moves the scan past a run of the fast path, counting its tokens and lines.
    fn commit(&mut self, run: &RunResult) {
        self.token_count += run.tokens as u64;
        self.line += run.lines;
        if let Some(line_start) = run.last_line_start {
            self.line_start_offset = self.text_offset + line_start as u64;
            // The fast path reads ASCII only, so no continuation byte was passed.
            self.line_start_continuation_bytes = self.continuation_bytes;
        }
        self.scan = run.end;
    }

    /// Returns the stream offset of `text[index]`.
    fn stream_offset(&self, index: usize) -> u64 {
        self.text_offset + index as u64
    }

    /// Returns the 1-based column of the character at `offset` on the current line,
    /// once every byte before `offset` has been scanned.
    fn column_at(&self, offset: u64) -> u64 {
        let bytes = offset - self.line_start_offset;
        let continuation_bytes = self.continuation_bytes - self.line_start_continuation_bytes;
        bytes - continuation_bytes + 1
    }

    /// Describes the invalid UTF-8 at the start of `tail`, once `text` is consumed.
    fn fault(&self, input_ends_inside_character: bool) -> InputError {
        let byte_offset = self.stream_offset(self.text.len());
        InputError::InvalidUtf8(Utf8Fault {
            byte_offset,
            byte: self.tail.first().copied().unwrap_or(0),
            line: self.line,
            column: self.column_at(byte_offset),
            input_ends_inside_character,
        })
    }

    /// Returns the pending invalid-UTF-8 error once the scan has reached it.
    fn raise_fault(&self) -> Result<(), InputError> {
        if self.has_fault && self.scan >= self.text.len() {
            return Err(self.fault(false));
        }
        Ok(())
    }

    /// Advances the scan past whitespace, counting lines.
    fn skip_whitespace(&mut self) {
        let bytes = self.text.as_bytes();
        let mut index = self.scan;
        while let Some(&byte) = bytes.get(index) {
            if byte < 0x80 {
                if !is_ascii_whitespace(byte) {
                    break;
                }
                index += 1;
                if byte == b'\n' {
                    self.line += 1;
                    self.line_start_offset = self.text_offset + index as u64;
                    self.line_start_continuation_bytes = self.continuation_bytes;
                }
            } else {
                let (character, width) = decode_char(bytes, index);
                if !character.is_whitespace() {
                    break;
                }
                index += width;
                self.continuation_bytes += width as u64 - 1;
            }
        }
        self.scan = index;
    }

    /// Advances the scan to the first whitespace character or the end of the chunk.
    fn scan_token(&mut self) {
        let bytes = self.text.as_bytes();
        let mut index = self.scan;
        while let Some(&byte) = bytes.get(index) {
            if byte < 0x80 {
                if is_ascii_whitespace(byte) {
                    break;
                }
                index += 1;
            } else {
                let (character, width) = decode_char(bytes, index);
                if character.is_whitespace() {
                    break;
                }
                index += width;
                self.continuation_bytes += width as u64 - 1;
            }
        }
        self.scan = index;
    }

    /// Appends `text[start..scan]` to the carried token, up to [`MAX_TOKEN_BYTES`].
    fn carry(&mut self, start: usize) {
        // `start` and `scan` are character boundaries, so `get` succeeds.
        let piece = self.text.get(start..self.scan).unwrap_or_default();
        let room = MAX_TOKEN_BYTES - self.carried.text.len();
        let stored = prefix_at_char_boundary(piece, room);
        self.carried.text.push_str(stored);
        if stored.len() < piece.len() {
            self.carried.is_cut = true;
        }
    }

    /// Reads the next chunk after the consumed text and validates it. Returns `false`
    /// at the end of the input.
    ///
    /// A refill may add no text, when the chunk contains only the start of a character,
    /// so callers loop.
    fn refill(&mut self) -> Result<bool, InputError> {
        if self.at_end_of_input {
            return Ok(false);
        }

        // Step 1: drop the consumed text, reusing its allocation, and put a character
        // cut by the previous chunk boundary in front.
        self.text_offset += self.text.len() as u64;
        let mut bytes = std::mem::take(&mut self.text).into_bytes();
        bytes.clear();
        bytes.append(&mut self.tail);
        self.scan = 0;

        // Step 2: read one chunk, as full as the reader allows: a pipe hands over
        // at most its buffer per read, and long runs of text are what the fast path
        // splits across threads.
        let mut read = 0;
        while read < self.chunk.len() {
            let free = self.chunk.get_mut(read..).unwrap_or_default();
            match self.reader.read(free) {
                Ok(0) => break,
                Ok(count) => read += count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    self.tail = bytes;
                    return Err(InputError::Read(error));
                }
            }
        }
        if read == 0 {
            self.at_end_of_input = true;
            self.tail = bytes;
            if !self.tail.is_empty() {
                return Err(self.fault(true));
            }
            return Ok(false);
        }
        bytes.extend_from_slice(self.chunk.get(..read).unwrap_or_default());

        // Step 3: validate. A character cut by the end of the chunk waits for the next
        // chunk. Invalid bytes are reported when the scan reaches them.
        match String::from_utf8(bytes) {
            Ok(text) => self.text = text,
            Err(error) => {
                let valid_len = error.utf8_error().valid_up_to();
                self.has_fault = error.utf8_error().error_len().is_some();
                let mut bytes = error.into_bytes();
                self.tail = bytes.split_off(valid_len);
                // The bytes before `valid_len` are valid, so this succeeds.
                self.text = String::from_utf8(bytes).unwrap_or_default();
            }
        }

        // Step 4: skip a byte-order mark at the very start of the input.
        if self.at_stream_start && !self.text.is_empty() {
            self.at_stream_start = false;
            if self.text.starts_with(BYTE_ORDER_MARK) {
                self.scan = BYTE_ORDER_MARK.len_utf8();
                self.byte_order_mark_len = self.scan as u64;
                self.line_start_offset = self.byte_order_mark_len;
            }
        }
        Ok(true)
    }
}
