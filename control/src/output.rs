//! What the commands write: their answer on stdout, where a failure is the
//! command's (exit 1, said on stderr), except a reader gone (`weir status |
//! head -1`), which ends the command quietly; and their messages on stderr,
//! where a failure loses the message and nothing else (`eprintln!`
//! panics).

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;

use crate::client::Exit;

/// Writes `text` to `out` and flushes it: `None` when written, else how
/// the command ends: quietly when the reader is gone (a closed pipe), with
/// exit 1 and the failure said on stderr otherwise (a full disk).
pub fn written(out: &mut impl Write, text: &str) -> Option<Exit> {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => None,
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Some(Exit::Success),
        Err(error) => {
            say(format_args!(
                "weir: cannot write the answer to standard output: {error}"
            ));
            Some(Exit::Refused)
        }
    }
}

/// Writes `text` to stdout (see [`written`]): exit 0, or 1 with the
/// failure said on stderr.
pub fn answer(text: &str) -> ExitCode {
    written(&mut io::stdout().lock(), text)
        .unwrap_or(Exit::Success)
        .into()
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
