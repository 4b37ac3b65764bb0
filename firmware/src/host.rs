//! Output, exit status and command line through Arm semihosting, which QEMU
//! provides with `-semihosting-config enable=on,target=native`.

use core::fmt;

use cortex_m_semihosting::debug::{self, EXIT_FAILURE, EXIT_SUCCESS};
use cortex_m_semihosting::hio::{self, HostStream};

/// Bytes collected before one write to the host.
const BUFFER_LEN: usize = 256;

/// The host's standard output, line-buffered so that a long judge line takes a
/// few semihosting calls rather than one per value.
///
/// Output is best effort: without a host to print to, the firmware has nowhere to
/// report a failed write, so failures are dropped.
pub struct Console {
    stream: Option<HostStream>,
    buffer: [u8; BUFFER_LEN],
    len: usize,
}

impl Console {
    /// Opens the host's standard output.
    pub fn new() -> Self {
        Console {
            stream: hio::hstdout().ok(),
            buffer: [0; BUFFER_LEN],
            len: 0,
        }
    }

    /// Appends bytes, writing the buffer to the host at each line end and
    /// whenever it fills.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if self.len >= BUFFER_LEN {
                self.flush();
            }
            if let Some(slot) = self.buffer.get_mut(self.len) {
                *slot = byte;
                self.len += 1;
            }
            if byte == b'\n' {
                self.flush();
            }
        }
    }

    /// Writes the buffered bytes to the host.
    pub fn flush(&mut self) {
        if let (Some(stream), Some(pending)) = (self.stream.as_mut(), self.buffer.get(..self.len)) {
            // A failed write is dropped, as the type's documentation explains.
            let _ = stream.write_all(pending);
        }
        self.len = 0;
    }

    /// Flushes the output and ends the QEMU run with status 0 when `success` holds,
    /// 1 otherwise.
    pub fn exit(&mut self, success: bool) -> ! {
        self.flush();
        exit(success)
    }
}

impl Default for Console {
    fn default() -> Self {
        Console::new()
    }
}

impl fmt::Write for Console {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.write_bytes(text.as_bytes());
        Ok(())
    }
}

/// Ends the QEMU run with status 0 when `success` holds, 1 otherwise.
pub fn exit(success: bool) -> ! {
    debug::exit(if success { EXIT_SUCCESS } else { EXIT_FAILURE });
    // A debugger may resume the program after the exit request.
    loop {
        cortex_m::asm::wfi();
    }
}

/// Reads the command line that QEMU passes with `-append` (after the program's
/// path) or with `-semihosting-config arg=...`, into `buffer`.
///
/// Returns `None` when the host reports an error or the text is not UTF-8.
pub fn command_line(buffer: &mut [u8]) -> Option<&str> {
    // SYS_GET_CMDLINE takes the address of a two-word block, the buffer's address
    // and length, writes a NUL-terminated string into the buffer and the string's
    // length into the block.
    let mut block = [buffer.as_mut_ptr() as usize, buffer.len()];
    let block_address = block.as_mut_ptr() as usize;
    // SAFETY: the block and the buffer it names are valid and writable for the whole
    // call, and the host writes at most `buffer.len()` bytes into the buffer.
    let status = unsafe {
        cortex_m_semihosting::syscall1(cortex_m_semihosting::nr::GET_CMDLINE, block_address)
    };
    if status != 0 {
        return None;
    }
    let text = buffer.split(|&byte| byte == 0).next()?;
    core::str::from_utf8(text).ok()
}
