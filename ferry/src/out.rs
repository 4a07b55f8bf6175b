//! Standard output that ends quietly when its reader goes away.
//!
//! `println!` panics when stdout is a pipe whose reader has exited
//! (`ferry broker agents | head`). Rust ignores SIGPIPE, so the write fails
//! with `BrokenPipe` instead of ending the process as it would a C tool.
//! Here the first such failure silences stdout for the rest of the run:
//! nothing more is printed, nothing panics, and a command that was doing
//! work (a job) finishes it. Other write errors go to stderr once.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `args` and a newline to stdout, unless stdout is gone.
pub fn line(args: std::fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|_| out.write_all(b"\n"))
        .and_then(|_| out.flush());
    if let Err(e) = written {
        if !CLOSED.swap(true, Ordering::Relaxed) && e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("standard output failed: {e}; nothing more is printed there");
        }
    }
}

/// `println!` that ends quietly on a closed pipe.
macro_rules! outln {
    () => {
        $crate::out::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;
