//! Command output on stdout that never panics: `println!` panics when
//! stdout is closed (`trackrelay check-config | head -1`). Every command
//! prints through [`outln!`](crate::outln), which returns the write error
//! to the command; [`crate::cli::run`] turns a broken pipe into a clean
//! exit (the reader has all it wanted).

use std::io::Write;

/// Writes one line to stdout.
pub fn line(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)?;
    out.write_all(b"\n")
}

/// Whether `e` is, at its root, a write to a closed pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    let broken = Some(std::io::ErrorKind::BrokenPipe);
    e.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().map(|io| io.kind()) == broken
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == broken
    })
}

/// `println!` that returns (with `?`) instead of panicking when stdout is
/// closed.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::out::line(format_args!($($arg)*))?
    };
}
