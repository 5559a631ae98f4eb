//! Reading the configuration file (the core parses and validates it:
//! `config`).

use crate::config::{Config, ConfigError};
use std::path::Path;

/// Load from a file; relative paths in it are relative to the file's directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    Config::parse_file(&text, path)
}

/// The configuration used without `-c`: the settings saved by the console
/// or the web page if there are any, else the embedded default. Relative
/// paths stay relative to the working directory, like the default's.
pub fn load_default() -> Result<Config, ConfigError> {
    let path = Config::saved_default_path();
    match std::fs::read_to_string(&path) {
        Ok(text) => Config::parse(&text, &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::embedded()),
        Err(e) => Err(ConfigError(format!("cannot read {}: {e}", path.display()))),
    }
}
