//! Command output on stdout. When the reader goes away (`outpost check |
//! head`), the command ends quietly as other Unix tools do, instead of
//! aborting on the broken pipe the way `println!` would.

use std::fmt;
use std::io::{ErrorKind, Write};

/// Write `args` to stdout; end the process if stdout cannot take it.
pub fn write(args: fmt::Arguments) {
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("outpost: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// `println!` for command output, through [`write`].
#[macro_export]
macro_rules! out {
    () => {
        $crate::shell::stdout::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::shell::stdout::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}
