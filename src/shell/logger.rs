//! A minimal stderr logger: UTC time, level, module, message.

use log::{LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

struct StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let target = r.target().strip_prefix("outpost::").unwrap_or(r.target());
        let _ = writeln!(
            std::io::stderr().lock(),
            "{} {:5} {target}: {}",
            crate::stanza::timestamp(ms),
            r.level(),
            r.args()
        );
    }
    fn flush(&self) {}
}

/// Install the logger; `OUTPOST_LOG` (error..trace) overrides the configured level.
pub fn init(level: LevelFilter) {
    let level = std::env::var("OUTPOST_LOG")
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok())
        .unwrap_or(level);
    if log::set_logger(&StderrLogger).is_ok() {
        log::set_max_level(level);
    }
}
