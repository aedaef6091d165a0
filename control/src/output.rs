//! What the commands write: their answer on stdout, where a failure is the
//! command's (exit 1, said on stderr), except a reader gone (`weir status |
//! head -1`), which ends the command quietly; and their messages on stderr,
//! where a failure loses the message and nothing else (`eprintln!`
//! panics).

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;

use crate::client::Exit;

/// Writes `text` to `out` and flushes it: `Ok` also when the reader is gone
/// (a closed pipe); another failure (a full disk) is returned.
///
/// # Errors
/// The write's or the flush's failure, but a broken pipe.
pub fn write_answer(out: &mut impl Write, text: &str) -> io::Result<()> {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Writes `text` to stdout (see [`write_answer`]): exit 0, or 1 with the
/// failure said on stderr.
pub fn answer(text: &str) -> ExitCode {
    match write_answer(&mut io::stdout().lock(), text) {
        Ok(()) => Exit::Success.into(),
        Err(error) => unwritten(&error),
    }
}

/// Says on stderr that the answer could not be written; exit 1.
pub fn unwritten(error: &io::Error) -> ExitCode {
    say(format_args!(
        "weir: cannot write the answer to standard output: {error}"
    ));
    Exit::Refused.into()
}

/// Writes `message` and a newline to stderr; a stderr that cannot be
/// written loses it.
pub fn say(message: impl fmt::Display) {
    let _ = writeln!(io::stderr().lock(), "{message}");
}

/// Writes `text` to stderr as it is; a stderr that cannot be written loses
/// it.
pub fn say_text(text: impl fmt::Display) {
    let _ = write!(io::stderr().lock(), "{text}");
}
